//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"github.com/minio/minio-go/v7"
	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	crclient "sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/mover/kopia/kopiatest/maintain"
	"github.com/snapmove/snapmove/internal/mover/kopia/store"
	"github.com/snapmove/snapmove/internal/mover/repository"
	"github.com/snapmove/snapmove/internal/naming"
	"github.com/snapmove/snapmove/test/datagen"
	"github.com/snapmove/snapmove/test/treecheck"
)

// A restore into another namespace (--namespace-mappings) lands the bytes in a PVC of the
// new namespace; the source namespace is untouched.
func TestNamespaceMappedRestore(t *testing.T) {
	parallel(t)
	s := env
	ns, dir := s.smallVolume(t, "from")
	want, err := treecheck.Manifest(dir)
	require.NoError(t, err)
	name := ns + "-b"
	b := s.backup(t, name, "--include-namespaces", ns, "--snapshot-move-data")
	require.Equal(t, velerov1.BackupPhaseCompleted, b.Status.Phase, s.backupLogs(t, name))

	target := ns + "-mapped"
	t.Cleanup(func() { s.deleteNamespace(t, target) })
	r := s.restore(t, ns+"-r", "--from-backup", name, "--namespace-mappings", ns+":"+target)
	require.Equal(t, velerov1.RestorePhaseCompleted, r.Status.Phase)
	dds := s.dataDownloads(t, r.Name)
	require.Len(t, dds, 1)
	require.Equal(t, target, dds[0].Spec.TargetVolume.Namespace)
	got, err := treecheck.Manifest(s.volumePath(t, target, "data"))
	require.NoError(t, err)
	require.Empty(t, treecheck.Compare(want, got, treecheck.Options{}))
	again, err := treecheck.Manifest(dir)
	require.NoError(t, err)
	require.Empty(t, treecheck.Compare(want, again, treecheck.Options{}), "source volume changed")
	s.requireNoLeftovers(t)
}

// Two VolumeSnapshotClasses labelled for one driver: Velero would silently take the first;
// snapmove fails the PVC, names both classes in the backup's log, and cuts no snapshot.
func TestAmbiguousSnapshotClass(t *testing.T) {
	s := env
	second := &snapshotv1.VolumeSnapshotClass{
		ObjectMeta: metav1.ObjectMeta{Name: "zz-second-labelled",
			Labels: map[string]string{velerov1.VolumeSnapshotClassSelectorLabel: "true"}},
		Driver:         s.csiDriver,
		DeletionPolicy: snapshotv1.VolumeSnapshotContentDelete,
	}
	require.NoError(t, s.c.Create(ctxT(t), second))
	t.Cleanup(func() { _ = s.c.Delete(context.Background(), second) })

	ns, _ := s.smallVolume(t, "ambiguous")
	counter := s.countSnapshots(t, ns)
	name := ns + "-b"
	b := s.backup(t, name, "--include-namespaces", ns, "--snapshot-move-data")
	counter.close()
	require.Equal(t, velerov1.BackupPhasePartiallyFailed, b.Status.Phase)
	logs := s.backupLogs(t, name)
	require.Contains(t, logs, s.snapClass, logs)
	require.Contains(t, logs, second.Name, logs)
	require.Contains(t, logs, velerov1.VolumeSnapshotClassSelectorLabel, logs)
	require.Zero(t, counter.count(), "VolumeSnapshots cut")
	require.Empty(t, s.dataUploads(t, name))
	s.requireNoLeftovers(t)
}

// A PVC that names a VolumeSnapshotClass that does not exist fails with a message naming
// the annotation and the class (Velero would ignore the annotation and fall through).
func TestMissingSnapshotClass(t *testing.T) {
	parallel(t)
	s := env
	ns, _ := s.smallVolume(t, "missing")
	var pvc corev1.PersistentVolumeClaim
	require.NoError(t, s.c.Get(ctxT(t), crclient.ObjectKey{Namespace: ns, Name: "data"}, &pvc))
	pvc.Annotations = map[string]string{velerov1.VolumeSnapshotClassDriverPVCAnnotation: "no-such-class"}
	require.NoError(t, s.c.Update(ctxT(t), &pvc))

	counter := s.countSnapshots(t, ns)
	name := ns + "-b"
	b := s.backup(t, name, "--include-namespaces", ns, "--snapshot-move-data")
	counter.close()
	require.Equal(t, velerov1.BackupPhasePartiallyFailed, b.Status.Phase)
	logs := s.backupLogs(t, name)
	require.Contains(t, logs, "no-such-class", logs)
	require.Contains(t, logs, velerov1.VolumeSnapshotClassDriverPVCAnnotation, logs)
	require.Zero(t, counter.count())
	// Velero stores no item whose action failed; the protection report still lists it.
	report := s.snapmove(t, "report", name)
	require.Regexp(t, ns+`/data\s+NotBackedUp\s+the backup holds no copy of it`, report)
	s.requireNoLeftovers(t)
}

// A volumeMode: Block PVC is read as a raw device and restored onto a new device.
func TestBlockRoundTrip(t *testing.T) {
	parallel(t)
	s := env
	ns := s.namespace(t, "block")
	img := s.pvc(t, ns, "data", "256Mi", corev1.PersistentVolumeBlock)
	require.NoError(t, writeRandomBlocks(img, 64<<20))
	want := sha256File(t, img)
	s.app(t, ns, "data", true)

	name := ns + "-b"
	b := s.backup(t, name, "--include-namespaces", ns, "--snapshot-move-data")
	require.Equal(t, velerov1.BackupPhaseCompleted, b.Status.Phase, s.backupLogs(t, name))
	s.requireNoLeftovers(t)
	s.deleteNamespace(t, ns)

	r := s.restore(t, ns+"-r", "--from-backup", name)
	require.Equal(t, velerov1.RestorePhaseCompleted, r.Status.Phase)
	got := s.volumePath(t, ns, "data")
	require.Equal(t, want, sha256File(t, got), "restored device differs")
	s.requireNoLeftovers(t)
}

// `velero backup delete` removes the backup's snapshot from the kopia repository (Velero
// only does this for its own mover; snapmove's delete action asks the mover to).
func TestBackupDeleteForgetsSnapshot(t *testing.T) {
	s := env
	ns, dir := s.smallVolume(t, "forget")
	// Every generation holds fresh random data, so that what a deleted backup held is
	// storage that maintenance can free.
	gen := filepath.Join(dir, "gen")
	require.NoError(t, writeRandomBlocks(gen, genSize))
	name := ns + "-b"
	b := s.backup(t, name, "--include-namespaces", ns, "--snapshot-move-data")
	require.Equal(t, velerov1.BackupPhaseCompleted, b.Status.Phase, s.backupLogs(t, name))
	id := s.dataUploads(t, name)[0].Status.SnapshotID

	kcfg := s.kopiaConnect(t, ns, s.bslPrefix+"/kopia/"+ns+"/")
	ls := run(t, s.kopia, append([]string{"snapshot", "ls", "--all", "--manifest-id"}, kcfg...)...)
	require.Contains(t, ls, id)

	s.veleroCLI(t, "backup", "delete", name, "--confirm")
	poll(t, "backup "+name+" to be deleted", 3*time.Minute, func(ctx context.Context) (bool, error) {
		err := s.c.Get(ctx, crclient.ObjectKey{Namespace: s.veleroNS, Name: name}, &velerov1.Backup{})
		return crclient.IgnoreNotFound(err) == nil && err != nil, nil
	})
	ls = run(t, s.kopia, append([]string{"snapshot", "ls", "--all", "--manifest-id"}, kcfg...)...)
	require.NotContains(t, ls, id, ls)
	var cms corev1.ConfigMapList
	require.NoError(t, s.c.List(ctxT(t), &cms, crclient.InNamespace(s.veleroNS), crclient.HasLabels{naming.DeleteRequestLabel}))
	require.Empty(t, cms.Items, "delete requests left behind")

	// Deleting a backup always finishes: with the mover scaled to zero, Velero deletes the
	// backup (the plugin waits at most 10 s), the request stays, and once the mover is back
	// it forgets the snapshot and removes the request by itself.
	name2 := ns + "-b2"
	require.NoError(t, writeRandomBlocks(gen, genSize))
	b = s.backup(t, name2, "--include-namespaces", ns, "--snapshot-move-data")
	require.Equal(t, velerov1.BackupPhaseCompleted, b.Status.Phase, s.backupLogs(t, name2))
	id2 := s.dataUploads(t, name2)[0].Status.SnapshotID
	s.scaleMover(t, 0)
	s.veleroCLI(t, "backup", "delete", name2, "--confirm")
	poll(t, "backup "+name2+" to be deleted with the mover down", 3*time.Minute, func(ctx context.Context) (bool, error) {
		err := s.c.Get(ctx, crclient.ObjectKey{Namespace: s.veleroNS, Name: name2}, &velerov1.Backup{})
		return apierrors.IsNotFound(err), crclient.IgnoreNotFound(err)
	})
	require.NoError(t, s.c.List(ctxT(t), &cms, crclient.InNamespace(s.veleroNS), crclient.HasLabels{naming.DeleteRequestLabel}))
	require.Len(t, cms.Items, 1, "the request waits for the mover")
	ls = run(t, s.kopia, append([]string{"snapshot", "ls", "--all", "--manifest-id"}, kcfg...)...)
	require.Contains(t, ls, id2, "not forgotten while the mover is down")
	s.scaleMover(t, 1)
	poll(t, "the mover to forget snapshot "+id2+" and remove its request", 4*time.Minute, func(ctx context.Context) (bool, error) {
		var l corev1.ConfigMapList
		if err := s.c.List(ctx, &l, crclient.InNamespace(s.veleroNS), crclient.HasLabels{naming.DeleteRequestLabel}); err != nil {
			return false, err
		}
		return len(l.Items) == 0, nil
	})
	ls = run(t, s.kopia, append([]string{"snapshot", "ls", "--all", "--manifest-id"}, kcfg...)...)
	require.NotContains(t, ls, id2, ls)

	// What the deleted backups held is unreferenced: maintenance frees it. The third
	// generation is the live data.
	name3 := ns + "-b3"
	require.NoError(t, writeRandomBlocks(gen, genSize))
	liveSum := sha256File(t, gen)
	b = s.backup(t, name3, "--include-namespaces", ns, "--snapshot-move-data")
	require.Equal(t, velerov1.BackupPhaseCompleted, b.Status.Phase, s.backupLogs(t, name3))
	t.Cleanup(func() { s.deleteBackup(t, name3) })
	s.requireMaintenanceReclaims(t, ns, genSize)
	out := t.TempDir()
	s.snapmove(t, "restore-files", name3, ns+"/data", "gen", "--to", out)
	require.Equal(t, liveSum, sha256File(t, filepath.Join(out, "gen")), "the live backup restores after maintenance")
}

// genSize is the random data of one generation in TestBackupDeleteForgetsSnapshot.
const genSize = 4 << 20

// requireMaintenanceReclaims runs kopia's full maintenance on the repository of namespace
// ns and checks that the storage of deleted snapshots comes back: the data packs shrink to
// within 1.5 times live bytes (the live snapshot's data), and the index blobs grow by
// at most a few. The safety is the test-only MaintenanceSafetyReclaim (kopia's SafetyNone
// margins, in two runs), run as the repository's only client: the namespace's
// repository is this test's alone. Velero runs maintenance with SafetyFull only, whose
// margins are a day (README "Repository maintenance"), so its Jobs cannot show this
// within a test; TestRepositoryCommands shows that they run on snapmove's repository.
func (s *stack) requireMaintenanceReclaims(t *testing.T, ns string, live int64) {
	t.Helper()
	prefix := s.bslPrefix + "/kopia/" + ns + "/"
	packs0, packBytes0, index0 := s.repositoryBlobs(t, prefix)
	loc := repository.Location{Provider: repository.ProviderAWS, Bucket: s.bucket, Prefix: prefix, Region: "minio",
		Endpoint: s.s3Endpoint, DisableTLS: true, AccessKeyID: s.accessKey, SecretAccessKey: s.secretKey}
	r, err := store.Open(ctxT(t), loc, s.repoPassword(t), store.Options{CacheLimitMB: -1})
	require.NoError(t, err)
	defer func() { require.NoError(t, r.Close(ctxT(t))) }()
	start := time.Now()
	require.NoError(t, maintain.RunMaintenance(ctxT(t), r, maintain.MaintenanceSafetyReclaim))
	packs1, packBytes1, index1 := s.repositoryBlobs(t, prefix)
	t.Logf("maintenance (%s): data packs %d, %d bytes -> %d, %d bytes (live %d bytes); index blobs %d -> %d",
		time.Since(start).Round(time.Millisecond), packs0, packBytes0, packs1, packBytes1, live, index0, index1)
	require.Greater(t, packBytes0, 2*live, "the deleted generations' data was stored")
	require.LessOrEqual(t, packBytes1, live*3/2, "the deleted generations' storage came back")
	require.GreaterOrEqual(t, packBytes1, live, "the live data is kept")
	require.LessOrEqual(t, index1, index0+4, "index blobs stay bounded (each of two runs adds an index blob and a watermark)")
}

// repositoryBlobs lists a kopia repository's objects under prefix: the data packs (blob
// IDs starting with p), their bytes, and the index blobs (x).
func (s *stack) repositoryBlobs(t *testing.T, prefix string) (packs int, packBytes int64, index int) {
	t.Helper()
	for obj := range s.s3Client(t).ListObjects(ctxT(t), s.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		require.NoError(t, obj.Err)
		switch strings.TrimPrefix(obj.Key, prefix)[0] {
		case 'p':
			packs++
			packBytes += obj.Size
		case 'x':
			index++
		}
	}
	return packs, packBytes, index
}

// A wrong repository password fails the DataUpload with a message that says so, and
// nothing is created in the repository's place or left in the cluster.
func TestWrongRepositoryPassword(t *testing.T) {
	s := env
	var sec corev1.Secret
	key := crclient.ObjectKey{Namespace: s.veleroNS, Name: "velero-repo-credentials"}
	require.NoError(t, s.c.Get(ctxT(t), key, &sec))
	// The repository of this namespace must exist first, with the right password.
	ns, _ := s.smallVolume(t, "password")
	b := s.backup(t, ns+"-ok", "--include-namespaces", ns, "--snapshot-move-data")
	require.Equal(t, velerov1.BackupPhaseCompleted, b.Status.Phase, s.backupLogs(t, b.Name))

	good := sec.Data["repository-password"]
	sec.Data["repository-password"] = []byte("not-the-password")
	require.NoError(t, s.c.Update(ctxT(t), &sec))
	t.Cleanup(func() {
		var cur corev1.Secret
		if err := s.c.Get(context.Background(), key, &cur); err == nil {
			cur.Data["repository-password"] = good
			_ = s.c.Update(context.Background(), &cur)
		}
	})

	name := ns + "-bad"
	b = s.backup(t, name, "--include-namespaces", ns, "--snapshot-move-data")
	require.NotEqual(t, velerov1.BackupPhaseCompleted, b.Status.Phase)
	dus := s.dataUploads(t, name)
	require.Len(t, dus, 1)
	require.Equal(t, velerov2alpha1.DataUploadPhaseFailed, dus[0].Status.Phase)
	require.Contains(t, strings.ToLower(dus[0].Status.Message), "password", dus[0].Status.Message)
	s.requireEvent(t, dus[0].Name)
	s.requireNoLeftovers(t)
}

// Deleting the worker pod while it moves data fails the DataUpload with a message saying
// so; the next backup of the volume succeeds and restores correctly.
func TestWorkerPodDeletedMidMove(t *testing.T) {
	parallel(t)
	s := env
	ns := s.namespace(t, "killed")
	dir := s.pvc(t, ns, "data", "1Gi", corev1.PersistentVolumeFilesystem)
	require.NoError(t, writeRandomBlocks(filepath.Join(dir, "big"), 256<<20))
	require.NoError(t, datagen.GenPG(filepath.Join(dir, "pg"), 7, 0.01))

	name := ns + "-b1"
	s.veleroCLI(t, "backup", "create", name, "--include-namespaces", ns, "--snapshot-move-data")
	t.Cleanup(func() { s.deleteBackup(t, name) })
	s.throttleUploadOf(t, name, "data") // still moving when its pod is deleted
	du := s.waitDataUpload(t, name, "the DataUpload to be InProgress", func(du velerov2alpha1.DataUpload) bool {
		return du.Status.Phase == velerov2alpha1.DataUploadPhaseInProgress
	})
	var pods corev1.PodList
	require.NoError(t, s.c.List(ctxT(t), &pods, crclient.InNamespace(s.veleroNS), crclient.MatchingLabels{naming.DataUploadLabel: du.Name}))
	require.Len(t, pods.Items, 1)
	require.NoError(t, s.c.Delete(ctxT(t), &pods.Items[0], crclient.GracePeriodSeconds(0)))

	s.waitDataUploadPhase(t, &du, velerov2alpha1.DataUploadPhaseFailed)
	require.Contains(t, du.Status.Message, "worker pod", du.Status.Message)
	s.waitBackupDone(t, name)
	s.requireNoLeftovers(t)

	// The next backup succeeds and is correct.
	s.movedRoundTrip(t, ns, dir, nil, naming.BackupActionName)
}

// `snapmove cancel backup NAME` (spec.cancel, what Velero sets when an operation times
// out or the server restarts) moves an InProgress DataUpload through Canceling to Canceled
// within seconds and removes what the mover exposed. The backup of the namespace's two PVCs ends PartiallyFailed; its restore then
// brings back the good PVC byte for byte and refuses the canceled one with a message that
// names the backup, the PVC and why, instead of binding an empty volume to it (Velero
// keeps the Canceled DataUpload in the backup, as a result without a snapshot ID).
func TestCancelMidMove(t *testing.T) {
	parallel(t)
	s := env
	ns := s.namespace(t, "cancel")
	dir := s.pvc(t, ns, "data", "1Gi", corev1.PersistentVolumeFilesystem)
	// 512 MiB: slowed twentyfold, the upload outlasts its first checkpoint (30 s) by about a
	// minute on an idle machine, time for the test to see it.
	require.NoError(t, writeRandomBlocks(filepath.Join(dir, "big"), 512<<20))
	goodDir := s.pvc(t, ns, "good", "256Mi", corev1.PersistentVolumeFilesystem)
	require.NoError(t, writeRandomBlocks(filepath.Join(goodDir, "file"), 4<<20))
	goodSum := sha256File(t, filepath.Join(goodDir, "file"))

	name := ns + "-b"
	s.veleroCLI(t, "backup", "create", name, "--include-namespaces", ns, "--snapshot-move-data")
	t.Cleanup(func() { s.deleteBackup(t, name) })
	// The small volume is moved first; the large one is still moving (slowed from its
	// start, throttleUploadOf) when the user cancels the backup.
	duName, unthrottle := s.throttleUploadOf(t, name, "data")
	s.waitDataUpload(t, name, "the DataUpload of PVC good to complete", func(du velerov2alpha1.DataUpload) bool {
		return du.Spec.SourcePVC == "good" && du.Status.Phase == velerov2alpha1.DataUploadPhaseCompleted
	})
	du := s.waitDataUpload(t, name, "the DataUpload of PVC data to be InProgress", func(du velerov2alpha1.DataUpload) bool {
		return du.Spec.SourcePVC == "data" && du.Status.Phase == velerov2alpha1.DataUploadPhaseInProgress
	})
	s.requireWorkerLeastPrivilege(t, du.Name, "datauploads")
	// The throttled upload saves its first checkpoint after the mover's checkpoint
	// interval (30 s by default), tagged with the backup: cancel after it.
	kcfg := s.kopiaConnect(t, ns, s.bslPrefix+"/kopia/"+ns+"/")
	poll(t, "a checkpoint of PVC data", 2*time.Minute, func(context.Context) (bool, error) {
		return strings.Contains(strings.Join(s.backupManifests(t, kcfg, name), "\n"), "/"+ns+"/data checkpoint"), nil
	})
	// Frozen from here (SIGSTOP), the upload cannot complete before the cancel: the mover
	// cancels without the worker's help, and deleting its pod kills it.
	unthrottle()
	s.holdWorker(t, "backup", duName)
	out := s.snapmove(t, "cancel", "backup", name, "--wait", "2m")
	t.Log(out)
	require.Contains(t, out, "backup "+name+": canceled ")
	require.Regexp(t, du.Name+`\s+`+ns+`/data\s+InProgress\s+Canceled`, out)
	s.waitDataUploadPhase(t, &du, velerov2alpha1.DataUploadPhaseCanceled)
	s.waitBackupDone(t, name)
	s.requireNoLeftovers(t)
	var b velerov1.Backup
	require.NoError(t, s.c.Get(ctxT(t), crclient.ObjectKey{Namespace: s.veleroNS, Name: name}, &b))
	require.Equal(t, velerov1.BackupPhasePartiallyFailed, b.Status.Phase)
	// The canceled upload's checkpoints are forgotten once its worker has stopped.
	poll(t, "the checkpoints of the canceled upload to be forgotten", 2*time.Minute, func(context.Context) (bool, error) {
		return !strings.Contains(strings.Join(s.backupManifests(t, kcfg, name), "\n"), "/"+ns+"/data "), nil
	})

	// The user loses the namespace and restores what the backup holds.
	s.deleteNamespace(t, ns)
	r := s.restore(t, ns+"-r", "--from-backup", name)
	require.Equal(t, velerov1.RestorePhasePartiallyFailed, r.Status.Phase, "a PVC without data is an error, not a success")
	require.Equal(t, goodSum, sha256File(t, filepath.Join(s.volumePath(t, ns, "good"), "file")), "the good PVC is byte-identical")
	err := s.c.Get(ctxT(t), crclient.ObjectKey{Namespace: ns, Name: "data"}, &corev1.PersistentVolumeClaim{})
	require.True(t, apierrors.IsNotFound(err), "no PVC, and so no empty volume, for the canceled upload: %v", err)
	logs := s.veleroCLI(t, "restore", "describe", r.Name, "--details")
	require.Contains(t, logs, "PVC "+ns+"/data of backup "+name+" has no data to restore: its DataUpload "+du.Name+" ended Canceled", logs)
	for _, dd := range s.dataDownloads(t, r.Name) {
		require.NotEqual(t, ns+"/data", dd.Spec.TargetVolume.Namespace+"/"+dd.Spec.TargetVolume.PVC, "no DataDownload for the PVC without data")
	}
	s.requireNoLeftovers(t)

	// Deleting the backup forgets everything it wrote: no snapshot or checkpoint of any
	// of its volumes is left with its tag.
	s.veleroCLI(t, "backup", "delete", name, "--confirm")
	poll(t, "backup "+name+" to be deleted", 3*time.Minute, func(ctx context.Context) (bool, error) {
		err := s.c.Get(ctx, crclient.ObjectKey{Namespace: s.veleroNS, Name: name}, &velerov1.Backup{})
		return apierrors.IsNotFound(err), crclient.IgnoreNotFound(err)
	})
	poll(t, "the snapshots of backup "+name+" to be forgotten", 2*time.Minute, func(context.Context) (bool, error) {
		return len(s.backupManifests(t, kcfg, name)) == 0, nil
	})
}

// backupManifests lists, through the kopia CLI connected with kcfg, the snapshot
// manifests (complete and checkpoints) whose velero.io/backup-name tag is backup, each as
// "<source path> <complete|checkpoint> <manifest ID>".
func (s *stack) backupManifests(t *testing.T, kcfg []string, backup string) []string {
	t.Helper()
	cmd := exec.Command(s.kopia, append([]string{"snapshot", "ls", "--all", "--incomplete", "--json"}, kcfg...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "kopia snapshot ls: %s", stderr.String())
	var mans []struct {
		ID     string `json:"id"`
		Source struct {
			Path string `json:"path"`
		} `json:"source"`
		Incomplete string            `json:"incomplete"`
		Tags       map[string]string `json:"tags"`
	}
	require.NoError(t, json.Unmarshal(out, &mans), "kopia snapshot ls --json:\n%s", out)
	var got []string
	for _, m := range mans {
		if m.Tags["tag:"+velerov1.BackupNameLabel] != backup && m.Tags[velerov1.BackupNameLabel] != backup {
			continue
		}
		kind := "complete"
		if m.Incomplete != "" {
			kind = "checkpoint"
		}
		got = append(got, m.Source.Path+" "+kind+" "+m.ID)
	}
	t.Logf("manifests of backup %s: %v", backup, got)
	return got
}

// `snapmove cancel restore NAME` stops a running restore's volume moves: the DataDownload
// ends Canceled, the restore ends PartiallyFailed (Velero's doing: a canceled operation
// is a failed one), and nothing the mover exposed is left.
func TestCancelRestoreMidMove(t *testing.T) {
	parallel(t)
	s := env
	ns := s.bigVolume(t, "cancelr", "data")
	name := ns + "-b"
	b := s.backup(t, name, "--include-namespaces", ns, "--snapshot-move-data")
	require.Equal(t, velerov1.BackupPhaseCompleted, b.Status.Phase, s.backupLogs(t, name))
	s.deleteNamespace(t, ns)

	rname := ns + "-r"
	s.veleroCLI(t, "restore", "create", rname, "--from-backup", name)
	t.Cleanup(func() { _, _ = runErr(s.velero, "-n", s.veleroNS, "restore", "delete", rname, "--confirm") })
	// As soon as the restore's DataDownload exists (being prepared or moving 1 GiB):
	// a fast restore could finish before a test that waits for InProgress cancels it.
	poll(t, "the DataDownload to exist", 5*time.Minute, func(ctx context.Context) (bool, error) {
		var l velerov2alpha1.DataDownloadList
		err := s.c.List(ctx, &l, crclient.InNamespace(s.veleroNS), crclient.MatchingLabels{velerov1.RestoreNameLabel: rname})
		return err == nil && len(l.Items) == 1, err
	})
	start := time.Now()
	out := s.snapmove(t, "cancel", "restore", rname, "--wait", "2m")
	t.Log(out)
	require.Contains(t, out, "restore "+rname+": canceled 1 of 1 DataDownloads")
	dds := s.dataDownloads(t, rname)
	require.Len(t, dds, 1)
	require.Equal(t, velerov2alpha1.DataDownloadPhaseCanceled, dds[0].Status.Phase, "canceled within %s", time.Since(start))
	poll(t, "restore "+rname+" to end", 5*time.Minute, func(ctx context.Context) (bool, error) {
		var r velerov1.Restore
		err := s.c.Get(ctx, crclient.ObjectKey{Namespace: s.veleroNS, Name: rname}, &r)
		return r.Status.Phase == velerov1.RestorePhasePartiallyFailed, err
	})
	s.requireNoLeftovers(t)
}
