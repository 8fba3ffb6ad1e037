package kopia

import (
	"context"

	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/mover/kopia/backup"
	"github.com/snapmove/snapmove/internal/mover/kopia/inspect"
	"github.com/snapmove/snapmove/internal/mover/kopia/restore"
	"github.com/snapmove/snapmove/internal/mover/kopia/store"
	"github.com/snapmove/snapmove/internal/mover/kopia/tree"
	"github.com/snapmove/snapmove/internal/mover/repository"
)

// Options say how to open a repository (store.Options).
type Options = store.Options

// DefaultHash is the content hash of the repositories snapmove creates (store.DefaultHash).
const DefaultHash = store.DefaultHash

// Causes Open reports, and the error of a path not in a snapshot; test with errors.Is.
// store's and tree's doc comments say when each is returned.
var (
	ErrWrongPassword  = store.ErrWrongPassword
	ErrBucketNotFound = store.ErrBucketNotFound
	ErrUnreachable    = store.ErrUnreachable
	ErrUnavailable    = store.ErrUnavailable
	ErrAccessDenied   = store.ErrAccessDenied
	ErrNotInitialized = store.ErrNotInitialized
	ErrNotFound       = tree.ErrNotFound
)

// Repository is an open kopia repository. Its methods may be called concurrently; none
// may be called after Close, except Close. Each method is one room's function (store,
// backup, restore, inspect) called with the open repository.
type Repository struct{ st *store.Repository }

// Open connects to the repository at loc (store.Open).
func Open(ctx context.Context, loc repository.Location, password string, opts Options) (*Repository, error) {
	st, err := store.Open(ctx, loc, password, opts)
	if err != nil {
		return nil, err
	}
	return &Repository{st: st}, nil
}

// Namespaces lists the namespaces that hold a repository below loc (store.Namespaces).
func Namespaces(ctx context.Context, loc repository.Location) ([]string, error) {
	return store.Namespaces(ctx, loc)
}

// VeleroBackups lists the backups Velero stored below loc (store.VeleroBackups).
func VeleroBackups(ctx context.Context, loc repository.Location) ([]string, error) {
	return store.VeleroBackups(ctx, loc)
}

// IsTransient reports whether an error of the data path may pass on its own
// (store.IsTransient).
func IsTransient(err error) bool { return store.IsTransient(err) }

// IsTransient is the package's IsTransient, for the worker, which reaches the data path
// only through its datapath.Repository interface.
func (r *Repository) IsTransient(err error) bool { return store.IsTransient(err) }

// Close closes the repository (store.Repository.Close); it is idempotent.
func (r *Repository) Close(ctx context.Context) error { return r.st.Close(ctx) }

// DeleteSnapshot forgets a snapshot, whatever it belongs to (store.Repository.DeleteSnapshot).
func (r *Repository) DeleteSnapshot(ctx context.Context, snapshotID string) error {
	return r.st.DeleteSnapshot(ctx, snapshotID)
}

// ForgetSnapshot forgets a snapshot of owner's volume and backup, and refuses any other
// (store.Repository.ForgetSnapshot).
func (r *Repository) ForgetSnapshot(ctx context.Context, snapshotID string, owner datapath.SnapshotOwner) error {
	return r.st.ForgetSnapshot(ctx, snapshotID, owner)
}

// ForgetBackupSnapshots forgets every snapshot and checkpoint of owner's volume that
// owner's backup wrote (store.Repository.ForgetBackupSnapshots).
func (r *Repository) ForgetBackupSnapshots(ctx context.Context, owner datapath.SnapshotOwner) ([]string, error) {
	return r.st.ForgetBackupSnapshots(ctx, owner)
}

// Backup snapshots a volume and verifies the snapshot (backup.Backup).
func (r *Repository) Backup(ctx context.Context, req datapath.BackupRequest) (datapath.BackupResult, error) {
	return backup.Backup(ctx, r.st, req)
}

// Restore writes a snapshot to a directory or device (restore.Restore).
func (r *Repository) Restore(ctx context.Context, req datapath.RestoreRequest) (datapath.RestoreResult, error) {
	return restore.Restore(ctx, r.st, req)
}

// RestoreFiles restores chosen paths of a snapshot into a directory (restore.Files).
func (r *Repository) RestoreFiles(ctx context.Context, req datapath.FilesRequest) (datapath.FilesResult, error) {
	return restore.Files(ctx, r.st, req)
}

// Snapshots lists the snapshots of moved volumes (inspect.Snapshots).
func (r *Repository) Snapshots(ctx context.Context) ([]datapath.Snapshot, error) {
	return inspect.Snapshots(ctx, r.st)
}

// ReadDir reads one path of a snapshot, as `ls -l` shows it (inspect.ReadDir).
func (r *Repository) ReadDir(ctx context.Context, snapshotID, rel string) (datapath.Entry, []datapath.Entry, error) {
	return inspect.ReadDir(ctx, r.st, snapshotID, rel)
}

// VerifySnapshot reads a snapshot back and checks it (inspect.Verify, NumCPU readers at
// most 4).
func (r *Repository) VerifySnapshot(ctx context.Context, snapshotID string, mode datapath.VerifyMode, want *datapath.TreeCounts) (datapath.VerifyResult, error) {
	return inspect.Verify(ctx, r.st, snapshotID, mode, want, 0)
}
