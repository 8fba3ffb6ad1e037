package controller

import (
	"context"
	"fmt"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"github.com/pkg/errors"
	"github.com/sirupsen/logrus"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/mover/expose"
)

// Our VolumeSnapshot of a backup: taking the storage snapshot over from the user's
// VolumeSnapshot (takeOver), and deleting it, with the storage snapshot, once the
// movement no longer needs it (deleteSnapshot).

// takeOver makes our content the only owner of the storage snapshot: the user's content
// is set to Retain first, then the user's VolumeSnapshot and content are deleted.
func (h uploadHandler) takeOver(ctx context.Context, du *velerov2alpha1.DataUpload, ourVS *snapshotv1.VolumeSnapshot, log logrus.FieldLogger) error {
	r := h.r
	contentName := ourVS.Annotations[annSourceContent]
	srcVSC := &snapshotv1.VolumeSnapshotContent{}
	haveVSC := false
	if contentName != "" {
		var err error
		if haveVSC, err = get(ctx, r.Reader, "", contentName, srcVSC); err != nil {
			return err
		}
	}
	if haveVSC && srcVSC.Spec.DeletionPolicy != snapshotv1.VolumeSnapshotContentRetain {
		patch := client.MergeFrom(srcVSC.DeepCopy())
		srcVSC.Spec.DeletionPolicy = snapshotv1.VolumeSnapshotContentRetain
		if err := r.Client.Patch(ctx, srcVSC, patch); err != nil {
			return errors.Wrapf(err, "retaining VolumeSnapshotContent %s", contentName)
		}
	}
	srcVS := &snapshotv1.VolumeSnapshot{}
	haveVS, err := get(ctx, r.Reader, du.Spec.SourceNamespace, du.Spec.CSISnapshot.VolumeSnapshot, srcVS)
	if err != nil {
		return err
	}
	boundElsewhere := haveVS && srcVS.Status != nil && srcVS.Status.BoundVolumeSnapshotContentName != nil &&
		*srcVS.Status.BoundVolumeSnapshotContentName != contentName
	if haveVS && !boundElsewhere && srcVS.DeletionTimestamp == nil {
		if err := deleteIfExists(ctx, r.Client, srcVS); err != nil {
			return err
		}
		log.WithField("volumeSnapshot", describe(srcVS.Namespace, srcVS.Name)).Info("deleted the user's VolumeSnapshot (its storage snapshot is kept by ours)")
	}
	if haveVSC && srcVSC.DeletionTimestamp == nil {
		return deleteIfExists(ctx, r.Client, srcVSC)
	}
	return nil
}

// bindGrace is how long cleanup waits for our VolumeSnapshot to be bound before it
// deletes it anyway (the snapshot controller binds in a second when it runs).
const bindGrace = 2 * time.Minute

// deleteSnapshot deletes our VolumeSnapshot and VolumeSnapshotContent, and with them the
// storage snapshot.
//
// The snapshot goes only once its status names its content. external-snapshotter deletes
// the content of a deleted snapshot only when the two point at each other; it binds the
// content first and the snapshot's status after, and a snapshot deleted between the two
// (or before) leaves the content bound to nothing: syncContent never deletes the content
// of a missing snapshot, and a deleted content then keeps its bound-protection finalizer
// for ever. Such a content (ours, so ours to delete) gets the annotation the snapshot
// controller would have set, and the CSI sidecar then deletes the storage snapshot and
// the content.
//
// Only a snapshot and content made for the DataUpload uid are touched: someone else's of
// the same name is left alone, and deleted only with the precondition of the UID read.
func (h uploadHandler) deleteSnapshot(ctx context.Context, ns, name string, uid types.UID, log logrus.FieldLogger) error {
	r := h.r
	vs := &snapshotv1.VolumeSnapshot{}
	haveVS, err := get(ctx, r.Reader, ns, name, vs)
	if err != nil {
		return err
	}
	if haveVS && !expose.MadeFor(vs, uid) {
		log.WithField("volumeSnapshot", describe(ns, name)).Warn("leaving a VolumeSnapshot of the movement's name alone: it was not made for this movement")
		haveVS = false
	}
	if haveVS && vs.DeletionTimestamp == nil {
		bound := vs.Status != nil && vs.Status.BoundVolumeSnapshotContentName != nil
		if !bound {
			age := r.Clock.Since(vs.CreationTimestamp.Time)
			if age < bindGrace {
				return cleanupPending(fmt.Sprintf("VolumeSnapshot %s to be bound to its content before it is deleted", describe(ns, name)))
			}
			log.WithField("volumeSnapshot", describe(ns, name)).Warnf("deleting VolumeSnapshot unbound after %s: is the snapshot controller running? The storage snapshot of VolumeSnapshotContent %s may be left behind", age.Round(time.Second), name)
		}
		if err := deleteChecked(ctx, r.Client, vs); err != nil {
			return err
		}
	}

	vsc := &snapshotv1.VolumeSnapshotContent{}
	haveVSC, err := get(ctx, r.Reader, "", name, vsc)
	if err != nil || !haveVSC {
		return err
	}
	if !expose.MadeFor(vsc, uid) {
		log.WithField("volumeSnapshotContent", name).Warn("leaving a VolumeSnapshotContent of the movement's name alone: it was not made for this movement")
		return nil
	}
	orphan := vsc.Spec.VolumeSnapshotRef.UID != "" && (!haveVS || vs.UID != vsc.Spec.VolumeSnapshotRef.UID)
	if orphan && vsc.Annotations[annSnapshotBeingDeleted] == "" {
		patch := client.MergeFromWithOptions(vsc.DeepCopy(), client.MergeFromWithOptimisticLock{})
		setAnnotation(vsc, annSnapshotBeingDeleted, "yes")
		if err := r.Client.Patch(ctx, vsc, patch); err != nil {
			return errors.Wrapf(err, "marking VolumeSnapshotContent %s for deletion by the CSI sidecar", name)
		}
		log.WithField("volumeSnapshotContent", name).Info("our VolumeSnapshot is gone: marked its content for deletion by the CSI sidecar")
	}
	if vsc.DeletionTimestamp == nil {
		return deleteChecked(ctx, r.Client, vsc)
	}
	return nil
}
