//go:build e2e

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	crclient "sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/naming"
	"github.com/snapmove/snapmove/test/treecheck"
)

// backup runs `velero backup create NAME ARGS... --wait` and returns the finished Backup.
func (s *stack) backup(t *testing.T, name string, args ...string) *velerov1.Backup {
	t.Helper()
	s.veleroCLI(t, append([]string{"backup", "create", name, "--wait"}, args...)...)
	b := &velerov1.Backup{}
	require.NoError(t, s.c.Get(ctxT(t), crclient.ObjectKey{Namespace: s.veleroNS, Name: name}, b))
	t.Cleanup(func() { s.deleteBackup(t, name) })
	return b
}

func (s *stack) deleteBackup(t *testing.T, name string) {
	if _, err := runErr(s.velero, "-n", s.veleroNS, "backup", "delete", name, "--confirm"); err != nil {
		t.Logf("deleting backup %s: %v", name, err)
	}
}

func (s *stack) restore(t *testing.T, name string, args ...string) *velerov1.Restore {
	t.Helper()
	s.veleroCLI(t, append([]string{"restore", "create", name, "--wait"}, args...)...)
	r := &velerov1.Restore{}
	require.NoError(t, s.c.Get(ctxT(t), crclient.ObjectKey{Namespace: s.veleroNS, Name: name}, r))
	t.Cleanup(func() {
		_, _ = runErr(s.velero, "-n", s.veleroNS, "restore", "delete", name, "--confirm")
	})
	return r
}

// waitRestore waits until restore name has ended (Completed, PartiallyFailed, Failed, ...)
// and returns it; its deletion is the caller's cleanup.
func (s *stack) waitRestore(t *testing.T, name string, timeout time.Duration) *velerov1.Restore {
	t.Helper()
	r := &velerov1.Restore{}
	poll(t, "restore "+name+" to end", timeout, func(ctx context.Context) (bool, error) {
		if err := s.c.Get(ctx, crclient.ObjectKey{Namespace: s.veleroNS, Name: name}, r); err != nil {
			return false, err
		}
		switch r.Status.Phase {
		case velerov1.RestorePhaseCompleted, velerov1.RestorePhasePartiallyFailed, velerov1.RestorePhaseFailed, velerov1.RestorePhaseFailedValidation:
			return true, nil
		}
		return false, nil
	})
	return r
}

func (s *stack) dataUploads(t *testing.T, backup string) []velerov2alpha1.DataUpload {
	t.Helper()
	var l velerov2alpha1.DataUploadList
	require.NoError(t, s.c.List(ctxT(t), &l, crclient.InNamespace(s.veleroNS),
		crclient.MatchingLabels{velerov1.BackupNameLabel: backup}))
	return l.Items
}

func (s *stack) dataDownloads(t *testing.T, restore string) []velerov2alpha1.DataDownload {
	t.Helper()
	var l velerov2alpha1.DataDownloadList
	require.NoError(t, s.c.List(ctxT(t), &l, crclient.InNamespace(s.veleroNS),
		crclient.MatchingLabels{velerov1.RestoreNameLabel: restore}))
	return l.Items
}

// backupLogs returns `velero backup logs NAME`.
func (s *stack) backupLogs(t *testing.T, name string) string {
	t.Helper()
	return s.veleroCLI(t, "backup", "logs", name)
}

// requireDescribeShowsMove checks that `velero backup describe --details` tells the user
// that the PVC's data was moved, and by which action. Velero lists the PVC under its
// backup item operations in every configuration; the per-volume "Data Movement" section
// comes from Velero's volume info, which Velero only writes when it runs with EnableCSI
// (internal/volume/volumes_information.go generateVolumeInfoFromDataUpload).
func (s *stack) requireDescribeShowsMove(t *testing.T, backup, ns, pvc, action string) {
	t.Helper()
	details := s.veleroCLI(t, "backup", "describe", backup, "--details")
	require.Contains(t, details, "Operation for persistentvolumeclaims "+ns+"/"+pvc, details)
	require.Regexp(t, `Backup Item Action Plugin:\s+`+regexp.QuoteMeta(action), details)
	if s.features() == naming.FeatureEnableCSI {
		require.Regexp(t, `Data Mover: `+naming.DataMover, details)
	}
}

// features returns the --features the Velero server currently runs with.
func (s *stack) features() string {
	b, err := os.ReadFile(filepath.Join(s.run, "velero", "features"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// movedRoundTrip backs up namespace ns (one PVC "data" already filled at dir), deletes the
// namespace, restores it and checks the bytes and the VolumeSnapshot/DataUpload counts.
// It returns the DataUpload for further checks.
func (s *stack) movedRoundTrip(t *testing.T, ns, dir string, backupArgs []string, wantAction string) velerov2alpha1.DataUpload {
	t.Helper()
	want, err := treecheck.Manifest(dir)
	require.NoError(t, err)
	counter := s.countSnapshots(t, ns)

	name := ns + "-b"
	b := s.backup(t, name, append([]string{"--include-namespaces", ns, "--snapshot-move-data"}, backupArgs...)...)
	require.Equal(t, velerov1.BackupPhaseCompleted, b.Status.Phase, s.backupLogs(t, name))
	counter.close()
	require.Equal(t, 1, counter.count(), "VolumeSnapshots cut in %s during the backup", ns)
	dus := s.dataUploads(t, name)
	require.Len(t, dus, 1, "DataUploads of the backup")
	require.Equal(t, naming.DataMover, dus[0].Spec.DataMover)
	require.Equal(t, velerov2alpha1.DataUploadPhaseCompleted, dus[0].Status.Phase, dus[0].Status.Message)
	require.Contains(t, dus[0].Status.Message, "verified (metadata): ", "every backup is read back before it is Completed")
	require.Equal(t, dus[0].Status.Message, dus[0].Annotations["snapmove.io/verification"])
	s.requireDescribeShowsMove(t, name, ns, "data", wantAction)
	s.requireNoLeftovers(t)

	s.deleteNamespace(t, ns)
	rname := ns + "-r"
	r := s.restore(t, rname, "--from-backup", name)
	require.Equal(t, velerov1.RestorePhaseCompleted, r.Status.Phase)
	dds := s.dataDownloads(t, rname)
	require.Len(t, dds, 1, "DataDownloads of the restore")
	require.Equal(t, velerov2alpha1.DataDownloadPhaseCompleted, dds[0].Status.Phase, dds[0].Status.Message)
	got, err := treecheck.Manifest(s.volumePath(t, ns, "data"))
	require.NoError(t, err)
	require.Empty(t, treecheck.Compare(want, got, treecheck.Options{}))
	s.requireNoLeftovers(t)
	return dus[0]
}
