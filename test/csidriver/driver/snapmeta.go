package driver

import (
	"errors"
	"io/fs"
	"os"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// defaultMaxResults is the number of tuples per response message when the request's
// max_results is 0 (csi-driver-host-path sends 256 as well).
const defaultMaxResults = 256

// GetMetadataAllocated streams the allocated extents of a block snapshot's image, found
// with SEEK_DATA/SEEK_HOLE, as VARIABLE_LENGTH tuples. Errors follow the spec's table:
// a missing ID or a negative max_results is InvalidArgument, as is a filesystem
// snapshot (it has no block metadata); an unknown snapshot is NotFound; a
// starting_offset below 0 or past the snapshot's size is OutOfRange.
func (d *Driver) GetMetadataAllocated(req *csi.GetMetadataAllocatedRequest, stream csi.SnapshotMetadata_GetMetadataAllocatedServer) error {
	if req.GetSnapshotId() == "" {
		return status.Error(codes.InvalidArgument, "snapshot ID is missing")
	}
	if req.GetMaxResults() < 0 {
		return status.Error(codes.InvalidArgument, "max results must not be negative")
	}
	f, size, err := d.openAllocated(req.GetSnapshotId(), req.GetStartingOffset())
	if err != nil {
		return err
	}
	defer f.Close()
	out := newTupleSender(req.GetMaxResults(), func(bm []*csi.BlockMetadata) error {
		return stream.Send(&csi.GetMetadataAllocatedResponse{
			BlockMetadataType:   csi.BlockMetadataType_VARIABLE_LENGTH,
			VolumeCapacityBytes: size,
			BlockMetadata:       bm,
		})
	})
	if err := dataExtents(f, req.GetStartingOffset(), size, out.add); err != nil {
		return toStatus(err, "listing allocated extents of snapshot %s", req.GetSnapshotId())
	}
	return toStatus(out.flush(), "sending allocated extents of snapshot %s", req.GetSnapshotId())
}

// openAllocated checks a GetMetadataAllocated request against the state and opens the
// snapshot's image. The open file stays readable after a concurrent DeleteSnapshot, so
// the stream runs without d.mu.
func (d *Driver) openAllocated(id string, start int64) (*os.File, int64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.state.Snapshots[id]
	if s == nil {
		return nil, 0, status.Errorf(codes.NotFound, "snapshot %s not found", id)
	}
	if s.Kind != kindBlock {
		return nil, 0, status.Errorf(codes.InvalidArgument, "snapshot %s is of a %s volume, not a block volume", id, s.Kind)
	}
	if start < 0 || start > s.SizeBytes {
		return nil, 0, status.Errorf(codes.OutOfRange, "starting offset %d is outside snapshot %s of %d bytes", start, id, s.SizeBytes)
	}
	f, err := os.Open(d.snapshotPath(s))
	if err != nil {
		return nil, 0, status.Errorf(codes.Internal, "opening image of snapshot %s: %v", id, err)
	}
	return f, s.SizeBytes, nil
}

// GetMetadataDelta streams the ranges of the target snapshot that differ from the base
// snapshot, as VARIABLE_LENGTH tuples, by comparing the block hashes recorded at
// CreateSnapshot (no image is read). The base may have been deleted when
// Config.KeepDeletedSums kept its hashes. Errors follow the spec's table:
//   - InvalidArgument: a missing ID, a negative max_results, a filesystem snapshot,
//     snapshots of different volumes, or a target older than its base;
//   - NotFound: an unknown target, or a base that is unknown or deleted without its
//     hashes kept;
//   - FailedPrecondition ("changed block tracking is not enabled"): base or target has
//     no hashes, because it was taken while the service was off, or their block sizes
//     differ;
//   - OutOfRange: a starting_offset below 0 or past the target's size.
func (d *Driver) GetMetadataDelta(req *csi.GetMetadataDeltaRequest, stream csi.SnapshotMetadata_GetMetadataDeltaServer) error {
	if req.GetBaseSnapshotId() == "" {
		return status.Error(codes.InvalidArgument, "base snapshot ID is missing")
	}
	if req.GetTargetSnapshotId() == "" {
		return status.Error(codes.InvalidArgument, "target snapshot ID is missing")
	}
	if req.GetMaxResults() < 0 {
		return status.Error(codes.InvalidArgument, "max results must not be negative")
	}
	base, target, err := d.loadDeltaSums(req.GetBaseSnapshotId(), req.GetTargetSnapshotId(), req.GetStartingOffset())
	if err != nil {
		return err
	}
	size := target.SizeBytes
	out := newTupleSender(req.GetMaxResults(), func(bm []*csi.BlockMetadata) error {
		return stream.Send(&csi.GetMetadataDeltaResponse{
			BlockMetadataType:   csi.BlockMetadataType_VARIABLE_LENGTH,
			VolumeCapacityBytes: size,
			BlockMetadata:       bm,
		})
	})
	if err := changedExtents(base, target, req.GetStartingOffset(), out.add); err != nil {
		return toStatus(err, "computing changes from snapshot %s to %s", base.SnapshotID, target.SnapshotID)
	}
	return toStatus(out.flush(), "sending changes from snapshot %s to %s", base.SnapshotID, target.SnapshotID)
}

// loadDeltaSums checks a GetMetadataDelta request against the state and reads both
// snapshots' hashes (a few hundred KiB per GiB), so the diff runs without d.mu.
func (d *Driver) loadDeltaSums(baseID, targetID string, start int64) (base, target *blockSums, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	t := d.state.Snapshots[targetID]
	if t == nil {
		return nil, nil, status.Errorf(codes.NotFound, "target snapshot %s not found", targetID)
	}
	if t.Kind != kindBlock {
		return nil, nil, status.Errorf(codes.InvalidArgument, "target snapshot %s is of a %s volume, not a block volume", targetID, t.Kind)
	}
	if b := d.state.Snapshots[baseID]; b != nil && b.Kind != kindBlock {
		return nil, nil, status.Errorf(codes.InvalidArgument, "base snapshot %s is of a %s volume, not a block volume", baseID, b.Kind)
	}
	if start < 0 || start > t.SizeBytes {
		return nil, nil, status.Errorf(codes.OutOfRange, "starting offset %d is outside target snapshot %s of %d bytes", start, targetID, t.SizeBytes)
	}
	base, err = readSums(d.sumsPath(baseID))
	switch {
	case errors.Is(err, fs.ErrNotExist) && d.state.Snapshots[baseID] == nil:
		return nil, nil, status.Errorf(codes.NotFound, "base snapshot %s not found", baseID)
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil, status.Errorf(codes.FailedPrecondition,
			"changed block tracking is not enabled for base snapshot %s: it has no block hashes", baseID)
	case err != nil:
		return nil, nil, status.Errorf(codes.Internal, "reading block hashes of base snapshot %s: %v", baseID, err)
	}
	target, err = readSums(d.sumsPath(targetID))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil, status.Errorf(codes.FailedPrecondition,
			"changed block tracking is not enabled for target snapshot %s: it has no block hashes", targetID)
	case err != nil:
		return nil, nil, status.Errorf(codes.Internal, "reading block hashes of target snapshot %s: %v", targetID, err)
	}
	if base.SourceVolumeID != t.SourceVolumeID {
		return nil, nil, status.Errorf(codes.InvalidArgument, "base snapshot %s is of volume %s, target snapshot %s of volume %s",
			baseID, base.SourceVolumeID, targetID, t.SourceVolumeID)
	}
	if target.CreatedAt.Before(base.CreatedAt) {
		return nil, nil, status.Errorf(codes.InvalidArgument, "target snapshot %s was taken before base snapshot %s", targetID, baseID)
	}
	if base.BlockSize != target.BlockSize {
		return nil, nil, status.Errorf(codes.FailedPrecondition, "block hashes of snapshots %s and %s have different block sizes (%d, %d)",
			baseID, targetID, base.BlockSize, target.BlockSize)
	}
	return base, target, nil
}

// tupleSender batches extents into response messages of at most max tuples. It always
// sends at least one message, so that the client learns volume_capacity_bytes even
// when there is nothing to report.
type tupleSender struct {
	max  int
	buf  []*csi.BlockMetadata
	sent bool
	send func([]*csi.BlockMetadata) error
}

func newTupleSender(maxResults int32, send func([]*csi.BlockMetadata) error) *tupleSender {
	n := int(maxResults)
	if n <= 0 {
		n = defaultMaxResults
	}
	return &tupleSender{max: n, send: send}
}

func (t *tupleSender) add(e extent) error {
	if e.Length <= 0 {
		return nil
	}
	t.buf = append(t.buf, &csi.BlockMetadata{ByteOffset: e.Offset, SizeBytes: e.Length})
	if len(t.buf) < t.max {
		return nil
	}
	return t.flushBuf()
}

func (t *tupleSender) flushBuf() error {
	if err := t.send(t.buf); err != nil {
		return err
	}
	t.buf, t.sent = nil, true
	return nil
}

// flush sends what is buffered, or an empty message if nothing was sent at all.
func (t *tupleSender) flush() error {
	if len(t.buf) == 0 && t.sent {
		return nil
	}
	return t.flushBuf()
}

// toStatus turns an error of a running stream into a gRPC status: a status (from
// stream.Send: the client went away) passes through, anything else is Internal.
func toStatus(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Errorf(codes.Internal, format+": %v", append(args, err)...)
}
