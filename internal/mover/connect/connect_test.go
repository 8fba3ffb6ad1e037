package connect

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/pkg/errors"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/mover/kopia"
	"github.com/snapmove/snapmove/internal/mover/kopia/store"
	"github.com/snapmove/snapmove/internal/mover/repository"
)

func TestClassify(t *testing.T) {
	from := secretPassword("velero")
	for _, sentinel := range []error{kopia.ErrWrongPassword, kopia.ErrBucketNotFound, kopia.ErrAccessDenied, kopia.ErrNotInitialized} {
		err := classify(errors.Wrap(sentinel, "repository at s3://b/p"), from)
		var p *datapath.PermanentError
		require.True(t, errors.As(err, &p), "%v is permanent", sentinel)
		require.ErrorIs(t, err, sentinel)
	}
	err := classify(kopia.ErrWrongPassword, from)
	require.Contains(t, err.Error(), "the password in secret velero/velero-repo-credentials (key repository-password) does not open it")
	other := errors.New("boom")
	require.Equal(t, other, classify(other, from))
	// An object store that does not answer may come back: transient, retried in a bound.
	unreachable := errors.Wrap(kopia.ErrUnreachable, "storage of repository at s3://b/p/ is unreachable")
	var p *datapath.PermanentError
	require.False(t, errors.As(classify(unreachable, from), &p), "unreachable is transient")
}

func TestLocationErrors(t *testing.T) {
	gr := schema.GroupResource{Resource: "secrets"}
	for _, tc := range []struct {
		name      string
		err       error
		permanent bool
	}{
		{"secret missing", errors.Wrap(apierrors.NewNotFound(gr, "cloud-credentials"), "getting secret velero/cloud-credentials"), true},
		{"secret forbidden", apierrors.NewForbidden(gr, "cloud-credentials", errors.New("rbac")), true},
		{"API server timeout", errors.Wrap(apierrors.NewTimeoutError("request timed out", 1), "getting secret velero/cloud-credentials"), false},
		{"API server 500", apierrors.NewInternalError(errors.New("etcdserver: leader changed")), false},
		{"throttled", apierrors.NewTooManyRequests("slow down", 1), false},
		{"unknown provider", errors.New(`BackupStorageLocation velero/default: provider "ftp" is not supported`), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p *datapath.PermanentError
			require.Equal(t, tc.permanent, errors.As(locationError(tc.err), &p))
		})
	}
}

// The repository password is Velero's to create (its server does, at start): a missing
// secret is waited for, by backups too, and never created (issue #21 item 10).
func TestPasswordIsNeverCreated(t *testing.T) {
	ctx := context.Background()
	cl := fake.NewClientBuilder().Build()
	c := &Connector{Client: cl, Namespace: "velero", Log: logrus.New()}
	for _, create := range []bool{false, true} {
		_, err := c.Connect(ctx, &velerov1.BackupStorageLocation{
			ObjectMeta: metav1.ObjectMeta{Namespace: "velero", Name: "default"},
			Spec: velerov1.BackupStorageLocationSpec{Provider: "velero.io/fs", Config: map[string]string{"fspath": t.TempDir()},
				StorageType: velerov1.StorageType{ObjectStorage: &velerov1.ObjectStorageLocation{Bucket: "bucket"}}},
		}, "app", kopia.Options{Create: create, ReadOnly: !create, CacheLimitMB: -1})
		require.EqualError(t, err, "Velero's repository password secret velero/velero-repo-credentials does not exist yet; Velero creates it when its server starts")
		require.True(t, datapath.IsTransient(err), "a wait, not a failure")
		var p *datapath.PermanentError
		require.False(t, errors.As(err, &p))
		s := &corev1.Secret{}
		getErr := cl.Get(ctx, client.ObjectKey{Namespace: "velero", Name: repository.PasswordSecretName}, s)
		require.True(t, apierrors.IsNotFound(getErr), "no secret created (create=%v)", create)
	}
	// An existing secret is read as it is.
	existing := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "velero", Name: repository.PasswordSecretName},
		Data: map[string][]byte{repository.PasswordSecretKey: []byte("static-passw0rd\n")}}
	c = &Connector{Client: fake.NewClientBuilder().WithObjects(existing).Build(), Namespace: "velero", Log: logrus.New()}
	pw, err := c.password(ctx)
	require.NoError(t, err)
	require.Equal(t, "static-passw0rd", pw)
}

// The repository finds a backup's snapshots by the tags the worker copies from the
// DataUpload's labels: they must be Velero's label names.
func TestBackupTagsAreVelerosLabels(t *testing.T) {
	require.Equal(t, velerov1.BackupNameLabel, store.TagBackupName)
	require.Equal(t, velerov1.BackupUIDLabel, store.TagBackupUID)
}

// Velero's backups are read from <bsl prefix>/backups/, beside the repositories (kopia's
// filesystem storage, the tests' provider, keeps blob X in file X.f).
func TestReaderBackups(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"velero/backups/b1/velero-backup.json.f", "velero/backups/b2/b2-logs.gz.f", "velero/kopia/app/kopia.repository.f"} {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, filepath.Dir(f)), 0o700))
		require.NoError(t, os.WriteFile(filepath.Join(dir, f), []byte("{}"), 0o600))
	}
	bsl := &velerov1.BackupStorageLocation{
		ObjectMeta: metav1.ObjectMeta{Namespace: "velero", Name: "default"},
		Spec: velerov1.BackupStorageLocationSpec{Provider: "velero.io/fs", Config: map[string]string{"fspath": dir},
			StorageType: velerov1.StorageType{ObjectStorage: &velerov1.ObjectStorageLocation{Bucket: "bucket", Prefix: "velero"}}},
	}
	r := &Reader{Secrets: fake.NewClientBuilder().Build(), Namespace: "velero", Log: logrus.New()}
	got, err := r.Backups(context.Background(), bsl)
	require.NoError(t, err)
	require.Equal(t, []string{"b1"}, got)
}
