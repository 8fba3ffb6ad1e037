package repository

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
)

func TestEnsurePassword(t *testing.T) {
	secretsGR := schema.GroupResource{Resource: "secrets"}
	tests := []struct {
		name    string
		objects []client.Object
		funcs   interceptor.Funcs
		want    string // "" = expect a generated password
		wantErr string
	}{
		{
			name:    "existing secret is trimmed",
			objects: []client.Object{secret(PasswordSecretName, map[string]string{PasswordSecretKey: "  static-passw0rd\n"})},
			want:    "static-passw0rd",
		},
		{
			name: "missing secret is created with a random password",
		},
		{
			name: "concurrent creation: re-read the winner's password",
			funcs: interceptor.Funcs{Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
				winner := secret(PasswordSecretName, map[string]string{PasswordSecretKey: "winner"})
				if err := c.Create(ctx, winner); err != nil {
					return err
				}
				return apierrors.NewAlreadyExists(secretsGR, obj.GetName())
			}},
			want: "winner",
		},
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
		{
			name: "create fails",
			funcs: interceptor.Funcs{Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
				return apierrors.NewForbidden(secretsGR, obj.GetName(), nil)
			}},
			wantErr: "creating secret velero/velero-repo-credentials",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := fake.NewClientBuilder().WithObjects(tc.objects...).WithInterceptorFuncs(tc.funcs).Build()
			got, err := EnsurePassword(context.Background(), c, veleroNS)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			if tc.want != "" {
				require.Equal(t, tc.want, got)
				return
			}
			require.Len(t, got, 43)
			stored := &corev1.Secret{}
			require.NoError(t, c.Get(context.Background(), client.ObjectKey{Namespace: veleroNS, Name: PasswordSecretName}, stored))
			require.Equal(t, got, string(stored.Data[PasswordSecretKey]))
			again, err := EnsurePassword(context.Background(), c, veleroNS)
			require.NoError(t, err)
			require.Equal(t, got, again)
			other, err := randomPassword()
			require.NoError(t, err)
			require.NotEqual(t, got, other)
		})
	}
}
