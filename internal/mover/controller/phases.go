package controller

import (
	"context"
	"fmt"

	"github.com/pkg/errors"
	"github.com/sirupsen/logrus"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/snapmove/snapmove/internal/mover/config"
	"github.com/snapmove/snapmove/internal/mover/expose"
	"github.com/snapmove/snapmove/internal/naming"
)

// The phases: one method of machine per phase of a movement that has not ended, as
// reconcile (reconciler.go) picks them, and finish, the way to Completed. Each reads the
// cluster, acts, and ends with one status write (status.go).

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
	recordClaim(m)
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
	r.namesChecked.Delete(m.object().GetUID()) // exposed: checkNames is not called again
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
		if pod, err = r.podFrom(ctx, r.Reader, m); err != nil {
			return ctrl.Result{}, err
		}
	}
	if pod != nil && pod.Status.Phase == corev1.PodFailed {
		return r.workerFailed(ctx, m, pod, cfg, log)
	}
	if done, res, err := r.checkWorkerGone(ctx, m, pod, log, true); done {
		return res, err
	}
	if pod.Status.Phase != corev1.PodSucceeded {
		return r.running(ctx, m, pod, cfg, log)
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

// running: the worker moves data. Its report goes onto m's status (an unreadable one fails
// m), then the stall check looks at it.
func (r machine[M]) running(ctx context.Context, m M, pod *corev1.Pod, cfg *config.Config, log logrus.FieldLogger) (ctrl.Result, error) {
	invalid, err := r.copyProgress(ctx, m)
	if err != nil {
		return ctrl.Result{}, err
	}
	if invalid != "" {
		return r.fail(ctx, m, log, ReasonInvalidReport, invalid)
	}
	_, res, err := r.checkStalled(ctx, m, pod, cfg, log)
	return res, err
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
	if err := r.deleteReport(ctx, m, log); err != nil {
		return ctrl.Result{}, err
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
	if err := r.deleteReport(ctx, m, log); err != nil {
		return false, err
	}
	err = r.h.cleanup(ctx, m, log)
	var p cleanupPending
	if errors.As(err, &p) {
		log.WithField("waitingFor", string(p)).Info("cleanup continues once it can")
		return true, nil
	}
	if err == nil {
		r.namesChecked.Delete(m.object().GetUID())
	}
	return false, err
}
