package controller

import (
	"context"

	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/snapmove/snapmove/internal/naming"
)

// A movement that waits for a concurrency slot (queued in New behind maxConcurrent, or in
// Prepared behind perNode) is reconciled again as soon as a slot frees: when one of ours
// ends, leaves InProgress, or has its worker's result recorded (finishing holds no node
// slot), every waiting movement of the woken controller's kind is
// enqueued. The informer stores the change before it calls the handlers, so the woken
// reconcile counts without the freed slot. queuedRequeue stays as the safety net.

// slotFreed passes the events after which one movement fewer counts against a limit.
func slotFreed() predicate.Funcs {
	return predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
		DeleteFunc:  func(e event.DeleteEvent) bool { return ours(e.Object) },
		UpdateFunc: func(e event.UpdateEvent) bool {
			if !ours(e.ObjectNew) {
				return false
			}
			if !resultRecorded(e.ObjectOld) && resultRecorded(e.ObjectNew) {
				return true
			}
			before, now := phaseOf(e.ObjectOld), phaseOf(e.ObjectNew)
			return before != now && (naming.MovementEnded(now) || before == phaseInProgress || before == phaseCanceling)
		},
	}
}

func phaseOf(obj client.Object) string {
	switch o := obj.(type) {
	case *velerov2alpha1.DataUpload:
		return string(o.Status.Phase)
	case *velerov2alpha1.DataDownload:
		return string(o.Status.Phase)
	}
	return ""
}

// waiting: not claimed yet, or claimed and prepared but not started.
func waiting(phase string) bool {
	return phase == "" || phase == phaseNew || phase == phasePrepared
}

// waitingUploads lists (from the cache) the DataUploads that wait to be claimed or started.
func (r *Reconciler) waitingUploads(ctx context.Context, _ client.Object) []reconcile.Request {
	var l velerov2alpha1.DataUploadList
	if err := r.Client.List(ctx, &l, client.InNamespace(r.Options.Namespace)); err != nil {
		r.Log.WithError(err).Warn("listing DataUploads waiting for a slot")
		return nil
	}
	var out []reconcile.Request
	for i := range l.Items {
		if du := &l.Items[i]; ours(du) && waiting(string(du.Status.Phase)) {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: du.Namespace, Name: du.Name}})
		}
	}
	return out
}

// waitingDownloads lists (from the cache) the DataDownloads that wait to be claimed or started.
func (r *Reconciler) waitingDownloads(ctx context.Context, _ client.Object) []reconcile.Request {
	var l velerov2alpha1.DataDownloadList
	if err := r.Client.List(ctx, &l, client.InNamespace(r.Options.Namespace)); err != nil {
		r.Log.WithError(err).Warn("listing DataDownloads waiting for a slot")
		return nil
	}
	var out []reconcile.Request
	for i := range l.Items {
		if dd := &l.Items[i]; ours(dd) && waiting(string(dd.Status.Phase)) {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: dd.Namespace, Name: dd.Name}})
		}
	}
	return out
}
