package connect

import (
	"context"
	"testing"

	"github.com/pkg/errors"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/mover/kopia"
	"github.com/snapmove/snapmove/internal/mover/repository"
)

func TestClassify(t *testing.T) {
	c := &Connector{Namespace: "velero"}
	for _, sentinel := range []error{kopia.ErrWrongPassword, kopia.ErrBucketNotFound, kopia.ErrAccessDenied, kopia.ErrUnreachable, kopia.ErrNotInitialized} {
		err := c.classify(errors.Wrap(sentinel, "repository at s3://b/p"))
		var p *datapath.PermanentError
		require.True(t, errors.As(err, &p), "%v is permanent", sentinel)
		require.ErrorIs(t, err, sentinel)
	}
	err := c.classify(kopia.ErrWrongPassword)
	require.Contains(t, err.Error(), "the password in secret velero/velero-repo-credentials (key repository-password) does not open it")
	other := errors.New("boom")
	require.Equal(t, other, c.classify(other))
}

// Only a backup into a new repository may create the password: a made-up password could
// never open an existing repository, so a restore, check or delete without the secret
// is a permanent error that says so.
func TestPasswordIsCreatedOnlyForWrites(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name        string
		create      bool
		wantErr     string
		wantCreated bool
	}{
		{name: "read without secret", create: false, wantErr: "no repository password: secret velero/velero-repo-credentials"},
		{name: "write without secret", create: true, wantCreated: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl := fake.NewClientBuilder().Build()
			c := &Connector{Client: cl, Namespace: "velero", Log: logrus.New()}
			pw, err := c.password(ctx, tc.create)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				var p *datapath.PermanentError
				require.True(t, errors.As(err, &p), "permanent")
				require.Empty(t, pw)
			} else {
				require.NoError(t, err)
				require.NotEmpty(t, pw)
			}
			s := &corev1.Secret{}
			getErr := cl.Get(ctx, client.ObjectKey{Namespace: "velero", Name: repository.PasswordSecretName}, s)
			require.Equal(t, tc.wantCreated, getErr == nil, "secret created")
		})
	}
	// An existing secret is read as it is, for reads and writes alike.
	existing := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "velero", Name: repository.PasswordSecretName},
		Data: map[string][]byte{repository.PasswordSecretKey: []byte("static-passw0rd\n")}}
	c := &Connector{Client: fake.NewClientBuilder().WithObjects(existing).Build(), Namespace: "velero", Log: logrus.New()}
	for _, create := range []bool{false, true} {
		pw, err := c.password(ctx, create)
		require.NoError(t, err)
		require.Equal(t, "static-passw0rd", pw)
	}
}
