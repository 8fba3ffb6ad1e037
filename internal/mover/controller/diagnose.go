package controller

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/mover/expose"
)

// EventUIDField is the Event field selector used to find an object's Events. The API
// server supports it natively; a fake client needs an index of that name.
const EventUIDField = "involvedObject.uid"

// diagnosePending says why m's worker pod is not running yet, in one line built from
// the PVC's and the pod's state and their latest Events.
func (r *Reconciler) diagnosePending(ctx context.Context, m movement, pvcLabel string, pod *corev1.Pod) string {
	var first, rest []string
	podKey := key(m)

	pvc := &corev1.PersistentVolumeClaim{}
	err := r.Client.Get(ctx, client.ObjectKey{Namespace: r.Options.Namespace, Name: m.object().GetName()}, pvc)
	switch {
	case apierrors.IsNotFound(err):
		rest = append(rest, fmt.Sprintf("%s %s does not exist", pvcLabel, podKey))
	case err != nil:
		rest = append(rest, fmt.Sprintf("%s %s cannot be read: %v", pvcLabel, podKey, err))
	case pvc.Status.Phase != corev1.ClaimBound:
		phase := pvc.Status.Phase
		if phase == "" {
			phase = corev1.ClaimPending
		}
		ev := r.latestEvent(ctx, pvc.UID)
		line := fmt.Sprintf("%s %s is %s", pvcLabel, podKey, phase)
		if ev != nil {
			line += ": " + oneLine(ev.Message)
		}
		// With WaitForFirstConsumer the PVC waits for the pod: the pod's state is the
		// cause. Otherwise the PVC is.
		wffc := ev != nil && ev.Reason == "WaitForFirstConsumer"
		if !wffc && ev == nil && pod.Spec.NodeName == "" && pvc.Spec.StorageClassName != nil {
			wffc, _ = r.waitsForFirstConsumer(ctx, *pvc.Spec.StorageClassName)
		}
		if wffc {
			rest = append(rest, line)
		} else {
			first = append(first, line)
		}
	}

	unschedulable := false
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
			msg := c.Message
			if msg == "" {
				msg = c.Reason
			}
			unschedulable = true
			first = append(first, fmt.Sprintf("worker pod %s is unschedulable: %s", podKey, oneLine(msg)))
		}
	}
	if !unschedulable && pod.Spec.NodeName == "" {
		first = append(first, fmt.Sprintf("worker pod %s is not scheduled yet", podKey))
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil {
			line := fmt.Sprintf("worker pod %s is not running: %s", podKey, w.Reason)
			if w.Message != "" {
				line += ": " + oneLine(w.Message)
			}
			first = append(first, line)
		}
	}
	if pod.Spec.NodeName != "" || len(pod.Status.ContainerStatuses) > 0 {
		if ev := r.latestEvent(ctx, pod.UID); ev != nil && ev.Type == corev1.EventTypeWarning && ev.Reason != "FailedScheduling" {
			first = append(first, fmt.Sprintf("worker pod %s: %s: %s", podKey, ev.Reason, oneLine(ev.Message)))
		}
	}
	all := append(first, rest...)
	if len(all) == 0 {
		return fmt.Sprintf("worker pod %s is %s", podKey, pod.Status.Phase)
	}
	return strings.Join(all, "; ")
}

// latestEvent is the newest Warning Event about uid, or the newest Event if there is no
// Warning; nil when there is none (or Events cannot be listed).
func (r *Reconciler) latestEvent(ctx context.Context, uid types.UID) *corev1.Event {
	list := &corev1.EventList{}
	if err := r.Reader.List(ctx, list, client.InNamespace(r.Options.Namespace), client.MatchingFields{EventUIDField: string(uid)}); err != nil {
		r.Log.WithError(err).Debug("listing events")
		return nil
	}
	if len(list.Items) == 0 {
		return nil
	}
	events := list.Items
	sort.SliceStable(events, func(i, j int) bool { return eventTime(&events[i]).After(eventTime(&events[j])) })
	for i := range events {
		if events[i].Type == corev1.EventTypeWarning {
			return &events[i]
		}
	}
	return &events[0]
}

func eventTime(e *corev1.Event) time.Time {
	switch {
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	case !e.FirstTimestamp.IsZero():
		return e.FirstTimestamp.Time
	}
	return e.CreationTimestamp.Time
}

// podCannotStart reports a worker container that will not start without someone
// changing something (a wrong image): failing now beats waiting for the timeout.
func podCannotStart(pod *corev1.Pod) string {
	for _, cs := range pod.Status.ContainerStatuses {
		w := cs.State.Waiting
		if w == nil {
			continue
		}
		switch w.Reason {
		case "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName":
			msg := fmt.Sprintf("%s for image %s", w.Reason, cs.Image)
			if w.Message != "" {
				msg += ": " + oneLine(w.Message)
			}
			return msg
		}
	}
	return ""
}

// podFailure describes why a worker pod ended: its termination message (the worker's
// error), the container's reason when it says more (OOMKilled), the pod's own reason
// (Evicted) and the memory limit when memory ran out.
func podFailure(pod *corev1.Pod) string {
	var parts []string
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name != expose.WorkerContainer || cs.State.Terminated == nil {
			continue
		}
		t := cs.State.Terminated
		if msg := strings.TrimSpace(t.Message); msg != "" {
			parts = append(parts, oneLine(msg))
		}
		if t.Reason != "" && t.Reason != "Error" && t.Reason != "Completed" {
			reason := fmt.Sprintf("container %s (exit code %d)", t.Reason, t.ExitCode)
			if t.Reason == "OOMKilled" {
				for _, c := range pod.Spec.Containers {
					if q, ok := c.Resources.Limits[corev1.ResourceMemory]; c.Name == cs.Name && ok {
						reason += fmt.Sprintf(", memory limit %s; raise workerResources in the mover settings", q.String())
					}
				}
			}
			parts = append(parts, reason)
		} else if len(parts) == 0 {
			parts = append(parts, fmt.Sprintf("container exited with code %d", t.ExitCode))
		}
	}
	if pod.Status.Reason != "" || pod.Status.Message != "" {
		parts = append(parts, strings.TrimSpace(pod.Status.Reason+" "+oneLine(pod.Status.Message)))
	}
	if len(parts) == 0 {
		return fmt.Sprintf("pod is %s without a message", pod.Status.Phase)
	}
	return strings.Join(parts, "; ")
}

// oneLine folds a multi-line message (kopia errors, scheduler messages) into one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
