package restore

import (
	"fmt"
	"time"

	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	"github.com/vmware-tanzu/velero/pkg/label"
	uploaderutil "github.com/vmware-tanzu/velero/pkg/uploader/util"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
)

// DefaultOperationTimeout applies when the backup's csiSnapshotTimeout is unset.
const DefaultOperationTimeout = 10 * time.Minute

// DataDownloadParams is everything NewDataDownload needs.
type DataDownloadParams struct {
	Restore         *velerov1.Restore
	Backup          *velerov1.Backup
	Result          *velerov2alpha1.DataUploadResult
	PVC             string // name of the PVC to restore
	TargetNamespace string // namespace the PVC is restored into (namespace mapping applied)
	OperationID     string
}

// NewDataDownload returns the DataDownload for one PVC of one restore: Velero's shape
// (pkg/restore/actions/csi newDataDownload) with the mover name from the DataUploadResult.
func NewDataDownload(p DataDownloadParams) *velerov2alpha1.DataDownload {
	timeout := p.Backup.Spec.CSISnapshotTimeout.Duration
	if timeout <= 0 {
		timeout = DefaultOperationTimeout
	}
	dd := &velerov2alpha1.DataDownload{
		TypeMeta: metav1.TypeMeta{APIVersion: velerov2alpha1.SchemeGroupVersion.String(), Kind: "DataDownload"},
		ObjectMeta: metav1.ObjectMeta{
			Namespace:    p.Restore.Namespace,
			GenerateName: p.Restore.Name + "-",
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: velerov1.SchemeGroupVersion.String(),
				Kind:       "Restore",
				Name:       p.Restore.Name,
				UID:        p.Restore.UID,
				Controller: ptr.To(true),
			}},
			Labels: map[string]string{
				velerov1.RestoreNameLabel:      label.GetValidName(p.Restore.Name),
				velerov1.RestoreUIDLabel:       string(p.Restore.UID),
				velerov1.AsyncOperationIDLabel: p.OperationID,
			},
		},
		Spec: velerov2alpha1.DataDownloadSpec{
			TargetVolume:          velerov2alpha1.TargetVolumeSpec{PVC: p.PVC, Namespace: p.TargetNamespace},
			BackupStorageLocation: p.Result.BackupStorageLocation,
			DataMover:             p.Result.DataMover,
			SnapshotID:            p.Result.SnapshotID,
			SnapshotSize:          p.Result.SnapshotSize,
			SourceNamespace:       p.Result.SourceNamespace,
			NodeOS:                p.Result.NodeOS,
			OperationTimeout:      metav1.Duration{Duration: timeout},
		},
	}
	if p.Restore.Spec.UploaderConfig != nil {
		dd.Spec.DataMoverConfig = uploaderutil.StoreRestoreConfig(p.Restore.Spec.UploaderConfig)
	}
	return dd
}

// DynamicPVRestoreValue is the selector value that ties the restored PVC to the PV the mover
// creates: GetValidName("<targetNs>.<pvc>.<random>").
func DynamicPVRestoreValue(targetNamespace, pvc, random string) string {
	return label.GetValidName(fmt.Sprintf("%s.%s.%s", targetNamespace, pvc, random))
}

// RewritePVC returns a copy of the PVC item prepared for a mover-provisioned volume:
// spec.volumeName cleared, spec.dataSource and spec.dataSourceRef dropped, and
// spec.selector.matchLabels[velero.io/dynamic-pv-restore] = selectorValue. Everything else
// is kept as is.
func RewritePVC(item runtime.Unstructured, selectorValue string) runtime.Unstructured {
	u := (&unstructured.Unstructured{Object: item.UnstructuredContent()}).DeepCopy()
	unstructured.RemoveNestedField(u.Object, "spec", "volumeName")
	unstructured.RemoveNestedField(u.Object, "spec", "dataSource")
	unstructured.RemoveNestedField(u.Object, "spec", "dataSourceRef")
	_ = unstructured.SetNestedField(u.Object, selectorValue, "spec", "selector", "matchLabels", velerov1.DynamicPVRestoreLabel)
	return u
}

// clearVolumeSource is what Velero's built-in does when the restore does not restore PVs.
func clearVolumeSource(item runtime.Unstructured) runtime.Unstructured {
	u := (&unstructured.Unstructured{Object: item.UnstructuredContent()}).DeepCopy()
	unstructured.RemoveNestedField(u.Object, "spec", "volumeName")
	unstructured.RemoveNestedField(u.Object, "spec", "dataSource")
	unstructured.RemoveNestedField(u.Object, "spec", "dataSourceRef")
	return u
}
