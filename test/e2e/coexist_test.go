//go:build e2e

package e2e

import (
	"context"
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
	requireSame := func(t *testing.T) {
		t.Helper()
		got, err := treecheck.Manifest(s.volumePath(t, ns, "data"))
		require.NoError(t, err)
		require.Empty(t, treecheck.Compare(want, got, treecheck.Options{}))
	}

	// Velero is switched by hand below; set back once, at the end.
	initial := s.veleroSetup()
	t.Cleanup(func() { _ = s.setVelero(t, initial) })
	stock := veleroSetup{features: naming.FeatureEnableCSI, nodeAgent: true, snapmovePlugin: false}

	// snapmove's backup (with EnableCSI, through Velero's documented --data-mover)
	bSnapmove := ns + "-snapmove"
	b := s.backup(t, bSnapmove, "--include-namespaces", ns, "--snapshot-move-data", "--data-mover", naming.DataMover)
	require.Equal(t, velerov1.BackupPhaseCompleted, b.Status.Phase, s.backupLogs(t, bSnapmove))
	require.Equal(t, naming.DataMover, s.dataUploads(t, bSnapmove)[0].Spec.DataMover)

	t.Run("out: stock Velero restores snapmove's backup", func(t *testing.T) {
		require.NoError(t, s.setVelero(t, stock))
		s.scaleMover(t, 0) // back to 1 when the subtest ends
		s.deleteNamespace(t, ns)

		rname := ns + "-out"
		s.veleroCLI(t, "restore", "create", rname, "--from-backup", bSnapmove)
		t.Cleanup(func() { _, _ = runErr(s.velero, "-n", s.veleroNS, "restore", "delete", rname, "--confirm") })
		out := s.snapmove(t, "handover", "restore", rname, "--wait", "3m")
		t.Log(out)
		require.Contains(t, out, "handed 1 of 1 DataDownloads")
		r := s.waitRestore(t, rname, 5*time.Minute)
		require.Equal(t, velerov1.RestorePhaseCompleted, r.Status.Phase)
		dds := s.dataDownloads(t, rname)
		require.Len(t, dds, 1)
		require.Equal(t, "velero", dds[0].Spec.DataMover, "node-agent's")
		require.Equal(t, velerov2alpha1.DataDownloadPhaseCompleted, dds[0].Status.Phase, dds[0].Status.Message)
		requireSame(t)
	})

	t.Run("in: snapmove restores and continues Velero's backup", func(t *testing.T) {
		require.NoError(t, s.setVelero(t, stock))
		s.scaleMover(t, 0)
		bVelero := ns + "-velero"
		b := s.backup(t, bVelero, "--include-namespaces", ns, "--snapshot-move-data")
		require.Equal(t, velerov1.BackupPhaseCompleted, b.Status.Phase, s.backupLogs(t, bVelero))
		dus := s.dataUploads(t, bVelero)
		require.Len(t, dus, 1)
		require.Equal(t, "", dus[0].Spec.DataMover, "Velero's built-in mover")
		require.Equal(t, velerov2alpha1.DataUploadPhaseCompleted, dus[0].Status.Phase, dus[0].Status.Message)
		t.Logf("node-agent after snapmove: %d of %d bytes read", dus[0].Status.IncrementalBytes, dus[0].Status.Progress.TotalBytes)
		require.Less(t, dus[0].Status.IncrementalBytes, int64(64<<10), "incremental on snapmove's snapshot")

		// the switch: node-agent gone, snapmove's plugin and mover in, Velero's data mover served
		require.NoError(t, s.setVelero(t, veleroSetup{features: naming.FeatureEnableCSI, nodeAgent: false, snapmovePlugin: true}))
		s.scaleMover(t, 1)
		s.withMoverSettings(t, map[string]string{"serveVeleroDataMover": "true"})
		s.deleteNamespace(t, ns)
		r := s.restore(t, ns+"-in", "--from-backup", bVelero)
		require.Equal(t, velerov1.RestorePhaseCompleted, r.Status.Phase)
		dds := s.dataDownloads(t, r.Name)
		require.Len(t, dds, 1)
		require.Equal(t, velerov2alpha1.DataDownloadPhaseCompleted, dds[0].Status.Phase, dds[0].Status.Message)
		requireSame(t)

		bNext := ns + "-next"
		b = s.backup(t, bNext, "--include-namespaces", ns, "--snapshot-move-data", "--data-mover", naming.DataMover)
		require.Equal(t, velerov1.BackupPhaseCompleted, b.Status.Phase, s.backupLogs(t, bNext))
		dus = s.dataUploads(t, bNext)
		require.Len(t, dus, 1)
		require.Equal(t, naming.DataMover, dus[0].Spec.DataMover)
		require.Equal(t, velerov2alpha1.DataUploadPhaseCompleted, dus[0].Status.Phase, dus[0].Status.Message)
		t.Logf("snapmove after Velero: %d of %d bytes read", dus[0].Status.IncrementalBytes, dus[0].Status.Progress.TotalBytes)
		require.GreaterOrEqual(t, dus[0].Status.Progress.TotalBytes, int64(4<<20))
		require.Less(t, dus[0].Status.IncrementalBytes, int64(64<<10), "incremental on Velero's snapshot")
		s.requireNoLeftovers(t)
	})
}
