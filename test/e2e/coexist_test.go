//go:build e2e

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	crclient "sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/naming"
	"github.com/snapmove/snapmove/test/treecheck"
)

// snapshotCounter records every VolumeSnapshot that appears in a namespace while it runs,
// by UID, so a test can prove a backup cut exactly one snapshot per PVC even though the
// mover deletes the snapshot before the backup completes.
type snapshotCounter struct {
	mu   sync.Mutex
	uids map[types.UID]string
	stop context.CancelFunc
	done chan struct{}
}

func (s *stack) countSnapshots(t *testing.T, ns string) *snapshotCounter {
	ctx, cancel := context.WithCancel(context.Background())
	c := &snapshotCounter{uids: map[types.UID]string{}, stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		_ = wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			var l snapshotv1.VolumeSnapshotList
			if err := s.c.List(ctx, &l, crclient.InNamespace(ns)); err == nil {
				c.mu.Lock()
				for _, vs := range l.Items {
					c.uids[vs.UID] = vs.Name
				}
				c.mu.Unlock()
			}
			return false, nil
		})
	}()
	t.Cleanup(c.close)
	return c
}

func (c *snapshotCounter) close() { c.stop(); <-c.done }

func (c *snapshotCounter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.uids)
}

// withVeleroFeatures restarts the Velero server with the given --features for the rest of
// the test and restores the stack's default afterwards.
func (s *stack) withVeleroFeatures(t *testing.T, features string) {
	t.Helper()
	if s.features() == features {
		return
	}
	before := s.features()
	restart := func(f string) error {
		cmd := []string{filepath.Join(repoRoot(), "hack", "stack", "velero.sh"), "restart"}
		out, err := runEnv([]string{"VELERO_FEATURES=" + f}, cmd[0], cmd[1:]...)
		if err != nil {
			t.Logf("velero.sh restart: %s", out)
		}
		return err
	}
	require.NoError(t, restart(features))
	t.Cleanup(func() { _ = restart(before) })
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

func (s *stack) smallVolume(t *testing.T, prefix string) (string, string) {
	t.Helper()
	ns := s.namespace(t, prefix)
	dir := s.pvc(t, ns, "data", "256Mi", corev1.PersistentVolumeFilesystem)
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "a", "b"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "a", "b", "file"), []byte(prefix), 0o640))
	require.NoError(t, os.Symlink("a/b/file", filepath.Join(dir, "link")))
	return ns, dir
}

// Without EnableCSI (the stack's default) Velero's CSI actions are off and snapmove's
// actions take every CSI PVC.
func TestCoexistenceWithoutEnableCSI(t *testing.T) {
	s := env
	s.withVeleroFeatures(t, "")
	ns, dir := s.smallVolume(t, "nocsi")
	s.movedRoundTrip(t, ns, dir, nil, naming.BackupActionName)
}

// With EnableCSI, a volume policy of action type custom (mover: snapmove) makes Velero's
// own CSI action skip the PVC and snapmove's take it.
func TestCoexistenceEnableCSIWithPolicy(t *testing.T) {
	s := env
	s.withVeleroFeatures(t, naming.FeatureEnableCSI)
	ns, dir := s.smallVolume(t, "policy")
	policy := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.veleroNS, Name: ns + "-policy"},
		Data: map[string]string{"policy.yaml": `version: v1
volumePolicies:
  - conditions:
      csi:
        driver: ` + os.Getenv("CSI_DRIVER") + `
    action:
      type: custom
      parameters:
        mover: snapmove
`},
	}
	require.NoError(t, s.c.Create(ctxT(t), policy))
	t.Cleanup(func() { _ = s.c.Delete(context.Background(), policy) })
	s.movedRoundTrip(t, ns, dir, []string{"--resource-policies-configmap", policy.Name}, naming.BackupActionName)
}

// With EnableCSI and no policy, `--data-mover snapmove` is Velero's documented way to use a
// third-party mover: Velero's own CSI action cuts the snapshot and creates the DataUpload,
// snapmove's action stands back, and snapmove's mover moves the bytes.
func TestCoexistenceEnableCSIDataMover(t *testing.T) {
	s := env
	s.withVeleroFeatures(t, naming.FeatureEnableCSI)
	ns, dir := s.smallVolume(t, "dm")
	s.movedRoundTrip(t, ns, dir, []string{"--data-mover", naming.DataMover}, "velero.io/csi-pvc-backupper")
}
