package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"github.com/pkg/errors"
	"github.com/sirupsen/logrus"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/mover/config"
	"github.com/snapmove/snapmove/internal/mover/expose"
	"github.com/snapmove/snapmove/internal/naming"
)

// DataUploadReconciler backs up the volumes of DataUploads whose spec.datamover is
// naming.DataMover.
//
// Accepted exposes the user's CSI snapshot in Velero's namespace without touching the
// user's namespace beyond taking the snapshot over: a pre-provisioned
// VolumeSnapshotContent for the same storage snapshot (deletionPolicy Delete) and a
// VolumeSnapshot bound to it, both named after the DataUpload; the user's content is set
// to Retain and the user's VolumeSnapshot and content are deleted (Velero's
// csi_snapshot.go does the same), so the storage snapshot now lives only through ours.
// Then the backup PVC (restored from our snapshot) and the worker pod, which reads the
// PVC and writes a kopia snapshot. Cleanup deletes the pod, the PVC, and our snapshot
// (and with it the storage snapshot).
type DataUploadReconciler struct{ *Reconciler }

// Reconcile implements reconcile.Reconciler.
func (r *DataUploadReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	du := &velerov2alpha1.DataUpload{}
	if err := r.Client.Get(ctx, req.NamespacedName, du); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	return machine[upload]{r.Reconciler, uploadHandler{r.Reconciler}}.reconcile(ctx, upload{du})
}

type uploadHandler struct{ r *Reconciler }

func (h uploadHandler) pvcLabel() string { return "backup PVC" }

func (h uploadHandler) lostWorker(m upload) string {
	return fmt.Sprintf("worker pod %s disappeared while moving data (deleted or evicted); the next backup of this volume will start from the last complete snapshot", key(m))
}

func (h uploadHandler) expose(ctx context.Context, m upload, cfg config.Config, log logrus.FieldLogger) (string, error) {
	r, du := h.r, m.du
	ns, name := r.Options.Namespace, du.Name
	if du.Spec.SnapshotType != "" && du.Spec.SnapshotType != velerov2alpha1.SnapshotTypeCSI {
		return "", permanentf(ReasonPrepareFailed, "snapshotType %q is not supported (only CSI)", du.Spec.SnapshotType)
	}
	if du.Spec.CSISnapshot == nil || du.Spec.CSISnapshot.VolumeSnapshot == "" {
		return "", permanentf(ReasonPrepareFailed, "spec.csiSnapshot.volumeSnapshot is empty")
	}

	ourVS := &snapshotv1.VolumeSnapshot{}
	haveVS, err := get(ctx, r.Reader, ns, name, ourVS)
	if err != nil {
		return "", err
	}
	pod, err := r.pod(ctx, m)
	if err != nil {
		return "", err
	}
	// Nothing is exposed for a DataUpload whose name someone else's object has taken.
	if haveVS {
		if err := expose.NotMadeFor(ourVS, du.UID); err != nil {
			return "", err
		}
	} else if pod == nil {
		if err := r.checkNames(ctx, m, &snapshotv1.VolumeSnapshot{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}},
			&snapshotv1.VolumeSnapshotContent{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
			return "", err
		}
	}
	// The repository is checked before anything is exposed: nothing is created for a
	// backup that cannot be stored. A retry's worker waits for it too: a store that failed
	// the last attempt is waited for here (up to the operation timeout) rather than
	// failing the next attempt at once.
	if pod == nil && (!haveVS || attempt(m) > 1) {
		if wait, err := r.verifyRepository(ctx, m, du.Spec.BackupStorageLocation, du.Spec.SourceNamespace, true, cfg, log); wait != "" || err != nil {
			return wait, err
		}
	}

	var sa workerID  // the worker's identity, once workerSetup has run in this pass
	var cbt *cbtPlan // changed block tracking, planned with the identity
	var srcVS *snapshotv1.VolumeSnapshot
	if !haveVS {
		srcVS = &snapshotv1.VolumeSnapshot{}
		found, err := get(ctx, r.Reader, du.Spec.SourceNamespace, du.Spec.CSISnapshot.VolumeSnapshot, srcVS)
		if err != nil {
			return "", err
		}
		if !found {
			return "", permanentf(ReasonPrepareFailed, "VolumeSnapshot %s/%s does not exist any more", du.Spec.SourceNamespace, du.Spec.CSISnapshot.VolumeSnapshot)
		}
		if !snapshotReady(srcVS) {
			return snapshotNotReady(srcVS), nil
		}
		contentName := *srcVS.Status.BoundVolumeSnapshotContentName
		srcVSC := &snapshotv1.VolumeSnapshotContent{}
		found, err = get(ctx, r.Reader, "", contentName, srcVSC)
		if err != nil {
			return "", err
		}
		if !found {
			return "", permanentf(ReasonPrepareFailed, "VolumeSnapshotContent %s of VolumeSnapshot %s/%s does not exist any more", contentName, srcVS.Namespace, srcVS.Name)
		}
		if srcVSC.Status == nil || srcVSC.Status.SnapshotHandle == nil || *srcVSC.Status.SnapshotHandle == "" {
			return fmt.Sprintf("VolumeSnapshotContent %s has no snapshot handle yet", contentName), nil
		}
		// The worker's identity and settings come before anything is exposed: a mover
		// that may not create the identity, or an invalid annotation, fails with nothing
		// to clean up (our snapshot, deleted in the second after the take-over, would race
		// its binding). Not before the snapshot is ready: a pass that waits makes no calls.
		block, err := h.sourceBlock(ctx, du, srcVSC)
		if err != nil {
			return "", err
		}
		record := cbtRecord(srcVSC)
		if cbt, err = r.changeTracking(ctx, record, block); err != nil {
			return "", err
		}
		if sa, cfg, err = h.workerSetup(ctx, du, cfg, cbt); err != nil {
			return "", err
		}
		p := expose.SnapshotParams{Name: name, Namespace: ns, UID: du.UID, Source: srcVSC, SnapshotClass: srcVS.Spec.VolumeSnapshotClassName}
		if err := expose.Create(ctx, r.Client, r.Reader, expose.BackupVolumeSnapshotContent(p)); err != nil {
			return "", err
		}
		ourVS = expose.BackupVolumeSnapshot(p)
		ourVS.Annotations = record
		ourVS.Annotations[annSourceContent] = contentName
		if err := expose.Create(ctx, r.Client, r.Reader, ourVS); err != nil {
			return "", err
		}
		log.WithField("volumeSnapshot", describe(ns, name)).Info("took over the CSI snapshot")
	}

	pvc := &corev1.PersistentVolumeClaim{}
	havePVC, err := get(ctx, r.Client, ns, name, pvc)
	if err != nil {
		return "", err
	}
	if havePVC {
		if err := expose.NotMadeFor(pvc, du.UID); err != nil {
			return "", err
		}
	} else {
		if pvc, err = h.backupPVC(ctx, du, ourVS, srcVS, cfg); err != nil {
			return "", err
		}
		if err := expose.Create(ctx, r.Client, r.Reader, pvc); err != nil {
			return "", err
		}
	}

	if err := h.takeOver(ctx, du, ourVS, log); err != nil {
		return "", err
	}
	if wait, err := h.accessModeFallback(ctx, du, ourVS, pvc, log); wait != "" || err != nil {
		return wait, err
	}

	if pod == nil {
		if sa.ServiceAccount == "" { // exposed in an earlier pass (a retry, a restarted mover)
			if cbt, err = r.changeTracking(ctx, ourVS.Annotations, isBlock(pvc)); err != nil {
				return "", err
			}
			if sa, cfg, err = h.workerSetup(ctx, du, cfg, cbt); err != nil {
				return "", err
			}
		}
		pod, err := h.workerPod(ctx, du, pvc, sa, cfg, cbt)
		if err != nil {
			return "", err
		}
		if wait, err := r.createWorkerPod(ctx, du.UID, pod, sa, log); wait != "" || err != nil {
			return wait, err
		}
	}
	if pvc.Status.Phase != corev1.ClaimBound && ourVS.Status != nil && ourVS.Status.Error != nil {
		return snapshotNotReady(ourVS), nil
	}
	return "", nil
}

// backupPVC builds the PVC restored from our snapshot: size from the snapshot's restore
// size (else the source PVC's request), volume mode from the source PVC (else the
// snapshot content's source volume mode).
func (h uploadHandler) backupPVC(ctx context.Context, du *velerov2alpha1.DataUpload, ourVS, srcVS *snapshotv1.VolumeSnapshot, cfg config.Config) (*corev1.PersistentVolumeClaim, error) {
	r := h.r
	srcPVC := &corev1.PersistentVolumeClaim{}
	haveSrcPVC, err := get(ctx, r.Reader, du.Spec.SourceNamespace, du.Spec.SourcePVC, srcPVC)
	if err != nil {
		return nil, err
	}
	if srcVS == nil {
		srcVS = &snapshotv1.VolumeSnapshot{}
		if found, err := get(ctx, r.Reader, du.Spec.SourceNamespace, du.Spec.CSISnapshot.VolumeSnapshot, srcVS); err != nil {
			return nil, err
		} else if !found {
			srcVS = nil
		}
	}
	var size resource.Quantity
	switch {
	case srcVS != nil && srcVS.Status != nil && srcVS.Status.RestoreSize != nil && !srcVS.Status.RestoreSize.IsZero():
		size = srcVS.Status.RestoreSize.DeepCopy()
	case ourVS.Status != nil && ourVS.Status.RestoreSize != nil && !ourVS.Status.RestoreSize.IsZero():
		size = ourVS.Status.RestoreSize.DeepCopy()
	case haveSrcPVC:
		size = srcPVC.Spec.Resources.Requests[corev1.ResourceStorage]
	}
	if size.IsZero() {
		return nil, permanentf(ReasonPrepareFailed, "the size of VolumeSnapshot %s/%s is unknown (no restoreSize, and PVC %s/%s is gone)",
			du.Spec.SourceNamespace, du.Spec.CSISnapshot.VolumeSnapshot, du.Spec.SourceNamespace, du.Spec.SourcePVC)
	}

	mode := corev1.PersistentVolumeFilesystem
	if haveSrcPVC && srcPVC.Spec.VolumeMode != nil {
		mode = *srcPVC.Spec.VolumeMode
	} else {
		vsc := &snapshotv1.VolumeSnapshotContent{}
		if found, err := get(ctx, r.Reader, "", du.Name, vsc); err != nil {
			return nil, err
		} else if found && vsc.Spec.SourceVolumeMode != nil {
			mode = *vsc.Spec.SourceVolumeMode
		}
	}

	sc := du.Spec.CSISnapshot.StorageClass
	if sc == "" && haveSrcPVC && srcPVC.Spec.StorageClassName != nil {
		sc = *srcPVC.Spec.StorageClassName
	}
	access := cfg.BackupAccessMode(sc)
	if fallback := ourVS.Annotations[annBackupAccessMode]; fallback != "" {
		access = corev1.PersistentVolumeAccessMode(fallback)
	}
	return expose.BackupPVC(expose.BackupPVCParams{
		Name: du.Name, Namespace: h.r.Options.Namespace, Owner: duOwner(du),
		StorageClass: sc, AccessMode: access, VolumeMode: mode, Size: size,
	}), nil
}

// accessModeFallback: when the driver refuses to provision the backup PVC with a
// read-only access mode, retry once with ReadWriteOnce (remembered on our snapshot).
func (h uploadHandler) accessModeFallback(ctx context.Context, du *velerov2alpha1.DataUpload, ourVS *snapshotv1.VolumeSnapshot, pvc *corev1.PersistentVolumeClaim, log logrus.FieldLogger) (string, error) {
	r := h.r
	if pvc.Status.Phase == corev1.ClaimBound || len(pvc.Spec.AccessModes) != 1 || pvc.Spec.AccessModes[0] == corev1.ReadWriteOnce || pvc.UID == "" {
		return "", nil
	}
	ev := r.latestEvent(ctx, pvc.UID)
	if ev == nil || ev.Type != corev1.EventTypeWarning || ev.Reason != "ProvisioningFailed" || !mentionsAccessMode(ev.Message) {
		return "", nil
	}
	patch := client.MergeFrom(ourVS.DeepCopy())
	if ourVS.Annotations == nil {
		ourVS.Annotations = map[string]string{}
	}
	ourVS.Annotations[annBackupAccessMode] = string(corev1.ReadWriteOnce)
	if err := r.Client.Patch(ctx, ourVS, patch); err != nil {
		return "", errors.Wrapf(err, "annotating VolumeSnapshot %s/%s", ourVS.Namespace, ourVS.Name)
	}
	if err := deleteChecked(ctx, r.Client, pvc); err != nil { // ours: checked by expose
		return "", err
	}
	// A pod created for the refused PVC would wait for it forever.
	if err := r.deleteOurs(ctx, du.UID, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: pvc.Namespace, Name: pvc.Name}}, log); err != nil {
		return "", err
	}
	msg := fmt.Sprintf("backup PVC %s/%s cannot be provisioned %s (%s); retrying with ReadWriteOnce", pvc.Namespace, pvc.Name, pvc.Spec.AccessModes[0], oneLine(ev.Message))
	log.Warn(msg)
	return msg, nil
}

func mentionsAccessMode(msg string) bool {
	for _, s := range []string{"access mode", "accessmode", "AccessMode", "ReadOnlyMany", "MULTI_NODE_READER_ONLY", "readonly", "read-only"} {
		if containsFold(msg, s) {
			return true
		}
	}
	return false
}

// workerSetup creates the worker's identity (workerIdentity, returning its account;
// allowed to read VolumeSnapshots when cbt has a metadata service to ask) and gives cfg
// the DataUpload's own verify and compression; an invalid annotation is a permanent
// error.
func (h uploadHandler) workerSetup(ctx context.Context, du *velerov2alpha1.DataUpload, cfg config.Config, cbt *cbtPlan) (workerID, config.Config, error) {
	var err error
	if cfg.Verify, err = backupVerify(du, cfg.Verify); err != nil {
		return workerID{}, cfg, err
	}
	if cfg.Compression, err = backupCompression(du, cfg.Compression); err != nil {
		return workerID{}, cfg, err
	}
	id, err := h.r.workerIdentity(ctx, expose.Backup, du.Name, duOwner(du), du.Spec.BackupStorageLocation, cbt != nil && cbt.service != nil)
	return id, cfg, err
}

// workerPod builds the worker pod; id is workerIdentity's, cfg carries the
// DataUpload's own verify and compression.
func (h uploadHandler) workerPod(ctx context.Context, du *velerov2alpha1.DataUpload, pvc *corev1.PersistentVolumeClaim, id workerID, cfg config.Config, cbt *cbtPlan) (*corev1.Pod, error) {
	affinity, err := h.sourceTopology(ctx, du)
	if err != nil {
		return nil, err
	}
	readOnly := len(pvc.Spec.AccessModes) == 1 && pvc.Spec.AccessModes[0] == corev1.ReadOnlyMany
	return expose.WorkerPod(h.r.podParams(expose.Backup, du.Name, duOwner(du), id, pvc.Name, isBlock(pvc), cfg, func(p *expose.PodParams) {
		p.ReadOnlyClaim = readOnly
		p.NodeAffinity = affinity
		cbt.apply(p, du.Name) // our VolumeSnapshot is named after the DataUpload
	})), nil
}

func isBlock(pvc *corev1.PersistentVolumeClaim) bool {
	return pvc.Spec.VolumeMode != nil && *pvc.Spec.VolumeMode == corev1.PersistentVolumeBlock
}

// sourceTopology is the source PV's required node affinity when the backup PVC's class
// binds on first consumer: the volume restored from the snapshot must be reachable
// where the source was (Velero 1.18 does the same, GetVolumeTopology).
func (h uploadHandler) sourceTopology(ctx context.Context, du *velerov2alpha1.DataUpload) (*corev1.NodeSelector, error) {
	r := h.r
	wffc, err := r.waitsForFirstConsumer(ctx, du.Spec.CSISnapshot.StorageClass)
	if err != nil || !wffc {
		return nil, err
	}
	srcPVC := &corev1.PersistentVolumeClaim{}
	if found, err := get(ctx, r.Reader, du.Spec.SourceNamespace, du.Spec.SourcePVC, srcPVC); err != nil || !found || srcPVC.Spec.VolumeName == "" {
		return nil, err
	}
	pv := &corev1.PersistentVolume{}
	if found, err := get(ctx, r.Reader, "", srcPVC.Spec.VolumeName, pv); err != nil || !found {
		return nil, err
	}
	if pv.Spec.NodeAffinity == nil || pv.Spec.NodeAffinity.Required == nil {
		return nil, nil
	}
	return pv.Spec.NodeAffinity.Required.DeepCopy(), nil
}

func (h uploadHandler) record(m upload, res expose.Result) {
	du := m.du
	du.Status.SnapshotID = res.SnapshotID
	du.Status.IncrementalBytes = res.IncrementalBytes
	du.Status.Progress.TotalBytes = res.TotalBytes
	du.Status.Progress.BytesDone = res.TotalBytes
	if res.Verification != "" {
		setAnnotation(du, annVerification, res.Verification)
	}
	if res.Block != nil {
		if b, err := json.Marshal(res.Block); err == nil {
			setAnnotation(du, naming.BlockReadAnnotation, string(b))
		}
	}
}

func (h uploadHandler) finish(ctx context.Context, m upload, log logrus.FieldLogger) (string, error) {
	if m.du.Status.SnapshotID == "" {
		return "", permanentf(ReasonInvalidResult, "worker pod %s reported success without a snapshot ID", key(m))
	}
	err := h.cleanup(ctx, m, log)
	if p := cleanupPending(""); errors.As(err, &p) {
		return string(p), nil
	}
	return "", err
}

// doneMessage says that an empty volume was stored, and what was verified (recorded in
// annVerification, which survives a restart between the record and the end).
func (h uploadHandler) doneMessage(m upload) string {
	var parts []string
	if m.progress().TotalBytes == 0 {
		parts = append(parts, "the volume was empty; an empty snapshot was stored")
	}
	if br := blockRead(m.du); br != nil {
		parts = append(parts, br.String())
	}
	if v := m.du.Annotations[annVerification]; v != "" {
		parts = append(parts, v)
	}
	return strings.Join(parts, "; ")
}

// cleanup deletes the worker pod and its identity, the backup PVC (and its volume), our snapshot (and
// with it the storage snapshot) and the user's VolumeSnapshot if it is still there. Our
// snapshot waits for its binding (cleanupPending), up to bindGrace. Of the objects named
// after the DataUpload, only those made for it are deleted (deleteOurs). An upload that
// ends without a snapshot then forgets its checkpoints (forgetCheckpoints).
func (h uploadHandler) cleanup(ctx context.Context, m upload, log logrus.FieldLogger) error {
	r, du := h.r, m.du
	ns, name := r.Options.Namespace, du.Name
	if err := r.deleteOurs(ctx, du.UID, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}, log); err != nil {
		return err
	}
	if err := r.deleteWorkerIdentity(ctx, m, log); err != nil {
		return err
	}
	if err := r.deletePVCAndVolume(ctx, m, log); err != nil {
		return err
	}
	if err := h.deleteSnapshot(ctx, ns, name, du.UID, log); err != nil {
		return err
	}
	// The user's snapshot as recorded at the claim, never as the spec says now.
	if c := claimed(m, log); c.SourceNamespace != "" && c.VolumeSnapshot != "" {
		if err := deleteIfExists(ctx, r.Client, &snapshotv1.VolumeSnapshot{ObjectMeta: metav1.ObjectMeta{
			Namespace: c.SourceNamespace, Name: c.VolumeSnapshot,
		}}); err != nil {
			return err
		}
	}
	if err := h.forgetCheckpoints(ctx, m, log); err != nil {
		return err
	}
	log.Debug("cleaned up")
	return nil
}

func duOwner(du *velerov2alpha1.DataUpload) metav1.OwnerReference {
	return expose.OwnerReference(velerov2alpha1.SchemeGroupVersion.String(), "DataUpload", du)
}

func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}
