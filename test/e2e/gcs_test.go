//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	crclient "sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/naming"
	"github.com/snapmove/snapmove/test/treecheck"
)

// gcsBSL is the stack's GCS BackupStorageLocation (hack/stack/up.sh with
// SNAPMOVE_STACK_STORES=gcs): provider velero.io/gcp, bucket velero-gcs on fake-gcs-server.
const gcsBSL = "gcs"

// TestGCSRoundTrip (issue #22, item 1) is the seed's flow on Google Cloud Storage: a backup
// with --snapshot-move-data to the GCS location that Velero's GCP plugin serves, the
// namespace deleted, the restore byte-identical; then the seed's `kopia repository connect
// gcs ... --prefix <prefix>/kopia/<ns>/` lists the snapshot, and snapmove's list, ls,
// restore-files and verify read it. The store is fake-gcs-server; every client reaches it
// through STORAGE_EMULATOR_HOST, the one endpoint setting Google's Go storage client and
// kopia's GCS storage share (the BSL is as users write it).
//
// Never `velero backup logs` or `velero backup describe` for this backup: Velero's CLI
// downloads those through signed URLs, which Google's Go client makes https only
// (storage.SignedURL), and the stack's fake-gcs-server serves http: the download would fail
// for a reason that is the stack's, not snapmove's (docs/stores-on-the-stack.md sec. 1).
func TestGCSRoundTrip(t *testing.T) {
	emulator, creds := os.Getenv("SNAPMOVE_GCS_EMULATOR"), os.Getenv("SNAPMOVE_GCS_CREDENTIALS")
	if emulator == "" || creds == "" {
		t.Skip("the stack runs without GCS (SNAPMOVE_GCS_EMULATOR is not set): start it with SNAPMOVE_STACK_STORES=gcs (make test does)")
	}
	parallel(t)
	s := env
	gcsEnv := []string{"STORAGE_EMULATOR_HOST=" + emulator}

	var bsl velerov1.BackupStorageLocation
	require.NoError(t, s.c.Get(ctxT(t), crclient.ObjectKey{Namespace: s.veleroNS, Name: gcsBSL}, &bsl))
	require.Equal(t, "velero.io/gcp", bsl.Spec.Provider)
	require.Equal(t, velerov1.BackupStorageLocationPhaseAvailable, bsl.Status.Phase, "BSL %s: %s", gcsBSL, bsl.Status.Message)
	bucket, prefix := bsl.Spec.ObjectStorage.Bucket, bsl.Spec.ObjectStorage.Prefix

	ns, dir := s.smallVolume(t, "gcs")
	want, err := treecheck.Manifest(dir)
	require.NoError(t, err)

	// Velero: backup to GCS, namespace deleted, restore, every byte back.
	name := ns + "-b"
	b := s.backup(t, name, "--include-namespaces", ns, "--snapshot-move-data", "--storage-location", gcsBSL)
	// Not s.backupLogs on failure (see above): the status and the DataUpload say enough, and
	// Velero's own log is in /var/log/pods/velero_velero-*/.
	require.Equal(t, velerov1.BackupPhaseCompleted, b.Status.Phase, "backup %s: %s, %d errors (Velero's log: /var/log/pods/velero_velero-*/)",
		name, b.Status.FailureReason, b.Status.Errors)
	require.Equal(t, gcsBSL, b.Spec.StorageLocation)
	dus := s.dataUploads(t, name)
	require.Len(t, dus, 1, "DataUploads of the backup")
	du := dus[0]
	require.Equal(t, naming.DataMover, du.Spec.DataMover)
	require.Equal(t, gcsBSL, du.Spec.BackupStorageLocation)
	require.Equal(t, velerov2alpha1.DataUploadPhaseCompleted, du.Status.Phase, du.Status.Message)
	require.NotEmpty(t, du.Status.SnapshotID)
	require.Contains(t, du.Status.Message, "verified (metadata): ", "every backup is read back before it is Completed")
	s.requireNoLeftovers(t)

	s.deleteNamespace(t, ns)
	rname := ns + "-r"
	r := s.restore(t, rname, "--from-backup", name)
	require.Equal(t, velerov1.RestorePhaseCompleted, r.Status.Phase, "restore %s: %s, %d errors", rname, r.Status.FailureReason, r.Status.Errors)
	dds := s.dataDownloads(t, rname)
	require.Len(t, dds, 1, "DataDownloads of the restore")
	require.Equal(t, velerov2alpha1.DataDownloadPhaseCompleted, dds[0].Status.Phase, dds[0].Status.Message)
	restored := s.volumePath(t, ns, "data")
	got, err := treecheck.Manifest(restored)
	require.NoError(t, err)
	require.Empty(t, treecheck.Compare(want, got, treecheck.Options{}))
	s.requireNoLeftovers(t)

	// The kopia CLI, as the seed runs it against GCS (a config file of its own, read-only).
	kdir := t.TempDir()
	kcfg := []string{"--config-file", filepath.Join(kdir, "repo.config")}
	kopia := func(args ...string) string {
		t.Helper()
		out, err := runEnv(gcsEnv, s.kopia, append(args, kcfg...)...)
		require.NoError(t, err, "kopia %v:\n%s", args, out)
		return out
	}
	kopia("repository", "connect", "gcs", "--bucket", bucket, "--credentials-file", creds,
		"--prefix", prefix+"/kopia/"+ns+"/", "--password", s.repoPassword(t),
		"--cache-directory", filepath.Join(kdir, "cache"), "--readonly")
	ls := kopia("snapshot", "list", "--all", "--manifest-id")
	require.Contains(t, ls, "default@default:snapshot-data-upload-download/kopia/"+ns+"/data", ls)
	require.Contains(t, ls, du.Status.SnapshotID, ls)

	// snapmove's commands, from the user's machine, on the backup in GCS.
	snapmove := func(args ...string) string {
		t.Helper()
		out, err := runEnv(gcsEnv, s.bin(), args...)
		require.NoError(t, err, "snapmove %v:\n%s", args, out)
		return out
	}
	list := snapmove("list", name)
	require.Contains(t, list, ns+"/data", list)
	require.Contains(t, list, du.Status.SnapshotID, list)
	lsOut := snapmove("ls", name, ns+"/data", "a/b")
	require.Regexp(t, ` file\n`, lsOut)
	target := t.TempDir()
	out := snapmove("restore-files", name, ns+"/data", "a/b/file", "--to", target)
	require.Contains(t, out, "restored a/b/file", out)
	requireSameFile(t, filepath.Join(restored, "a", "b", "file"), filepath.Join(target, "a", "b", "file"))
	verified := snapmove("verify", name, "--level", "full")
	require.Regexp(t, ns+`/data\s+\S+\s+OK\s+verified \(full\)`, verified)
}
