package controller

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	"github.com/vmware-tanzu/velero/pkg/builder"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/mover/expose"
	"github.com/snapmove/snapmove/internal/naming"
)

const selectorValue = "app.data-0.abcde"

func dataDownload(phase velerov2alpha1.DataDownloadPhase) *velerov2alpha1.DataDownload {
	dd := builder.ForDataDownload(veleroNS, ddName).DataMover(naming.DataMover).BackupStorageLocation("default").
		SourceNamespace(appNS).SnapshotID("k0123").
		TargetVolume(velerov2alpha1.TargetVolumeSpec{Namespace: appNS, PVC: "data-0"}).Phase(phase).Result()
	dd.UID = "dd-uid"
	dd.Spec.SnapshotSize = 3<<30 + 5
	if phase != velerov2alpha1.DataDownloadPhaseNew && phase != "" {
		dd.Finalizers = []string{naming.MoverFinalizer}
		dd.Status.AcceptedTimestamp = &metav1.Time{Time: t0}
	}
	return dd
}

// restoredVolume is the restore PVC as the mover made it for dataDownload, bound to the
// PV the worker wrote.
func restoredVolume() (*corev1.PersistentVolumeClaim, *corev1.PersistentVolume) {
	pvc := builder.ForPersistentVolumeClaim(veleroNS, ddName).VolumeName("pv-restored").Phase(corev1.ClaimBound).Result()
	pvc.ObjectMeta = ourMeta(veleroNS, ddName)
	pvc.UID = "restore-pvc-uid"
	pv := builder.ForPersistentVolume("pv-restored").ClaimRef(veleroNS, ddName).Phase(corev1.VolumeBound).Result()
	pv.Spec.ClaimRef.UID = pvc.UID
	return pvc, pv
}

func targetPVC(sc string) *corev1.PersistentVolumeClaim {
	pvc := builder.ForPersistentVolumeClaim(appNS, "data-0").StorageClass(sc).
		RequestResource(corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}).
		Selector(&metav1.LabelSelector{MatchLabels: map[string]string{dynamicPVRestoreLabel: selectorValue}}).
		Phase(corev1.ClaimPending).Result()
	pvc.UID = "target-uid"
	pvc.Spec.AccessModes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}
	pvc.Spec.VolumeMode = ptr.To(corev1.PersistentVolumeFilesystem)
	return pvc
}

func TestDDAcceptedExposes(t *testing.T) {
	t.Run("target missing", func(t *testing.T) {
		e := newEnv(t, nil, dataDownload(velerov2alpha1.DataDownloadPhaseAccepted), bsl())
		e.reconcileDD()
		require.Equal(t, "waiting: target PVC app/data-0 does not exist yet", e.dd().Status.Message)
		require.Equal(t, []string{"default/app/open"}, e.repos.verified, "restores never create the repository")
	})
	t.Run("target already bound", func(t *testing.T) {
		target := targetPVC("immediate")
		target.Spec.VolumeName = "pv-x"
		e := newEnv(t, nil, dataDownload(velerov2alpha1.DataDownloadPhaseAccepted), bsl(), target, storageClass("immediate", false))
		e.reconcileDD()
		dd := e.dd()
		require.Equal(t, velerov2alpha1.DataDownloadPhaseFailed, dd.Status.Phase)
		require.Equal(t, "target PVC app/data-0 is already bound to PV pv-x; the restore does not write over it", dd.Status.Message)
	})
	t.Run("nothing to restore from", func(t *testing.T) {
		e := newEnv(t, nil, dataDownload(velerov2alpha1.DataDownloadPhaseAccepted), bsl(), targetPVC("immediate"))
		e.repos.verifyErr = datapath.Permanent(ReasonRepositoryError, errString("no kopia repository at s3://bucket/velero/kopia/app/"))
		e.reconcileDD()
		dd := e.dd()
		require.Equal(t, velerov2alpha1.DataDownloadPhaseFailed, dd.Status.Phase)
		require.Equal(t, "no kopia repository at s3://bucket/velero/kopia/app/", dd.Status.Message)
		require.False(t, e.exists(ourPVC(ddName)))
	})
	t.Run("first consumer not scheduled yet", func(t *testing.T) {
		e := newEnv(t, nil, dataDownload(velerov2alpha1.DataDownloadPhaseAccepted), bsl(), targetPVC("wffc"), storageClass("wffc", true))
		e.reconcileDD()
		require.Contains(t, e.dd().Status.Message, "target PVC app/data-0 waits for a pod to use it (StorageClass wffc binds on first consumer)")
		require.False(t, e.exists(ourPVC(ddName)))

		e.cfg.RestoreIgnoreDelayBinding = true
		e.reconcileDD()
		require.True(t, e.exists(ourPVC(ddName)))
	})
	t.Run("selected node", func(t *testing.T) {
		target := targetPVC("wffc")
		target.Annotations = map[string]string{expose.SelectedNodeAnnotation: nodeA}
		e := newEnv(t, nil, dataDownload(velerov2alpha1.DataDownloadPhaseAccepted), bsl(), target, storageClass("wffc", true))
		e.reconcileDD()
		pvc := ourPVC(ddName)
		require.True(t, e.exists(pvc))
		require.Equal(t, "1Gi", pvc.Spec.Resources.Requests.Storage().String(), "the target request: a filesystem snapshot's logical size does not size the volume")
		require.Equal(t, "wffc", *pvc.Spec.StorageClassName)
		require.Equal(t, nodeA, pvc.Annotations[expose.SelectedNodeAnnotation])
		require.Equal(t, "DataDownload", pvc.OwnerReferences[0].Kind)
		pod := ourPod(ddName)
		require.True(t, e.exists(pod))
		require.Equal(t, nodeA, pod.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchFields[0].Values[0])
		require.Equal(t, ddName, pod.Labels[naming.DataDownloadLabel])
		require.Contains(t, pod.Spec.Containers[0].Command, "--data-download="+ddName)
		require.Contains(t, pod.Spec.Containers[0].Args, "--write-sparse-default=true")

		e.update(pod, func() { pod.Spec.NodeName, pod.Status.Phase = nodeA, corev1.PodRunning })
		e.reconcileDD()
		require.Equal(t, velerov2alpha1.DataDownloadPhasePrepared, e.dd().Status.Phase)
		e.reconcileDD()
		require.Equal(t, velerov2alpha1.DataDownloadPhaseInProgress, e.dd().Status.Phase)
	})
}

// The full hand-over, one reconcile per step, with the PV controller's binding
// simulated in between.
func TestDDRebind(t *testing.T) {
	dd := dataDownload(velerov2alpha1.DataDownloadPhaseInProgress)
	dd.Status.Node = nodeA
	restorePVC, pv := restoredVolume()
	pv.Spec.PersistentVolumeReclaimPolicy = corev1.PersistentVolumeReclaimDelete
	pod := terminated(workerPod(ddName, corev1.PodSucceeded), "Completed", `{"totalBytes":4096}`, 0)
	sa, role, binding := identityObjects(ddName)
	deletes := map[string]int{}
	funcs := &interceptor.Funcs{Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
		deletes[kindOf(obj)]++
		return c.Delete(ctx, obj, opts...)
	}}
	e := newEnv(t, funcs, dd, restorePVC, pv, pod, targetPVC("immediate"), sa, role, binding)

	e.reconcileDD()
	got := e.dd()
	require.Equal(t, velerov2alpha1.DataDownloadPhaseInProgress, got.Status.Phase)
	require.Equal(t, int64(4096), got.Status.Progress.BytesDone)
	require.False(t, e.exists(ourPod(ddName)))
	require.False(t, e.exists(role), "the worker's identity goes with its pod")
	require.False(t, e.exists(binding))
	require.False(t, e.exists(sa))
	require.False(t, e.exists(ourPVC(ddName)))
	pvNow := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-restored"}}
	require.True(t, e.exists(pvNow))
	require.Equal(t, corev1.PersistentVolumeReclaimRetain, pvNow.Spec.PersistentVolumeReclaimPolicy)
	require.Equal(t, "Delete", pvNow.Annotations[annReclaimPolicy])
	require.Equal(t, ddName, pvNow.Labels[naming.DataDownloadLabel])
	require.Equal(t, "dd-uid", pvNow.Labels[naming.MovementUIDLabel])

	// A restart here: the pod is gone but the result is recorded; it carries on.
	e.reconcileDD()
	target := targetPVC("")
	require.True(t, e.exists(target))
	require.Equal(t, "pv-restored", target.Spec.VolumeName)
	require.True(t, e.exists(pvNow))
	require.Equal(t, appNS, pvNow.Spec.ClaimRef.Namespace)
	require.Equal(t, "data-0", pvNow.Spec.ClaimRef.Name)
	require.EqualValues(t, "target-uid", pvNow.Spec.ClaimRef.UID)
	require.Equal(t, selectorValue, pvNow.Labels[dynamicPVRestoreLabel])
	require.Equal(t, "data moved; finishing: waiting for PVC app/data-0 to bind to PV pv-restored", e.dd().Status.Message)

	// The PV controller binds them.
	e.update(pvNow, func() { pvNow.Status.Phase = corev1.VolumeBound })
	e.update(target, func() { target.Status.Phase = corev1.ClaimBound })
	e.reconcileDD()
	got = e.dd()
	require.Equal(t, velerov2alpha1.DataDownloadPhaseCompleted, got.Status.Phase)
	require.Empty(t, got.Status.Message)
	require.Equal(t, int64(4096), got.Status.Progress.TotalBytes)
	require.NotContains(t, got.Finalizers, naming.MoverFinalizer)
	require.True(t, e.exists(pvNow))
	require.Equal(t, corev1.PersistentVolumeReclaimDelete, pvNow.Spec.PersistentVolumeReclaimPolicy)
	require.NotContains(t, pvNow.Annotations, annReclaimPolicy)
	require.NotContains(t, pvNow.Labels, naming.DataDownloadLabel, "the user's volume carries no mover label")
	require.NotContains(t, pvNow.Labels, naming.MovementUIDLabel)
	e.requireEvent(ReasonCompleted)
	// The pod, its identity and the restore PVC were deleted once, by the first pass,
	// not again by every pass that waited for the bind.
	require.Equal(t, map[string]int{"Pod": 1, "ServiceAccount": 1, "Role": 1, "RoleBinding": 1, "PersistentVolumeClaim": 1}, deletes)
}

func TestDDTargetDeletedDuringHandOver(t *testing.T) {
	dd := dataDownload(velerov2alpha1.DataDownloadPhaseInProgress)
	dd.Status.Message = "reworded by a later version"
	dd.Annotations = map[string]string{annResultRecorded: "true"}
	pv := builder.ForPersistentVolume("pv-restored").ReclaimPolicy(corev1.PersistentVolumeReclaimRetain).Phase(corev1.VolumeReleased).Result()
	pv.Labels = restoredPVLabels(dd)
	pv.Annotations = map[string]string{annReclaimPolicy: "Delete"}
	e := newEnv(t, nil, dd, pv)
	e.reconcileDD()
	got := e.dd()
	require.Equal(t, velerov2alpha1.DataDownloadPhaseFailed, got.Status.Phase)
	require.Equal(t, "target PVC app/data-0 was deleted before the restored PV pv-restored could be bound to it", got.Status.Message)
	require.False(t, e.exists(&corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-restored"}}), "the orphaned PV is deleted")
	e.requireEvent(ReasonHandOverFailed)
}

func TestDDFailureCleansUp(t *testing.T) {
	dd := dataDownload(velerov2alpha1.DataDownloadPhaseInProgress)
	restorePVC, pv := restoredVolume()
	pv.Spec.PersistentVolumeReclaimPolicy = corev1.PersistentVolumeReclaimRetain
	pod := terminated(workerPod(ddName, corev1.PodFailed), "Error", "restoring snapshot k0123: snapshot not found", 1)
	e := newEnv(t, nil, dd, restorePVC, pv, pod, targetPVC("immediate"))
	e.reconcileDD()
	got := e.dd()
	require.Equal(t, velerov2alpha1.DataDownloadPhaseFailed, got.Status.Phase)
	require.Equal(t, "worker pod velero/"+ddName+" failed: restoring snapshot k0123: snapshot not found", got.Status.Message)
	require.False(t, e.exists(ourPVC(ddName)))
	pvNow := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-restored"}}
	require.True(t, e.exists(pvNow))
	require.Equal(t, corev1.PersistentVolumeReclaimDelete, pvNow.Spec.PersistentVolumeReclaimPolicy, "the restore PVC's volume is not leaked")
	require.True(t, e.exists(targetPVC("")), "the user's PVC is left alone")
}

func TestDDCancel(t *testing.T) {
	for _, phase := range []velerov2alpha1.DataDownloadPhase{velerov2alpha1.DataDownloadPhaseNew, velerov2alpha1.DataDownloadPhaseAccepted, velerov2alpha1.DataDownloadPhasePrepared, velerov2alpha1.DataDownloadPhaseInProgress} {
		t.Run(string(phase), func(t *testing.T) {
			dd := dataDownload(phase)
			dd.Spec.Cancel = true
			e := newEnv(t, nil, dd, bsl(), targetPVC("immediate"), workerPod(ddName, corev1.PodRunning), ourPVC(ddName))
			e.reconcileDD()
			if phase == velerov2alpha1.DataDownloadPhaseInProgress {
				require.Equal(t, velerov2alpha1.DataDownloadPhaseCanceling, e.dd().Status.Phase)
				e.reconcileDD()
			}
			require.Equal(t, velerov2alpha1.DataDownloadPhaseCanceled, e.dd().Status.Phase)
			require.False(t, e.exists(ourPod(ddName)))
			require.False(t, e.exists(ourPVC(ddName)))
		})
	}
}

// A DataUploadResult of a Failed or Canceled upload has no snapshot ID (Velero keeps
// every DataUpload of a PartiallyFailed backup): the restore of that PVC fails at once,
// nothing is exposed, and no empty volume is ever bound in place of the data.
func TestDDWithoutSnapshotIDFailsBeforeExposing(t *testing.T) {
	dd := dataDownload(velerov2alpha1.DataDownloadPhaseAccepted)
	dd.Spec.SnapshotID = ""
	e := newEnv(t, nil, dd, bsl(), targetPVC("immediate"), storageClass("immediate", false))
	e.reconcileDD()
	got := e.dd()
	require.Equal(t, velerov2alpha1.DataDownloadPhaseFailed, got.Status.Phase)
	require.Equal(t, "spec.snapshotID is empty: the backup holds no data for PVC app/data-0 (its upload did not complete); nothing is restored rather than an empty volume", got.Status.Message)
	require.Empty(t, e.repos.verified, "no repository check")
	require.False(t, e.exists(ourPVC(ddName)), "no restore PVC")
	require.False(t, e.exists(ourPod(ddName)), "no worker pod")
	e.requireEvent(ReasonPrepareFailed)
}

// A PV that still carries our label from an earlier DataDownload of the same name (as
// PVs restored before the label was dropped at hand-over do) but is bound to a user's
// claim is never deleted by a later cleanup.
func TestDDCleanupNeverDeletesAUsersVolume(t *testing.T) {
	dd := dataDownload(velerov2alpha1.DataDownloadPhaseFailed) // ended, finalizer left: cleanup runs
	live := builder.ForPersistentVolume("pv-live").ClaimRef("other", "db").Phase(corev1.VolumeBound).Result()
	live.Labels = map[string]string{naming.DataDownloadLabel: ddName}
	live.Spec.ClaimRef.UID = "db-uid"
	claim := builder.ForPersistentVolumeClaim("other", "db").VolumeName("pv-live").Phase(corev1.ClaimBound).Result()
	claim.UID = "db-uid"
	orphan := builder.ForPersistentVolume("pv-orphan").ReclaimPolicy(corev1.PersistentVolumeReclaimRetain).Result()
	orphan.Labels = restoredPVLabels(dd)
	e := newEnv(t, nil, dd, live, claim, orphan, targetPVC("immediate"))
	e.reconcileDD()
	require.True(t, e.exists(&corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-live"}}), "a user's volume stays")
	require.False(t, e.exists(&corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-orphan"}}), "our orphan goes")
}

// TestDDRebindPointsThePVFirst: the restored PV names the target PVC before the PVC names
// the PV, so that the claim's change, the last, makes the PV controller bind the pair at
// once (the other order waits for its periodic claim resync).
func TestDDRebindPointsThePVFirst(t *testing.T) {
	dd := dataDownload(velerov2alpha1.DataDownloadPhaseInProgress)
	dd.Status.Node = nodeA
	dd.Annotations = map[string]string{annResultRecorded: "true"}
	pv := builder.ForPersistentVolume("pv-restored").ClaimRef(veleroNS, ddName).ReclaimPolicy(corev1.PersistentVolumeReclaimRetain).Phase(corev1.VolumeReleased).Result()
	pv.Labels = restoredPVLabels(dd)
	var writes []string
	record := func(obj client.Object) {
		switch obj.(type) {
		case *corev1.PersistentVolume:
			writes = append(writes, "pv")
		case *corev1.PersistentVolumeClaim:
			writes = append(writes, "pvc")
		}
	}
	funcs := &interceptor.Funcs{
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			record(obj)
			return c.Update(ctx, obj, opts...)
		},
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
			record(obj)
			return c.Patch(ctx, obj, patch, opts...)
		},
	}
	e := newEnv(t, funcs, dd, pv, targetPVC("immediate"))
	e.reconcileDD()
	require.Equal(t, []string{"pv", "pvc"}, writes)
	target := targetPVC("")
	require.True(t, e.exists(target))
	require.Equal(t, "pv-restored", target.Spec.VolumeName)
}
