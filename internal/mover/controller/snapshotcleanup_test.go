package controller

import (
	"testing"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"github.com/stretchr/testify/require"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/snapmove/snapmove/internal/naming"
)

const contentFinalizer = "snapshot.storage.kubernetes.io/volumesnapshotcontent-bound-protection"

// takenOver is our VolumeSnapshot and content right after the take-over, created at t0:
// the snapshot controller has bound the content (its ref has the snapshot's UID) when
// contentBound, and the snapshot's status names the content when snapshotBound.
func takenOver(contentBound, snapshotBound bool) (*snapshotv1.VolumeSnapshot, *snapshotv1.VolumeSnapshotContent) {
	vs := ourVS()
	vs.UID = "our-vs-uid"
	vs.CreationTimestamp = metav1.NewTime(t0)
	vs.Annotations = map[string]string{annSourceContent: "snapcontent-1"}
	vs.Spec.Source.VolumeSnapshotContentName = ptr.To(duName)
	if snapshotBound {
		vs.Status = &snapshotv1.VolumeSnapshotStatus{BoundVolumeSnapshotContentName: ptr.To(duName)}
	}
	vsc := ourVSC()
	vsc.Spec.DeletionPolicy = snapshotv1.VolumeSnapshotContentDelete
	vsc.Spec.Source.SnapshotHandle = ptr.To("handle-1")
	vsc.Spec.VolumeSnapshotRef = corev1.ObjectReference{Namespace: veleroNS, Name: duName}
	if contentBound {
		vsc.Spec.VolumeSnapshotRef.UID = vs.UID
		vsc.Finalizers = []string{contentFinalizer}
	}
	return vs, vsc
}

// A movement that ends in the second after the take-over keeps our finalizer until the
// snapshot controller has bound our VolumeSnapshot: deleted before, it would leave its
// content bound to nothing, held by the bound-protection finalizer for ever (a leak the
// e2e suite found). The failure itself is not held back.
func TestCleanupWaitsForOurSnapshotBinding(t *testing.T) {
	for _, tc := range []struct {
		name string
		// then makes the next pass possible: the binding shows, or the grace passes.
		then func(e *env)
	}{{
		name: "bound a second later",
		then: func(e *env) {
			vs := ourVS()
			e.update(vs, func() {
				vs.Status = &snapshotv1.VolumeSnapshotStatus{BoundVolumeSnapshotContentName: ptr.To(duName)}
			})
			e.clock.SetTime(t0.Add(time.Second))
		},
	}, {
		name: "never bound (no snapshot controller): deleted after the grace",
		then: func(e *env) { e.clock.SetTime(t0.Add(bindGrace + time.Second)) },
	}} {
		t.Run(tc.name, func(t *testing.T) {
			du := dataUpload(velerov2alpha1.DataUploadPhaseAccepted)
			du.Spec.Cancel = true
			vs, vsc := takenOver(true, false)
			e := newEnv(t, nil, append(backupFixtures(du), vs, vsc, ourPVC(duName))...)

			res := e.reconcileDU()
			got := e.du()
			require.Equal(t, velerov2alpha1.DataUploadPhaseCanceled, got.Status.Phase, "the end is not held back")
			require.Contains(t, got.Finalizers, naming.MoverFinalizer, "kept until the cleanup is done")
			require.Equal(t, finishRequeue, res.RequeueAfter)
			require.False(t, e.exists(ourPVC(duName)), "the rest is cleaned up at once")
			require.True(t, e.exists(ourVS()), "not deleted before it is bound")
			e.requireEvent(ReasonCanceled)

			res = e.reconcileDU()
			require.Equal(t, finishRequeue, res.RequeueAfter, "still waiting")
			require.True(t, e.exists(ourVS()))

			tc.then(e)
			res = e.reconcileDU()
			require.Zero(t, res.RequeueAfter)
			require.False(t, e.exists(ourVS()))
			require.NotContains(t, e.du().Finalizers, naming.MoverFinalizer)
			require.Equal(t, velerov2alpha1.DataUploadPhaseCanceled, e.du().Status.Phase)
		})
	}
}

// Our content bound to a VolumeSnapshot that is gone (deleted unbound by an older mover,
// or by someone else) is marked the way the snapshot controller marks the content of a
// deleted snapshot, so that the CSI sidecar deletes the storage snapshot and the content.
// A content never bound holds no storage snapshot of its own yet and just goes; a content
// whose snapshot still exists is left to the snapshot controller.
func TestCleanupMarksOrphanedContent(t *testing.T) {
	for _, tc := range []struct {
		name       string
		vs         bool      // our VolumeSnapshot still exists
		contentRef types.UID // the content's VolumeSnapshotRef UID
		wantMarked bool
	}{
		{name: "snapshot gone, content bound", contentRef: "our-vs-uid", wantMarked: true},
		{name: "snapshot recreated, content bound to the old one", vs: true, contentRef: "old-uid", wantMarked: true},
		{name: "snapshot gone, content never bound", contentRef: ""},
		{name: "snapshot bound and being deleted", vs: true, contentRef: "our-vs-uid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			du := dataUpload(velerov2alpha1.DataUploadPhaseFailed)
			vs, vsc := takenOver(tc.contentRef != "", true)
			vsc.Spec.VolumeSnapshotRef.UID = tc.contentRef
			objs := append(backupFixtures(du), vsc)
			if tc.vs {
				vs.Finalizers = []string{"snapshot.storage.kubernetes.io/volumesnapshot-bound-protection"}
				objs = append(objs, vs)
			}
			e := newEnv(t, nil, objs...)
			e.reconcileDU()
			require.NotContains(t, e.du().Finalizers, naming.MoverFinalizer)
			got := ourVSC()
			if tc.contentRef == "" {
				require.False(t, e.exists(got), "an unbound content has no finalizer and goes")
				return
			}
			require.True(t, e.exists(got), "held by its finalizer until the sidecar deleted the storage snapshot")
			require.NotNil(t, got.DeletionTimestamp)
			if tc.wantMarked {
				require.Equal(t, "yes", got.Annotations[annSnapshotBeingDeleted])
			} else {
				require.NotContains(t, got.Annotations, annSnapshotBeingDeleted, "the snapshot controller's to mark")
			}
		})
	}
}
