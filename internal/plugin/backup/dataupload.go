package backup

import (
	"strconv"
	"time"

	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	"github.com/vmware-tanzu/velero/pkg/label"
	uploaderutil "github.com/vmware-tanzu/velero/pkg/uploader/util"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/snapmove/snapmove/internal/naming"
)

// DefaultCSISnapshotTimeout applies when backup.spec.csiSnapshotTimeout is unset (Velero's
// CLI default).
const DefaultCSISnapshotTimeout = 10 * time.Minute

// DataUploadParams is everything NewDataUpload needs.
type DataUploadParams struct {
	Backup         *velerov1.Backup
	PVC            *corev1.PersistentVolumeClaim
	StorageClass   string
	VolumeSnapshot string
	SnapshotClass  string
	Driver         string
	OperationID    string
}

// CSISnapshotTimeout is the backup's csiSnapshotTimeout, or the default when unset.
func CSISnapshotTimeout(b *velerov1.Backup) time.Duration {
	if b.Spec.CSISnapshotTimeout.Duration > 0 {
		return b.Spec.CSISnapshotTimeout.Duration
	}
	return DefaultCSISnapshotTimeout
}

// NewDataUpload returns the DataUpload for one PVC of one backup: Velero's shape
// (pkg/backup/actions/csi newDataUpload) with spec.datamover "snapmove".
func NewDataUpload(p DataUploadParams) *velerov2alpha1.DataUpload {
	du := &velerov2alpha1.DataUpload{
		TypeMeta: metav1.TypeMeta{APIVersion: velerov2alpha1.SchemeGroupVersion.String(), Kind: "DataUpload"},
		ObjectMeta: metav1.ObjectMeta{
			Namespace:    p.Backup.Namespace,
			GenerateName: p.Backup.Name + "-",
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: velerov1.SchemeGroupVersion.String(),
				Kind:       "Backup",
				Name:       p.Backup.Name,
				UID:        p.Backup.UID,
				Controller: ptr.To(true),
			}},
			Labels: map[string]string{
				velerov1.BackupNameLabel:       label.GetValidName(p.Backup.Name),
				velerov1.BackupUIDLabel:        string(p.Backup.UID),
				velerov1.PVCUIDLabel:           string(p.PVC.UID),
				velerov1.AsyncOperationIDLabel: p.OperationID,
			},
		},
		Spec: velerov2alpha1.DataUploadSpec{
			SnapshotType: velerov2alpha1.SnapshotTypeCSI,
			CSISnapshot: &velerov2alpha1.CSISnapshotSpec{
				VolumeSnapshot: p.VolumeSnapshot,
				StorageClass:   p.StorageClass,
				SnapshotClass:  p.SnapshotClass,
				Driver:         p.Driver,
			},
			SourcePVC:             p.PVC.Name,
			SourceNamespace:       p.PVC.Namespace,
			DataMover:             naming.DataMover,
			BackupStorageLocation: p.Backup.Spec.StorageLocation,
			OperationTimeout:      metav1.Duration{Duration: CSISnapshotTimeout(p.Backup)},
		},
	}
	if cfg := p.Backup.Spec.UploaderConfig; cfg != nil && cfg.ParallelFilesUpload > 0 {
		du.Spec.DataMoverConfig = map[string]string{uploaderutil.ParallelFilesUpload: strconv.Itoa(cfg.ParallelFilesUpload)}
	}
	// Per-backup overrides of the mover settings travel on the DataUpload; the mover
	// validates them (an invalid value fails the DataUpload with a message naming it).
	for _, k := range []string{naming.VerifyAnnotation, naming.CompressionAnnotation} {
		if v, ok := p.Backup.Annotations[k]; ok {
			if du.Annotations == nil {
				du.Annotations = map[string]string{}
			}
			du.Annotations[k] = v
		}
	}
	return du
}

// MarkPVC returns a copy of the PVC item labelled and annotated the way Velero's built-in
// CSI action leaves it, so that `velero backup describe --details`, volume info and
// restore recognise the moved volume: label and annotation velero.io/volume-snapshot-name,
// label velero.io/backup-name, annotations velero.io/data-upload-name (<ns>/<name>) and
// backup.velero.io/must-include-additional-items. Every other field is kept as is.
// Label values are shortened with label.GetValidName (identical for names up to 63
// characters).
func MarkPVC(item runtime.Unstructured, backupName, volumeSnapshot string, du *velerov2alpha1.DataUpload) runtime.Unstructured {
	u := (&unstructured.Unstructured{Object: item.UnstructuredContent()}).DeepCopy()
	labels := u.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	labels[velerov1.VolumeSnapshotLabel] = label.GetValidName(volumeSnapshot)
	labels[velerov1.BackupNameLabel] = label.GetValidName(backupName)
	u.SetLabels(labels)
	annotations := u.GetAnnotations()
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[velerov1.VolumeSnapshotLabel] = volumeSnapshot
	annotations[velerov1.MustIncludeAdditionalItemAnnotation] = "true"
	annotations[velerov1.DataUploadNameAnnotation] = types.NamespacedName{Namespace: du.Namespace, Name: du.Name}.String()
	u.SetAnnotations(annotations)
	return u
}
