package naming

import (
	"time"

	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	"github.com/vmware-tanzu/velero/pkg/label"
)

// DataMover is the value of DataUpload/DataDownload spec.datamover that the bundled mover
// executes. It is also what users pass to `velero backup create --data-mover`.
const DataMover = "snapmove"

// VeleroDataMover is the spec.datamover of Velero's built-in data mover, which its
// node-agent serves, as it serves "" (Velero's pkg/datamover IsBuiltInUploader). Velero
// exports no constant for it.
const VeleroDataMover = "velero"

// MovementEnded reports whether a DataUpload or DataDownload in phase has ended:
// Completed, Failed or Canceled, the phases no one moves an object out of. The phase
// names are Velero's (velerov2alpha1.DataUploadPhase* and DataDownloadPhase* have the
// same values); this is the one place that says which of them are final.
func MovementEnded(phase string) bool {
	switch velerov2alpha1.DataUploadPhase(phase) {
	case velerov2alpha1.DataUploadPhaseCompleted, velerov2alpha1.DataUploadPhaseFailed, velerov2alpha1.DataUploadPhaseCanceled:
		return true
	}
	return false
}

// Registered plugin names. None contains "velero.io/csi-": Velero skips such actions unless
// the server runs with --features=EnableCSI (pkg/util/csi ShouldSkipAction).
const (
	PluginDomain       = "snapmove.io"
	BackupActionName   = PluginDomain + "/pvc-backupper"
	RestoreActionName  = PluginDomain + "/pvc-restorer"
	DeleteActionName   = PluginDomain + "/dataupload-delete"
	VolumePolicyParam  = "mover" // volume policy `action: {type: custom, parameters: {mover: snapmove}}`
	VolumePolicyMover  = DataMover
	FeatureEnableCSI   = "EnableCSI"
	ManagedByLabel     = "app.kubernetes.io/managed-by"
	ManagedByLabelVal  = DataMover
	DataUploadLabel    = PluginDomain + "/data-upload"   // on objects the mover creates for a DataUpload
	DataDownloadLabel  = PluginDomain + "/data-download" // on objects the mover creates for a DataDownload
	MoverFinalizer     = PluginDomain + "/mover-cleanup"
	MoverConfigMapName = "snapmove-mover" // optional mover settings in Velero's namespace
	// VerifyAnnotation, on a Backup, overrides the mover setting `verify` for its volumes
	// ("none", "metadata", "sample:<percent>", "full"); the backup plugin copies it onto
	// each DataUpload, where the mover reads it.
	VerifyAnnotation = PluginDomain + "/verify"
	// CompressionAnnotation, on a Backup, overrides the mover setting `compression` for
	// its volumes; copied onto each DataUpload like VerifyAnnotation.
	CompressionAnnotation = PluginDomain + "/compression"
	// VerificationAnnotation, on a DataUpload, is what the mover verified after the
	// backup (e.g. "verified (metadata): 2500 files, ..."); `snapmove list` shows it.
	VerificationAnnotation = PluginDomain + "/verification"
	// BlockReadAnnotation, on the DataUpload of a block volume, is what the backup read
	// of the device and why (datapath.BlockRead as JSON: method changed, allocated or
	// all, the fallback's reason, bytes and blocks read).
	BlockReadAnnotation = PluginDomain + "/block-read"
	// SkippedAnnotation, on a PVC as stored in a backup (not on the live PVC), is why the
	// backup plugin did not move its data; `snapmove report` shows it, and the restore
	// plugin removes it.
	SkippedAnnotation = PluginDomain + "/skipped"
)

// MovementUIDLabel is on every object the mover creates for a DataUpload or DataDownload
// (with DataUploadLabel or DataDownloadLabel): the movement's UID. An object of the
// movement's name without it was made by someone else: the mover neither uses, changes
// nor deletes it, and the movement fails naming it.
const MovementUIDLabel = PluginDomain + "/movement-uid"

// Snapshot delete requests: the delete plugin cannot reach the kopia repository (only the
// mover links kopia), so for each DataUpload of a deleted backup it creates a ConfigMap in
// Velero's namespace, labelled DeleteRequestLabel, whose data holds the keys below. The
// mover forgets the snapshot, then sets DeleteRequestPhaseKey to Completed or Failed (with
// DeleteRequestMessageKey); the plugin waits for that and deletes the ConfigMap.
const (
	DeleteRequestLabel = PluginDomain + "/snapshot-delete-request"
	// DeleteRequestWait is how long the delete plugin waits for an answer, from the
	// request's creation; no one reads an answer later, so the mover removes completed
	// requests after it.
	DeleteRequestWait       = 10 * time.Second
	DeleteRequestBackupKey  = "backup"
	DeleteRequestBSLKey     = "backupStorageLocation"
	DeleteRequestNSKey      = "sourceNamespace"
	DeleteRequestPVCKey     = "sourcePVC"
	DeleteRequestSnapKey    = "snapshotID"
	DeleteRequestPhaseKey   = "phase"
	DeleteRequestMessageKey = "message"

	DeleteRequestCompleted = "Completed"
	DeleteRequestFailed    = "Failed"
)

// DeleteRequestBackupUIDKey, in a delete request, is the backup's UID: with it the mover
// also forgets the checkpoints (and snapshots) the backup wrote of the PVC, also when the
// request names no snapshot ID (a canceled or failed upload).
const DeleteRequestBackupUIDKey = "backupUID"

// UploadOperationID is the async operation ID of the DataUpload for one PVC of one backup.
// It is the format Velero's own CSI PVC action uses (pkg/backup/actions/csi/pvc_action.go),
// so a DataUpload can be found again by label velero.io/async-operation-id whichever
// action created it.
func UploadOperationID(backupUID, pvcUID string) string {
	return label.GetValidName("du-" + backupUID + "." + pvcUID)
}

// DownloadOperationID is the async operation ID of the DataDownload for one PVC of one
// restore (pkg/restore/actions/csi/pvc_action.go), keyed by the PVC UID as backed up.
func DownloadOperationID(restoreUID, backedUpPVCUID string) string {
	return label.GetValidName("dd-" + restoreUID + "." + backedUpPVCUID)
}

// Version is snapmove's release, and the tag of the image it expects its workers to run
// (Image:Version); a release build sets it with
// -ldflags "-X github.com/snapmove/snapmove/internal/naming.Version=vX.Y.Z".
var Version = "v0.1.0"

// Image is the repository of snapmove's image.
const Image = "ghcr.io/snapmove/snapmove"
