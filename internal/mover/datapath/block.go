package datapath

import (
	"context"
	"fmt"
)

// ByteRange is a byte range of a block device: [Offset, Offset+Length), as a CSI
// SnapshotMetadata service reports it (BlockMetadata).
type ByteRange struct{ Offset, Length int64 }

// BlockChanges tells a block backup which parts of the device to read: a CSI
// SnapshotMetadata service (KEP-3314 changed block tracking) reached for the snapshot
// being backed up. Both calls block until the whole answer is in, or fail; a backup
// that gets an error from either reads more instead (the allocated ranges, then the
// whole device), never less.
type BlockChanges interface {
	// Allocated returns the ranges of the snapshot that hold data; the rest reads as
	// zeros.
	Allocated(ctx context.Context) ([]ByteRange, error)
	// Delta returns the ranges that changed since the snapshot whose CSI snapshot handle
	// is base (the parent backup's change ID); an empty list means nothing changed.
	Delta(ctx context.Context, base string) ([]ByteRange, error)
}

// BlockSource is what a block backup knows of where its device comes from. Its IDs are
// recorded in the snapshot's tags, so that the next backup of the volume can ask what
// changed since this one.
type BlockSource struct {
	// ChangeID is the CSI snapshot handle of the snapshot being read (Velero's
	// cbt-change-id); empty when unknown.
	ChangeID string
	// VolumeID is the CSI volume handle the snapshot was taken of (cbt-volume-id): a
	// parent taken of another volume cannot give a delta. Empty when unknown.
	VolumeID string
	// Changes answers what to read; nil when no metadata service serves the driver, and
	// then NoChanges says why ("no SnapshotMetadataService for driver x").
	Changes   BlockChanges
	NoChanges string
}

// BlockReadMethod is how a block backup chose what to read.
type BlockReadMethod string

// Block read methods, from the cheapest.
const (
	// BlockReadChanged read the ranges changed since the parent and reused the rest.
	BlockReadChanged BlockReadMethod = "changed"
	// BlockReadAllocated read the allocated ranges and stored the rest as zeros.
	BlockReadAllocated BlockReadMethod = "allocated"
	// BlockReadAll read the whole device.
	BlockReadAll BlockReadMethod = "all"
)

// BlockRead is what a block backup read, and why it read that much.
type BlockRead struct {
	Method BlockReadMethod `json:"method"`
	// Fallback says why a cheaper method was not used; empty when none could be.
	Fallback string `json:"fallback,omitempty"`
	// Parent is the snapshot whose blocks were reused (Method changed).
	Parent string `json:"parent,omitempty"`
	// BytesRead is what was read from the device; DeviceBytes its size.
	BytesRead   int64 `json:"bytesRead"`
	DeviceBytes int64 `json:"deviceBytes"`
	// BlocksRead, BlocksReused and BlocksZero count the snapshot's 1 MiB blocks.
	BlocksRead   int `json:"blocksRead"`
	BlocksReused int `json:"blocksReused"`
	BlocksZero   int `json:"blocksZero"`
}

// String says what was read in one line, as the DataUpload's message gives it: "read
// 3.0 MiB of 256 MiB: the blocks changed since snapshot k12…" or "read the whole
// device (256 MiB): no SnapshotMetadataService serves …".
func (r BlockRead) String() string {
	var s string
	switch r.Method {
	case BlockReadChanged:
		s = fmt.Sprintf("read %s of %s: the blocks changed since snapshot %s (changed block tracking)", mib(r.BytesRead), mib(r.DeviceBytes), r.Parent)
	case BlockReadAllocated:
		s = fmt.Sprintf("read %s of %s: the allocated blocks", mib(r.BytesRead), mib(r.DeviceBytes))
	default:
		s = fmt.Sprintf("read the whole device (%s)", mib(r.DeviceBytes))
	}
	if r.Fallback != "" {
		s += " (" + r.Fallback + ")"
	}
	return s
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
