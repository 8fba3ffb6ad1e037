package controller

import (
	"context"
	"time"

	"github.com/pkg/errors"
	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/snapmove/snapmove/internal/naming"
)

// Status writes after the claim (onNew's one optimistic update). DataUpload and
// DataDownload have no status subresource: each write updates the whole object, retries
// on conflict after re-reading it, and never touches an object that has ended. A
// movement ends through finish (Completed) or endWith (Failed, Canceled).

// outcome is how a movement ends without completing: its phase (phaseFailed or
// phaseCanceled), the Event reason, and the message for status.message and the Event.
type outcome struct {
	phase, reason, msg string
}

// fail ends m as Failed with msg, also a Warning Event with reason (endWith).
func (r machine[M]) fail(ctx context.Context, m M, log logrus.FieldLogger, reason, msg string) (ctrl.Result, error) {
	return r.endWith(ctx, m, log, outcome{phase: phaseFailed, reason: reason, msg: msg})
}

// cancel ends m as Canceled with msg, also a Normal Event (endWith).
func (r machine[M]) cancel(ctx context.Context, m M, log logrus.FieldLogger, msg string) (ctrl.Result, error) {
	return r.endWith(ctx, m, log, outcome{phase: phaseCanceled, reason: ReasonCanceled, msg: msg})
}

// endWith cleans up and ends m with o: phase, message, completion (and start, when it
// never started) in one write, then the metric, the Event (a Warning for Failed) and the
// log line. A pending cleanup does not hold the end back: m ends keeping our finalizer,
// and the terminal pass of reconcile finishes the cleanup.
func (r machine[M]) endWith(ctx context.Context, m M, log logrus.FieldLogger, o outcome) (ctrl.Result, error) {
	pending, err := r.cleanup(ctx, m, log)
	if err != nil {
		return ctrl.Result{}, err
	}
	now := metav1.NewTime(r.Clock.Now())
	written, err := r.writeEnd(ctx, m, pending, func(m movement) {
		m.setPhase(o.phase)
		m.setMessage(o.msg)
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
	r.Metrics.ended(m.op(), o.phase, r.took(m), 0, 0)
	if o.phase == phaseFailed {
		r.Metrics.failed(m.op(), o.reason)
	}
	log = log.WithField("phase", o.phase)
	if o.phase == phaseFailed {
		r.event(m, corev1.EventTypeWarning, o.reason, o.msg)
		log.Warn(o.msg)
	} else {
		r.event(m, corev1.EventTypeNormal, o.reason, o.msg)
		log.Info(o.msg)
	}
	return pendingResult(pending), nil
}

// pendingResult brings the terminal pass back for a pending cleanup.
func pendingResult(pending bool) ctrl.Result {
	if pending {
		return ctrl.Result{RequeueAfter: finishRequeue}
	}
	return ctrl.Result{}
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
	return r.writeEnd(ctx, m, false, mutate)
}

// writeEnd is terminal that keeps our finalizer when cleanupPending: the terminal pass of
// reconcile removes it once the cleanup is done.
func (r *Reconciler) writeEnd(ctx context.Context, m movement, cleanupPending bool, mutate func(movement)) (bool, error) {
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
		if naming.MovementEnded(m.phase()) {
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
