package controller

import (
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	crhandler "sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/snapmove/snapmove/internal/naming"
)

// maxConcurrentReconciles per controller: repository checks block for a while.
const maxConcurrentReconciles = 4

// ours keeps the DataUploads and DataDownloads this mover executes, or may serve or
// report as unserved (Velero's built-in mover, builtin.go). Reconcile checks again (an
// object can be edited between event and reconcile).
func ours(obj client.Object) bool {
	switch o := obj.(type) {
	case *velerov2alpha1.DataUpload:
		return o.Spec.DataMover == naming.DataMover || isBuiltInMover(o.Spec.DataMover)
	case *velerov2alpha1.DataDownload:
		return o.Spec.DataMover == naming.DataMover || isBuiltInMover(o.Spec.DataMover)
	}
	return false
}

func isDeleteRequest(obj client.Object) bool {
	return obj.GetLabels()[naming.DeleteRequestLabel] == "true"
}

// SetupWithManager registers the DataUpload, DataDownload and delete-request controllers
// and the in-flight gauge.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	opts := controller.Options{MaxConcurrentReconciles: maxConcurrentReconciles}
	if err := ctrl.NewControllerManagedBy(mgr).
		Named("snapmove-dataupload").
		For(&velerov2alpha1.DataUpload{}, builder.WithPredicates(predicate.NewPredicateFuncs(ours))).
		Owns(&corev1.Pod{}).
		Owns(&corev1.PersistentVolumeClaim{}).
		Watches(&velerov2alpha1.DataUpload{}, crhandler.EnqueueRequestsFromMapFunc(r.waitingUploads), builder.WithPredicates(slotFreed())).
		Watches(&velerov2alpha1.DataDownload{}, crhandler.EnqueueRequestsFromMapFunc(r.waitingUploads), builder.WithPredicates(slotFreed())).
		WithOptions(opts).
		Complete(&DataUploadReconciler{r}); err != nil {
		return err
	}
	if err := ctrl.NewControllerManagedBy(mgr).
		Named("snapmove-datadownload").
		For(&velerov2alpha1.DataDownload{}, builder.WithPredicates(predicate.NewPredicateFuncs(ours))).
		Owns(&corev1.Pod{}).
		Owns(&corev1.PersistentVolumeClaim{}).
		Watches(&velerov2alpha1.DataUpload{}, crhandler.EnqueueRequestsFromMapFunc(r.waitingDownloads), builder.WithPredicates(slotFreed())).
		Watches(&velerov2alpha1.DataDownload{}, crhandler.EnqueueRequestsFromMapFunc(r.waitingDownloads), builder.WithPredicates(slotFreed())).
		WithOptions(opts).
		Complete(&DataDownloadReconciler{r}); err != nil {
		return err
	}
	if err := ctrl.NewControllerManagedBy(mgr).
		Named("snapmove-snapshot-delete").
		For(&corev1.ConfigMap{}, builder.WithPredicates(predicate.NewPredicateFuncs(isDeleteRequest))).
		WithOptions(controller.Options{MaxConcurrentReconciles: 2}).
		Complete(&DeleteRequestReconciler{r}); err != nil {
		return err
	}
	return RegisterInFlight(metrics.Registry, r.Client, r.Options.Namespace)
}
