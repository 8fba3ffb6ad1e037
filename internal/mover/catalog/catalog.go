package catalog

import (
	"context"
	"time"

	"github.com/pkg/errors"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"

	"github.com/snapmove/snapmove/internal/mover/connect"
	"github.com/snapmove/snapmove/internal/mover/datapath"
)

// Repository is what the commands read from the repository of one source namespace
// (*kopia.Repository, opened read-only).
type Repository interface {
	Snapshots(ctx context.Context) ([]datapath.Snapshot, error)
	ReadDir(ctx context.Context, snapshotID, rel string) (datapath.Entry, []datapath.Entry, error)
	RestoreFiles(ctx context.Context, req datapath.FilesRequest) (datapath.FilesResult, error)
	VerifySnapshot(ctx context.Context, snapshotID string, mode datapath.VerifyMode, want *datapath.TreeCounts) (datapath.VerifyResult, error)
	Close(ctx context.Context) error
}

// Repositories opens the repositories of a BackupStorageLocation read-only.
type Repositories interface {
	Open(ctx context.Context, bsl *velerov1.BackupStorageLocation, namespace string) (Repository, error)
	// Namespaces are the source namespaces that hold a repository on bsl.
	Namespaces(ctx context.Context, bsl *velerov1.BackupStorageLocation) ([]string, error)
}

// ReadOnly adapts a connect.Reader to Repositories.
func ReadOnly(r *connect.Reader) Repositories { return readOnly{r} }

type readOnly struct{ r *connect.Reader }

func (o readOnly) Open(ctx context.Context, bsl *velerov1.BackupStorageLocation, namespace string) (Repository, error) {
	repo, err := o.r.Open(ctx, bsl, namespace)
	if err != nil {
		return nil, err
	}
	return repo, nil
}

func (o readOnly) Namespaces(ctx context.Context, bsl *velerov1.BackupStorageLocation) ([]string, error) {
	return o.r.Namespaces(ctx, bsl)
}

// Volume is one volume's data in one backup: what the DataUpload recorded and, where
// the repository was read, what the snapshot holds.
type Volume struct {
	Backup    string `json:"backup"`
	Namespace string `json:"namespace"`
	PVC       string `json:"pvc"`
	// SnapshotID is the kopia snapshot; empty when the upload did not complete.
	SnapshotID string `json:"snapshotID,omitempty"`
	// Phase and Message are the DataUpload's; from the repository alone, Phase is
	// Completed (only complete snapshots are listed).
	Phase   string `json:"phase"`
	Message string `json:"message,omitempty"`
	// DataMover is the DataUpload's spec.datamover ("velero" for Velero's built-in one).
	DataMover        string `json:"dataMover"`
	DataUpload       string `json:"dataUpload,omitempty"`
	StorageLocation  string `json:"storageLocation"`
	TotalBytes       int64  `json:"totalBytes"`
	IncrementalBytes int64  `json:"incrementalBytes"`
	// Files is the snapshot's file count; -1 when the repository was not read.
	Files     int64      `json:"files"`
	Started   *time.Time `json:"started,omitempty"`
	Completed *time.Time `json:"completed,omitempty"`
	// Verification is what the mover checked after the backup (its record), "" if none.
	Verification string `json:"verification,omitempty"`
}

// Key is the volume as namespace/pvc.
func (v Volume) Key() string { return v.Namespace + "/" + v.PVC }

// Duration is how long the move took, 0 when unknown.
func (v Volume) Duration() time.Duration {
	if v.Started == nil || v.Completed == nil {
		return 0
	}
	return v.Completed.Sub(*v.Started)
}

// ErrNoVolume is wrapped by errors that say a backup holds no data of a volume.
var ErrNoVolume = errors.New("no moved data for this volume")
