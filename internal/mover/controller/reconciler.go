package controller

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/pkg/errors"
	"github.com/sirupsen/logrus"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/snapmove/snapmove/internal/mover/config"
	"github.com/snapmove/snapmove/internal/mover/expose"
	"github.com/snapmove/snapmove/internal/naming"
)

// Options are the controller's command-line settings that reach the worker pods.
type Options struct {
	// Namespace is Velero's namespace: where DataUploads, DataDownloads, BSLs, our PVCs,
	// VolumeSnapshots and worker pods live.
	Namespace   string
	WorkerImage string
	// WorkerServiceAccount, when set, is the account of every worker pod, with whatever
	// rights the install gave it. Empty (the default): each worker pod gets its own account
	// and Role (expose.WorkerIdentity), made before the pod and deleted with it.
	WorkerServiceAccount string
	// DefaultCredentials, the secret key of BSLs that name none (nil: none), is passed to
	// workers as --default-credentials-secret and readable by their Roles.
	DefaultCredentials *corev1.SecretKeySelector
	// Identity goes to status.acceptedByNode (the controller's node or pod name).
	Identity string
}

// Reconciler holds what the DataUpload, DataDownload and delete-request reconcilers
// share. Nothing in it is needed for correctness across restarts: every decision is
// derived from the cluster (the object, its worker pod, PVC and snapshots).
type Reconciler struct {
	// Client reads from the manager's cache (Velero's namespace) and writes to the API.
	Client client.Client
	// Reader reads from the API server: objects outside Velero's namespace, cluster-scoped
	// objects, Events, and fresh copies after a write conflict.
	Reader   client.Reader
	Recorder record.EventRecorder
	Clock    clock.PassiveClock
	Log      logrus.FieldLogger
	Repos    Repositories
	Metrics  *Metrics
	Options  Options
	// Settings returns the mover settings; nil means config.Load from Client.
	Settings func(ctx context.Context) (config.Config, error)

	admission *admission
	verifier  *verifier
	lastValid *lastSettings
	nodeAgent *nodeAgentCache
	progress  *progressSeen
	nodes     *nodeCache
}

// lastSettings remembers the last valid mover settings (Reconciler.settings).
type lastSettings struct {
	mu  sync.Mutex
	cfg *config.Config
}

// NewReconciler fills the unexported parts of r.
func NewReconciler(r Reconciler) *Reconciler {
	r.admission = newAdmission()
	r.verifier = newVerifier()
	r.lastValid = &lastSettings{}
	r.nodeAgent = &nodeAgentCache{}
	r.progress = newProgressSeen()
	r.nodes = newNodeCache()
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	if r.Settings == nil {
		c, ns := r.Client, r.Options.Namespace
		r.Settings = func(ctx context.Context) (config.Config, error) { return config.Load(ctx, c, ns) }
	}
	return &r
}

// Requeue intervals.
const (
	// nextPhase: a phase moved on and the next one can start at once. A fixed short
	// delay rather than the rate limiter's backoff, which is for errors.
	nextPhase     = 10 * time.Millisecond
	queuedRequeue = 5 * time.Second  // waiting for a concurrency slot
	waitRequeue   = 10 * time.Second // waiting for a snapshot, PVC or pod
	// In the first fastWaitWindow after it was claimed, a movement waiting for what is not
	// watched (snapshots and PVCs outside Velero's namespace, which the mover does not
	// cache) looks again every fastWaitRequeue: most waits there take a second or two,
	// and a 10 s poll made them the largest part of a small volume's fixed cost.
	fastWaitRequeue = time.Second
	fastWaitWindow  = 30 * time.Second
	finishRequeue   = 2 * time.Second  // waiting for the exposed objects to go
	movingRequeue   = time.Minute      // safety net while the worker runs (pod events drive us)
	invalidRequeue  = 30 * time.Second // settings ConfigMap invalid
)

// finishingMessage is status.message of a movement whose worker succeeded and whose result
// is recorded (annResultRecorded): what is left is cleanup and, for a restore, the
// hand-over.
const finishingMessage = "data moved; finishing"

// Event reasons.
const (
	ReasonRepositoryError   = "RepositoryError"
	ReasonPrepareFailed     = "PrepareFailed"
	ReasonPrepareTimeout    = "PrepareTimeout"
	ReasonWorkerFailed      = "WorkerFailed"
	ReasonWorkerRetried     = "WorkerRetried"
	ReasonWorkerDisappeared = "WorkerDisappeared"
	ReasonInvalidResult     = "InvalidWorkerResult"
	ReasonHandOverFailed    = "HandOverFailed"
	ReasonCanceled          = "Canceled"
	ReasonCompleted         = "Completed"
	ReasonSettingsInvalid   = "SettingsInvalid"
	ReasonWorkerStalled     = "WorkerStalled"
)

// handler is the kind-specific part of a movement's phases; M is the kind's movement.
// The shared phase machine (machine) calls it and never looks at the kind itself.
type handler[M movement] interface {
	// expose makes sure everything the worker pod needs exists, the pod included. A
	// non-empty wait says what is not ready yet; a *datapath.PermanentError fails the
	// movement.
	expose(ctx context.Context, m M, cfg config.Config, log logrus.FieldLogger) (wait string, err error)
	// record copies a successful worker's result into m's status.
	record(m M, res expose.Result)
	// finish runs once the result is recorded: cleanup, and for a restore handing the
	// volume to the user's PVC. A non-empty wait means "not done yet".
	finish(ctx context.Context, m M, log logrus.FieldLogger) (wait string, err error)
	// cleanup deletes (requests deletion of) everything created for m. Idempotent. A
	// cleanupPending error says that part of it must wait (the rest is done): m may end,
	// keeping our finalizer until a later pass finishes.
	cleanup(ctx context.Context, m M, log logrus.FieldLogger) error
	// doneMessage is status.message of a Completed movement ("" for none).
	doneMessage(m M) string
	// lostWorker is the failure message when the worker pod vanished while moving data:
	// what it means for the user's data.
	lostWorker(m M) string
	// pvcLabel names the worker's PVC in messages ("backup PVC", "restore PVC").
	pvcLabel() string
}

// machine is the phase machine of one kind of movement: the shared phases, with the
// kind's handler.
type machine[M movement] struct {
	*Reconciler
	h handler[M]
}

func (r *Reconciler) logFor(m movement) logrus.FieldLogger {
	return r.Log.WithFields(logrus.Fields{m.logKey(): m.object().GetName(), "phase": m.phase()})
}

// reconcile is the shared phase machine: filter, finalizer/deletion, then one function
// per phase.
func (r machine[M]) reconcile(ctx context.Context, m M) (ctrl.Result, error) {
	log := r.logFor(m)
	obj := m.object()
	switch {
	case m.dataMover() == naming.DataMover:
	case !isBuiltInMover(m.dataMover()): // also filtered by the predicate
		return ctrl.Result{}, nil
	case controllerutil.ContainsFinalizer(obj, naming.MoverFinalizer):
		// Velero's built-in mover, claimed by this mover (serveVeleroDataMover): ours
		// to finish, whatever the setting says now.
	default:
		if serve, res, err := r.servesBuiltIn(ctx, m, log); !serve || err != nil {
			return res, err
		}
	}
	if isTerminal(m.phase()) {
		if !controllerutil.ContainsFinalizer(obj, naming.MoverFinalizer) {
			return ctrl.Result{}, nil
		}
		// Someone else ended it, we crashed between cleanup and finalizer removal, or it
		// ended with its cleanup pending.
		if pending, err := r.cleanup(ctx, m, log); err != nil || pending {
			return ctrl.Result{RequeueAfter: finishRequeue}, err
		}
		return ctrl.Result{}, r.removeFinalizer(ctx, m)
	}
	if obj.GetDeletionTimestamp() != nil {
		if !controllerutil.ContainsFinalizer(obj, naming.MoverFinalizer) {
			return ctrl.Result{}, nil // never claimed: nothing of ours exists
		}
		return r.cancel(ctx, m, log, fmt.Sprintf("%s was deleted while %s", m.kind(), phaseOrNew(m.phase())))
	}

	cfg, cfgErr := r.settings(ctx)
	switch m.phase() {
	case "", phaseNew:
		return r.onNew(ctx, m, cfg, cfgErr, log)
	case phaseAccepted, phasePrepared:
		switch {
		case cfgErr == nil:
		case cfg != nil:
			log.WithError(cfgErr).Warn("mover settings are invalid: keeping the last valid settings")
		case !m.cancelRequested():
			msg := "waiting: " + cfgErr.Error() + "; no valid settings were seen since the mover started"
			return ctrl.Result{RequeueAfter: invalidRequeue}, r.setMessage(ctx, m, msg)
		default: // canceling needs no settings
			d := config.Default()
			cfg = &d
		}
		if m.phase() == phaseAccepted {
			return r.onAccepted(ctx, m, *cfg, log)
		}
		return r.onPrepared(ctx, m, *cfg, log)
	case phaseInProgress:
		return r.onInProgress(ctx, m, cfg, log)
	case phaseCanceling:
		return r.cancel(ctx, m, log, "canceled while moving data")
	default:
		log.Warnf("unknown phase %q; leaving the object alone", m.phase())
		return ctrl.Result{}, nil
	}
}

// settings returns the mover settings. When they cannot be read or are invalid, err says
// why and cfg is the last valid settings this process saw (nil: none): objects already
// claimed keep going with those, never with defaults that nobody asked for.
func (r *Reconciler) settings(ctx context.Context) (cfg *config.Config, err error) {
	c, err := r.Settings(ctx)
	r.lastValid.mu.Lock()
	defer r.lastValid.mu.Unlock()
	if err == nil {
		r.lastValid.cfg = &c
		return &c, nil
	}
	return r.lastValid.cfg, err
}

func isNew(p string) bool { return p == "" || p == phaseNew }

func phaseOrNew(p string) string {
	if p == "" {
		return phaseNew
	}
	return p
}

// onNew: cancel, queue behind the concurrency limit, or claim (one optimistic update).
func (r machine[M]) onNew(ctx context.Context, m M, cfg *config.Config, cfgErr error, log logrus.FieldLogger) (ctrl.Result, error) {
	if m.cancelRequested() {
		return r.cancel(ctx, m, log, "canceled before it was accepted")
	}
	if cfgErr != nil {
		msg := "not accepted: " + cfgErr.Error()
		if m.message() != msg {
			r.event(m, corev1.EventTypeWarning, ReasonSettingsInvalid, cfgErr.Error())
		}
		return ctrl.Result{RequeueAfter: invalidRequeue}, r.setMessage(ctx, m, msg)
	}

	unlock := r.admission.lock()
	defer unlock()
	now := r.Clock.Now()
	if cfg.MaxConcurrent > 0 {
		acts, err := listActivities(ctx, r.Client, r.Options.Namespace)
		if err != nil {
			return ctrl.Result{}, err
		}
		active, _ := r.admission.count(acts, m.object().GetUID(), "", now)
		if active >= cfg.MaxConcurrent {
			msg := fmt.Sprintf("queued: %d data movements running (limit %d)", active, cfg.MaxConcurrent)
			return ctrl.Result{RequeueAfter: queuedRequeue}, r.setMessage(ctx, m, msg)
		}
	}

	// Claim: one optimistic update. A conflict means the object changed under us (or
	// someone else claimed it); the watch brings it back.
	m.setPhase(phaseAccepted)
	m.setAccepted(r.Options.Identity, metav1.NewTime(now))
	m.setMessage("")
	controllerutil.AddFinalizer(m.object(), naming.MoverFinalizer)
	if err := r.Client.Update(ctx, m.object()); err != nil {
		if apierrors.IsConflict(err) {
			log.Debug("lost the claim race")
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, errors.Wrapf(err, "claiming %s %s", m.kind(), key(m))
	}
	r.admission.reserve(m.object().GetUID(), "", now)
	log.Info("accepted")
	return ctrl.Result{RequeueAfter: nextPhase}, nil
}

// onAccepted: expose (repository check first), then wait for the worker pod to run, or
// fail with a diagnosis once the prepare timeout has passed. After a retry, the failed
// worker pod goes first; expose then creates the new one.
func (r machine[M]) onAccepted(ctx context.Context, m M, cfg config.Config, log logrus.FieldLogger) (ctrl.Result, error) {
	if m.cancelRequested() {
		return r.cancel(ctx, m, log, "canceled while preparing")
	}
	wait, err := r.previousWorker(ctx, m)
	if wait == "" && err == nil {
		wait, err = r.h.expose(ctx, m, cfg, log)
	}
	if p, ok := asPermanent(err); ok {
		return r.fail(ctx, m, log, p.Reason, p.Error())
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	if wait == "" {
		pod, err := r.pod(ctx, m)
		if err != nil {
			return ctrl.Result{}, err
		}
		switch {
		case pod == nil:
			wait = fmt.Sprintf("worker pod %s does not exist yet", key(m))
		case pod.Status.Phase == corev1.PodRunning:
			return r.toPrepared(ctx, m, pod, log)
		case pod.Status.Phase == corev1.PodFailed || pod.Status.Phase == corev1.PodSucceeded:
			return r.fail(ctx, m, log, ReasonWorkerFailed,
				fmt.Sprintf("worker pod %s exited before moving data: %s", key(m), podFailure(pod)))
		default:
			if msg := podCannotStart(pod); msg != "" {
				return r.fail(ctx, m, log, ReasonPrepareFailed, fmt.Sprintf("worker pod %s cannot start: %s", key(m), msg))
			}
			wait = r.diagnosePending(ctx, m, r.h.pvcLabel(), pod)
		}
	}

	timeout := cfg.PrepareTimeout.Duration
	since := m.object().GetCreationTimestamp().Time
	if at := m.acceptedAt(); at != nil {
		since = at.Time
	}
	left := timeout - r.Clock.Since(since)
	if left <= 0 {
		return r.fail(ctx, m, log, ReasonPrepareTimeout, fmt.Sprintf("%s (still not ready after %s)", wait, timeout))
	}
	after := waitRequeue
	if r.Clock.Since(since) < fastWaitWindow {
		after = fastWaitRequeue
	}
	if left < after {
		after = left
	}
	return ctrl.Result{RequeueAfter: after}, r.setMessage(ctx, m, "waiting: "+wait)
}

func (r *Reconciler) toPrepared(ctx context.Context, m movement, pod *corev1.Pod, log logrus.FieldLogger) (ctrl.Result, error) {
	node := pod.Spec.NodeName
	if err := r.write(ctx, m, func(m movement) {
		m.setPhase(phasePrepared)
		m.setNode(node)
		m.setNodeOS(velerov2alpha1.NodeOSLinux) // worker pods run on Linux nodes only
		m.setMessage("")
	}); err != nil {
		return ctrl.Result{}, err
	}
	log.WithField("node", node).Info("prepared")
	return ctrl.Result{RequeueAfter: nextPhase}, nil
}

// onPrepared: the worker pod runs; start moving unless the node is full.
func (r machine[M]) onPrepared(ctx context.Context, m M, cfg config.Config, log logrus.FieldLogger) (ctrl.Result, error) {
	if m.cancelRequested() {
		return r.cancel(ctx, m, log, "canceled while preparing")
	}
	pod, err := r.pod(ctx, m)
	if err != nil {
		return ctrl.Result{}, err
	}
	if done, res, err := r.checkWorkerGone(ctx, m, pod, log, false); done {
		return res, err
	}

	unlock := r.admission.lock()
	defer unlock()
	now := r.Clock.Now()
	if cfg.PerNode > 0 {
		acts, err := listActivities(ctx, r.Client, r.Options.Namespace)
		if err != nil {
			return ctrl.Result{}, err
		}
		_, onNode := r.admission.count(acts, m.object().GetUID(), m.node(), now)
		if onNode >= cfg.PerNode {
			msg := fmt.Sprintf("queued on node %s: %d data movements in progress there (perNode limit %d)", m.node(), onNode, cfg.PerNode)
			return ctrl.Result{RequeueAfter: queuedRequeue}, r.setMessage(ctx, m, msg)
		}
	}
	if err := r.write(ctx, m, func(m movement) {
		m.setPhase(phaseInProgress)
		m.setStarted(metav1.NewTime(now))
		m.setMessage("")
	}); err != nil {
		return ctrl.Result{}, err
	}
	r.admission.reserve(m.object().GetUID(), m.node(), now)
	log.WithField("node", m.node()).Info("moving data")
	return ctrl.Result{RequeueAfter: movingRequeue}, nil
}

// checkWorkerGone fails m when its worker pod is missing or ended (Prepared and
// InProgress). done reports that it decided, and then res and err are the result.
func (r machine[M]) checkWorkerGone(ctx context.Context, m M, pod *corev1.Pod, log logrus.FieldLogger, moving bool) (done bool, res ctrl.Result, err error) {
	switch {
	case pod == nil && moving:
		res, err = r.fail(ctx, m, log, ReasonWorkerDisappeared, r.h.lostWorker(m))
	case pod == nil:
		res, err = r.fail(ctx, m, log, ReasonWorkerDisappeared,
			fmt.Sprintf("worker pod %s disappeared before moving data (deleted or evicted)", key(m)))
	case pod.Status.Phase == corev1.PodFailed || (!moving && pod.Status.Phase == corev1.PodSucceeded):
		res, err = r.fail(ctx, m, log, ReasonWorkerFailed, fmt.Sprintf("worker pod %s failed: %s", key(m), podFailure(pod)))
	default:
		return false, ctrl.Result{}, nil
	}
	return true, res, err
}

// onInProgress: watch the worker; on success record its result, then finish. A failed
// worker is retried or fails m (workerFailed); cfg may be nil (no valid settings seen).
func (r machine[M]) onInProgress(ctx context.Context, m M, cfg *config.Config, log logrus.FieldLogger) (ctrl.Result, error) {
	if m.cancelRequested() {
		if err := r.write(ctx, m, func(m movement) { m.setPhase(phaseCanceling) }); err != nil {
			return ctrl.Result{}, err
		}
		log.Info("canceling")
		return ctrl.Result{RequeueAfter: nextPhase}, nil
	}
	if m.object().GetAnnotations()[annResultRecorded] == "true" {
		return r.finish(ctx, m, log)
	}
	pod, err := r.pod(ctx, m)
	if err != nil {
		return ctrl.Result{}, err
	}
	if pod == nil {
		// The cache may lag; only the API server may say the pod is gone.
		fresh := &corev1.Pod{}
		err := r.Reader.Get(ctx, client.ObjectKey{Namespace: r.Options.Namespace, Name: m.object().GetName()}, fresh)
		if err == nil {
			pod = fresh
		} else if !apierrors.IsNotFound(err) {
			return ctrl.Result{}, errors.Wrapf(err, "getting worker pod %s", key(m))
		}
	}
	if pod != nil && pod.Status.Phase == corev1.PodFailed {
		return r.workerFailed(ctx, m, pod, cfg, log)
	}
	if done, res, err := r.checkWorkerGone(ctx, m, pod, log, true); done {
		return res, err
	}
	if pod.Status.Phase != corev1.PodSucceeded {
		_, res, err := r.checkStalled(ctx, m, pod, cfg, log)
		return res, err
	}

	res, err := expose.ParseResult(expose.TerminationMessage(pod))
	if err != nil {
		return r.fail(ctx, m, log, ReasonInvalidResult, fmt.Sprintf("worker pod %s succeeded but its result cannot be read: %v", key(m), err))
	}
	if err := r.write(ctx, m, func(movement) {
		r.h.record(m, res) // m is the object being written
		m.setMessage(finishingMessage)
		setAnnotation(m.object(), annResultRecorded, "true")
	}); err != nil {
		return ctrl.Result{}, err
	}
	return r.finish(ctx, m, log)
}

func (r machine[M]) finish(ctx context.Context, m M, log logrus.FieldLogger) (ctrl.Result, error) {
	wait, err := r.h.finish(ctx, m, log)
	if p, ok := asPermanent(err); ok {
		return r.fail(ctx, m, log, p.Reason, p.Error())
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	if wait != "" {
		return ctrl.Result{RequeueAfter: finishRequeue}, r.setMessage(ctx, m, finishingMessage+": "+wait)
	}
	now := metav1.NewTime(r.Clock.Now())
	written, err := r.terminal(ctx, m, func(movement) { // m is the object being written
		m.setPhase(phaseCompleted)
		m.setCompleted(now)
		p := m.progress()
		p.BytesDone = p.TotalBytes
		m.setMessage(r.h.doneMessage(m))
	})
	if err != nil || !written {
		return ctrl.Result{}, err
	}
	p := m.progress()
	r.Metrics.ended(m.op(), phaseCompleted, r.took(m), p.TotalBytes, m.incrementalBytes())
	r.event(m, corev1.EventTypeNormal, ReasonCompleted, fmt.Sprintf("moved %d bytes", p.TotalBytes))
	log.WithField("phase", phaseCompleted).Info("completed")
	return ctrl.Result{}, nil
}

// cleanupPending is a handler cleanup's "not yet": what it names must wait before it
// can be deleted; everything else is done.
type cleanupPending string

func (p cleanupPending) Error() string { return "waiting: " + string(p) }

// cleanup runs the handler's cleanup; pending reports a cleanupPending.
func (r machine[M]) cleanup(ctx context.Context, m M, log logrus.FieldLogger) (pending bool, err error) {
	err = r.h.cleanup(ctx, m, log)
	var p cleanupPending
	if errors.As(err, &p) {
		log.WithField("waitingFor", string(p)).Info("cleanup continues once it can")
		return true, nil
	}
	return false, err
}

// fail cleans up and ends m as Failed with msg (also recorded as a Warning Event). A
// pending cleanup does not hold the failure back: m ends keeping our finalizer, and the
// terminal pass of reconcile finishes the cleanup.
func (r machine[M]) fail(ctx context.Context, m M, log logrus.FieldLogger, reason, msg string) (ctrl.Result, error) {
	pending, err := r.cleanup(ctx, m, log)
	if err != nil {
		return ctrl.Result{}, err
	}
	now := metav1.NewTime(r.Clock.Now())
	written, err := r.end(ctx, m, pending, func(m movement) {
		m.setPhase(phaseFailed)
		m.setMessage(msg)
		m.setCompleted(now)
		if m.startedAt() == nil {
			m.setStarted(now)
		}
	})
	if err != nil {
		return ctrl.Result{}, err
	}
	if !written { // ended elsewhere meanwhile: the terminal pass still owes a pending cleanup
		return pendingResult(pending), nil
	}
	r.Metrics.ended(m.op(), phaseFailed, r.took(m), 0, 0)
	r.event(m, corev1.EventTypeWarning, reason, msg)
	log.WithField("phase", phaseFailed).Warn(msg)
	return pendingResult(pending), nil
}

// pendingResult brings the terminal pass back for a pending cleanup.
func pendingResult(pending bool) ctrl.Result {
	if pending {
		return ctrl.Result{RequeueAfter: finishRequeue}
	}
	return ctrl.Result{}
}

// cancel cleans up and ends m as Canceled (a pending cleanup as in fail).
func (r machine[M]) cancel(ctx context.Context, m M, log logrus.FieldLogger, msg string) (ctrl.Result, error) {
	pending, err := r.cleanup(ctx, m, log)
	if err != nil {
		return ctrl.Result{}, err
	}
	now := metav1.NewTime(r.Clock.Now())
	written, err := r.end(ctx, m, pending, func(m movement) {
		m.setPhase(phaseCanceled)
		m.setMessage(msg)
		m.setCompleted(now)
		if m.startedAt() == nil {
			m.setStarted(now)
		}
	})
	if err != nil {
		return ctrl.Result{}, err
	}
	if !written { // ended elsewhere meanwhile: the terminal pass still owes a pending cleanup
		return pendingResult(pending), nil
	}
	r.Metrics.ended(m.op(), phaseCanceled, r.took(m), 0, 0)
	r.event(m, corev1.EventTypeNormal, ReasonCanceled, msg)
	log.WithField("phase", phaseCanceled).Info(msg)
	return pendingResult(pending), nil
}

func (r *Reconciler) took(m movement) time.Duration {
	if at := m.acceptedAt(); at != nil {
		return r.Clock.Since(at.Time)
	}
	return 0
}

// write applies mutate and updates the whole object (there is no status subresource).
// On a conflict it re-reads the object from the API server and re-applies mutate,
// unless the object has meanwhile ended (never touch a terminal object).
func (r *Reconciler) write(ctx context.Context, m movement, mutate func(movement)) error {
	_, err := r.update(ctx, m, func(m movement) {
		mutate(m)
		// Held while claimed and not ended: a New object (queued, settings invalid) is
		// not ours yet, and must not outlive a mover that is uninstalled.
		if m.object().GetDeletionTimestamp() == nil && !isNew(m.phase()) {
			controllerutil.AddFinalizer(m.object(), naming.MoverFinalizer)
		}
	})
	return err
}

// terminal is write for the final phase: it also removes our finalizer. written is
// false when the object had already ended.
func (r *Reconciler) terminal(ctx context.Context, m movement, mutate func(movement)) (bool, error) {
	return r.end(ctx, m, false, mutate)
}

// end is terminal that keeps our finalizer when cleanupPending: the terminal pass of
// reconcile removes it once the cleanup is done.
func (r *Reconciler) end(ctx context.Context, m movement, cleanupPending bool, mutate func(movement)) (bool, error) {
	return r.update(ctx, m, func(m movement) {
		mutate(m)
		if !cleanupPending {
			controllerutil.RemoveFinalizer(m.object(), naming.MoverFinalizer)
		}
	})
}

func (r *Reconciler) update(ctx context.Context, m movement, mutate func(movement)) (bool, error) {
	skipped := false
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		mutate(m)
		err := r.Client.Update(ctx, m.object())
		if !apierrors.IsConflict(err) {
			return err
		}
		fresh := m.newObject()
		if getErr := r.Reader.Get(ctx, client.ObjectKeyFromObject(m.object()), fresh); getErr != nil {
			return getErr
		}
		m.replace(fresh)
		if isTerminal(m.phase()) {
			skipped = true
			return nil
		}
		return err
	})
	if apierrors.IsNotFound(err) {
		return false, nil // deleted meanwhile (finalizer gone): nothing left to write
	}
	if err != nil {
		return false, errors.Wrapf(err, "updating %s %s", m.kind(), key(m))
	}
	return !skipped, nil
}

// setMessage writes status.message when it changed.
func (r *Reconciler) setMessage(ctx context.Context, m movement, msg string) error {
	if m.message() == msg {
		return nil
	}
	return r.write(ctx, m, func(m movement) { m.setMessage(msg) })
}

func (r *Reconciler) removeFinalizer(ctx context.Context, m movement) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if !controllerutil.RemoveFinalizer(m.object(), naming.MoverFinalizer) {
			return nil
		}
		err := r.Client.Update(ctx, m.object())
		if apierrors.IsConflict(err) {
			fresh := m.newObject()
			if getErr := r.Reader.Get(ctx, client.ObjectKeyFromObject(m.object()), fresh); getErr != nil {
				return client.IgnoreNotFound(getErr)
			}
			m.replace(fresh)
		}
		return client.IgnoreNotFound(err)
	})
}

func (r *Reconciler) event(m movement, eventType, reason, msg string) {
	if r.Recorder != nil {
		r.Recorder.Event(m.object(), eventType, reason, msg)
	}
}

// pod is m's worker pod from the cache, nil when there is none.
func (r *Reconciler) pod(ctx context.Context, m movement) (*corev1.Pod, error) {
	pod := &corev1.Pod{}
	err := r.Client.Get(ctx, client.ObjectKey{Namespace: r.Options.Namespace, Name: m.object().GetName()}, pod)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, errors.Wrapf(err, "getting worker pod %s", key(m))
	}
	return pod, nil
}

// storageLocation gets the BSL a movement uses; a missing one is permanent.
func (r *Reconciler) storageLocation(ctx context.Context, name string) (*velerov1.BackupStorageLocation, error) {
	bsl := &velerov1.BackupStorageLocation{}
	err := r.Reader.Get(ctx, client.ObjectKey{Namespace: r.Options.Namespace, Name: name}, bsl)
	if apierrors.IsNotFound(err) {
		return nil, permanentf(ReasonRepositoryError, "BackupStorageLocation %s/%s does not exist", r.Options.Namespace, name)
	}
	if err != nil {
		return nil, errors.Wrapf(err, "getting BackupStorageLocation %s/%s", r.Options.Namespace, name)
	}
	return bsl, nil
}

// verifyRepository checks the repository of m before anything is exposed, and again,
// uncached, before the worker of a retry (attempt > 1: the last worker may have failed
// because the store went away), and makes it one Velero maintains
// (ensureBackupRepository). A transient
// failure (the store does not answer, a 5xx, an API error reading a secret) becomes a wait
// reason shown in the message, and is retried until repositoryWaitBound has passed since
// m was accepted; then it fails m naming the cause. A permanent failure fails m at once.
func (r *Reconciler) verifyRepository(ctx context.Context, m movement, bslName, sourceNamespace string, create bool, cfg config.Config, log logrus.FieldLogger) (string, error) {
	bsl, err := r.storageLocation(ctx, bslName)
	if err != nil {
		return "", err
	}
	err = r.verifier.verify(ctx, r.Repos, r.Clock.Now, bsl, sourceNamespace, create, attempt(m) > 1)
	if err == nil {
		if err := r.storeAnswered(ctx, m, log); err != nil {
			return "", err
		}
		r.ensureBackupRepository(ctx, bslName, sourceNamespace, log)
		return "", nil
	}
	if p, ok := asPermanent(err); ok {
		if p.Reason == "" {
			p.Reason = ReasonRepositoryError
		}
		return "", p
	}
	bound := repositoryWaitBound(m, cfg)
	since := m.object().GetCreationTimestamp().Time
	if at := m.acceptedAt(); at != nil {
		since = at.Time
	}
	if waited := r.Clock.Since(since); waited >= bound {
		return "", permanentf(ReasonRepositoryError, "the kopia repository for namespace %s on BackupStorageLocation %s could not be checked for %s (the bound is the smaller of the operation timeout and the mover's prepareTimeout): %v",
			sourceNamespace, bslName, waited.Round(time.Second), err)
	}
	log.WithError(err).Warn("repository check failed; retrying")
	if _, waiting := m.object().GetAnnotations()[annWaitingForStore]; !waiting {
		now := r.Clock.Now().UTC().Format(time.RFC3339)
		if err := r.write(ctx, m, func(m movement) { setAnnotation(m.object(), annWaitingForStore, now) }); err != nil {
			return "", err
		}
	}
	return fmt.Sprintf("checking the kopia repository for namespace %s on BackupStorageLocation %s: %v", sourceNamespace, bslName, err), nil
}

// storeAnswered ends a wait for the repository (annWaitingForStore): m counts as
// accepted now, so that prepareTimeout, which is for exposing, starts when exposing can
// start, as after a retry. Without it a store back just before the wait's bound left the
// exposure no time at all.
func (r *Reconciler) storeAnswered(ctx context.Context, m movement, log logrus.FieldLogger) error {
	since, waited := m.object().GetAnnotations()[annWaitingForStore]
	if !waited {
		return nil
	}
	now := metav1.NewTime(r.Clock.Now())
	if err := r.write(ctx, m, func(m movement) {
		delete(m.object().GetAnnotations(), annWaitingForStore)
		m.setAccepted(r.Options.Identity, now)
	}); err != nil {
		return err
	}
	log.WithField("waitingSince", since).Info("the repository answers again; preparing")
	return nil
}

// repositoryWaitBound is how long a repository that cannot be checked for a transient
// reason is waited for: the movement's own spec.operationTimeout (Velero's
// csiSnapshotTimeout, 10 minutes by default), at most the mover's prepareTimeout.
func repositoryWaitBound(m movement, cfg config.Config) time.Duration {
	bound := cfg.PrepareTimeout.Duration
	if t := m.operationTimeout(); t > 0 && (bound <= 0 || t < bound) {
		bound = t
	}
	return bound
}
