package controller

import (
	"time"

	"github.com/vmware-tanzu/velero/pkg/apis/velero/shared"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/mover/expose"
)

// Phases: Velero's (velerov2alpha1), as the strings the movement interface uses for both
// kinds (DataUpload and DataDownload use the same values). Which of them end a movement
// is naming.MovementEnded.
const (
	phaseNew        = string(velerov2alpha1.DataUploadPhaseNew)
	phaseAccepted   = string(velerov2alpha1.DataUploadPhaseAccepted)
	phasePrepared   = string(velerov2alpha1.DataUploadPhasePrepared)
	phaseInProgress = string(velerov2alpha1.DataUploadPhaseInProgress)
	phaseCanceling  = string(velerov2alpha1.DataUploadPhaseCanceling)
	phaseCanceled   = string(velerov2alpha1.DataUploadPhaseCanceled)
	phaseCompleted  = string(velerov2alpha1.DataUploadPhaseCompleted)
	phaseFailed     = string(velerov2alpha1.DataUploadPhaseFailed)
)

// isNew: not claimed yet (a New object may have no phase at all).
func isNew(p string) bool { return p == "" || p == phaseNew }

// phaseOrNew is p for messages: an object without a phase is New.
func phaseOrNew(p string) string {
	if p == "" {
		return phaseNew
	}
	return p
}

// isActive: claimed and not finished; what the concurrency limit counts.
func isActive(phase string) bool {
	return phase == phaseAccepted || phase == phasePrepared || phase == phaseInProgress || phase == phaseCanceling
}

// movement is what the shared phase functions read and write on a DataUpload or a
// DataDownload. Both have the same phases and nearly the same status.
type movement interface {
	object() client.Object // *DataUpload or *DataDownload, as registered in the scheme
	newObject() client.Object
	replace(fresh client.Object)
	kind() string
	logKey() string // the log field that names the object: dataUpload, dataDownload
	op() expose.Operation
	dataMover() string
	phase() string
	setPhase(string)
	cancelRequested() bool
	message() string
	setMessage(string)
	acceptedAt() *metav1.Time
	setAccepted(by string, at metav1.Time)
	node() string
	setNode(string)
	// setNodeOS records the OS of the node the worker runs on (status.nodeOS, which
	// Velero's restore reads to place a later restore).
	setNodeOS(velerov2alpha1.NodeOS)
	startedAt() *metav1.Time
	setStarted(at metav1.Time)
	setCompleted(at metav1.Time)
	progress() *shared.DataMoveOperationProgress
	incrementalBytes() int64 // 0 where the kind has none
	// operationTimeout is spec.operationTimeout (0: unset).
	operationTimeout() time.Duration
	// specClaim is what the spec says now of what the mover acts on (claim.go).
	specClaim() claim
}

type upload struct{ du *velerov2alpha1.DataUpload }

func (u upload) object() client.Object                       { return u.du }
func (u upload) newObject() client.Object                    { return &velerov2alpha1.DataUpload{} }
func (u upload) replace(fresh client.Object)                 { *u.du = *fresh.(*velerov2alpha1.DataUpload) }
func (u upload) kind() string                                { return "DataUpload" }
func (u upload) logKey() string                              { return "dataUpload" }
func (u upload) setNodeOS(os velerov2alpha1.NodeOS)          { u.du.Status.NodeOS = os }
func (u upload) operationTimeout() time.Duration             { return u.du.Spec.OperationTimeout.Duration }
func (u upload) incrementalBytes() int64                     { return u.du.Status.IncrementalBytes }
func (u upload) setStarted(at metav1.Time)                   { u.du.Status.StartTimestamp = &at }
func (u upload) op() expose.Operation                        { return expose.Backup }
func (u upload) dataMover() string                           { return u.du.Spec.DataMover }
func (u upload) phase() string                               { return string(u.du.Status.Phase) }
func (u upload) setPhase(p string)                           { u.du.Status.Phase = velerov2alpha1.DataUploadPhase(p) }
func (u upload) cancelRequested() bool                       { return u.du.Spec.Cancel }
func (u upload) message() string                             { return u.du.Status.Message }
func (u upload) setMessage(m string)                         { u.du.Status.Message = m }
func (u upload) acceptedAt() *metav1.Time                    { return u.du.Status.AcceptedTimestamp }
func (u upload) node() string                                { return u.du.Status.Node }
func (u upload) setNode(n string)                            { u.du.Status.Node = n }
func (u upload) startedAt() *metav1.Time                     { return u.du.Status.StartTimestamp }
func (u upload) setCompleted(at metav1.Time)                 { u.du.Status.CompletionTimestamp = &at }
func (u upload) progress() *shared.DataMoveOperationProgress { return &u.du.Status.Progress }
func (u upload) setAccepted(by string, at metav1.Time) {
	u.du.Status.AcceptedByNode, u.du.Status.AcceptedTimestamp = by, &at
}

func (u upload) specClaim() claim {
	c := claim{SourceNamespace: u.du.Spec.SourceNamespace, BackupStorageLocation: u.du.Spec.BackupStorageLocation, SourcePVC: u.du.Spec.SourcePVC}
	if s := u.du.Spec.CSISnapshot; s != nil {
		c.VolumeSnapshot, c.StorageClass = s.VolumeSnapshot, s.StorageClass
	}
	return c
}

type download struct{ dd *velerov2alpha1.DataDownload }

func (d download) object() client.Object                       { return d.dd }
func (d download) newObject() client.Object                    { return &velerov2alpha1.DataDownload{} }
func (d download) replace(fresh client.Object)                 { *d.dd = *fresh.(*velerov2alpha1.DataDownload) }
func (d download) kind() string                                { return "DataDownload" }
func (d download) logKey() string                              { return "dataDownload" }
func (d download) setNodeOS(velerov2alpha1.NodeOS)             {} // DataDownload has no status.nodeOS
func (d download) operationTimeout() time.Duration             { return d.dd.Spec.OperationTimeout.Duration }
func (d download) incrementalBytes() int64                     { return 0 }
func (d download) op() expose.Operation                        { return expose.Restore }
func (d download) dataMover() string                           { return d.dd.Spec.DataMover }
func (d download) phase() string                               { return string(d.dd.Status.Phase) }
func (d download) setPhase(p string)                           { d.dd.Status.Phase = velerov2alpha1.DataDownloadPhase(p) }
func (d download) cancelRequested() bool                       { return d.dd.Spec.Cancel }
func (d download) message() string                             { return d.dd.Status.Message }
func (d download) setMessage(m string)                         { d.dd.Status.Message = m }
func (d download) acceptedAt() *metav1.Time                    { return d.dd.Status.AcceptedTimestamp }
func (d download) node() string                                { return d.dd.Status.Node }
func (d download) setNode(n string)                            { d.dd.Status.Node = n }
func (d download) startedAt() *metav1.Time                     { return d.dd.Status.StartTimestamp }
func (d download) setStarted(at metav1.Time)                   { d.dd.Status.StartTimestamp = &at }
func (d download) setCompleted(at metav1.Time)                 { d.dd.Status.CompletionTimestamp = &at }
func (d download) progress() *shared.DataMoveOperationProgress { return &d.dd.Status.Progress }
func (d download) setAccepted(by string, at metav1.Time) {
	d.dd.Status.AcceptedByNode, d.dd.Status.AcceptedTimestamp = by, &at
}

func (d download) specClaim() claim {
	s := d.dd.Spec
	return claim{
		SourceNamespace: s.SourceNamespace, BackupStorageLocation: s.BackupStorageLocation, SnapshotID: s.SnapshotID,
		TargetNamespace: s.TargetVolume.Namespace, TargetPVC: s.TargetVolume.PVC,
	}
}

// key is namespace/name of m, for messages.
func key(m movement) string { return describe(m.object().GetNamespace(), m.object().GetName()) }
