package controller

import (
	"context"
	"fmt"
	"reflect"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"github.com/pkg/errors"
	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/mover/expose"
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

// Everything the mover makes for a movement carries the movement's UID
// (naming.MovementUIDLabel, expose.MadeFor), and is named after the movement, whose name
// whoever creates the DataUpload or DataDownload picks. An object of that name without
// the label is someone else's: the movement fails naming it (expose.NotMadeForError) and
// the mover never uses, changes or deletes it. Checks read from the API server
// (Reconciler.Reader), and deletions carry the checked object's UID as a precondition, so
// an object swapped in between is not deleted either.

// checkNames fails m (an *expose.NotMadeForError) when an object of m's name of a kind
// the mover makes for it exists and was not made for it: the worker pod, its PVC, the
// worker's identity (unless Options.WorkerServiceAccount) and extra (a backup's
// snapshot). It runs before anything is created for m, so that nothing is exposed for a
// movement whose name is taken; expose.Create checks again on each creation. A pass of m
// that found every name free or m's is remembered (namesChecked) until m ends.
func (r *Reconciler) checkNames(ctx context.Context, m movement, extra ...client.Object) error {
	uid := m.object().GetUID()
	if _, ok := r.namesChecked.Load(uid); ok {
		return nil
	}
	meta := metav1.ObjectMeta{Namespace: r.Options.Namespace, Name: m.object().GetName()}
	objs := []client.Object{&corev1.Pod{ObjectMeta: meta}, &corev1.PersistentVolumeClaim{ObjectMeta: meta}}
	if r.Options.WorkerServiceAccount == "" {
		objs = append(objs, &corev1.ServiceAccount{ObjectMeta: meta}, &rbacv1.Role{ObjectMeta: meta}, &rbacv1.RoleBinding{ObjectMeta: meta})
	}
	for _, obj := range append(objs, extra...) {
		found, err := get(ctx, r.Reader, obj.GetNamespace(), obj.GetName(), obj)
		if apierrors.IsForbidden(err) {
			switch obj.(type) {
			case *corev1.ServiceAccount, *rbacv1.Role, *rbacv1.RoleBinding:
				return r.identityForbidden(err)
			}
		}
		if err != nil {
			return err
		}
		if found {
			if err := expose.NotMadeFor(obj, uid); err != nil {
				return err
			}
		}
	}
	r.namesChecked.Store(uid, struct{}{})
	return nil
}

// deleteOurs deletes the object of obj's kind, namespace and name when it was made for
// the movement uid, and only that object (UID precondition); someone else's is left
// alone (logged). A missing object is fine. obj is filled in with what was read.
func (r *Reconciler) deleteOurs(ctx context.Context, uid types.UID, obj client.Object, log logrus.FieldLogger) error {
	found, err := get(ctx, r.Reader, obj.GetNamespace(), obj.GetName(), obj)
	if err != nil || !found {
		return err
	}
	if !expose.MadeFor(obj, uid) {
		log.WithField("object", kindOf(obj)+" "+describe(obj.GetNamespace(), obj.GetName())).
			Warn("leaving an object of the movement's name alone: it was not made for this movement")
		return nil
	}
	if obj.GetDeletionTimestamp() != nil {
		return nil
	}
	return deleteChecked(ctx, r.Client, obj)
}

// deleteChecked deletes obj, read and checked by the caller, and only that object: the
// UID precondition keeps an object of the same name made since. Missing, or replaced
// (the precondition fails), is fine.
func deleteChecked(ctx context.Context, c client.Writer, obj client.Object) error {
	opts := []client.DeleteOption{client.PropagationPolicy(metav1.DeletePropagationBackground)}
	if uid := obj.GetUID(); uid != "" {
		opts = append(opts, client.Preconditions{UID: &uid})
	}
	err := c.Delete(ctx, obj, opts...)
	if err == nil || apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return errors.Wrapf(err, "deleting %s %s", kindOf(obj), describe(obj.GetNamespace(), obj.GetName()))
}

// deletePVCAndVolume deletes m's PVC (Velero's namespace, m's name) so that its volume
// goes too: a PV bound to that very claim whose reclaim policy is not Delete is switched
// to Delete first (as Velero's DeletePVAndPVCIfAny does), or the storage would leak. A
// PVC not made for m, and any PV not bound to m's PVC, is left alone.
func (r *Reconciler) deletePVCAndVolume(ctx context.Context, m movement, log logrus.FieldLogger) error {
	pvc := &corev1.PersistentVolumeClaim{}
	found, err := get(ctx, r.Reader, r.Options.Namespace, m.object().GetName(), pvc)
	if err != nil || !found {
		return err
	}
	if !expose.MadeFor(pvc, m.object().GetUID()) {
		log.WithField("pvc", describe(pvc.Namespace, pvc.Name)).Warn("leaving a PVC of the movement's name alone: it was not made for this movement")
		return nil
	}
	if pv, err := r.boundVolume(ctx, pvc); err != nil {
		return err
	} else if pv != nil {
		if err := r.setReclaimPolicy(ctx, pv, corev1.PersistentVolumeReclaimDelete); err != nil {
			return err
		}
	}
	if pvc.DeletionTimestamp != nil {
		return nil
	}
	return deleteChecked(ctx, r.Client, pvc)
}

// boundVolume is the PV of pvc (one of ours), nil when it has none: the PV pvc names,
// provided that PV's claimRef names pvc itself (namespace, name and UID). A PV that does
// not point back at our claim is not ours to touch.
func (r *Reconciler) boundVolume(ctx context.Context, pvc *corev1.PersistentVolumeClaim) (*corev1.PersistentVolume, error) {
	if pvc.Spec.VolumeName == "" {
		return nil, nil
	}
	pv := &corev1.PersistentVolume{}
	found, err := get(ctx, r.Reader, "", pvc.Spec.VolumeName, pv)
	if err != nil || !found {
		return nil, err
	}
	ref := pv.Spec.ClaimRef
	if ref == nil || ref.Namespace != pvc.Namespace || ref.Name != pvc.Name || ref.UID != pvc.UID || pvc.UID == "" {
		return nil, nil
	}
	return pv, nil
}

// setReclaimPolicy sets pv's reclaim policy; the patch carries pv's resourceVersion, so
// it applies to the PV as it was read and checked, or fails.
func (r *Reconciler) setReclaimPolicy(ctx context.Context, pv *corev1.PersistentVolume, policy corev1.PersistentVolumeReclaimPolicy) error {
	if pv.Spec.PersistentVolumeReclaimPolicy == policy {
		return nil
	}
	patch := client.MergeFromWithOptions(pv.DeepCopy(), client.MergeFromWithOptimisticLock{})
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
