package restore

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/pkg/errors"
	"github.com/sirupsen/logrus"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	"github.com/vmware-tanzu/velero/pkg/label"
	"github.com/vmware-tanzu/velero/pkg/plugin/velero"
	riav2 "github.com/vmware-tanzu/velero/pkg/plugin/velero/restoreitemaction/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/naming"
	"github.com/snapmove/snapmove/internal/plugin/operation"
)

// Options are the server settings the action depends on.
type Options struct {
	// DefaultSnapshotMoveData is Velero's --default-snapshot-move-data, used when the
	// backup's spec.snapshotMoveData is unset.
	DefaultSnapshotMoveData bool
}

// Action is the RestoreItemAction v2 for PVCs. It is safe for concurrent use.
type Action struct {
	client client.Client
	log    logrus.FieldLogger
	opts   Options
	random func() string // selector suffix; replaced in tests
}

var _ riav2.RestoreItemAction = (*Action)(nil)

// NewAction returns the action.
func NewAction(c client.Client, log logrus.FieldLogger, opts Options) *Action {
	return &Action{client: c, log: log, opts: opts, random: func() string { return utilrand.String(8) }}
}

// Name is not called over RPC (Velero uses the registered name); it exists for logs.
func (a *Action) Name() string { return naming.RestoreActionName }

// AppliesTo selects PVCs.
func (a *Action) AppliesTo() (velero.ResourceSelector, error) {
	return velero.ResourceSelector{IncludedResources: []string{"persistentvolumeclaims"}}, nil
}

// Execute creates the DataDownload for a PVC snapmove moved and rewrites the PVC to bind to
// the mover's volume. A PVC it leaves alone is returned unchanged with the reason logged.
func (a *Action) Execute(input *velero.RestoreItemActionExecuteInput) (*velero.RestoreItemActionExecuteOutput, error) {
	ctx := context.Background()
	restore := input.Restore
	var pvc, fromBackup corev1.PersistentVolumeClaim
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(input.Item.UnstructuredContent(), &pvc); err != nil {
		return nil, errors.Wrap(err, "converting item to PersistentVolumeClaim")
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(input.ItemFromBackup.UnstructuredContent(), &fromBackup); err != nil {
		return nil, errors.Wrap(err, "converting backed-up item to PersistentVolumeClaim")
	}
	// The item still carries its backed-up namespace; Velero applies the namespace mapping
	// after the actions ran (pkg/restore/restore.go restoreItem).
	targetNS := pvc.Namespace
	if mapped, ok := restore.Spec.NamespaceMapping[pvc.Namespace]; ok {
		targetNS = mapped
	}
	log := a.log.WithFields(logrus.Fields{"restore": client.ObjectKeyFromObject(restore).String(), "pvc": types.NamespacedName{Namespace: targetNS, Name: pvc.Name}.String()})
	unchanged := &velero.RestoreItemActionExecuteOutput{UpdatedItem: withoutSkipMark(input.Item)}
	skip := func(format string, args ...any) (*velero.RestoreItemActionExecuteOutput, error) {
		log.Infof("leaving PVC alone: "+format, args...)
		return unchanged, nil
	}

	if _, ok := fromBackup.Annotations[velerov1.DataUploadNameAnnotation]; !ok {
		return skip("its data was not moved at backup (no annotation %s)", velerov1.DataUploadNameAnnotation)
	}
	if v := selectorValue(&pvc); v != "" && v != selectorValue(&fromBackup) {
		return skip("another action (Velero's built-in velero.io/csi-pvc-restorer, with EnableCSI) already created its DataDownload (selector %s=%s)", velerov1.DynamicPVRestoreLabel, v)
	}
	existing := &corev1.PersistentVolumeClaim{}
	if err := a.client.Get(ctx, client.ObjectKey{Namespace: targetNS, Name: pvc.Name}, existing); err == nil {
		return skip("the PVC already exists in the cluster")
	} else if !apierrors.IsNotFound(err) {
		return nil, errors.Wrapf(err, "checking whether PVC %s/%s exists", targetNS, pvc.Name)
	}
	if restore.Spec.RestorePVs != nil && !*restore.Spec.RestorePVs {
		log.Info("restore does not restore PV data (spec.restorePVs false): clearing the PVC's volume and data source")
		return &velero.RestoreItemActionExecuteOutput{UpdatedItem: clearVolumeSource(input.Item)}, nil
	}

	backup := &velerov1.Backup{}
	if err := a.client.Get(ctx, client.ObjectKey{Namespace: restore.Namespace, Name: restore.Spec.BackupName}, backup); err != nil {
		return nil, errors.Wrapf(err, "getting backup %s of restore %s", restore.Spec.BackupName, restore.Name)
	}
	moved := a.opts.DefaultSnapshotMoveData
	if backup.Spec.SnapshotMoveData != nil {
		moved = *backup.Spec.SnapshotMoveData
	}
	if !moved {
		return skip("backup %s did not move data (spec.snapshotMoveData false)", backup.Name)
	}

	result, err := a.dataUploadResult(ctx, restore, &pvc)
	if err != nil {
		return nil, err
	}
	if result.DataMover != naming.DataMover {
		return skip("its data was moved by data mover %q, not %s", result.DataMover, naming.DataMover)
	}
	if result.SnapshotID == "" {
		// A backed-up empty volume has a snapshot of its own: no ID means no data. Velero
		// keeps every DataUpload of a PartiallyFailed backup, Failed and Canceled ones
		// too (pkg/restore/actions/dataupload_retrieve_action.go), so this is a restore
		// error for this PVC, never an empty volume in place of the data.
		return nil, errors.Errorf("PVC %s/%s of backup %s has no data to restore: %s; the PVC is not restored rather than restored empty",
			pvc.Namespace, pvc.Name, backup.Name, a.uploadOutcome(ctx, backup, &pvc))
	}

	opID := naming.DownloadOperationID(string(restore.UID), string(fromBackup.UID))
	log = log.WithFields(logrus.Fields{"operationID": opID, "snapshotID": result.SnapshotID})
	updated := RewritePVC(input.Item, DynamicPVRestoreValue(targetNS, pvc.Name, a.random()))

	var list velerov2alpha1.DataDownloadList
	if err := a.client.List(ctx, &list, client.InNamespace(restore.Namespace), client.MatchingLabels{velerov1.AsyncOperationIDLabel: opID}); err != nil {
		return nil, errors.Wrapf(err, "listing DataDownloads of operation %s", opID)
	}
	if len(list.Items) > 0 {
		log.WithField("dataDownload", list.Items[0].Name).Info("DataDownload of this operation exists already: reusing it")
	} else {
		dd := NewDataDownload(DataDownloadParams{
			Restore: restore, Backup: backup, Result: result, PVC: pvc.Name, TargetNamespace: targetNS, OperationID: opID,
		})
		if err := a.client.Create(ctx, dd); err != nil {
			return nil, errors.Wrapf(err, "creating DataDownload for PVC %s/%s", targetNS, pvc.Name)
		}
		log.WithField("dataDownload", dd.Name).Info("created DataDownload for the snapmove mover")
	}
	return &velero.RestoreItemActionExecuteOutput{UpdatedItem: updated, OperationID: opID}, nil
}

// uploadOutcome says why the backup holds no snapshot of pvc: the phase and message of
// its DataUpload while the cluster still has it.
func (a *Action) uploadOutcome(ctx context.Context, backup *velerov1.Backup, pvc *corev1.PersistentVolumeClaim) string {
	var list velerov2alpha1.DataUploadList
	err := a.client.List(ctx, &list, client.InNamespace(backup.Namespace),
		client.MatchingLabels{velerov1.BackupNameLabel: label.GetValidName(backup.Name)})
	if err == nil {
		for _, du := range list.Items {
			if du.Spec.SourceNamespace == pvc.Namespace && du.Spec.SourcePVC == pvc.Name {
				msg := fmt.Sprintf("its DataUpload %s ended %s", du.Name, du.Status.Phase)
				if du.Status.Message != "" {
					msg += " (" + du.Status.Message + ")"
				}
				return msg
			}
		}
	}
	return "its upload did not complete (the backup recorded no snapshot ID)"
}

func selectorValue(pvc *corev1.PersistentVolumeClaim) string {
	if pvc.Spec.Selector == nil {
		return ""
	}
	return pvc.Spec.Selector.MatchLabels[velerov1.DynamicPVRestoreLabel]
}

// dataUploadResult reads the DataUploadResult Velero's velero.io/dataupload action stored
// for this PVC and restore (a ConfigMap in the restore's namespace).
func (a *Action) dataUploadResult(ctx context.Context, restore *velerov1.Restore, pvc *corev1.PersistentVolumeClaim) (*velerov2alpha1.DataUploadResult, error) {
	labels := client.MatchingLabels{
		velerov1.PVCNamespaceNameLabel: label.GetValidName(pvc.Namespace + "." + pvc.Name),
		velerov1.RestoreUIDLabel:       label.GetValidName(string(restore.UID)),
		velerov1.ResourceUsageLabel:    label.GetValidName(string(velerov1.VeleroResourceUsageDataUploadResult)),
	}
	var cms corev1.ConfigMapList
	if err := a.client.List(ctx, &cms, client.InNamespace(restore.Namespace), labels); err != nil {
		return nil, errors.Wrapf(err, "listing DataUploadResults of PVC %s/%s", pvc.Namespace, pvc.Name)
	}
	switch len(cms.Items) {
	case 1:
	case 0:
		return nil, errors.Errorf("no DataUploadResult ConfigMap for PVC %s/%s in restore %s: the backup holds no DataUpload for it (was the backup finalized?)", pvc.Namespace, pvc.Name, restore.Name)
	default:
		return nil, errors.Errorf("%d DataUploadResult ConfigMaps for PVC %s/%s in restore %s: expected one", len(cms.Items), pvc.Namespace, pvc.Name, restore.Name)
	}
	cm := cms.Items[0]
	raw, ok := cm.Data[string(restore.UID)]
	if !ok {
		return nil, errors.Errorf("DataUploadResult ConfigMap %s/%s has no key %s", cm.Namespace, cm.Name, restore.UID)
	}
	result := &velerov2alpha1.DataUploadResult{}
	if err := json.Unmarshal([]byte(raw), result); err != nil {
		return nil, errors.Wrapf(err, "decoding DataUploadResult ConfigMap %s/%s", cm.Namespace, cm.Name)
	}
	return result, nil
}

// Progress reports the DataDownload of operationID. It only reads.
func (a *Action) Progress(operationID string, restore *velerov1.Restore) (velero.OperationProgress, error) {
	if operationID == "" {
		return velero.OperationProgress{}, riav2.InvalidOperationIDError(operationID)
	}
	dd, err := operation.FindDataDownload(context.Background(), a.client, restore.Namespace, operationID)
	if err != nil {
		return velero.OperationProgress{}, err
	}
	return operation.DownloadProgress(dd), nil
}

// Cancel asks the mover to cancel the DataDownload of operationID (spec.cancel).
func (a *Action) Cancel(operationID string, restore *velerov1.Restore) error {
	if operationID == "" {
		return riav2.InvalidOperationIDError(operationID)
	}
	ctx := context.Background()
	dd, err := operation.FindDataDownload(ctx, a.client, restore.Namespace, operationID)
	if err != nil {
		return err
	}
	a.log.WithFields(logrus.Fields{"restore": client.ObjectKeyFromObject(restore).String(), "dataDownload": dd.Name, "operationID": operationID}).Info("canceling DataDownload")
	return operation.CancelDataDownload(ctx, a.client, dd)
}

// AreAdditionalItemsReady is always true: the action returns no additional items.
func (a *Action) AreAdditionalItemsReady([]velero.ResourceIdentifier, *velerov1.Restore) (bool, error) {
	return true, nil
}

// withoutSkipMark removes the backup plugin's record of why a PVC's data was not moved
// (naming.SkippedAnnotation): it describes the backup, not the restored PVC.
func withoutSkipMark(item runtime.Unstructured) runtime.Unstructured {
	u := &unstructured.Unstructured{Object: item.UnstructuredContent()}
	annotations := u.GetAnnotations()
	if _, ok := annotations[naming.SkippedAnnotation]; !ok {
		return item
	}
	u = u.DeepCopy()
	delete(annotations, naming.SkippedAnnotation)
	u.SetAnnotations(annotations)
	return u
}
