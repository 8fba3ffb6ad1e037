package controller

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkg/errors"
	"github.com/stretchr/testify/require"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/naming"
)

// The shared phase machine, tested the way external-snapshotter tests its controllers
// (pkg/common-controller framework_test.go): one table of initial objects, injected API
// errors and expected results, run once for each kind of movement. Kind-specific steps
// (expose details, the restore's hand-over) are tested in dataupload_test.go and
// datadownload_test.go.

// kindUnderTest adapts one kind of movement to the table.
type kindUnderTest struct {
	name string
	// object is the movement in phase (claimed, with our finalizer, unless New).
	object func(phase string) client.Object
	// exposed is what exists once expose has nothing left to do, the worker pod aside.
	exposed func() []client.Object
	// lostWorker is the start of the kind's message for a worker lost while moving.
	lostWorker string
	reconcile  func(ctx context.Context, r *Reconciler) (ctrl.Result, error)
}

var kindsUnderTest = []kindUnderTest{
	{
		name:   "DataUpload",
		object: func(p string) client.Object { return dataUpload(velerov2alpha1.DataUploadPhase(p)) },
		exposed: func() []client.Object {
			vs := ourVS()
			vs.Status = nil
			pvc := ourPVC(duName)
			pvc.Status.Phase = corev1.ClaimBound
			return append(backupFixtures(nil)[1:], vs, pvc)
		},
		lostWorker: "worker pod velero/" + duName + " disappeared while moving data (deleted or evicted); the next backup",
		reconcile: func(ctx context.Context, r *Reconciler) (ctrl.Result, error) {
			return (&DataUploadReconciler{r}).Reconcile(ctx, ctrl.Request{NamespacedName: types.NamespacedName{Namespace: veleroNS, Name: duName}})
		},
	},
	{
		name:   "DataDownload",
		object: func(p string) client.Object { return dataDownload(velerov2alpha1.DataDownloadPhase(p)) },
		exposed: func() []client.Object {
			pvc := ourPVC(ddName)
			pvc.Status.Phase = corev1.ClaimBound
			return []client.Object{bsl(), storageClass("immediate", false), targetPVC("immediate"), pvc}
		},
		lostWorker: "worker pod velero/" + ddName + " disappeared while moving data (deleted or evicted); the volume was not fully restored",
		reconcile: func(ctx context.Context, r *Reconciler) (ctrl.Result, error) {
			return (&DataDownloadReconciler{r}).Reconcile(ctx, ctrl.Request{NamespacedName: types.NamespacedName{Namespace: veleroNS, Name: ddName}})
		},
	},
}

func (k kindUnderTest) objectName() string {
	if k.name == "DataUpload" {
		return duName
	}
	return ddName
}

// reactorError fails the n-th call (1-based; 0: every call) of verb on objects of Go type
// kind (as kindOf names it) with err, like external-snapshotter's reactorError.
type reactorError struct {
	verb string // get, create, update, patch, delete
	kind string // Pod, DataUpload, DataDownload, PersistentVolumeClaim, ...
	call int
	err  error
}

// injector turns reactorErrors into interceptor functions and counts calls.
type injector struct {
	mu     sync.Mutex
	errs   []reactorError
	counts map[string]int
}

func (in *injector) fail(verb string, obj client.Object) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	k := verb + "/" + kindOf(obj)
	in.counts[k]++
	for _, e := range in.errs {
		if e.verb == verb && e.kind == kindOf(obj) && (e.call == 0 || e.call == in.counts[k]) {
			return e.err
		}
	}
	return nil
}

func (in *injector) funcs() *interceptor.Funcs {
	return &interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			if err := in.fail("get", obj); err != nil {
				return err
			}
			return c.Get(ctx, key, obj, opts...)
		},
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			if err := in.fail("create", obj); err != nil {
				return err
			}
			return c.Create(ctx, obj, opts...)
		},
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			if err := in.fail("update", obj); err != nil {
				return err
			}
			return c.Update(ctx, obj, opts...)
		},
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
			if err := in.fail("patch", obj); err != nil {
				return err
			}
			return c.Patch(ctx, obj, patch, opts...)
		},
		Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
			if err := in.fail("delete", obj); err != nil {
				return err
			}
			return c.Delete(ctx, obj, opts...)
		},
	}
}

var errServer = apierrors.NewInternalError(errors.New("etcdserver: request timed out"))

func TestPhaseMachine(t *testing.T) {
	type machineTest struct {
		name  string
		phase string
		// setup changes the movement before it is stored (cancel, deletion, annotations).
		setup func(obj client.Object)
		// pod is the worker pod's phase ("": no pod).
		pod corev1.PodPhase
		// podFailure is the terminated worker container's message (pod Failed).
		podFailure string
		// exitCode and podReason are the terminated container's (0 and "": 1, "Error").
		exitCode  int32
		podReason string
		// moveAttempts is the mover setting (0: the default).
		moveAttempts int
		// reconciles is how many times Reconcile runs (0: once).
		reconciles int
		exposed    bool          // the kind's exposed objects exist
		age        time.Duration // how long ago the movement was accepted
		verifyErr  error
		settings   error
		errors     []reactorError

		wantPhase string
		// wantMessage is a prefix of status.message ("-": must be empty).
		wantMessage string
		wantEvents  []string // Event reasons, in order
		wantErr     bool     // Reconcile returns an error (requeued with backoff)
		wantPodGone bool
		// wantNewPod: a worker pod exists that is not the one the test started with.
		wantNewPod bool
		// wantCreated, when set, is every kind of object created ("-": none).
		wantCreated []string
		// wantAttempt, when set, is the annotation annAttempt afterwards, and the
		// movement was accepted again now (acceptedTimestamp is the clock's time).
		wantAttempt string
		// wantDeleted: the object is gone (it was being deleted and our finalizer went).
		wantDeleted bool
		// wantFinalizer says whether our finalizer must be held afterwards.
		wantFinalizer bool
		// wantRecheck: the repository is checked again although things are exposed (a
		// retry's worker waits for the store that failed the last one).
		wantRecheck bool
	}
	kindLost := "<kind's lost-worker message>"
	tests := []machineTest{
		{name: "new is claimed", phase: phaseNew, wantPhase: phaseAccepted, wantMessage: "-", wantFinalizer: true},
		{name: "new canceled", phase: phaseNew, setup: cancelIt, wantPhase: phaseCanceled,
			wantMessage: "canceled before it was accepted", wantEvents: []string{ReasonCanceled}},
		// Not claimed yet: no finalizer, so a New object never outlives an uninstalled mover.
		{name: "new with invalid settings waits", phase: phaseNew, settings: errors.New("key perNode: want a number"),
			wantPhase: phaseNew, wantMessage: "not accepted: key perNode: want a number", wantEvents: []string{ReasonSettingsInvalid}},
		{name: "claim conflict: someone else won", phase: phaseNew,
			errors:    []reactorError{{verb: "update", kind: "<movement>", call: 1, err: conflict(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "x"}})}},
			wantPhase: phaseNew, wantMessage: "-"},
		{name: "claim fails on the API server", phase: phaseNew,
			errors:    []reactorError{{verb: "update", kind: "<movement>", err: errServer}},
			wantPhase: phaseNew, wantErr: true},
		{name: "accepted, repository permanently broken", phase: phaseAccepted,
			verifyErr: datapath.Permanent("", errors.New("bucket bucket does not exist")),
			wantPhase: phaseFailed, wantMessage: "bucket bucket does not exist", wantEvents: []string{ReasonRepositoryError}},
		{name: "accepted, repository check fails for now", phase: phaseAccepted,
			verifyErr: errors.New("connection reset by peer"),
			wantPhase: phaseAccepted, wantMessage: "waiting: checking the kopia repository", wantFinalizer: true},
		{name: "accepted, store unreachable past the operation timeout", phase: phaseAccepted, setup: operationTimeout(10 * time.Minute), age: 11 * time.Minute,
			verifyErr: errors.New("storage of repository at s3://b/p/ is unreachable: connection refused"),
			wantPhase: phaseFailed, wantEvents: []string{ReasonRepositoryError},
			wantMessage: "the kopia repository for namespace app on BackupStorageLocation default could not be checked for 11m0s (the bound is the smaller of the operation timeout and the mover's prepareTimeout): storage of repository"},
		{name: "accepted, store unreachable within the operation timeout: waits", phase: phaseAccepted, setup: operationTimeout(10 * time.Minute), age: 9 * time.Minute,
			verifyErr: errors.New("storage of repository at s3://b/p/ is unreachable: connection refused"),
			wantPhase: phaseAccepted, wantMessage: "waiting: checking the kopia repository", wantFinalizer: true},
		{name: "accepted, settings invalid and none valid seen: waits", phase: phaseAccepted, settings: errors.New("key perNode: want a number"),
			wantPhase: phaseAccepted, wantMessage: "waiting: key perNode: want a number; no valid settings were seen", wantFinalizer: true},
		{name: "accepted, settings invalid, canceled", phase: phaseAccepted, setup: cancelIt, settings: errors.New("key perNode: want a number"),
			wantPhase: phaseCanceled, wantMessage: "canceled while preparing", wantEvents: []string{ReasonCanceled}},
		{name: "accepted, pod runs", phase: phaseAccepted, exposed: true, pod: corev1.PodRunning,
			wantPhase: phasePrepared, wantMessage: "-", wantFinalizer: true},
		{name: "accepted, pod exited early", phase: phaseAccepted, exposed: true, pod: corev1.PodFailed, podFailure: "no such device",
			wantPhase: phaseFailed, wantMessage: "worker pod velero/<name> exited before moving data", wantEvents: []string{ReasonWorkerFailed}, wantPodGone: true},
		{name: "accepted, canceled", phase: phaseAccepted, setup: cancelIt, exposed: true, pod: corev1.PodPending,
			wantPhase: phaseCanceled, wantMessage: "canceled while preparing", wantEvents: []string{ReasonCanceled}, wantPodGone: true},
		{name: "prepared starts", phase: phasePrepared, pod: corev1.PodRunning,
			wantPhase: phaseInProgress, wantMessage: "-", wantFinalizer: true},
		{name: "prepared, pod gone", phase: phasePrepared,
			wantPhase: phaseFailed, wantMessage: "worker pod velero/<name> disappeared before moving data", wantEvents: []string{ReasonWorkerDisappeared}},
		{name: "in progress, still moving", phase: phaseInProgress, pod: corev1.PodRunning,
			wantPhase: phaseInProgress, wantFinalizer: true},
		{name: "in progress, pod lost", phase: phaseInProgress,
			wantPhase: phaseFailed, wantMessage: kindLost, wantEvents: []string{ReasonWorkerDisappeared}},
		{name: "in progress, pod read fails: no verdict", phase: phaseInProgress, pod: corev1.PodRunning,
			errors:    []reactorError{{verb: "get", kind: "Pod", err: errServer}},
			wantPhase: phaseInProgress, wantErr: true, wantFinalizer: true},
		{name: "in progress, worker failed", phase: phaseInProgress, pod: corev1.PodFailed, podFailure: "reading /data/x: input/output error",
			wantPhase: phaseFailed, wantMessage: "worker pod velero/<name> failed: reading /data/x: input/output error",
			wantEvents: []string{ReasonWorkerFailed}, wantPodGone: true},
		{name: "in progress, worker failed, cleanup fails: retried", phase: phaseInProgress, pod: corev1.PodFailed, podFailure: "boom",
			errors:    []reactorError{{verb: "delete", kind: "Pod", err: errServer}},
			wantPhase: phaseInProgress, wantErr: true, wantFinalizer: true},
		{name: "in progress, worker succeeded with garbage", phase: phaseInProgress, pod: corev1.PodSucceeded, podFailure: "not json",
			wantPhase: phaseFailed, wantMessage: "worker pod velero/<name> succeeded but its result cannot be read", wantEvents: []string{ReasonInvalidResult}},
		{name: "in progress, write conflicts once", phase: phaseInProgress, pod: corev1.PodFailed, podFailure: "boom",
			errors:    []reactorError{{verb: "update", kind: "<movement>", call: 1, err: conflict(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "x"}})}},
			wantPhase: phaseFailed, wantMessage: "worker pod velero/<name> failed: boom", wantEvents: []string{ReasonWorkerFailed}, wantPodGone: true},
		{name: "in progress, cancel requested", phase: phaseInProgress, setup: cancelIt, pod: corev1.PodRunning,
			wantPhase: phaseCanceling, wantFinalizer: true},
		{name: "canceling ends", phase: phaseCanceling, pod: corev1.PodRunning,
			wantPhase: phaseCanceled, wantMessage: "canceled while moving data", wantEvents: []string{ReasonCanceled}, wantPodGone: true},
		{name: "deleted while in progress", phase: phaseInProgress, setup: deleteIt, pod: corev1.PodRunning,
			wantDeleted: true, wantEvents: []string{ReasonCanceled}, wantPodGone: true},

		// A worker that failed for a reason that may pass is retried as a whole.
		{name: "in progress, store failed (exit 75): retried", phase: phaseInProgress, age: 5 * time.Minute,
			pod: corev1.PodFailed, podFailure: storeDown, exitCode: 75,
			wantPhase: phaseAccepted, wantMessage: "retrying (attempt 2 of 3) after: " + storeDown,
			wantEvents: []string{ReasonWorkerRetried}, wantPodGone: true, wantAttempt: "2", wantCreated: []string{"-"}, wantFinalizer: true},
		{name: "in progress, store failed at the last attempt", phase: phaseInProgress, setup: annotate(annAttempt, "3"),
			pod: corev1.PodFailed, podFailure: storeDown, exitCode: 75,
			wantPhase: phaseFailed, wantMessage: "worker pod velero/<name> failed (attempt 3 of 3): " + storeDown,
			wantEvents: []string{ReasonWorkerFailed}, wantPodGone: true},
		{name: "in progress, worker OOMKilled: retried", phase: phaseInProgress, age: time.Minute,
			pod: corev1.PodFailed, podFailure: "-", exitCode: 137, podReason: "OOMKilled",
			wantPhase: phaseAccepted, wantMessage: "retrying (attempt 2 of 3) after: container OOMKilled (exit code 137)",
			wantEvents: []string{ReasonWorkerRetried}, wantPodGone: true, wantAttempt: "2", wantFinalizer: true},
		{name: "in progress, worker killed (SIGKILL) at attempt 2: retried", phase: phaseInProgress, setup: annotate(annAttempt, "2"), age: time.Minute,
			pod: corev1.PodFailed, podFailure: "-", exitCode: 137,
			wantPhase: phaseAccepted, wantMessage: "retrying (attempt 3 of 3) after: container exited with code 137",
			wantEvents: []string{ReasonWorkerRetried}, wantPodGone: true, wantAttempt: "3", wantFinalizer: true},
		{name: "in progress, worker failed for good (exit 1): not retried", phase: phaseInProgress,
			pod: corev1.PodFailed, podFailure: "reading /data/x: input/output error", exitCode: 1,
			wantPhase: phaseFailed, wantMessage: "worker pod velero/<name> failed: reading /data/x: input/output error",
			wantEvents: []string{ReasonWorkerFailed}, wantPodGone: true},
		{name: "in progress, worker failed for good at attempt 2: names it", phase: phaseInProgress, setup: annotate(annAttempt, "2"),
			pod: corev1.PodFailed, podFailure: "reading /data/x: input/output error",
			wantPhase: phaseFailed, wantMessage: "worker pod velero/<name> failed (attempt 2 of 3): reading /data/x: input/output error",
			wantEvents: []string{ReasonWorkerFailed}, wantPodGone: true},
		{name: "in progress, moveAttempts 1: never retried", phase: phaseInProgress, moveAttempts: 1,
			pod: corev1.PodFailed, podFailure: storeDown, exitCode: 75,
			wantPhase: phaseFailed, wantMessage: "worker pod velero/<name> failed (attempt 1 of 1): " + storeDown,
			wantEvents: []string{ReasonWorkerFailed}, wantPodGone: true},
		{name: "in progress, settings invalid and none valid seen: not retried", phase: phaseInProgress, settings: errors.New("key perNode: want a number"),
			pod: corev1.PodFailed, podFailure: storeDown, exitCode: 75,
			wantPhase: phaseFailed, wantMessage: "worker pod velero/<name> failed (attempt 1 of 1): " + storeDown,
			wantEvents: []string{ReasonWorkerFailed}, wantPodGone: true},
		{name: "in progress, worker pod deleted while failing: not retried", phase: phaseInProgress,
			pod: corev1.PodFailed, podFailure: "-", exitCode: 137, podReason: "deleting",
			wantPhase: phaseFailed, wantMessage: "worker pod velero/<name> failed: container exited with code 137",
			wantEvents: []string{ReasonWorkerFailed}, wantPodGone: true},
		{name: "in progress, store failed, cancel requested: canceled", phase: phaseInProgress, setup: cancelIt, reconciles: 2,
			pod: corev1.PodFailed, podFailure: storeDown, exitCode: 75,
			wantPhase: phaseCanceled, wantMessage: "canceled while moving data", wantEvents: []string{ReasonCanceled}, wantPodGone: true},
		{name: "in progress, store failed, retry write fails: nothing changes", phase: phaseInProgress,
			pod: corev1.PodFailed, podFailure: storeDown, exitCode: 75,
			errors:    []reactorError{{verb: "update", kind: "<movement>", err: errServer}},
			wantPhase: phaseInProgress, wantErr: true, wantFinalizer: true},
		// The retry's Accepted: the failed pod goes, then expose creates a new one and
		// nothing else (the PVC and snapshot are there; no repository check).
		{name: "accepted after a retry: failed pod deleted, new pod created", phase: phaseAccepted, exposed: true, reconciles: 2,
			setup: annotate(annAttempt, "2", annFailedWorker, failedWorkerUID), pod: corev1.PodFailed, podFailure: storeDown, exitCode: 75,
			// The worker identity is made before every pod (what exists is kept); the
			// repository is checked again (uncached), which also ensures Velero's BackupRepository.
			wantPhase: phaseAccepted, wantMessage: "waiting: ", wantNewPod: true, wantCreated: []string{"ConfigMap", "ServiceAccount", "Role", "RoleBinding", "BackupRepository", "Pod"},
			wantFinalizer: true, wantRecheck: true},
		{name: "accepted after a retry, failed pod still there: waits for it", phase: phaseAccepted, exposed: true,
			setup: annotate(annAttempt, "2", annFailedWorker, failedWorkerUID), pod: corev1.PodFailed, podFailure: storeDown, exitCode: 75,
			wantPhase: phaseAccepted, wantMessage: "waiting: worker pod velero/<name> of attempt 1 is being deleted", wantPodGone: true,
			wantCreated: []string{"-"}, wantFinalizer: true},
		{name: "accepted after a retry, canceled", phase: phaseAccepted, exposed: true, setup: all(cancelIt, annotate(annAttempt, "2", annFailedWorker, failedWorkerUID)),
			pod: corev1.PodFailed, podFailure: storeDown, exitCode: 75,
			wantPhase: phaseCanceled, wantMessage: "canceled while preparing", wantEvents: []string{ReasonCanceled}, wantPodGone: true},
		{name: "ended elsewhere, finalizer left: cleaned up", phase: phaseFailed, pod: corev1.PodRunning,
			wantPhase: phaseFailed, wantPodGone: true},
		{name: "ended elsewhere, cleanup fails: retried", phase: phaseFailed, pod: corev1.PodRunning,
			errors:    []reactorError{{verb: "delete", kind: "Pod", err: errServer}},
			wantPhase: phaseFailed, wantErr: true, wantFinalizer: true},
	}
	for _, k := range kindsUnderTest {
		for _, tc := range tests {
			t.Run(k.name+"/"+tc.name, func(t *testing.T) {
				name := k.objectName()
				obj := k.object(tc.phase)
				if tc.setup != nil {
					tc.setup(obj)
				}
				objs := []client.Object{obj, bsl()}
				if tc.exposed {
					objs = append(objs, k.exposed()...)
				}
				if tc.pod != "" {
					pod := workerPod(name, tc.pod)
					pod.UID = failedWorkerUID
					if tc.podFailure != "" {
						code, reason, msg := tc.exitCode, tc.podReason, tc.podFailure
						switch {
						case code == 0 && tc.pod != corev1.PodSucceeded:
							code = 1
						case reason == "deleting":
							now := metav1.NewTime(t0)
							pod.DeletionTimestamp, pod.Finalizers = &now, []string{"test/hold"}
						}
						if reason == "" || reason == "deleting" {
							reason = "Error"
						}
						if msg == "-" {
							msg = ""
						}
						pod = terminated(pod, reason, msg, code)
					}
					objs = append(objs, pod)
				}
				in := &injector{counts: map[string]int{}}
				for _, re := range tc.errors {
					if re.kind == "<movement>" {
						re.kind = k.name
					}
					in.errs = append(in.errs, re)
				}
				e := newEnv(t, in.funcs(), dedupe(objs)...)
				e.repos.verifyErr = tc.verifyErr
				e.clock.SetTime(t0.Add(tc.age))
				e.cfgErr = tc.settings
				if tc.moveAttempts != 0 {
					e.cfg.MoveAttempts = tc.moveAttempts
				}

				var err error
				for i := 0; i < max(tc.reconciles, 1) && err == nil; i++ {
					_, err = k.reconcile(context.Background(), e.r)
				}
				if tc.wantErr {
					require.Error(t, err)
				} else {
					require.NoError(t, err)
				}
				in.errs = nil // read back what is stored

				var reasons []string
				for _, ev := range e.events() {
					reasons = append(reasons, strings.Fields(ev)[1])
				}
				require.Equal(t, tc.wantEvents, reasons)
				if tc.wantPodGone {
					require.False(t, present(e, ourPod(name)), "worker pod deleted")
				}
				if tc.wantNewPod {
					pod := ourPod(name)
					require.True(t, e.exists(pod), "worker pod created")
					require.NotEqual(t, types.UID(failedWorkerUID), pod.UID, "a new worker pod")
				}
				if tc.wantCreated != nil {
					var created []string
					for k, n := range in.counts {
						if kind, ok := strings.CutPrefix(k, "create/"); ok && n > 0 {
							created = append(created, kind)
						}
					}
					if len(created) == 0 {
						created = []string{"-"}
					}
					require.ElementsMatch(t, tc.wantCreated, created, "objects created")
				}
				if tc.exposed && !tc.wantRecheck {
					require.Empty(t, e.repos.verified, "nothing exposed is checked again")
				}
				if tc.wantRecheck {
					require.NotEmpty(t, e.repos.verified, "the repository is checked before the retry's worker")
				}
				got := k.object("")
				if tc.wantDeleted {
					require.False(t, e.exists(got), "object deleted")
					return
				}
				require.NoError(t, e.c.Get(context.Background(), client.ObjectKey{Namespace: veleroNS, Name: name}, got))
				m := asMovement(got)
				require.Equal(t, tc.wantPhase, phaseOrNew(m.phase()))
				want := strings.NewReplacer("<name>", name, "<kind>", k.name).Replace(tc.wantMessage)
				switch {
				case want == kindLost:
					require.True(t, strings.HasPrefix(m.message(), k.lostWorker), "message %q", m.message())
				case want == "-":
					require.Empty(t, m.message())
				default:
					require.True(t, strings.HasPrefix(m.message(), want), "message %q, want prefix %q", m.message(), want)
				}
				require.Equal(t, tc.wantFinalizer, hasFinalizer(got), "finalizer")
				if tc.wantAttempt != "" {
					require.Equal(t, tc.wantAttempt, got.GetAnnotations()[annAttempt])
					require.Equal(t, failedWorkerUID, got.GetAnnotations()[annFailedWorker])
					require.True(t, m.acceptedAt().Time.Equal(t0.Add(tc.age)), "accepted again at %v", m.acceptedAt())
				}
			})
		}
	}
}

// storeDown is a worker's message after the store failed for longer than kopia retries.
const storeDown = "backing up /data: backing up PVC app/data to repository at s3://bucket/velero/kopia/app/: storage of repository at s3://bucket/velero/kopia/app/ is unreachable: dial tcp 10.0.0.1:9000: connect: connection refused"

// failedWorkerUID is the UID of the worker pod a test starts with.
const failedWorkerUID = "worker-uid-1"

// annotate sets key, value pairs on the movement.
func annotate(kv ...string) func(client.Object) {
	return func(obj client.Object) {
		for i := 0; i+1 < len(kv); i += 2 {
			setAnnotation(obj, kv[i], kv[i+1])
		}
	}
}

func all(fs ...func(client.Object)) func(client.Object) {
	return func(obj client.Object) {
		for _, f := range fs {
			f(obj)
		}
	}
}

// present reports whether obj exists and its deletion was not requested (it may wait
// for a finalizer).
func present(e *env, obj client.Object) bool {
	return e.exists(obj) && obj.GetDeletionTimestamp() == nil
}

func cancelIt(obj client.Object) {
	switch o := obj.(type) {
	case *velerov2alpha1.DataUpload:
		o.Spec.Cancel = true
	case *velerov2alpha1.DataDownload:
		o.Spec.Cancel = true
	}
}

func operationTimeout(d time.Duration) func(client.Object) {
	return func(obj client.Object) {
		switch o := obj.(type) {
		case *velerov2alpha1.DataUpload:
			o.Spec.OperationTimeout.Duration = d
		case *velerov2alpha1.DataDownload:
			o.Spec.OperationTimeout.Duration = d
		}
	}
}

func deleteIt(obj client.Object) {
	now := metav1.NewTime(t0)
	obj.SetDeletionTimestamp(&now)
}

func asMovement(obj client.Object) movement {
	if du, ok := obj.(*velerov2alpha1.DataUpload); ok {
		return upload{du}
	}
	return download{obj.(*velerov2alpha1.DataDownload)}
}

func hasFinalizer(obj client.Object) bool {
	for _, f := range obj.GetFinalizers() {
		if f == naming.MoverFinalizer {
			return true
		}
	}
	return false
}

// dedupe keeps the first object of each kind and name (the fixtures overlap).
func dedupe(objs []client.Object) []client.Object {
	seen := map[string]bool{}
	var out []client.Object
	for _, o := range objs {
		if o == nil {
			continue
		}
		k := kindOf(o) + "/" + o.GetNamespace() + "/" + o.GetName()
		if !seen[k] {
			seen[k] = true
			out = append(out, o)
		}
	}
	return out
}
