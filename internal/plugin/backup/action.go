package backup

import (
	"context"
	"fmt"
	"time"

	"github.com/pkg/errors"
	"github.com/sirupsen/logrus"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	"github.com/vmware-tanzu/velero/pkg/kuberesource"
	"github.com/vmware-tanzu/velero/pkg/plugin/utils/volumehelper"
	"github.com/vmware-tanzu/velero/pkg/plugin/velero"
	biav2 "github.com/vmware-tanzu/velero/pkg/plugin/velero/backupitemaction/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/csisnapshot"
	"github.com/snapmove/snapmove/internal/naming"
	"github.com/snapmove/snapmove/internal/plugin/operation"
	"github.com/snapmove/snapmove/internal/snapclass"
)

// Options are the server settings the action depends on.
type Options struct {
	// EnableCSI is true when Velero runs with --features=EnableCSI, i.e. its built-in
	// velero.io/csi-pvc-backupper runs before this action.
	EnableCSI bool
	// DefaultSnapshotMoveData is Velero's --default-snapshot-move-data, which applies when
	// backup.spec.snapshotMoveData is unset.
	DefaultSnapshotMoveData bool
	// SnapshotInterval is how often to look at a new VolumeSnapshot; 0 means the default.
	SnapshotInterval time.Duration
}

// Action is the BackupItemAction v2 for PVCs. It is safe for concurrent use.
type Action struct {
	client    client.Client
	log       logrus.FieldLogger
	opts      Options
	snapshots *csisnapshot.Snapshotter
}

var _ biav2.BackupItemAction = (*Action)(nil)

// NewAction returns the action.
func NewAction(c client.Client, log logrus.FieldLogger, opts Options) *Action {
	return &Action{
		client:    c,
		log:       log,
		opts:      opts,
		snapshots: &csisnapshot.Snapshotter{Client: c, Log: log, Interval: opts.SnapshotInterval},
	}
}

// Name is not called over RPC (Velero uses the registered name); it exists for logs.
func (a *Action) Name() string { return naming.BackupActionName }

// AppliesTo selects PVCs.
func (a *Action) AppliesTo() (velero.ResourceSelector, error) {
	return velero.ResourceSelector{IncludedResources: []string{"persistentvolumeclaims"}}, nil
}

// Execute snapshots a claimed PVC and starts its DataUpload. It blocks while the CSI
// driver cuts the snapshot (at most backup.spec.csiSnapshotTimeout). A PVC it does not
// claim is returned unchanged with the reason logged. Errors fail only this PVC.
func (a *Action) Execute(item runtime.Unstructured, backup *velerov1.Backup) (runtime.Unstructured, []velero.ResourceIdentifier, string, []velero.ResourceIdentifier, error) {
	ctx := context.Background()
	log := a.log.WithField("backup", client.ObjectKeyFromObject(backup).String())

	if backup.Status.Phase == velerov1.BackupPhaseFinalizing || backup.Status.Phase == velerov1.BackupPhaseFinalizingPartiallyFailed {
		log.Debug("backup is finalizing: nothing to do for PVCs")
		return item, nil, "", nil, nil
	}
	pvc := &corev1.PersistentVolumeClaim{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(item.UnstructuredContent(), pvc); err != nil {
		return nil, nil, "", nil, errors.Wrap(err, "converting item to PersistentVolumeClaim")
	}
	log = log.WithField("pvc", client.ObjectKeyFromObject(pvc).String())

	pv, skip, err := a.claim(ctx, item, pvc, backup, log)
	if err != nil {
		return nil, nil, "", nil, err
	}
	if skip != "" {
		log.Infof("skipping PVC: %s", skip)
		return MarkSkipped(item, skip), nil, "", nil, nil
	}

	opID := naming.UploadOperationID(string(backup.UID), string(pvc.UID))
	log = log.WithField("operationID", opID)
	if du, err := a.existingDataUpload(ctx, backup.Namespace, opID); err != nil {
		return nil, nil, "", nil, err
	} else if du != nil {
		log.WithField("dataUpload", du.Name).Info("DataUpload of this operation exists already: reusing it")
		return a.started(item, backup, du)
	}

	driver := pv.Spec.CSI.Driver
	storageClass := ptrValue(pvc.Spec.StorageClassName)
	if storageClass == "" {
		storageClass = pv.Spec.StorageClassName
	}
	if storageClass == "" {
		return nil, nil, "", nil, errors.Errorf("PVC %s/%s and its PV %s have no storage class: snapmove needs one to read the snapshot back through a temporary volume", pvc.Namespace, pvc.Name, pv.Name)
	}
	classes, err := snapclass.List(ctx, a.client)
	if err != nil {
		return nil, nil, "", nil, errors.Wrapf(err, "choosing the VolumeSnapshotClass for PVC %s/%s", pvc.Namespace, pvc.Name)
	}
	className, why, err := snapclass.Choose(classes, pvc, backup, driver)
	if err != nil {
		return nil, nil, "", nil, errors.Wrapf(err, "choosing the VolumeSnapshotClass for PVC %s/%s", pvc.Namespace, pvc.Name)
	}
	log.Infof("using VolumeSnapshotClass %s (%s)", className, why)

	vs, vsc, err := a.snapshots.Snapshot(ctx, csisnapshot.Request{
		PVC: pvc, BackupName: backup.Name, ClassName: className, Driver: driver,
	}, CSISnapshotTimeout(backup))
	if err != nil {
		return nil, nil, "", nil, errors.Wrapf(err, "snapshotting PVC %s/%s", pvc.Namespace, pvc.Name)
	}
	log = log.WithField("volumeSnapshot", client.ObjectKeyFromObject(vs).String())

	du := NewDataUpload(DataUploadParams{
		Backup: backup, PVC: pvc, StorageClass: storageClass, VolumeSnapshot: vs.Name,
		SnapshotClass: className, Driver: vsc.Spec.Driver, OperationID: opID,
	})
	if err := a.client.Create(ctx, du); err != nil {
		if cerr := a.snapshots.Cleanup(context.WithoutCancel(ctx), vs); cerr != nil {
			log.WithError(cerr).Warn("cleaning up the VolumeSnapshot after the DataUpload failed")
		}
		return nil, nil, "", nil, errors.Wrapf(err, "creating DataUpload for PVC %s/%s", pvc.Namespace, pvc.Name)
	}
	log.WithField("dataUpload", du.Name).Info("created DataUpload for the snapmove mover")
	return a.started(item, backup, du)
}

func (a *Action) started(item runtime.Unstructured, backup *velerov1.Backup, du *velerov2alpha1.DataUpload) (runtime.Unstructured, []velero.ResourceIdentifier, string, []velero.ResourceIdentifier, error) {
	vsName := ""
	if du.Spec.CSISnapshot != nil {
		vsName = du.Spec.CSISnapshot.VolumeSnapshot
	}
	updated := MarkPVC(item, backup.Name, vsName, du)
	post := []velero.ResourceIdentifier{{
		GroupResource: kuberesource.DataUploads,
		Namespace:     du.Namespace,
		Name:          du.Name,
	}}
	return updated, nil, du.Labels[velerov1.AsyncOperationIDLabel], post, nil
}

// MarkSkipped records on the PVC as the backup stores it (never on the live PVC) why
// its data was not moved, for `snapmove report`; the restore action removes it again.
func MarkSkipped(item runtime.Unstructured, reason string) runtime.Unstructured {
	u := (&unstructured.Unstructured{Object: item.UnstructuredContent()}).DeepCopy()
	annotations := u.GetAnnotations()
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[naming.SkippedAnnotation] = reason
	u.SetAnnotations(annotations)
	return u
}

// claim decides whether this action moves the PVC. It returns the PVC's PV when it does,
// or a non-empty reason when it does not.
func (a *Action) claim(ctx context.Context, item runtime.Unstructured, pvc *corev1.PersistentVolumeClaim, backup *velerov1.Backup, log logrus.FieldLogger) (*corev1.PersistentVolume, string, error) {
	if vs, ok := pvc.Annotations[velerov1.VolumeSnapshotLabel]; ok {
		return nil, fmt.Sprintf("Velero's built-in velero.io/csi-pvc-backupper already snapshotted it (VolumeSnapshot %s)", vs), nil
	}
	if pvc.Status.Phase != corev1.ClaimBound || pvc.Spec.VolumeName == "" {
		return nil, fmt.Sprintf("PVC is not bound (phase %q)", pvc.Status.Phase), nil
	}
	if !moveData(backup, a.opts.DefaultSnapshotMoveData) {
		return nil, "data movement is off: backup.spec.snapshotMoveData is false (velero backup create --snapshot-move-data, or server flag --default-snapshot-move-data)", nil
	}
	pv := &corev1.PersistentVolume{}
	if err := a.client.Get(ctx, client.ObjectKey{Name: pvc.Spec.VolumeName}, pv); err != nil {
		return nil, "", errors.Wrapf(err, "getting PV %s of PVC %s/%s", pvc.Spec.VolumeName, pvc.Namespace, pvc.Name)
	}
	if pv.Spec.CSI == nil {
		return nil, fmt.Sprintf("PV %s is not a CSI volume", pv.Name), nil
	}

	vh, err := volumehelper.NewVolumeHelperWithCache(*backup, a.client, log, nil)
	if err != nil {
		return nil, "", errors.Wrapf(err, "reading the volume policies of backup %s", backup.Name)
	}
	params := map[string]any{naming.VolumePolicyParam: naming.VolumePolicyMover}
	custom, err := vh.ShouldPerformCustomAction(item, kuberesource.PersistentVolumeClaims, params)
	if err != nil {
		return nil, "", errors.Wrapf(err, "evaluating the volume policies for PVC %s/%s", pvc.Namespace, pvc.Name)
	}
	if custom {
		log.Info("claiming PVC: a volume policy with action custom, mover snapmove matches it")
		return pv, "", nil
	}
	matched, actionType, actionParams, err := vh.GetActionParameters(item, kuberesource.PersistentVolumeClaims)
	if err != nil {
		return nil, "", errors.Wrapf(err, "evaluating the volume policies for PVC %s/%s", pvc.Namespace, pvc.Name)
	}
	if matched && actionType != "snapshot" {
		if actionType == "custom" {
			return nil, fmt.Sprintf("a volume policy with action custom and parameters %v (not %s: %s) matches it", actionParams, naming.VolumePolicyParam, naming.VolumePolicyMover), nil
		}
		return nil, fmt.Sprintf("a volume policy with action %s matches it", actionType), nil
	}
	if dm := backup.Spec.DataMover; dm != "" && dm != naming.DataMover {
		return nil, fmt.Sprintf("backup.spec.datamover is %q: another data mover was requested", dm), nil
	}
	if a.opts.EnableCSI {
		if backup.Spec.DataMover == naming.DataMover {
			return nil, "EnableCSI is on: Velero's built-in velero.io/csi-pvc-backupper snapshots it and hands its DataUpload to the snapmove mover (backup.spec.datamover is snapmove)", nil
		}
		return nil, "EnableCSI is on and no volume policy `action: {type: custom, parameters: {mover: snapmove}}` matches it: Velero's built-in velero.io/csi-pvc-backupper handles it", nil
	}
	should, err := vh.ShouldPerformSnapshot(item, kuberesource.PersistentVolumeClaims)
	if err != nil {
		return nil, "", errors.Wrapf(err, "evaluating the volume policies for PVC %s/%s", pvc.Namespace, pvc.Name)
	}
	if !should {
		return nil, "Velero's volume rules say no snapshot (a pod opted it into fs-backup, or backup.spec.snapshotVolumes is false)", nil
	}
	log.Info("claiming PVC: EnableCSI is off, so snapmove moves every eligible CSI volume")
	return pv, "", nil
}

func moveData(b *velerov1.Backup, dflt bool) bool {
	if b.Spec.SnapshotMoveData != nil {
		return *b.Spec.SnapshotMoveData
	}
	return dflt
}

func (a *Action) existingDataUpload(ctx context.Context, namespace, opID string) (*velerov2alpha1.DataUpload, error) {
	var list velerov2alpha1.DataUploadList
	if err := a.client.List(ctx, &list, client.InNamespace(namespace), client.MatchingLabels{velerov1.AsyncOperationIDLabel: opID}); err != nil {
		return nil, errors.Wrapf(err, "listing DataUploads of operation %s", opID)
	}
	switch len(list.Items) {
	case 0:
		return nil, nil
	case 1:
		return &list.Items[0], nil
	default:
		return nil, errors.Errorf("%d DataUploads labelled %s=%s in namespace %s: expected at most one",
			len(list.Items), velerov1.AsyncOperationIDLabel, opID, namespace)
	}
}

// Progress reports the DataUpload of operationID. It only reads.
func (a *Action) Progress(operationID string, backup *velerov1.Backup) (velero.OperationProgress, error) {
	if operationID == "" {
		return velero.OperationProgress{}, biav2.InvalidOperationIDError(operationID)
	}
	du, err := operation.FindDataUpload(context.Background(), a.client, backup.Namespace, operationID)
	if err != nil {
		return velero.OperationProgress{}, err
	}
	return operation.UploadProgress(du), nil
}

// Cancel asks the mover to cancel the DataUpload of operationID (spec.cancel).
func (a *Action) Cancel(operationID string, backup *velerov1.Backup) error {
	if operationID == "" {
		return biav2.InvalidOperationIDError(operationID)
	}
	ctx := context.Background()
	du, err := operation.FindDataUpload(ctx, a.client, backup.Namespace, operationID)
	if err != nil {
		return err
	}
	a.log.WithFields(logrus.Fields{"backup": client.ObjectKeyFromObject(backup).String(), "dataUpload": du.Name, "operationID": operationID}).Info("canceling DataUpload")
	return operation.CancelDataUpload(ctx, a.client, du)
}

func ptrValue(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
