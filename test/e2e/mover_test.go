//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	crclient "sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/naming"
)

// The mover controller restarting while a worker moves data re-attaches to the running
// worker: the DataUpload completes and the backup with it.
func TestControllerRestartMidMove(t *testing.T) {
	s := env
	ns := s.namespace(t, "restart")
	dir := s.pvc(t, ns, "data", "1Gi", corev1.PersistentVolumeFilesystem)
	require.NoError(t, writeRandomBlocks(filepath.Join(dir, "big"), 256<<20))
	name := ns + "-b"
	s.veleroCLI(t, "backup", "create", name, "--include-namespaces", ns, "--snapshot-move-data")
	t.Cleanup(func() { s.deleteBackup(t, name) })
	// The worker moves slowly until the new controller runs, so the move spans the restart.
	_, release := s.throttleUploadOf(t, name, "data")
	s.waitDataUpload(t, name, "the DataUpload to be InProgress", func(du velerov2alpha1.DataUpload) bool {
		return du.Status.Phase == velerov2alpha1.DataUploadPhaseInProgress
	})

	var pods corev1.PodList
	mover := crclient.MatchingLabels{"app.kubernetes.io/name": "snapmove-mover"}
	require.NoError(t, s.c.List(ctxT(t), &pods, crclient.InNamespace(s.veleroNS), mover))
	require.NotEmpty(t, pods.Items)
	old := map[types.UID]bool{}
	for i := range pods.Items {
		old[pods.Items[i].UID] = true
		require.NoError(t, s.c.Delete(ctxT(t), &pods.Items[i], crclient.GracePeriodSeconds(0)))
	}
	poll(t, "a new mover pod to run", 3*time.Minute, func(ctx context.Context) (bool, error) {
		var l corev1.PodList
		err := s.c.List(ctx, &l, crclient.InNamespace(s.veleroNS), mover)
		for _, p := range l.Items {
			if !old[p.UID] && p.Status.Phase == corev1.PodRunning {
				return true, err
			}
		}
		return false, err
	})
	release()

	s.waitBackupDone(t, name)
	var b velerov1.Backup
	require.NoError(t, s.c.Get(ctxT(t), crclient.ObjectKey{Namespace: s.veleroNS, Name: name}, &b))
	require.Equal(t, velerov1.BackupPhaseCompleted, b.Status.Phase, s.backupLogs(t, name))
	du := s.dataUploads(t, name)[0]
	require.Equal(t, velerov2alpha1.DataUploadPhaseCompleted, du.Status.Phase, du.Status.Message)
	require.NotEqual(t, "2", du.Annotations["snapmove.io/attempt"], "re-attached to the running worker, not retried")
	require.Equal(t, int64(256<<20), du.Status.Progress.TotalBytes)
	s.requireNoLeftovers(t)
}

// A worker pod that no node can run fails the DataUpload after prepareTimeout with a
// diagnosis that names the pod and why it is not scheduled, and cleans everything up.
func TestPrepareTimeoutDiagnosis(t *testing.T) {
	s := env
	s.withMoverSettings(t, map[string]string{
		"workerNodeSelector": `{"snapmove.io/no-such-node": "true"}`,
		"prepareTimeout":     "20s",
	})
	ns, _ := s.smallVolume(t, "unsched")
	name := ns + "-b"
	b := s.backup(t, name, "--include-namespaces", ns, "--snapshot-move-data")
	require.Equal(t, velerov1.BackupPhasePartiallyFailed, b.Status.Phase)
	du := s.dataUploads(t, name)[0]
	require.Equal(t, velerov2alpha1.DataUploadPhaseFailed, du.Status.Phase)
	msg := strings.ToLower(du.Status.Message)
	require.Contains(t, msg, "worker pod", du.Status.Message)
	require.True(t, strings.Contains(msg, "node") || strings.Contains(msg, "schedul"), du.Status.Message)
	require.NotContains(t, msg, "timed out waiting", "a diagnosis, not a timeout")
	s.requireEvent(t, du.Name)
	s.requireNoLeftovers(t)
}

// A mover whose RBAC lacks the rules for its workers' identities (an image upgraded
// without examples/mover.yaml) fails the DataUpload within seconds, saying what to grant,
// instead of retrying until prepareTimeout; nothing is left behind. The identity comes
// before the snapshot take-over: when it came a second after, the cleanup deleted the
// taken-over VolumeSnapshot before the snapshot-controller had bound it, and its
// VolumeSnapshotContent stayed (held by the bound-protection finalizer; the cleanup now
// also waits for that binding, TestCleanupWaitsForOurSnapshotBinding).
func TestMoverWithoutIdentityRights(t *testing.T) {
	s := env
	role := &rbacv1.Role{}
	require.NoError(t, s.c.Get(ctxT(t), crclient.ObjectKey{Namespace: s.veleroNS, Name: "snapmove-mover"}, role))
	orig := role.DeepCopy()
	var kept []rbacv1.PolicyRule
	for _, r := range role.Rules {
		if !slices.Contains(r.Resources, "serviceaccounts") && !slices.Contains(r.Resources, "roles") {
			kept = append(kept, r)
		}
	}
	require.Len(t, kept, len(role.Rules)-2, "the mover's Role has the identity rules of examples/mover.yaml")
	role.Rules = kept
	require.NoError(t, s.c.Update(ctxT(t), role))
	t.Cleanup(func() {
		now := &rbacv1.Role{}
		require.NoError(t, s.c.Get(context.Background(), crclient.ObjectKeyFromObject(orig), now))
		now.Rules = orig.Rules
		require.NoError(t, s.c.Update(context.Background(), now))
	})

	ns, _ := s.smallVolume(t, "norbac")
	start := time.Now()
	du := s.dataUploadLikeVelero(t, ns, "data", "default")
	s.waitDataUploadPhase(t, du, velerov2alpha1.DataUploadPhaseFailed)
	t.Logf("DataUpload %s failed after %s: %s", du.Name, time.Since(start).Round(time.Second), du.Status.Message)
	require.Less(t, time.Since(start), 2*time.Minute, "within minutes, not prepareTimeout")
	for _, want := range []string{"may not create its worker's identity", "serviceaccounts", "--worker-service-account"} {
		require.Contains(t, du.Status.Message, want)
	}
	s.requireEvent(t, du.Name)
	s.requireNoLeftovers(t)
}

// More DataUploads than maxConcurrent wait in New and say they are queued. The first
// one's worker is held (holdWorker) until the other says so, however fast its move.
func TestQueuedOverConcurrencyLimit(t *testing.T) {
	s := env
	s.withMoverSettings(t, map[string]string{"maxConcurrent": "1"})
	ns := s.namespace(t, "queue")
	for _, p := range []string{"one", "two"} {
		dir := s.pvc(t, ns, p, "64Mi", corev1.PersistentVolumeFilesystem)
		require.NoError(t, writeRandomBlocks(filepath.Join(dir, "data"), 16<<20))
	}
	name := ns + "-b"
	s.veleroCLI(t, "backup", "create", name, "--include-namespaces", ns, "--snapshot-move-data")
	t.Cleanup(func() { s.deleteBackup(t, name) })
	var first string
	poll(t, "the first worker to start", 3*time.Minute, func(ctx context.Context) (bool, error) {
		var l velerov2alpha1.DataUploadList
		if err := s.c.List(ctx, &l, crclient.InNamespace(s.veleroNS), crclient.MatchingLabels{velerov1.BackupNameLabel: name}); err != nil {
			return false, err
		}
		for _, du := range l.Items {
			if len(findWorker("backup", du.Name)) > 0 {
				first = du.Name
				return true, nil
			}
		}
		return false, nil
	})
	release := s.holdWorker(t, "backup", first)
	queued := s.waitDataUpload(t, name, "a DataUpload saying it is queued", func(du velerov2alpha1.DataUpload) bool {
		return (du.Status.Phase == "" || du.Status.Phase == velerov2alpha1.DataUploadPhaseNew) &&
			strings.HasPrefix(du.Status.Message, "queued")
	})
	t.Logf("queued while %s moves: %s", first, queued.Status.Message)
	require.NotEqual(t, first, queued.Name)
	release()
	s.waitBackupDone(t, name)
	for _, du := range s.dataUploads(t, name) {
		require.Equal(t, velerov2alpha1.DataUploadPhaseCompleted, du.Status.Phase, du.Status.Message)
	}
	s.requireNoLeftovers(t)
}

// A BackupStorageLocation the mover cannot use fails the DataUpload before anything is
// exposed, with a message naming the cause, a Warning Event, and nothing created in the
// object store or left in the cluster. The DataUpload is made the way Velero's own CSI
// action makes one: Velero itself refuses to back up to a location it finds unavailable,
// but a location can break between its validation and the move.
func TestObjectStoreFailures(t *testing.T) {
	parallel(t)
	s := env
	for _, tc := range []struct {
		name  string
		bsl   func(t *testing.T, bsl *velerov1.BackupStorageLocation)
		want  []string // in the message, case-insensitive
		check func(t *testing.T)
		// operationTimeout of the DataUpload (0: as Velero sets it, 10m); waitFirst is in
		// the message while the mover still waits.
		operationTimeout time.Duration
		waitFirst        []string
	}{{
		name: "missing bucket",
		bsl: func(_ *testing.T, bsl *velerov1.BackupStorageLocation) {
			bsl.Spec.ObjectStorage.Bucket = "snapmove-no-such-bucket"
		},
		want: []string{`bucket "snapmove-no-such-bucket"`, "does not exist"},
		check: func(t *testing.T) {
			exists, err := s.s3Client(t).BucketExists(ctxT(t), "snapmove-no-such-bucket")
			require.NoError(t, err)
			require.False(t, exists, "the mover created the missing bucket")
		},
	}, {
		name: "bad credentials",
		bsl: func(t *testing.T, bsl *velerov1.BackupStorageLocation) {
			sec := &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Namespace: s.veleroNS, Name: bsl.Name + "-credentials"},
				StringData: map[string]string{"cloud": "[default]\naws_access_key_id=snapmove-wrong\naws_secret_access_key=snapmove-wrong\n"},
			}
			require.NoError(t, s.c.Create(ctxT(t), sec))
			t.Cleanup(func() { _ = s.c.Delete(context.Background(), sec) })
			bsl.Spec.Credential = &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: sec.Name}, Key: "cloud"}
		},
		want: []string{"access to repository", "denied"},
	}, {
		// An endpoint that does not answer may come back (a restart, a network blink): the
		// mover waits, says why in the message, and fails once the DataUpload's own
		// operation timeout has passed, naming the cause.
		name: "unreachable endpoint",
		bsl: func(_ *testing.T, bsl *velerov1.BackupStorageLocation) {
			bsl.Spec.Config["s3Url"] = "http://127.0.0.1:9" // nothing listens on the discard port
		},
		operationTimeout: 25 * time.Second,
		waitFirst:        []string{"waiting: checking the kopia repository", "unreachable"},
		want:             []string{"could not be checked for", "unreachable", "127.0.0.1:9"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // each case has a location and a namespace of its own
			var def velerov1.BackupStorageLocation
			require.NoError(t, s.c.Get(ctxT(t), crclient.ObjectKey{Namespace: s.veleroNS, Name: "default"}, &def))
			bsl := &velerov1.BackupStorageLocation{
				ObjectMeta: metav1.ObjectMeta{Namespace: s.veleroNS, Name: "broken-" + strings.ReplaceAll(tc.name, " ", "-")},
				Spec:       *def.Spec.DeepCopy(),
			}
			bsl.Spec.Default = false
			tc.bsl(t, bsl)
			require.NoError(t, s.c.Create(ctxT(t), bsl))
			t.Cleanup(func() { _ = s.c.Delete(context.Background(), bsl) })

			ns, _ := s.smallVolume(t, "store")
			du := s.dataUploadLikeVelero(t, ns, "data", bsl.Name, func(du *velerov2alpha1.DataUpload) {
				if tc.operationTimeout > 0 {
					du.Spec.OperationTimeout.Duration = tc.operationTimeout
				}
			})
			if len(tc.waitFirst) > 0 {
				poll(t, "DataUpload "+du.Name+" to say what it waits for", 2*time.Minute, func(ctx context.Context) (bool, error) {
					err := s.c.Get(ctx, crclient.ObjectKeyFromObject(du), du)
					for _, w := range tc.waitFirst {
						if !strings.Contains(du.Status.Message, w) {
							return false, err
						}
					}
					return du.Status.Phase == velerov2alpha1.DataUploadPhaseAccepted, err
				})
			}
			s.waitDataUploadPhase(t, du, velerov2alpha1.DataUploadPhaseFailed)
			t.Logf("DataUpload %s: %s", du.Name, du.Status.Message)
			for _, w := range tc.want {
				require.Contains(t, strings.ToLower(du.Status.Message), strings.ToLower(w), du.Status.Message)
			}
			s.requireEvent(t, du.Name)
			s.requireNoLeftovers(t)
			if tc.check != nil {
				tc.check(t)
			}
		})
	}
}

// A worker that stops without failing (its process frozen with SIGSTOP, as a hung volume
// or a lost node would leave it) is noticed within the stall timeout and replaced by a new
// attempt on the same exposed snapshot; the backup completes with no action by anyone,
// and no checkpoint of the interrupted attempt is left in the repository.
func TestFrozenWorkerIsReplaced(t *testing.T) {
	s := env
	s.withMoverSettings(t, map[string]string{"stallTimeout": "30s"})
	ns := s.namespace(t, "frozen")
	dir := s.pvc(t, ns, "data", "1Gi", corev1.PersistentVolumeFilesystem)
	require.NoError(t, writeRandomBlocks(filepath.Join(dir, "big"), 256<<20))
	name := ns + "-b"
	s.veleroCLI(t, "backup", "create", name, "--include-namespaces", ns, "--snapshot-move-data")
	t.Cleanup(func() { s.deleteBackup(t, name) })
	_, unthrottle := s.throttleUploadOf(t, name, "data") // until it is InProgress
	du := s.waitDataUpload(t, name, "the DataUpload to be InProgress", func(du velerov2alpha1.DataUpload) bool {
		return du.Status.Phase == velerov2alpha1.DataUploadPhaseInProgress
	})
	unthrottle()
	s.holdWorker(t, "backup", du.Name)
	frozen := time.Now()

	poll(t, "DataUpload "+du.Name+" to be retried", 4*time.Minute, func(ctx context.Context) (bool, error) {
		err := s.c.Get(ctx, crclient.ObjectKeyFromObject(&du), &du)
		return du.Annotations["snapmove.io/attempt"] == "2", err
	})
	t.Logf("replaced %s after freezing", time.Since(frozen).Round(time.Second))
	s.waitBackupDone(t, name)
	require.NoError(t, s.c.Get(ctxT(t), crclient.ObjectKeyFromObject(&du), &du))
	require.Equal(t, velerov2alpha1.DataUploadPhaseCompleted, du.Status.Phase, du.Status.Message)
	require.Contains(t, du.Status.Message, "verified (metadata): ")
	require.Equal(t, int64(256<<20), du.Status.Progress.TotalBytes)
	s.requireEvent(t, du.Name) // WorkerRetried
	var b velerov1.Backup
	require.NoError(t, s.c.Get(ctxT(t), crclient.ObjectKey{Namespace: s.veleroNS, Name: name}, &b))
	require.Equal(t, velerov1.BackupPhaseCompleted, b.Status.Phase)
	s.requireNoLeftovers(t)

	kcfg := s.kopiaConnect(t, ns, s.bslPrefix+"/kopia/"+ns+"/")
	ls := run(t, s.kopia, append([]string{"snapshot", "ls", "--all", "--incomplete"}, kcfg...)...)
	require.NotContains(t, ls, "incomplete", "a checkpoint was left:\n%s", ls)
}

// TestObjectStoreOutageMidUpload stops the object store (MinIO) for 30 s in the middle of
// a 1 GiB upload and starts it again: the backup completes with no action by anyone
// (kopia's and the S3 client's retries, or else the mover's retry of the whole move), and
// what it stored is the volume's data.
func TestObjectStoreOutageMidUpload(t *testing.T) {
	s := env
	// A checkpoint falls into the outage: kopia cancels an upload whose checkpoint fails
	// without reporting why, which once failed the DataUpload for good
	// (TestIncompleteUploadClassification).
	s.withMoverSettings(t, map[string]string{"checkpointInterval": "2s"})
	ns, name, release := s.uploadUnderWay(t, "outage")
	minio := s.stopObjectStore(t)
	release()
	time.Sleep(30 * time.Second)
	run(t, minio, "start")

	du := s.requireBackupOfBigVolume(t, ns, name)
	t.Logf("after the outage: %s (attempt annotation %q)", du.Status.Message, du.Annotations["snapmove.io/attempt"])
	s.requireNoLeftovers(t)
}

// uploadUnderWay backs up a new namespace with a 1 GiB volume (bigVolume) and returns
// once its upload has moved bytes, with its worker slowed to a tenth of its speed
// (throttleWorker): a test that breaks something mid-upload breaks it before the upload
// can end, however fast the machine, and then lets the worker run at full speed again
// (release, also the test's cleanup).
func (s *stack) uploadUnderWay(t *testing.T, prefix string) (ns, backup string, release func()) {
	t.Helper()
	ns = s.bigVolume(t, prefix, "data")
	backup = ns + "-b"
	s.veleroCLI(t, "backup", "create", backup, "--include-namespaces", ns, "--snapshot-move-data")
	t.Cleanup(func() { s.deleteBackup(t, backup) })
	du := s.waitDataUpload(t, backup, "the upload to start", func(du velerov2alpha1.DataUpload) bool {
		return du.Status.Phase == velerov2alpha1.DataUploadPhaseInProgress
	})
	release = s.throttleWorker(t, "backup", du.Name)
	du = s.waitDataUpload(t, backup, "the upload to be under way", func(du velerov2alpha1.DataUpload) bool {
		return du.Status.Phase != velerov2alpha1.DataUploadPhaseInProgress || du.Status.Progress.BytesDone > 0
	})
	require.Equal(t, velerov2alpha1.DataUploadPhaseInProgress, du.Status.Phase, "the upload ended before its worker was slowed: %s", du.Status.Message)
	if total := du.Status.Progress.TotalBytes; total > 0 {
		require.Less(t, du.Status.Progress.BytesDone, total, "the upload had read everything before its worker was slowed")
	}
	return ns, backup, release
}

// workerPIDs waits for the worker process of movement name (kind backup or restore) and
// returns its PIDs.
func (s *stack) workerPIDs(t *testing.T, kind, name string) []int {
	t.Helper()
	var pids []int
	err := wait.PollUntilContextTimeout(ctxT(t), 100*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		pids = findWorker(kind, name)
		return len(pids) > 0, nil
	})
	require.NoError(t, err, "waiting for the worker process of %s", name)
	return pids
}

// findWorker returns the PIDs of the worker process of movement name, if it runs. Every
// process of this one-node stack runs on this host, so the worker's is found by its
// command line.
func findWorker(kind, name string) []int {
	out, err := runErr("pgrep", "-f", "mover worker "+kind+" .*--data-(upload|download)="+name+" ")
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(out) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// holdWorker freezes the worker process of movement name with SIGSTOP, as a hung volume
// or a lost node would leave it; release (also run at the test's end) lets it go on.
func (s *stack) holdWorker(t *testing.T, kind, name string) (release func()) {
	t.Helper()
	pids := s.workerPIDs(t, kind, name)
	signal(pids, name, syscall.SIGSTOP)
	var once sync.Once
	release = func() { once.Do(func() { signal(pids, name, syscall.SIGCONT) }) }
	t.Cleanup(release)
	return release
}

// throttleWorker runs the worker process of movement name a twentieth of the time (10 ms
// in every 200; the kernel's SIGSTOP and SIGCONT, so nothing in snapmove knows), which
// makes a move last twenty times as long; release (also run at the test's end) lets it
// run at full speed.
func (s *stack) throttleWorker(t *testing.T, kind, name string) (release func()) {
	t.Helper()
	return s.throttle(t, name, s.workerPIDs(t, kind, name))
}

// throttleUploadOf waits for the worker of the DataUpload of PVC pvc in backup and
// throttles it from its start (throttleWorker), before it has moved a byte: a test can
// then wait for the state it needs (InProgress, bytes moved) with small data on any
// machine. It returns the DataUpload's name.
func (s *stack) throttleUploadOf(t *testing.T, backup, pvc string) (du string, release func()) {
	t.Helper()
	s.waitBackupStarted(t, backup)
	var pids []int
	// Every 100 ms: a small volume's worker may live two seconds, and the backup has
	// started already, so the wait is short.
	pollEvery(t, "the worker of PVC "+pvc+" of backup "+backup+" to start", 100*time.Millisecond, 5*time.Minute, func(ctx context.Context) (bool, error) {
		var l velerov2alpha1.DataUploadList
		if err := s.c.List(ctx, &l, crclient.InNamespace(s.veleroNS), crclient.MatchingLabels{velerov1.BackupNameLabel: backup}); err != nil {
			return false, err
		}
		for _, u := range l.Items {
			if u.Spec.SourcePVC == pvc {
				du, pids = u.Name, findWorker("backup", u.Name)
				if naming.MovementEnded(string(u.Status.Phase)) {
					return false, fmt.Errorf("DataUpload %s ended %s before its worker was seen: %s", u.Name, u.Status.Phase, u.Status.Message)
				}
			}
		}
		return len(pids) > 0, nil
	})
	return du, s.throttle(t, du, pids)
}

// waitBackupStarted waits until Velero has taken backup out of its queue: Velero runs
// backups one at a time, and in the suite's parallel part a backup may wait behind ten
// others (CI saw position 11 and four minutes), which is no part of what a test times.
func (s *stack) waitBackupStarted(t *testing.T, backup string) {
	t.Helper()
	poll(t, "Velero to start backup "+backup+" (it queues backups)", 20*time.Minute, func(ctx context.Context) (bool, error) {
		var b velerov1.Backup
		if err := s.c.Get(ctx, crclient.ObjectKey{Namespace: s.veleroNS, Name: backup}, &b); err != nil {
			return false, crclient.IgnoreNotFound(err)
		}
		switch b.Status.Phase {
		case "", velerov1.BackupPhaseNew, velerov1.BackupPhaseQueued, velerov1.BackupPhaseReadyToStart:
			return false, nil
		}
		return true, nil
	})
}

func (s *stack) throttle(t *testing.T, name string, pids []int) (release func()) {
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			signal(pids, name, syscall.SIGCONT)
			time.Sleep(10 * time.Millisecond)
			signal(pids, name, syscall.SIGSTOP)
			select {
			case <-stop:
				signal(pids, name, syscall.SIGCONT)
				return
			case <-tick.C:
			}
		}
	}()
	var once sync.Once
	release = func() { once.Do(func() { close(stop); <-done }) }
	t.Cleanup(release)
	return release
}

// processStates describes pids as "PID:STATE" (T: stopped).
func processStates(pids []int) string {
	var states []string
	for _, pid := range pids {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			states = append(states, fmt.Sprintf("%d:gone", pid))
			continue
		}
		// pid (comm) state ...: comm may hold spaces, the state follows its last ')'.
		rest := string(stat[bytes.LastIndexByte(stat, ')')+1:])
		states = append(states, fmt.Sprintf("%d:%s", pid, strings.Fields(rest)[0]))
	}
	return strings.Join(states, " ")
}

// signal sends sig to those of pids that are still the worker of movement name (a PID
// is reused once its process is gone).
func signal(pids []int, name string, sig syscall.Signal) {
	for _, pid := range pids {
		cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err == nil && bytes.Contains(cmd, []byte("="+name)) {
			_ = syscall.Kill(pid, sig)
		}
	}
}

// stopObjectStore stops MinIO, to be started again with the returned script ("start"),
// which the test's cleanup also does whatever happens.
func (s *stack) stopObjectStore(t *testing.T) (script string) {
	t.Helper()
	requireSerial(t)
	script = filepath.Join(repoRoot(), "hack", "stack", "minio.sh")
	run(t, script, "stop")
	t.Cleanup(func() { _, _ = runErr(script, "start") })
	return script
}

// requireBackupOfBigVolume waits for the backup of uploadUnderWay, requires it and its
// one DataUpload Completed, and the stored file byte-identical to the volume's.
func (s *stack) requireBackupOfBigVolume(t *testing.T, ns, backup string) velerov2alpha1.DataUpload {
	t.Helper()
	s.waitBackupDone(t, backup)
	var b velerov1.Backup
	require.NoError(t, s.c.Get(ctxT(t), crclient.ObjectKey{Namespace: s.veleroNS, Name: backup}, &b))
	dus := s.dataUploads(t, backup)
	require.Len(t, dus, 1)
	require.Equal(t, velerov2alpha1.DataUploadPhaseCompleted, dus[0].Status.Phase, dus[0].Status.Message)
	require.Equal(t, velerov1.BackupPhaseCompleted, b.Status.Phase, s.backupLogs(t, backup))

	out := t.TempDir()
	s.snapmove(t, "restore-files", backup, ns+"/data", "big", "--to", out)
	src := filepath.Join(s.volumePath(t, ns, "data"), "big")
	require.Equal(t, sha256File(t, src), sha256File(t, filepath.Join(out, "big")), "the stored data differs from the volume's")
	return dus[0]
}

// TestObjectStoreLongOutageMidUpload keeps the object store (MinIO) stopped in the middle
// of a 1 GiB upload for longer than the data path's own retries (kopia's and the S3
// client's of one write, about 2 minutes here; kopia alone would go on to the next chunk,
// each with its own retries, for as long as the file lasts, kopia/store/guard.go stops the
// upload): the worker gives up as transient, the mover retries the
// move and, the store still down, waits for it before starting the next worker ("waiting:
// checking the kopia repository …"); once the store is back the new worker resumes from
// the last checkpoint and the backup completes, with the volume's data, with no action by
// anyone. A DataUpload created while the store is down waits at the repository check,
// exposing nothing, and completes too. (Made as Velero makes it: Velero itself starts no
// backup on a location it found unavailable, but the store can go between its validation
// and the DataUpload.)
func TestObjectStoreLongOutageMidUpload(t *testing.T) {
	s := env
	s.withMoverSettings(t, map[string]string{"checkpointInterval": "2s"})
	ns, name, release := s.uploadUnderWay(t, "longoutage")
	late, _ := s.smallVolume(t, "longoutage-late")
	minio := s.stopObjectStore(t)
	release()
	stopped := time.Now()

	var du velerov2alpha1.DataUpload
	t.Cleanup(func() {
		if t.Failed() { // what the worker was doing (its log: $STACK_RUN/logs/pods)
			t.Logf("last seen: DataUpload %s %s %q, annotations %v; worker processes: %s",
				du.Name, du.Status.Phase, du.Status.Message, du.Annotations, processStates(findWorker("backup", du.Name)))
		}
	})
	poll(t, "the mover to retry and wait for the store", 8*time.Minute, func(ctx context.Context) (bool, error) {
		dus := s.dataUploads(t, name)
		if len(dus) != 1 {
			return false, nil
		}
		du = dus[0]
		if du.Status.Phase == velerov2alpha1.DataUploadPhaseCompleted || du.Status.Phase == velerov2alpha1.DataUploadPhaseFailed {
			require.FailNow(t, "the upload ended before the data path gave up on the store", "%s: %s", du.Status.Phase, du.Status.Message)
		}
		return du.Annotations["snapmove.io/attempt"] == "2" && strings.HasPrefix(du.Status.Message, "waiting: checking the kopia repository"), nil
	})
	t.Logf("after %s without the store: %s", time.Since(stopped).Round(time.Second), du.Status.Message)
	require.Equal(t, velerov2alpha1.DataUploadPhaseAccepted, du.Status.Phase)

	lateDU := s.dataUploadLikeVelero(t, late, "data", "default")
	poll(t, "DataUpload "+lateDU.Name+" to wait for the store", 3*time.Minute, func(ctx context.Context) (bool, error) {
		err := s.c.Get(ctx, crclient.ObjectKeyFromObject(lateDU), lateDU)
		return lateDU.Status.Phase == velerov2alpha1.DataUploadPhaseAccepted &&
			strings.HasPrefix(lateDU.Status.Message, "waiting: checking the kopia repository for namespace "+late), err
	})
	run(t, minio, "start")
	t.Logf("store back after %s", time.Since(stopped).Round(time.Second))

	got := s.requireBackupOfBigVolume(t, ns, name)
	require.Equal(t, "2", got.Annotations["snapmove.io/attempt"], "one retry, after the store came back")
	s.waitDataUploadPhase(t, lateDU, velerov2alpha1.DataUploadPhaseCompleted)
	s.requireNoLeftovers(t)
}

// Hand-written DataUploads and DataDownloads (a user's, or another tool's) fail fast,
// naming what is wrong, with a Warning Event and nothing left behind: a DataUpload of a
// VolumeSnapshot that does not exist, and a DataDownload of a snapshot ID that the
// repository does not hold (its target PVC is left as it was).
func TestHandWrittenMovementsFailFast(t *testing.T) {
	parallel(t)
	s := env
	ns, _ := s.smallVolume(t, "handmade")
	// A backup first, so that the namespace has a repository for the DataDownload to read.
	first := s.dataUploadLikeVelero(t, ns, "data", "default")
	s.waitDataUploadPhase(t, first, velerov2alpha1.DataUploadPhaseCompleted)

	start := time.Now()
	du := first.DeepCopy()
	du.ObjectMeta = metav1.ObjectMeta{Namespace: s.veleroNS, GenerateName: ns + "-"}
	du.Status = velerov2alpha1.DataUploadStatus{}
	du.Spec.CSISnapshot.VolumeSnapshot = "no-such-snapshot"
	require.NoError(t, s.c.Create(ctxT(t), du))
	t.Cleanup(func() { _ = s.c.Delete(context.Background(), du) })
	s.waitDataUploadPhase(t, du, velerov2alpha1.DataUploadPhaseFailed)
	t.Logf("DataUpload failed after %s: %s", time.Since(start).Round(time.Second), du.Status.Message)
	require.Contains(t, du.Status.Message, "VolumeSnapshot "+ns+"/no-such-snapshot does not exist")
	s.requireEvent(t, du.Name)

	const unknownID = "0123456789abcdef0123456789abcdef"
	target := s.dataMoverTarget(t, ns, "restored")
	start = time.Now()
	dd := s.dataDownloadLikeVelero(t, target, "default", ns, unknownID)
	poll(t, "DataDownload "+dd.Name+" to fail", 3*time.Minute, func(ctx context.Context) (bool, error) {
		err := s.c.Get(ctx, crclient.ObjectKeyFromObject(dd), dd)
		return dd.Status.Phase == velerov2alpha1.DataDownloadPhaseFailed, err
	})
	t.Logf("DataDownload failed after %s: %s", time.Since(start).Round(time.Second), dd.Status.Message)
	require.Contains(t, dd.Status.Message, unknownID)
	require.Less(t, time.Since(start), 2*time.Minute, "within a minute or so, not prepareTimeout")
	s.requireEvent(t, dd.Name)
	require.NoError(t, s.c.Get(ctxT(t), crclient.ObjectKeyFromObject(target), target))
	require.Empty(t, target.Spec.VolumeName, "the target PVC is left as it was")
	s.requireNoLeftovers(t)
}
