package repository

import (
	"context"
	"testing"

	"github.com/pkg/errors"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

func TestPassword(t *testing.T) {
	tests := []struct {
		name         string
		objects      []client.Object
		want         string
		wantErr      string
		wantNotFound bool
	}{
		{
			name:    "existing secret is trimmed",
			objects: []client.Object{secret(PasswordSecretName, map[string]string{PasswordSecretKey: "  static-passw0rd\n"})},
			want:    "static-passw0rd",
		},
		// Velero's server creates the secret at start; we never do (issue #21 item 10).
		{name: "missing secret is not created", wantErr: "getting secret velero/velero-repo-credentials", wantNotFound: true},
		{
			name:    "secret without the key",
			objects: []client.Object{secret(PasswordSecretName, map[string]string{"other": "x"})},
			wantErr: "has no key repository-password",
		},
		{
			name:    "empty password",
			objects: []client.Object{secret(PasswordSecretName, map[string]string{PasswordSecretKey: " \n"})},
			wantErr: "is empty",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := fake.NewClientBuilder().WithObjects(tc.objects...).Build()
			got, err := Password(context.Background(), c, veleroNS)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				require.Equal(t, tc.wantNotFound, apierrors.IsNotFound(errors.Cause(err)))
				err := c.Get(context.Background(), client.ObjectKey{Namespace: veleroNS, Name: PasswordSecretName}, &corev1.Secret{})
				require.Equal(t, tc.wantNotFound, apierrors.IsNotFound(err), "nothing created or changed")
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}
