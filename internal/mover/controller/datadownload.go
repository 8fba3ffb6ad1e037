package controller

import (
	"context"
	"fmt"

	"github.com/pkg/errors"
	"github.com/sirupsen/logrus"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/mover/config"
	"github.com/snapmove/snapmove/internal/mover/expose"
	"github.com/snapmove/snapmove/internal/naming"
)

// DataDownloadReconciler restores the volumes of DataDownloads whose spec.datamover is
// naming.DataMover.
//
// Velero's restore creates the target PVC with an empty volumeName and a
// velero.io/dynamic-pv-restore selector, so it stays Pending. Accepted waits for it (and,
// for a WaitForFirstConsumer class, for the node its first pod was scheduled to), then
// creates a restore PVC shaped like it in Velero's namespace and the worker pod that
// writes the snapshot into it. When the worker succeeds, the restored PV is handed to the
// target PVC the way Velero's RebindVolume does: Retain the PV, delete the pod and restore
// PVC, point the target PVC and the PV at each other (the PV gets the selector's labels),
// wait until they are Bound, restore the reclaim policy. Each step is derived from the
// PV's state (found by the label naming.DataDownloadLabel), so a restart resumes it.
type DataDownloadReconciler struct{ *Reconciler }

// Reconcile implements reconcile.Reconciler.
func (r *DataDownloadReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	dd := &velerov2alpha1.DataDownload{}
	if err := r.Client.Get(ctx, req.NamespacedName, dd); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	return machine[download]{r.Reconciler, downloadHandler{r.Reconciler}}.reconcile(ctx, download{dd})
}

type downloadHandler struct{ r *Reconciler }

func (h downloadHandler) pvcLabel() string            { return "restore PVC" }
func (h downloadHandler) doneMessage(download) string { return "" }

func (h downloadHandler) lostWorker(m download) string {
	return fmt.Sprintf("worker pod %s disappeared while moving data (deleted or evicted); the volume was not fully restored", key(m))
}

func targetKey(dd *velerov2alpha1.DataDownload) string {
	return describe(dd.Spec.TargetVolume.Namespace, dd.Spec.TargetVolume.PVC)
}

func (h downloadHandler) expose(ctx context.Context, m download, cfg config.Config, log logrus.FieldLogger) (string, error) {
	r, dd := h.r, m.dd
	ns, name := r.Options.Namespace, dd.Name
	if dd.Spec.SnapshotID == "" {
		// A backed-up empty volume has a snapshot of its own: no ID means no data.
		return "", permanentf(ReasonPrepareFailed, "spec.snapshotID is empty: the backup holds no data for PVC %s (its upload did not complete); nothing is restored rather than an empty volume", targetKey(dd))
	}

	restorePVC := &corev1.PersistentVolumeClaim{}
	havePVC, err := get(ctx, r.Client, ns, name, restorePVC)
	if err != nil {
		return "", err
	}
	pod, err := r.pod(ctx, m)
	if err != nil {
		return "", err
	}
	// Nothing is exposed for a DataDownload whose name someone else's object has taken.
	if havePVC {
		if err := expose.NotMadeFor(restorePVC, dd.UID); err != nil {
			return "", err
		}
	} else if pod == nil {
		if err := r.checkNames(ctx, m); err != nil {
			return "", err
		}
	}
	if pod == nil && (!havePVC || attempt(m) > 1) { // as a backup's (uploadHandler.expose)
		if wait, err := r.verifyRepository(ctx, m, dd.Spec.BackupStorageLocation, dd.Spec.SourceNamespace, false, cfg, log); wait != "" || err != nil {
			return wait, err
		}
	}

	target := &corev1.PersistentVolumeClaim{}
	found, err := get(ctx, r.Reader, dd.Spec.TargetVolume.Namespace, dd.Spec.TargetVolume.PVC, target)
	if err != nil {
		return "", err
	}
	if !found {
		return fmt.Sprintf("target PVC %s does not exist yet", targetKey(dd)), nil
	}
	if target.Spec.VolumeName != "" || target.Status.Phase == corev1.ClaimBound {
		return "", permanentf(ReasonPrepareFailed, "target PVC %s is already bound to PV %s; the restore does not write over it", targetKey(dd), target.Spec.VolumeName)
	}

	selectedNode := ""
	if !cfg.RestoreIgnoreDelayBinding {
		sc := ""
		if target.Spec.StorageClassName != nil {
			sc = *target.Spec.StorageClassName
		}
		wffc, err := r.waitsForFirstConsumer(ctx, sc)
		if err != nil {
			return "", err
		}
		if wffc {
			selectedNode = target.Annotations[expose.SelectedNodeAnnotation]
			if selectedNode == "" {
				return fmt.Sprintf("target PVC %s waits for a pod to use it (StorageClass %s binds on first consumer); the restore starts once such a pod is scheduled", targetKey(dd), sc), nil
			}
		}
	}

	// The worker's identity comes before anything is exposed: a mover that may not create
	// it fails with nothing to clean up.
	var sa workerID
	if pod == nil {
		if sa, err = r.workerIdentity(ctx, expose.Restore, name, ddOwner(dd), dd.Spec.BackupStorageLocation, false); err != nil {
			return "", err
		}
	}
	if !havePVC {
		restorePVC = expose.RestorePVC(expose.RestorePVCParams{
			Name: name, Namespace: ns, Owner: ddOwner(dd), Target: target,
			SnapshotSize: dd.Spec.SnapshotSize, SelectedNode: selectedNode,
		})
		if err := expose.Create(ctx, r.Client, r.Reader, restorePVC); err != nil {
			return "", err
		}
	}
	if pod == nil {
		block := restorePVC.Spec.VolumeMode != nil && *restorePVC.Spec.VolumeMode == corev1.PersistentVolumeBlock
		pod := expose.WorkerPod(r.podParams(expose.Restore, name, ddOwner(dd), sa, restorePVC.Name, block, cfg, func(p *expose.PodParams) {
			p.NodeName = selectedNode
		}))
		return r.createWorkerPod(ctx, dd.UID, pod, sa, log)
	}
	return "", nil
}

func (h downloadHandler) record(m download, res expose.Result) {
	p := m.progress()
	p.TotalBytes, p.BytesDone = res.TotalBytes, res.TotalBytes
}

// restoredPV finds the PV the worker wrote: through the restore PVC (made for dd) while
// it exists, then by our labels, which finish puts only on that PV.
func (h downloadHandler) restoredPV(ctx context.Context, dd *velerov2alpha1.DataDownload) (*corev1.PersistentVolume, error) {
	r := h.r
	pvc := &corev1.PersistentVolumeClaim{}
	found, err := get(ctx, r.Reader, r.Options.Namespace, dd.Name, pvc)
	if err != nil {
		return nil, err
	}
	if found && expose.MadeFor(pvc, dd.UID) {
		if pv, err := r.boundVolume(ctx, pvc); err != nil || pv != nil {
			return pv, err
		}
	}
	list := &corev1.PersistentVolumeList{}
	if err := r.Reader.List(ctx, list, restoredPVLabels(dd)); err != nil {
		return nil, errors.Wrapf(err, "listing PVs labelled %v", restoredPVLabels(dd))
	}
	if len(list.Items) == 0 {
		return nil, nil
	}
	return &list.Items[0], nil
}

// finish hands the restored PV to the target PVC recorded at the claim (never the one
// the spec names now); each call does what is left.
func (h downloadHandler) finish(ctx context.Context, m download, log logrus.FieldLogger) (string, error) {
	r, dd := h.r, m.dd
	ns, name := r.Options.Namespace, dd.Name
	c := claimed(m, log)
	if c.TargetPVC == "" {
		return "", permanentf(ReasonHandOverFailed, "%s %s has no recorded target PVC to hand the restored volume to", m.kind(), key(m))
	}
	tkey := describe(c.TargetNamespace, c.TargetPVC)
	pv, err := h.restoredPV(ctx, dd)
	if err != nil {
		return "", err
	}
	if pv == nil {
		return "", permanentf(ReasonHandOverFailed, "the PV restored for %s %s cannot be found", m.kind(), key(m))
	}
	log = log.WithField("pv", pv.Name)

	// 1. Mark the PV as ours and keep it when the restore PVC goes.
	if pv.Labels[naming.DataDownloadLabel] != name || pv.Labels[naming.MovementUIDLabel] != string(dd.UID) {
		patch := client.MergeFromWithOptions(pv.DeepCopy(), client.MergeFromWithOptimisticLock{})
		if pv.Labels == nil {
			pv.Labels = map[string]string{}
		}
		if pv.Annotations == nil {
			pv.Annotations = map[string]string{}
		}
		for k, v := range restoredPVLabels(dd) {
			pv.Labels[k] = v
		}
		pv.Annotations[annReclaimPolicy] = string(pv.Spec.PersistentVolumeReclaimPolicy)
		pv.Spec.PersistentVolumeReclaimPolicy = corev1.PersistentVolumeReclaimRetain
		if err := r.Client.Patch(ctx, pv, patch); err != nil {
			return "", errors.Wrapf(err, "retaining PV %s", pv.Name)
		}
		log.Info("retained the restored PV")
	}

	// 2. The worker pod, its identity and the restore PVC go, in that order, in the first
	// pass that finds the PVC undeleted (later passes, until the PVC is gone, only wait);
	// the PV stays (Retain).
	restorePVC := &corev1.PersistentVolumeClaim{}
	found, err := get(ctx, r.Reader, ns, name, restorePVC)
	if err != nil {
		return "", err
	}
	if found && expose.MadeFor(restorePVC, dd.UID) {
		if restorePVC.DeletionTimestamp == nil {
			if err := r.deleteOurs(ctx, dd.UID, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}, log); err != nil {
				return "", err
			}
			if err := r.deleteWorkerIdentity(ctx, m, log); err != nil {
				return "", err
			}
			if err := deleteChecked(ctx, r.Client, restorePVC); err != nil {
				return "", err
			}
		}
		return fmt.Sprintf("waiting for restore PVC %s/%s to be deleted", ns, name), nil
	}

	// 3. The target PVC: it must not name another volume.
	target := &corev1.PersistentVolumeClaim{}
	found, err = get(ctx, r.Reader, c.TargetNamespace, c.TargetPVC, target)
	if err != nil {
		return "", err
	}
	if !found {
		return "", permanentf(ReasonHandOverFailed, "target PVC %s was deleted before the restored PV %s could be bound to it", tkey, pv.Name)
	}
	if v := target.Spec.VolumeName; v != "" && v != pv.Name {
		return "", permanentf(ReasonHandOverFailed, "target PVC %s is bound to PV %s, not to the restored PV %s", tkey, v, pv.Name)
	}

	// 4. The PV's claimRef names the target (its old one named the restore PVC), and the
	// PV carries the labels the target's selector asks for. The PV goes first, as
	// Velero's ResetPVBinding does: the PV controller re-syncs a pending claim on the
	// PV's change, but on a pre-bound pair whose claim changed last only at its
	// periodic claim resync (15 s), and so each restore waited about 10 s to bind.
	if ref := pv.Spec.ClaimRef; ref == nil || ref.UID != target.UID || ref.Name != target.Name || ref.Namespace != target.Namespace {
		pv.Spec.ClaimRef = &corev1.ObjectReference{
			APIVersion: "v1", Kind: "PersistentVolumeClaim",
			Namespace: target.Namespace, Name: target.Name, UID: target.UID,
		}
		if target.Spec.Selector != nil {
			if pv.Labels == nil {
				pv.Labels = map[string]string{}
			}
			for k, v := range target.Spec.Selector.MatchLabels {
				if _, ok := pv.Labels[k]; !ok {
					pv.Labels[k] = v
				}
			}
		}
		delete(pv.Annotations, annBoundByController)
		if err := r.Client.Update(ctx, pv); err != nil {
			return "", errors.Wrapf(err, "pointing PV %s at PVC %s", pv.Name, tkey)
		}
		log.WithField("pvc", tkey).Info("handed the restored PV to the target PVC")
	}

	// 4b. The target PVC names the PV (the claim's change makes the PV controller bind
	// the pair at once).
	if target.Spec.VolumeName == "" {
		patch := client.MergeFrom(target.DeepCopy())
		target.Spec.VolumeName = pv.Name
		delete(target.Annotations, annBindCompleted)
		delete(target.Annotations, annBoundByController)
		if err := r.Client.Patch(ctx, target, patch); err != nil {
			return "", errors.Wrapf(err, "binding target PVC %s to PV %s", tkey, pv.Name)
		}
	}

	// 5. Wait for the PV controller to bind them.
	if pv.Status.Phase != corev1.VolumeBound || target.Status.Phase != corev1.ClaimBound {
		return fmt.Sprintf("waiting for PVC %s to bind to PV %s", tkey, pv.Name), nil
	}

	// 6. Give the PV its reclaim policy back, and drop our label: the volume is the
	// user's now, and nothing of the mover may select it again (a later DataDownload of
	// the same name cleans up by that label).
	_, hasPolicy := pv.Annotations[annReclaimPolicy]
	_, hasLabel := pv.Labels[naming.DataDownloadLabel]
	_, hasUID := pv.Labels[naming.MovementUIDLabel]
	if hasPolicy || hasLabel || hasUID {
		patch := client.MergeFrom(pv.DeepCopy())
		if orig := pv.Annotations[annReclaimPolicy]; orig != "" {
			pv.Spec.PersistentVolumeReclaimPolicy = corev1.PersistentVolumeReclaimPolicy(orig)
		}
		delete(pv.Annotations, annReclaimPolicy)
		delete(pv.Labels, naming.DataDownloadLabel)
		delete(pv.Labels, naming.MovementUIDLabel)
		if err := r.Client.Patch(ctx, pv, patch); err != nil {
			return "", errors.Wrapf(err, "handing PV %s over (reclaim policy, label)", pv.Name)
		}
	}
	return "", nil
}

// userClaim names the claim outside Velero's namespace that pv is bound to, if that claim
// exists: such a PV is a user's volume, whatever labels it carries.
func (h downloadHandler) userClaim(ctx context.Context, pv *corev1.PersistentVolume) (string, error) {
	ref := pv.Spec.ClaimRef
	if ref == nil || ref.Name == "" || ref.Namespace == h.r.Options.Namespace {
		return "", nil
	}
	claim := &corev1.PersistentVolumeClaim{}
	found, err := get(ctx, h.r.Reader, ref.Namespace, ref.Name, claim)
	if err != nil || !found || (ref.UID != "" && claim.UID != ref.UID) {
		return "", err
	}
	return describe(ref.Namespace, ref.Name), nil
}

// cleanup deletes the worker pod, the restore PVC and its volume, and any PV restored
// for this DataDownload that was not handed to the target PVC. A PV bound to a user's
// claim is never deleted.
func (h downloadHandler) cleanup(ctx context.Context, m download, log logrus.FieldLogger) error {
	r, dd := h.r, m.dd
	ns, name := r.Options.Namespace, dd.Name
	if err := r.deleteOurs(ctx, dd.UID, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}, log); err != nil {
		return err
	}
	if err := r.deleteWorkerIdentity(ctx, m, log); err != nil {
		return err
	}
	if err := r.deletePVCAndVolume(ctx, m, log); err != nil {
		return err
	}
	list := &corev1.PersistentVolumeList{}
	if err := r.Reader.List(ctx, list, restoredPVLabels(dd)); err != nil {
		return errors.Wrapf(err, "listing PVs labelled %v", restoredPVLabels(dd))
	}
	var targetUID types.UID
	target := &corev1.PersistentVolumeClaim{}
	if c := claimed(m, log); c.TargetPVC != "" { // none recorded: no PV counts as handed over
		found, err := get(ctx, r.Reader, c.TargetNamespace, c.TargetPVC, target)
		if err != nil {
			return err
		}
		if found {
			targetUID = target.UID
		}
	}
	for i := range list.Items {
		pv := &list.Items[i]
		handedOver := (targetUID != "" && target.Spec.VolumeName == pv.Name) ||
			(pv.Spec.ClaimRef != nil && targetUID != "" && pv.Spec.ClaimRef.UID == targetUID)
		if handedOver {
			if orig, ok := pv.Annotations[annReclaimPolicy]; ok && orig != "" {
				if err := r.setReclaimPolicy(ctx, pv, corev1.PersistentVolumeReclaimPolicy(orig)); err != nil {
					return err
				}
			}
			continue
		}
		if claim, err := h.userClaim(ctx, pv); err != nil {
			return err
		} else if claim != "" {
			log.WithField("pv", pv.Name).Warnf("leaving PV alone: it carries label %s=%s but is bound to PVC %s", naming.DataDownloadLabel, name, claim)
			continue
		}
		if err := r.setReclaimPolicy(ctx, pv, corev1.PersistentVolumeReclaimDelete); err != nil {
			return err
		}
		if err := deleteIfExists(ctx, r.Client, pv); err != nil {
			return err
		}
		log.WithField("pv", pv.Name).Info("deleted the restored PV that was not handed over")
	}
	return nil
}

// restoredPVLabels are the labels finish puts on the PV restored for dd (found through
// dd's restore PVC), until it is handed over; cleanup deletes only PVs carrying both.
func restoredPVLabels(dd *velerov2alpha1.DataDownload) client.MatchingLabels {
	return client.MatchingLabels{naming.DataDownloadLabel: dd.Name, naming.MovementUIDLabel: string(dd.UID)}
}

func ddOwner(dd *velerov2alpha1.DataDownload) metav1.OwnerReference {
	return expose.OwnerReference(velerov2alpha1.SchemeGroupVersion.String(), "DataDownload", dd)
}
