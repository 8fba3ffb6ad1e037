package controller

import (
	"context"
	"fmt"
	"strconv"

	"github.com/pkg/errors"
	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/mover/config"
	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/mover/expose"
)

// A movement whose worker failed while moving data for a reason that may pass is retried
// as a whole, up to the mover setting moveAttempts: the failed pod is deleted, the
// exposed PVC and snapshot stay, and the movement goes back to Accepted, whose expose
// creates a new worker pod (a backup resumes from the checkpoint the failed one saved;
// a restore writes into the same restore PVC, replacing what is in the way). The
// decision reads fields only: the worker container's exit code and reason, and the
// annotations annAttempt and annFailedWorker.

// exitKilled is the exit code of a container killed by SIGKILL (128+9).
const exitKilled = 137

// attempt is the number of m's current attempt: annAttempt, 1 when unset or unreadable.
func attempt(m movement) int {
	n, err := strconv.Atoi(m.object().GetAnnotations()[annAttempt])
	if err != nil || n < 1 {
		return 1
	}
	return n
}

// mayRecover reports whether a failed worker pod ended in a way a new attempt may not
// repeat: its container exited with datapath.ExitTransient (the store failed after the
// data path's own retries) or was killed (OOMKilled, or SIGKILL). A pod that someone
// deleted or the kubelet evicted is not retried: it fails the movement as it did before
// the mover retried anything.
func mayRecover(pod *corev1.Pod) bool {
	if pod.DeletionTimestamp != nil || pod.Status.Reason == "Evicted" {
		return false
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name != expose.WorkerContainer || cs.State.Terminated == nil {
			continue
		}
		t := cs.State.Terminated
		return t.ExitCode == datapath.ExitTransient || t.ExitCode == exitKilled || t.Reason == "OOMKilled"
	}
	return false
}

// workerFailed handles m's worker pod that failed while moving data: retried when it may
// recover and fewer than moveAttempts attempts ran, failed otherwise. Without valid
// settings (cfg nil) nothing is retried: a retried movement could not be prepared.
func (r machine[M]) workerFailed(ctx context.Context, m M, pod *corev1.Pod, cfg *config.Config, log logrus.FieldLogger) (ctrl.Result, error) {
	n, limit := attempt(m), 1
	if cfg != nil {
		limit = cfg.MoveAttempts
	}
	why := podFailure(pod)
	recoverable := mayRecover(pod)
	if recoverable && n < limit {
		return r.retry(ctx, m, pod, n+1, limit, why, log)
	}
	msg := fmt.Sprintf("worker pod %s failed: %s", key(m), why)
	if recoverable || n > 1 {
		msg = fmt.Sprintf("worker pod %s failed (attempt %d of %d): %s", key(m), n, max(n, limit), why)
	}
	reason := ReasonWorkerFailed
	if workerExitCode(pod) == datapath.ExitVerificationFailed {
		reason = ReasonVerificationFailed
	}
	return r.fail(ctx, m, log, reason, msg)
}

// workerExitCode is the exit code of pod's worker container, -1 while it has not ended.
func workerExitCode(pod *corev1.Pod) int32 {
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == expose.WorkerContainer && cs.State.Terminated != nil {
			return cs.State.Terminated.ExitCode
		}
	}
	return -1
}

// retry sets m back to Accepted for attempt next of limit, with a fresh acceptedTimestamp
// (the prepare timeout counts from the retry), and deletes the failed worker pod. The
// write comes first: should the controller stop between the two, onAccepted deletes the
// pod (previousWorker), whereas a pod deleted under an InProgress movement would fail it.
func (r machine[M]) retry(ctx context.Context, m M, pod *corev1.Pod, next, limit int, why string, log logrus.FieldLogger) (ctrl.Result, error) {
	msg := fmt.Sprintf("retrying (attempt %d of %d) after: %s", next, limit, why)
	now := r.Clock.Now()
	if err := r.write(ctx, m, func(m movement) {
		m.setPhase(phaseAccepted)
		m.setAccepted(r.Options.Identity, metav1.NewTime(now))
		m.setMessage(msg)
		setAnnotation(m.object(), annAttempt, strconv.Itoa(next))
		setAnnotation(m.object(), annFailedWorker, string(pod.UID))
	}); err != nil {
		return ctrl.Result{}, err
	}
	// Counted as claimed again, no longer as moving on its node.
	r.admission.reserve(m.object().GetUID(), "", now)
	r.event(m, corev1.EventTypeWarning, ReasonWorkerRetried, msg)
	r.Metrics.retried(m.op())
	log.WithField("attempt", next).Warn(msg)
	if err := r.deleteWorker(ctx, pod); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: nextPhase}, nil
}

// previousWorker deletes the worker pod of a failed attempt (annFailedWorker) while it is
// still there; wait is non-empty until it is gone. Idempotent.
func (r *Reconciler) previousWorker(ctx context.Context, m movement) (wait string, err error) {
	uid := types.UID(m.object().GetAnnotations()[annFailedWorker])
	if uid == "" {
		return "", nil
	}
	pod, err := r.pod(ctx, m)
	if err != nil || pod == nil || pod.UID != uid {
		return "", err
	}
	if err := r.deleteWorker(ctx, pod); err != nil {
		return "", err
	}
	return fmt.Sprintf("worker pod %s of attempt %d is being deleted", key(m), attempt(m)-1), nil
}

// deleteWorker deletes pod, and only that pod: the UID precondition keeps a newer
// attempt's pod of the same name.
func (r *Reconciler) deleteWorker(ctx context.Context, pod *corev1.Pod) error {
	opts := []client.DeleteOption{client.PropagationPolicy(metav1.DeletePropagationBackground)}
	if pod.UID != "" {
		uid := pod.UID
		opts = append(opts, client.Preconditions{UID: &uid})
	}
	target := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name}}
	err := r.Client.Delete(ctx, target, opts...)
	if err == nil || apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return errors.Wrapf(err, "deleting worker pod %s", describe(pod.Namespace, pod.Name))
}
