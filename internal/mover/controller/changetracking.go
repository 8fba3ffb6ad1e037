package controller

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"github.com/pkg/errors"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/mover/expose"
	"github.com/snapmove/snapmove/internal/naming"
)

// Annotations on our VolumeSnapshot, written when it is made (the take-over), of what a
// block backup's changed block tracking needs: the CSI driver, the snapshot handle (the
// change ID the next backup asks the changes since) and the volume handle the snapshot
// was taken of. Recorded from the user's VolumeSnapshotContent, which is gone once taken
// over; cluster-scoped, so no tenant wrote them.
const (
	annCSIDriver = "snapmove.io/csi-driver"
	annChangeID  = "snapmove.io/cbt-change-id"
	annVolumeID  = "snapmove.io/cbt-volume-id"
)

// smsGVK is the kind of a CSI SnapshotMetadataService (external-snapshot-metadata v1.0.0
// client/apis/snapshotmetadataservice/v1beta1): cluster-scoped, named after its driver.
var smsGVK = schema.GroupVersionKind{Group: "cbt.storage.k8s.io", Version: "v1beta1", Kind: "SnapshotMetadataService"}

// cbtPlan is what the worker of a block backup is told about changed block tracking.
type cbtPlan struct {
	changeID, volumeID string
	// service is the driver's SnapshotMetadataService, nil when there is none usable;
	// then unavailable says why (the backup reads the whole device and says so).
	service     *metadataService
	unavailable string
}

// metadataService is the spec of a SnapshotMetadataService.
type metadataService struct {
	address, audience string
	caCert            []byte
}

// cbtRecord is what annotates our VolumeSnapshot for changed block tracking, from the
// user's content being taken over.
func cbtRecord(src *snapshotv1.VolumeSnapshotContent) map[string]string {
	out := map[string]string{annCSIDriver: src.Spec.Driver}
	if h := src.Status.SnapshotHandle; h != nil && *h != "" {
		out[annChangeID] = *h
	}
	if h := src.Spec.Source.VolumeHandle; h != nil && *h != "" {
		out[annVolumeID] = *h
	}
	return out
}

// changeTracking plans the changed block tracking of a backup from what our
// VolumeSnapshot records (cbtRecord); nil for a filesystem volume. A service that
// cannot be found or read is no error: the backup reads more.
func (r *Reconciler) changeTracking(ctx context.Context, record map[string]string, block bool) (*cbtPlan, error) {
	if !block {
		return nil, nil
	}
	plan := &cbtPlan{changeID: record[annChangeID], volumeID: record[annVolumeID]}
	driver := record[annCSIDriver]
	if driver == "" {
		plan.unavailable = "the snapshot's CSI driver is unknown"
		return plan, nil
	}
	svc, why, err := r.metadataService(ctx, driver)
	if err != nil {
		return nil, err
	}
	plan.service, plan.unavailable = svc, why
	return plan, nil
}

// metadataService reads the SnapshotMetadataService of driver, or says why there is
// none to use. Only a failure that may pass is an error.
func (r *Reconciler) metadataService(ctx context.Context, driver string) (*metadataService, string, error) {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(smsGVK)
	err := r.Reader.Get(ctx, client.ObjectKey{Name: driver}, u)
	switch {
	case apierrors.IsNotFound(err):
		return nil, fmt.Sprintf("no SnapshotMetadataService serves CSI driver %s (changed block tracking)", driver), nil
	case meta.IsNoMatchError(err):
		return nil, "the cluster has no SnapshotMetadataService API (cbt.storage.k8s.io/v1beta1), so no changed block tracking", nil
	case apierrors.IsForbidden(err):
		return nil, fmt.Sprintf("the mover may not read SnapshotMetadataService %s: %v", driver, err), nil
	case err != nil:
		return nil, "", errors.Wrapf(err, "getting SnapshotMetadataService %s", driver)
	}
	address, _, _ := unstructured.NestedString(u.Object, "spec", "address")
	audience, _, _ := unstructured.NestedString(u.Object, "spec", "audience")
	ca64, _, _ := unstructured.NestedString(u.Object, "spec", "caCert")
	ca, err := base64.StdEncoding.DecodeString(ca64)
	switch {
	case address == "" || audience == "" || ca64 == "":
		return nil, fmt.Sprintf("SnapshotMetadataService %s lacks its address, audience or caCert", driver), nil
	case err != nil:
		return nil, fmt.Sprintf("SnapshotMetadataService %s: spec.caCert is not base64: %v", driver, err), nil
	}
	return &metadataService{address: address, audience: audience, caCert: ca}, "", nil
}

// apply puts the plan into the worker pod: flags, and for a service its token and CA.
// snapshot is our VolumeSnapshot, in the pod's namespace, which the worker names to the
// service.
func (p *cbtPlan) apply(pp *expose.PodParams, snapshot string) {
	if p == nil {
		return
	}
	flags := map[string]string{}
	if p.changeID != "" {
		flags["cbt-change-id"] = p.changeID
	}
	if p.volumeID != "" {
		flags["cbt-volume-id"] = p.volumeID
	}
	if p.service != nil {
		flags["cbt-address"] = p.service.address
		flags["cbt-snapshot"] = snapshot
		pp.CBTAudience, pp.CBTCACert = p.service.audience, p.service.caCert
	} else {
		flags["cbt-unavailable"] = p.unavailable
	}
	pp.Args = append(pp.Args, expose.WorkerArgs(flags)...)
}

// sourceBlock reports whether the snapshot being taken over is of a block volume: its
// content's sourceVolumeMode, else the source PVC's.
func (h uploadHandler) sourceBlock(ctx context.Context, du *velerov2alpha1.DataUpload, src *snapshotv1.VolumeSnapshotContent) (bool, error) {
	if m := src.Spec.SourceVolumeMode; m != nil {
		return *m == corev1.PersistentVolumeBlock, nil
	}
	pvc := &corev1.PersistentVolumeClaim{}
	found, err := get(ctx, h.r.Reader, du.Spec.SourceNamespace, du.Spec.SourcePVC, pvc)
	if err != nil || !found {
		return false, err
	}
	return pvc.Spec.VolumeMode != nil && *pvc.Spec.VolumeMode == corev1.PersistentVolumeBlock, nil
}

// blockRead is what the worker read of a block volume, as recorded on the DataUpload, or
// nil.
func blockRead(du *velerov2alpha1.DataUpload) *datapath.BlockRead {
	v := du.Annotations[naming.BlockReadAnnotation]
	if v == "" {
		return nil
	}
	var br datapath.BlockRead
	if err := json.Unmarshal([]byte(v), &br); err != nil {
		return nil
	}
	return &br
}
