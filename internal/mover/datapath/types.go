package datapath

import (
	"context"
	"fmt"
	"time"
)

// Repository moves a volume's bytes: an open repository (*kopia.Repository, opened by
// package connect for package worker). Backup and Restore block until done or ctx is
// canceled; Close may be called once they returned, and is idempotent. IsTransient
// reports whether an error of Backup or Restore may pass on its own (the store
// unreachable, a 5xx or throttling after the data path's own retries); it does not block.
type Repository interface {
	Backup(ctx context.Context, req BackupRequest) (BackupResult, error)
	Restore(ctx context.Context, req RestoreRequest) (RestoreResult, error)
	IsTransient(err error) bool
	Close(ctx context.Context) error
}

// Progress is a snapshot of a running backup or restore, in bytes of file data.
type Progress struct{ TotalBytes, BytesDone int64 }

// DefaultProgressInterval is how often the data path calls OnProgress when the request
// does not say (Velero's uploader reports every 10 s).
const DefaultProgressInterval = 10 * time.Second

// BackupRequest says what to back up.
type BackupRequest struct {
	// SourceNamespace and SourcePVC name the kopia source:
	// default@default:snapshot-data-upload-download/kopia/<ns>/<pvc>.
	SourceNamespace, SourcePVC string
	// Path is the mounted volume directory, or with Block the block device (a regular
	// file is accepted too, for tests).
	Path  string
	Block bool
	// Tags are added to the snapshot manifest (e.g. velero.io/async-operation-id);
	// snapshot-requester and snapshot-uploader are always Velero's values.
	Tags map[string]string
	// Parallel is the number of files read at once; 0 lets the data path choose.
	Parallel int
	// OnProgress, when set, is called at most every ProgressInterval (0: the data path's
	// default), and once more at the end with both fields equal to the snapshot's total
	// file size. Calls never overlap; none follows the last. It must not block.
	OnProgress       func(Progress)
	ProgressInterval time.Duration
	// Compression is the kopia compressor of the volume's data, one of Compressors;
	// "" means CompressionNone. It becomes the policy of the snapshot source, so the
	// kopia CLI shows what was applied.
	Compression string
	// CheckpointInterval is how often an upload saves a checkpoint (an incomplete
	// snapshot) that a retried or the next backup of the volume resumes from; 0 means the
	// data path's default.
	CheckpointInterval time.Duration
	// Verify says what is read back from the repository before the snapshot is saved;
	// the zero value means VerifyMetadata. A snapshot that fails verification is not
	// saved and the backup fails.
	Verify VerifyMode
	// BlockSource, with Block, says where the device comes from and what changed in it
	// (changed block tracking); the zero value reads the whole device.
	BlockSource BlockSource
}

// CompressionNone stores data uncompressed, as Velero does.
const CompressionNone = "none"

// Compressors are the compressions a backup may use: none, and kopia's zstd and s2
// families, which every kopia that Velero links reads (LZ4 is not offered: kopia 0.23
// no longer reads it). The kopia package's tests check each against kopia's registry.
var Compressors = []string{
	CompressionNone,
	"zstd", "zstd-fastest", "zstd-better-compression",
	"s2-default", "s2-better", "s2-parallel-4", "s2-parallel-8",
}

// BackupResult describes the snapshot a backup wrote.
type BackupResult struct {
	SnapshotID string
	// TotalBytes is the snapshot's total file size; IncrementalBytes the part of it that
	// was read because the parent snapshot did not cover it (Velero: total - cached).
	TotalBytes, IncrementalBytes int64
	// Empty: the volume held no file data; the snapshot exists nonetheless.
	Empty bool
	// Verification is what was checked after the snapshot was saved.
	Verification VerifyResult
	// Block is what a block backup read, and why; nil for a filesystem backup.
	Block *BlockRead
}

// VerifyLevel is how much of a saved snapshot is read back.
type VerifyLevel string

// Verify levels. The empty level is VerifyMetadata, the default.
const (
	// VerifyNone reads nothing back.
	VerifyNone VerifyLevel = "none"
	// VerifyMetadata reads back the manifest and every directory, checks that every
	// file's contents are in the repository's index, and that the entry counts and file
	// bytes match what the upload reported.
	VerifyMetadata VerifyLevel = "metadata"
	// VerifySample is VerifyMetadata, and reads back the content of a share of the files
	// (VerifyMode.Percent), chosen deterministically.
	VerifySample VerifyLevel = "sample"
	// VerifyFull is VerifyMetadata, and reads back the content of every file.
	VerifyFull VerifyLevel = "full"
)

// VerifyMode says what a verification reads back. Its text form ("none", "metadata",
// "sample:<percent>", "full") is parsed and written by package config.
type VerifyMode struct {
	Level VerifyLevel
	// Percent is the share of files VerifySample reads, 1-100.
	Percent int
}

// String is the mode as the mover's settings write it ("sample:10"); the zero mode is
// "metadata".
func (m VerifyMode) String() string {
	switch m.Level {
	case "":
		return string(VerifyMetadata)
	case VerifySample:
		return fmt.Sprintf("%s:%d", VerifySample, m.Percent)
	}
	return string(m.Level)
}

// TreeCounts are the entries of a snapshot's tree and the bytes of its files.
// Directories include the root.
type TreeCounts struct {
	Files, Dirs, Symlinks, Bytes int64
}

// VerifyResult is what a verification checked: data, which the printers put into words
// (catalog.DescribeVerification: "verified (metadata): 2500 files, 34 directories,
// 1.15 GB in 1.2s").
type VerifyResult struct {
	Mode VerifyMode
	// Checked are the entries read back (for VerifyNone, none).
	Checked TreeCounts
	// Shared are the entries of Checked not read back again because a parent snapshot
	// verified with at least this mode holds them unchanged (the same objects).
	Shared TreeCounts
	// FilesRead and BytesRead are the files whose content was read back in full.
	FilesRead, BytesRead int64
	Duration             time.Duration
}

// RestoreRequest says what to restore where.
type RestoreRequest struct {
	SnapshotID string
	// Path is the target directory (created if missing), or with Block the device
	// (a regular file is accepted too, for tests).
	Path  string
	Block bool
	// Parallel is the number of concurrent writers; 0 means NumCPU.
	Parallel int
	// WriteSparse turns all-zero filesystem blocks into holes. Without it, all-zero runs
	// are allocated instead of written, so files keep their allocation but zeros cost no
	// I/O. Block devices are always written in full.
	WriteSparse bool
	// OnProgress, when set, is called every ProgressInterval (0: the data path's default)
	// and once at the end with both fields equal to the restored size. It must not block.
	OnProgress       func(Progress)
	ProgressInterval time.Duration
}

// RestoreResult describes a finished restore.
type RestoreResult struct{ TotalBytes int64 }

// SnapshotOwner is the backup and volume a delete request names: a snapshot is forgotten
// for it only when its kopia source is the volume's and its backup tags name the backup.
type SnapshotOwner struct {
	// Namespace and PVC make the kopia source path (Velero's data mover's).
	Namespace, PVC string
	// Backup is the velero.io/backup-name tag the worker wrote: the DataUpload's label,
	// Velero's label.GetValidName of the backup's name.
	Backup string
	// BackupUID, when set, must equal the velero.io/backup-uid tag. Only an owner with
	// a UID forgets by tag (snapshots and checkpoints without a given ID): a backup's
	// name may be used again by a later backup, its UID never.
	BackupUID string
}
