//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	crclient "sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/naming"
	"github.com/snapmove/snapmove/test/treecheck"
)

// Without EnableCSI (the stack's default) Velero's CSI actions are off and snapmove's
// actions take every CSI PVC.
func TestCoexistenceWithoutEnableCSI(t *testing.T) {
	parallel(t)
	s := env
	require.Equal(t, "", s.features(), "the stack's Velero runs without EnableCSI")
	ns, dir := s.smallVolume(t, "nocsi")
	s.movedRoundTrip(t, ns, dir, nil, naming.BackupActionName)
}

// The cases that need Velero's EnableCSI share one Velero setup (each switch is a rollout of
// Velero's Deployment).
func TestCoexistenceEnableCSI(t *testing.T) {
	env.withVeleroFeatures(t, naming.FeatureEnableCSI)
	// The unserved DataUpload's message comes after a minute: it is made first, and
	// waits while the first two cases run.
	unserved := unservedDataUpload(t)
	// The two ways to pick snapmove under EnableCSI change nothing shared: side by side.
	t.Run("snapmove picked", func(t *testing.T) {
		t.Run("volume policy", func(t *testing.T) { t.Parallel(); coexistenceEnableCSIWithPolicy(t) })
		t.Run("data mover flag", func(t *testing.T) { t.Parallel(); coexistenceEnableCSIDataMover(t) })
	})
	t.Run("seed configuration without node-agent", func(t *testing.T) { seedConfigurationWithoutNodeAgent(t, unserved) })
	t.Run("no lock-in", noLockIn)
}

// unserved is a DataUpload for Velero's built-in mover (spec.datamover "") that nothing
// serves, made at a known time.
type unserved struct {
	du      *velerov2alpha1.DataUpload
	created time.Time
}

func unservedDataUpload(t *testing.T) unserved {
	s := env
	// Not owned by the parent test: its VolumeSnapshot stays, as it should, while the
	// next cases check for leftovers of their own (and so of their parent's).
	ns := s.unownedNamespace(t, "unserved")
	s.pvc(t, ns, "data", "64Mi", corev1.PersistentVolumeFilesystem)
	du := s.dataUploadLikeVelero(t, ns, "data", "default", func(du *velerov2alpha1.DataUpload) { du.Spec.DataMover = "" })
	return unserved{du: du, created: time.Now()}
}

// With EnableCSI, a volume policy of action type custom (mover: snapmove) makes Velero's
// own CSI action skip the PVC and snapmove's take it.
func coexistenceEnableCSIWithPolicy(t *testing.T) {
	s := env
	s.withVeleroFeatures(t, naming.FeatureEnableCSI)
	ns, dir := s.smallVolume(t, "policy")
	policy := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.veleroNS, Name: ns + "-policy"},
		Data: map[string]string{"policy.yaml": `version: v1
volumePolicies:
  - conditions:
      csi:
        driver: ` + s.csiDriver + `
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
func coexistenceEnableCSIDataMover(t *testing.T) {
	s := env
	s.withVeleroFeatures(t, naming.FeatureEnableCSI)
	ns, dir := s.smallVolume(t, "dm")
	s.movedRoundTrip(t, ns, dir, []string{"--data-mover", naming.DataMover}, "velero.io/csi-pvc-backupper")
}

// The seed's configuration (EnableCSI, moving data by default) with snapmove in place of
// Velero's node-agent. Velero's own CSI action cuts the snapshot and creates a DataUpload
// for its built-in mover (spec.datamover ""), which node-agent would serve.
//   - Without node-agent, such a DataUpload says within a minute why nothing moves it and
//     what to change, with an Event, instead of waiting for Velero's 4-hour timeout.
//   - With the mover setting serveVeleroDataMover, snapmove serves it: the seed's command
//     completes, and the restore (Velero's CSI restore action, built-in mover) comes back
//     byte-identical.
func seedConfigurationWithoutNodeAgent(t *testing.T, u unserved) {
	s := env
	s.withVeleroFeatures(t, naming.FeatureEnableCSI)

	t.Run("unserved says so", func(t *testing.T) {
		du := u.du
		poll(t, "DataUpload "+du.Name+" to say that nothing serves it", 3*time.Minute, func(ctx context.Context) (bool, error) {
			err := s.c.Get(ctx, crclient.ObjectKeyFromObject(du), du)
			return strings.Contains(du.Status.Message, "no data mover serves this DataUpload"), err
		})
		t.Logf("after %s: %s", time.Since(u.created).Round(time.Second), du.Status.Message)
		require.Contains(t, du.Status.Message, "serveVeleroDataMover")
		require.Equal(t, velerov2alpha1.DataUploadPhase(""), du.Status.Phase, "left alone")
		s.requireEvent(t, du.Name)
		own(t, u.du.Spec.SourceNamespace)
		// Gone before the next case serves Velero's data mover, which would take it.
		require.NoError(t, crclient.IgnoreNotFound(s.c.Delete(ctxT(t), du)))
		poll(t, "DataUpload "+du.Name+" to be deleted", time.Minute, func(ctx context.Context) (bool, error) {
			err := s.c.Get(ctx, crclient.ObjectKeyFromObject(du), &velerov2alpha1.DataUpload{})
			return apierrors.IsNotFound(err), crclient.IgnoreNotFound(err)
		})
	})

	t.Run("served when asked", func(t *testing.T) {
		s.withMoverSettings(t, map[string]string{"serveVeleroDataMover": "true"})
		ns, dir := s.smallVolume(t, "seedcfg")
		want, err := treecheck.Manifest(dir)
		require.NoError(t, err)
		name := ns + "-b"
		b := s.backup(t, name, "--include-namespaces", ns, "--snapshot-move-data")
		require.Equal(t, velerov1.BackupPhaseCompleted, b.Status.Phase, s.backupLogs(t, name))
		dus := s.dataUploads(t, name)
		require.Len(t, dus, 1)
		require.Equal(t, "", dus[0].Spec.DataMover, "Velero's built-in mover")
		require.Equal(t, velerov2alpha1.DataUploadPhaseCompleted, dus[0].Status.Phase, dus[0].Status.Message)
		require.NotEmpty(t, dus[0].Status.SnapshotID)
		s.requireNoLeftovers(t)

		s.deleteNamespace(t, ns)
		r := s.restore(t, ns+"-r", "--from-backup", name)
		require.Equal(t, velerov1.RestorePhaseCompleted, r.Status.Phase)
		dds := s.dataDownloads(t, r.Name)
		require.Len(t, dds, 1)
		require.Equal(t, velerov2alpha1.DataDownloadPhaseCompleted, dds[0].Status.Phase, dds[0].Status.Message)
		got, err := treecheck.Manifest(s.volumePath(t, ns, "data"))
		require.NoError(t, err)
		require.Empty(t, treecheck.Compare(want, got, treecheck.Options{}))
		s.requireNoLeftovers(t)
	})
}

// No lock-in, both ways, on one volume (a small tree and 4 MiB of random data):
//   - out: a backup that snapmove moved is restored by stock Velero alone: snapmove's
//     initContainer gone from Velero's Deployment, its mover scaled to 0, EnableCSI and
//     Velero's node-agent on. `snapmove handover restore` (a `kubectl patch` of each
//     DataDownload's datamover) is the one step; node-agent restores the bytes.
//   - in: a backup that Velero's node-agent moved is restored by snapmove (node-agent
//     gone, serveVeleroDataMover), and snapmove's next backup of the volume is incremental
//     on Velero's snapshot.
func noLockIn(t *testing.T) {
	s := env
	s.withVeleroFeatures(t, naming.FeatureEnableCSI)
	ns, dir := s.smallVolume(t, "lockin")
	require.NoError(t, writeRandomBlocks(filepath.Join(dir, "random"), 4<<20))
	want, err := treecheck.Manifest(dir)
	require.NoError(t, err)
	// A block volume whose backup reads only its changed blocks (issue #25): the
	// snapshot is an index that reuses the blocks of its parent's.
	disk := newExt4(t, s.pvc(t, ns, "disk", "64Mi", corev1.PersistentVolumeBlock))
	disk.write("var/lib/db", 2<<20)
	s.app(t, ns, "disk", true)
	bBase := ns + "-base"
	b := s.backup(t, bBase, "--include-namespaces", ns, "--snapshot-move-data", "--data-mover", naming.DataMover)
	require.Equal(t, velerov1.BackupPhaseCompleted, b.Status.Phase, s.backupLogs(t, bBase))
	disk.write("var/lib/db-journal", 256<<10)
	wantDisk := disk.image()
	requireSame := func(t *testing.T) {
		t.Helper()
		got, err := treecheck.Manifest(s.volumePath(t, ns, "data"))
		require.NoError(t, err)
		require.Empty(t, treecheck.Compare(want, got, treecheck.Options{}))
		img, err := os.ReadFile(s.volumePath(t, ns, "disk"))
		require.NoError(t, err)
		require.True(t, bytes.Equal(wantDisk, img), "block volume differs")
	}

	// Velero is switched by hand below; set back once, at the end.
	initial := s.veleroSetup()
	t.Cleanup(func() { _ = s.setVelero(t, initial) })
	stock := veleroSetup{features: naming.FeatureEnableCSI, nodeAgent: true, snapmovePlugin: false}

	// snapmove's backup (with EnableCSI, through Velero's documented --data-mover)
	bSnapmove := ns + "-snapmove"
	b = s.backup(t, bSnapmove, "--include-namespaces", ns, "--snapshot-move-data", "--data-mover", naming.DataMover)
	require.Equal(t, velerov1.BackupPhaseCompleted, b.Status.Phase, s.backupLogs(t, bSnapmove))
	require.Equal(t, naming.DataMover, s.dataUploads(t, bSnapmove)[0].Spec.DataMover)
	diskRead := blockReadOf(t, uploadOf(t, s.dataUploads(t, bSnapmove), "disk"))
	require.Equal(t, datapath.BlockReadChanged, diskRead.Method, diskRead.Fallback)
	require.Less(t, diskRead.BytesRead, int64(4<<20), "only the changed blocks")

	t.Run("out: stock Velero restores snapmove's backup", func(t *testing.T) {
		require.NoError(t, s.setVelero(t, stock))
		s.scaleMover(t, 0) // back to 1 when the subtest ends
		s.deleteNamespace(t, ns)

		rname := ns + "-out"
		s.veleroCLI(t, "restore", "create", rname, "--from-backup", bSnapmove)
		t.Cleanup(func() { _, _ = runErr(s.velero, "-n", s.veleroNS, "restore", "delete", rname, "--confirm") })
		out := s.snapmove(t, "handover", "restore", rname, "--wait", "3m")
		t.Log(out)
		require.Contains(t, out, "handed 2 of 2 DataDownloads")
		r := s.waitRestore(t, rname, 5*time.Minute)
		require.Equal(t, velerov1.RestorePhaseCompleted, r.Status.Phase)
		dds := s.dataDownloads(t, rname)
		require.Len(t, dds, 2)
		for _, dd := range dds {
			require.Equal(t, "velero", dd.Spec.DataMover, "node-agent's")
			require.Equal(t, velerov2alpha1.DataDownloadPhaseCompleted, dd.Status.Phase, dd.Status.Message)
		}
		requireSame(t)
	})

	t.Run("in: snapmove restores and continues Velero's backup", func(t *testing.T) {
		require.NoError(t, s.setVelero(t, stock))
		s.scaleMover(t, 0)
		bVelero := ns + "-velero"
		b := s.backup(t, bVelero, "--include-namespaces", ns, "--snapshot-move-data")
		require.Equal(t, velerov1.BackupPhaseCompleted, b.Status.Phase, s.backupLogs(t, bVelero))
		dus := s.dataUploads(t, bVelero)
		require.Len(t, dus, 2)
		for _, du := range dus {
			require.Equal(t, "", du.Spec.DataMover, "Velero's built-in mover")
			require.Equal(t, velerov2alpha1.DataUploadPhaseCompleted, du.Status.Phase, du.Status.Message)
		}
		du := uploadOf(t, dus, "data")
		t.Logf("node-agent after snapmove: %d of %d bytes read", du.Status.IncrementalBytes, du.Status.Progress.TotalBytes)
		require.Less(t, du.Status.IncrementalBytes, int64(64<<10), "incremental on snapmove's snapshot")

		// the switch: node-agent gone, snapmove's plugin and mover in, Velero's data mover served
		require.NoError(t, s.setVelero(t, veleroSetup{features: naming.FeatureEnableCSI, nodeAgent: false, snapmovePlugin: true}))
		s.scaleMover(t, 1)
		s.withMoverSettings(t, map[string]string{"serveVeleroDataMover": "true"})
		s.deleteNamespace(t, ns)
		r := s.restore(t, ns+"-in", "--from-backup", bVelero)
		require.Equal(t, velerov1.RestorePhaseCompleted, r.Status.Phase)
		dds := s.dataDownloads(t, r.Name)
		require.Len(t, dds, 2)
		for _, dd := range dds {
			require.Equal(t, velerov2alpha1.DataDownloadPhaseCompleted, dd.Status.Phase, dd.Status.Message)
		}
		requireSame(t)

		bNext := ns + "-next"
		b = s.backup(t, bNext, "--include-namespaces", ns, "--snapshot-move-data", "--data-mover", naming.DataMover)
		require.Equal(t, velerov1.BackupPhaseCompleted, b.Status.Phase, s.backupLogs(t, bNext))
		dus = s.dataUploads(t, bNext)
		require.Len(t, dus, 2)
		du = uploadOf(t, dus, "data")
		require.Equal(t, naming.DataMover, du.Spec.DataMover)
		require.Equal(t, velerov2alpha1.DataUploadPhaseCompleted, du.Status.Phase, du.Status.Message)
		t.Logf("snapmove after Velero: %d of %d bytes read", du.Status.IncrementalBytes, du.Status.Progress.TotalBytes)
		require.GreaterOrEqual(t, du.Status.Progress.TotalBytes, int64(4<<20))
		require.Less(t, du.Status.IncrementalBytes, int64(64<<10), "incremental on Velero's snapshot")
		// Velero's block snapshot is no index of aligned blocks with a change ID: snapmove
		// reads the allocated blocks instead, and says why.
		diskRead := blockReadOf(t, uploadOf(t, dus, "disk"))
		t.Logf("snapmove's block backup after Velero's: %s", diskRead)
		require.Equal(t, datapath.BlockReadAllocated, diskRead.Method)
		require.Contains(t, diskRead.Fallback, "has no cbt-change-id tag")
		s.requireNoLeftovers(t)
	})
}

// uploadOf is the DataUpload of PVC pvc among dus.
func uploadOf(t *testing.T, dus []velerov2alpha1.DataUpload, pvc string) velerov2alpha1.DataUpload {
	t.Helper()
	for _, du := range dus {
		if du.Spec.SourcePVC == pvc {
			return du
		}
	}
	require.Failf(t, "no DataUpload", "of PVC %s among %d", pvc, len(dus))
	return velerov2alpha1.DataUpload{}
}
