package controller

import (
	"context"
	"fmt"
	"reflect"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"github.com/pkg/errors"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Annotations the mover keeps on its own objects.
const (
	// annSourceContent, on our VolumeSnapshot: the user's VolumeSnapshotContent we took
	// over (retained, then deleted).
	annSourceContent = "snapmove.io/source-volumesnapshotcontent"
	// annBackupAccessMode, on our VolumeSnapshot: the access mode the backup PVC falls
	// back to after the driver refused the configured one.
	annBackupAccessMode = "snapmove.io/backup-pvc-access-mode"
	// annReclaimPolicy, on a restored PV being handed over: its reclaim policy before we
	// set Retain; removed once restored.
	annReclaimPolicy = "snapmove.io/original-reclaim-policy"
	// annResultRecorded, on a DataUpload or DataDownload: "true" once its worker
	// succeeded and the result is in the status. From then on the worker pod is expected
	// to be gone, and only cleanup (and a restore's hand-over) is left. State the phase
	// machine branches on lives here, not in status.message, which is for people.
	annResultRecorded = "snapmove.io/result-recorded"
	// annAttempt, on a DataUpload or DataDownload: which attempt at its data is being
	// prepared or runs ("2" after the first retry; none: the first). See workerFailed.
	annAttempt = "snapmove.io/attempt"
	// annFailedWorker, on a DataUpload or DataDownload: the UID of the worker pod whose
	// failure was retried. Until that pod is gone no new one can take its name, and a
	// lagging cache must not make it pass for the new attempt's pod.
	annFailedWorker = "snapmove.io/failed-worker-pod-uid"
	// annWaitingForStore, on a DataUpload or DataDownload: when (RFC 3339) its repository
	// check began to fail for a reason that may pass; removed, and the movement accepted
	// again, when the check passes (storeAnswered).
	annWaitingForStore = "snapmove.io/waiting-for-repository-since"

	// annSnapshotBeingDeleted is external-snapshotter's AnnVolumeSnapshotBeingDeleted
	// (pkg/utils/util.go): on a VolumeSnapshotContent with a deletion timestamp, it lets
	// the CSI sidecar delete the storage snapshot and the content.
	annSnapshotBeingDeleted = "snapshot.storage.kubernetes.io/volumesnapshot-being-deleted"

	annBindCompleted      = "pv.kubernetes.io/bind-completed"
	annBoundByController  = "pv.kubernetes.io/bound-by-controller"
	dynamicPVRestoreLabel = "velero.io/dynamic-pv-restore"
)

// get reads obj from reader; found is false (and err nil) when it does not exist.
func get(ctx context.Context, reader client.Reader, namespace, name string, obj client.Object) (bool, error) {
	err := reader.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, obj)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, errors.Wrapf(err, "getting %s %s", kindOf(obj), describe(namespace, name))
	}
	return true, nil
}

// kindOf is the Go type name of obj, which is its Kind for the API types used here.
func kindOf(obj client.Object) string { return reflect.TypeOf(obj).Elem().Name() }

// setAnnotation sets key=value on obj's annotations.
func setAnnotation(obj client.Object, key, value string) {
	a := obj.GetAnnotations()
	if a == nil {
		a = map[string]string{}
	}
	a[key] = value
	obj.SetAnnotations(a)
}

// describe is how messages and logs name an object: namespace/name, or name alone for a
// cluster-scoped object.
func describe(namespace, name string) string {
	if namespace == "" {
		return name
	}
	return namespace + "/" + name
}

// deleteIfExists requests deletion of obj; a missing object is fine.
func deleteIfExists(ctx context.Context, c client.Writer, obj client.Object) error {
	err := c.Delete(ctx, obj, client.PropagationPolicy(metav1.DeletePropagationBackground))
	if err == nil || apierrors.IsNotFound(err) {
		return nil
	}
	return errors.Wrapf(err, "deleting %s %s", kindOf(obj), describe(obj.GetNamespace(), obj.GetName()))
}

// deletePVCAndVolume deletes one of our PVCs so that its volume goes too: a bound PV
// whose reclaim policy is not Delete is switched to Delete first (as Velero's
// DeletePVAndPVCIfAny does), or the storage would leak.
func (r *Reconciler) deletePVCAndVolume(ctx context.Context, namespace, name string) error {
	pvc := &corev1.PersistentVolumeClaim{}
	found, err := get(ctx, r.Reader, namespace, name, pvc)
	if err != nil || !found {
		return err
	}
	if pvc.Spec.VolumeName != "" {
		pv := &corev1.PersistentVolume{}
		found, err := get(ctx, r.Reader, "", pvc.Spec.VolumeName, pv)
		if err != nil {
			return err
		}
		if found {
			if err := r.setReclaimPolicy(ctx, pv, corev1.PersistentVolumeReclaimDelete); err != nil {
				return err
			}
		}
	}
	if pvc.DeletionTimestamp != nil {
		return nil
	}
	return deleteIfExists(ctx, r.Client, pvc)
}

func (r *Reconciler) setReclaimPolicy(ctx context.Context, pv *corev1.PersistentVolume, policy corev1.PersistentVolumeReclaimPolicy) error {
	if pv.Spec.PersistentVolumeReclaimPolicy == policy {
		return nil
	}
	patch := client.MergeFrom(pv.DeepCopy())
	pv.Spec.PersistentVolumeReclaimPolicy = policy
	if err := r.Client.Patch(ctx, pv, patch); err != nil && !apierrors.IsNotFound(err) {
		return errors.Wrapf(err, "setting reclaim policy %s on PV %s", policy, pv.Name)
	}
	return nil
}

// waitsForFirstConsumer reports whether StorageClass name binds on first consumer.
func (r *Reconciler) waitsForFirstConsumer(ctx context.Context, name string) (bool, error) {
	if name == "" {
		return false, nil
	}
	sc := &storagev1.StorageClass{}
	found, err := get(ctx, r.Reader, "", name, sc)
	if err != nil || !found {
		return false, err
	}
	return sc.VolumeBindingMode != nil && *sc.VolumeBindingMode == storagev1.VolumeBindingWaitForFirstConsumer, nil
}

func snapshotReady(vs *snapshotv1.VolumeSnapshot) bool {
	return vs.Status != nil && vs.Status.ReadyToUse != nil && *vs.Status.ReadyToUse &&
		vs.Status.BoundVolumeSnapshotContentName != nil && *vs.Status.BoundVolumeSnapshotContentName != ""
}

// snapshotNotReady describes a VolumeSnapshot that is not ready.
func snapshotNotReady(vs *snapshotv1.VolumeSnapshot) string {
	msg := fmt.Sprintf("VolumeSnapshot %s/%s is not ready yet", vs.Namespace, vs.Name)
	if vs.Status != nil && vs.Status.Error != nil && vs.Status.Error.Message != nil {
		msg += ": " + oneLine(*vs.Status.Error.Message)
	}
	return msg
}
