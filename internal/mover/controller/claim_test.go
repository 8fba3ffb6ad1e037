package controller

import (
	"context"
	"testing"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"github.com/stretchr/testify/require"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	"github.com/vmware-tanzu/velero/pkg/builder"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/naming"
)

const otherNS = "other"

func victimVS() *snapshotv1.VolumeSnapshot {
	return builder.ForVolumeSnapshot(otherNS, "victim").SourcePVC("victim-pvc").Status().
		BoundVolumeSnapshotContentName("victim-content").ReadyToUse(true).RestoreSize("1Gi").Result()
}

func victimPVC() *corev1.PersistentVolumeClaim {
	pvc := targetPVC("immediate")
	pvc.Namespace, pvc.Name, pvc.UID = otherNS, "victim-pvc", "victim-uid"
	return pvc
}

// rewriteUpload points du's spec at another namespace's snapshot and claim.
func rewriteUpload(du *velerov2alpha1.DataUpload) {
	du.Spec.SourceNamespace, du.Spec.SourcePVC, du.Spec.CSISnapshot.VolumeSnapshot = otherNS, "victim-pvc", "victim"
}

// rewriteDownload points dd's spec at another namespace's claim.
func rewriteDownload(dd *velerov2alpha1.DataDownload) {
	dd.Spec.TargetVolume = velerov2alpha1.TargetVolumeSpec{Namespace: otherNS, PVC: "victim-pvc"}
}

// TestSpecRewrittenAfterClaim: the mover acts only on what it recorded when it claimed
// a movement. A spec rewritten afterwards (by whoever may edit DataUploads: no longer the
// worker, whose Role grants only get) fails the movement naming the change, and cleanup
// and the restore's hand-over act on the recorded snapshot and claim, never on the
// other namespace's ones the spec now names.
func TestSpecRewrittenAfterClaim(t *testing.T) {
	wantUpload := `the spec of DataUpload velero/` + duName + ` changed after the mover accepted it (spec.sourceNamespace "app" → "other", ` +
		`spec.sourcePVC "data" → "victim-pvc", spec.csiSnapshot.volumeSnapshot "snap-1" → "victim")`
	wantDownload := `the spec of DataDownload velero/` + ddName + ` changed after the mover accepted it (spec.targetVolume.namespace "app" → "other", ` +
		`spec.targetVolume.pvc "data-0" → "victim-pvc")`
	for _, tc := range []struct {
		name string
		kind string
		// start is the movement as found; claimFirst has the mover claim a New one before the rewrite.
		start      func() client.Object
		claimFirst bool
		extra      []client.Object
		rewrite    func(client.Object)
		wantPhase  string
		wantMsg    string
		// recordedGone: the recorded user's snapshot was deleted by cleanup.
		recordedGone bool
	}{{
		name: "upload rewritten after the claim", kind: "DataUpload", claimFirst: true,
		start:     func() client.Object { return dataUpload(velerov2alpha1.DataUploadPhaseNew) },
		rewrite:   func(o client.Object) { rewriteUpload(o.(*velerov2alpha1.DataUpload)) },
		wantPhase: phaseFailed, wantMsg: wantUpload, recordedGone: true,
	}, {
		name: "upload ended with its cleanup pending", kind: "DataUpload",
		start: func() client.Object {
			du := dataUpload(velerov2alpha1.DataUploadPhaseFailed)
			recordClaim(upload{du})
			return du
		},
		rewrite:   func(o client.Object) { rewriteUpload(o.(*velerov2alpha1.DataUpload)) },
		wantPhase: phaseFailed, recordedGone: true,
	}, {
		name: "upload whose record was tampered with", kind: "DataUpload",
		start: func() client.Object {
			du := dataUpload(velerov2alpha1.DataUploadPhaseAccepted)
			setAnnotation(du, annClaim, `{"sourceNamespace": 1}`)
			return du
		},
		rewrite:   func(client.Object) {},
		wantPhase: phaseFailed, wantMsg: "reading annotation snapmove.io/claimed-spec",
	}, {
		name: "restore rewritten after the claim", kind: "DataDownload", claimFirst: true,
		start:     func() client.Object { return dataDownload(velerov2alpha1.DataDownloadPhaseNew) },
		rewrite:   func(o client.Object) { rewriteDownload(o.(*velerov2alpha1.DataDownload)) },
		wantPhase: phaseFailed, wantMsg: wantDownload,
	}, {
		name: "restore rewritten before the hand-over", kind: "DataDownload",
		start: func() client.Object {
			dd := dataDownload(velerov2alpha1.DataDownloadPhaseInProgress)
			recordClaim(download{dd})
			setAnnotation(dd, annResultRecorded, "true")
			return dd
		},
		rewrite:   func(o client.Object) { rewriteDownload(o.(*velerov2alpha1.DataDownload)) },
		wantPhase: phaseFailed, wantMsg: wantDownload,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			k := kindsUnderTest[0]
			if tc.kind == "DataDownload" {
				k = kindsUnderTest[1]
			}
			obj := tc.start()
			objs := append([]client.Object{obj, victimVS(), victimPVC(), targetPVC("immediate"), storageClass("immediate", false)}, backupFixtures(nil)[1:]...)
			e := newEnv(t, nil, dedupe(objs)...)
			ctx := context.Background()
			if tc.claimFirst {
				_, err := k.reconcile(ctx, e.r)
				require.NoError(t, err)
				got := k.object("")
				require.NoError(t, e.c.Get(ctx, client.ObjectKeyFromObject(obj), got))
				require.Equal(t, phaseAccepted, asMovement(got).phase())
				require.Contains(t, got.GetAnnotations(), annClaim, "recorded in the claim's update")
			}
			got := k.object("")
			require.NoError(t, e.c.Get(ctx, client.ObjectKeyFromObject(obj), got))
			e.update(got, func() { tc.rewrite(got) })

			_, err := k.reconcile(ctx, e.r)
			require.NoError(t, err)
			require.NoError(t, e.c.Get(ctx, client.ObjectKeyFromObject(obj), got))
			m := asMovement(got)
			require.Equal(t, tc.wantPhase, m.phase(), m.message())
			if tc.wantMsg != "" {
				require.Contains(t, m.message(), tc.wantMsg)
			}
			require.False(t, hasFinalizer(got), "cleanup done")

			require.True(t, e.exists(victimVS()), "the other namespace's snapshot is untouched")
			victim := victimPVC()
			require.True(t, e.exists(victim))
			require.Empty(t, victim.Spec.VolumeName, "nothing is bound to the other namespace's claim")
			require.Equal(t, tc.recordedGone, !e.exists(srcVS()), "cleanup acts on the recorded snapshot")
		})
	}
}

// TestClaimRecordedByALaterMover: a movement claimed by a mover that kept no record gets
// one at its next pass, from its spec, and then goes on.
func TestClaimRecordedByALaterMover(t *testing.T) {
	du := dataUpload(velerov2alpha1.DataUploadPhaseAccepted)
	e := newEnv(t, nil, backupFixtures(du)...)
	e.reconcileDU()
	got := e.du()
	c, found, err := recorded(upload{got})
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, claim{SourceNamespace: appNS, BackupStorageLocation: "default", SourcePVC: "data", VolumeSnapshot: "snap-1", StorageClass: "csi-sc"}, c)
	require.Equal(t, velerov2alpha1.DataUploadPhaseAccepted, got.Status.Phase, got.Status.Message)
	require.True(t, e.exists(ourPod(duName)), "and goes on")
}

// TestHandOverUsesTheRecordedTarget: the hand-over binds the restored volume to the claim
// recorded at the claim even when the spec in hand names another (a spec rewritten
// between the check and the act, e.g. re-read after a write conflict).
func TestHandOverUsesTheRecordedTarget(t *testing.T) {
	dd := dataDownload(velerov2alpha1.DataDownloadPhaseInProgress)
	recordClaim(download{dd})
	setAnnotation(dd, annResultRecorded, "true")
	rewriteDownload(dd)
	pv := builder.ForPersistentVolume("pv-restored").ReclaimPolicy(corev1.PersistentVolumeReclaimRetain).Phase(corev1.VolumeReleased).Result()
	pv.Labels = map[string]string{naming.DataDownloadLabel: ddName, naming.MovementUIDLabel: string(dd.UID)}
	pv.Annotations = map[string]string{annReclaimPolicy: "Delete"}
	e := newEnv(t, nil, dd, pv, targetPVC("immediate"), victimPVC())

	wait, err := downloadHandler{e.r}.finish(context.Background(), download{dd}, e.r.Log)
	require.NoError(t, err)
	require.Equal(t, "waiting for PVC app/data-0 to bind to PV pv-restored", wait)
	require.True(t, e.exists(pv))
	require.Equal(t, appNS, pv.Spec.ClaimRef.Namespace)
	require.Equal(t, "data-0", pv.Spec.ClaimRef.Name)
	target := targetPVC("")
	require.True(t, e.exists(target))
	require.Equal(t, "pv-restored", target.Spec.VolumeName)
	victim := victimPVC()
	require.True(t, e.exists(victim))
	require.Empty(t, victim.Spec.VolumeName, "the claim the spec names now is untouched")
}
