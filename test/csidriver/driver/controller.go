package driver

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Access modes. Writers are single-node only (the driver serves one node); readers
// may be many. A volume published with a reader mode is always mounted read-only.
var supportedAccessModes = map[csi.VolumeCapability_AccessMode_Mode]bool{
	csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER:        true,
	csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER: true,
	csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER:  true,
	csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY:   true,
	csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY:    true,
}

func isReaderMode(m csi.VolumeCapability_AccessMode_Mode) bool {
	return m == csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY ||
		m == csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY
}

// capabilityKind checks one capability and returns the volume kind it asks for.
func capabilityKind(c *csi.VolumeCapability) (volumeKind, error) {
	if c == nil {
		return "", fmt.Errorf("volume capability is empty")
	}
	if c.GetAccessMode() == nil {
		return "", fmt.Errorf("volume capability has no access mode")
	}
	if m := c.GetAccessMode().GetMode(); !supportedAccessModes[m] {
		return "", fmt.Errorf("access mode %s is not supported", m)
	}
	switch {
	case c.GetMount() != nil:
		return kindFilesystem, nil
	case c.GetBlock() != nil:
		return kindBlock, nil
	default:
		return "", fmt.Errorf("volume capability has neither mount nor block access type")
	}
}

// capabilitiesKind checks all capabilities and returns the one kind they agree on.
func capabilitiesKind(caps []*csi.VolumeCapability) (volumeKind, error) {
	if len(caps) == 0 {
		return "", fmt.Errorf("volume capabilities are missing")
	}
	var kind volumeKind
	for _, c := range caps {
		k, err := capabilityKind(c)
		if err != nil {
			return "", err
		}
		if kind != "" && k != kind {
			return "", fmt.Errorf("volume capabilities mix mount and block access types")
		}
		kind = k
	}
	return kind, nil
}

// requestedCapacity picks the size of a new volume from a capacity range.
func requestedCapacity(r *csi.CapacityRange) (int64, error) {
	req, lim := r.GetRequiredBytes(), r.GetLimitBytes()
	switch {
	case req < 0 || lim < 0:
		return 0, fmt.Errorf("capacity range must not be negative")
	case lim > 0 && req > lim:
		return 0, fmt.Errorf("required bytes %d exceed limit bytes %d", req, lim)
	case req > 0:
		return req, nil
	case lim > 0 && lim < defaultCapacityBytes:
		return lim, nil
	default:
		return defaultCapacityBytes, nil
	}
}

// fitsRange reports whether a volume of size bytes satisfies the capacity range.
func fitsRange(size int64, r *csi.CapacityRange) bool {
	return size >= r.GetRequiredBytes() && (r.GetLimitBytes() == 0 || size <= r.GetLimitBytes())
}

func contentSource(v *volume) *csi.VolumeContentSource {
	switch {
	case v.SourceSnapshotID != "":
		return &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
			Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: v.SourceSnapshotID}}}
	case v.SourceVolumeID != "":
		return &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{
			Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: v.SourceVolumeID}}}
	}
	return nil
}

func csiVolume(v *volume) *csi.Volume {
	return &csi.Volume{VolumeId: v.ID, CapacityBytes: v.CapacityBytes, ContentSource: contentSource(v)}
}

func csiSnapshot(s *snapshot) *csi.Snapshot {
	return &csi.Snapshot{
		SnapshotId:     s.ID,
		SourceVolumeId: s.SourceVolumeID,
		SizeBytes:      s.SizeBytes,
		CreationTime:   timestamppb.New(s.CreatedAt),
		ReadyToUse:     true, // snapshots are complete copies when CreateSnapshot returns
	}
}

// CreateVolume creates an empty volume, or one restored from a snapshot or cloned from
// a volume. The same name with compatible arguments returns the existing volume.
func (d *Driver) CreateVolume(_ context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	if req.GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume name is missing")
	}
	kind, err := capabilitiesKind(req.GetVolumeCapabilities())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	size, err := requestedCapacity(req.GetCapacityRange())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	srcSnapshotID := req.GetVolumeContentSource().GetSnapshot().GetSnapshotId()
	srcVolumeID := req.GetVolumeContentSource().GetVolume().GetVolumeId()
	if req.GetVolumeContentSource() != nil && srcSnapshotID == "" && srcVolumeID == "" {
		return nil, status.Error(codes.InvalidArgument, "volume content source names neither a snapshot nor a volume")
	}

	d.mu.Lock()
	defer d.mu.Unlock()

	if v := d.state.volumeByName(req.GetName()); v != nil {
		if v.Kind != kind || !fitsRange(v.CapacityBytes, req.GetCapacityRange()) ||
			v.SourceSnapshotID != srcSnapshotID || v.SourceVolumeID != srcVolumeID {
			return nil, status.Errorf(codes.AlreadyExists,
				"volume %q already exists as %s (%s, %d bytes) with other arguments", req.GetName(), v.ID, v.Kind, v.CapacityBytes)
		}
		return &csi.CreateVolumeResponse{Volume: csiVolume(v)}, nil
	}

	v := &volume{
		ID: newID(), Name: req.GetName(), Kind: kind, Parameters: req.GetParameters(),
		SourceSnapshotID: srcSnapshotID, SourceVolumeID: srcVolumeID, CreatedAt: time.Now().UTC(),
	}
	// sourcePath is the data to copy ("" for an empty volume); sourceSize its minimum size.
	var sourcePath string
	var sourceSize int64
	switch {
	case srcSnapshotID != "":
		s := d.state.Snapshots[srcSnapshotID]
		if s == nil {
			return nil, status.Errorf(codes.NotFound, "source snapshot %s not found", srcSnapshotID)
		}
		if s.Kind != kind {
			return nil, status.Errorf(codes.InvalidArgument, "source snapshot %s holds a %s volume, %s was requested", s.ID, s.Kind, kind)
		}
		sourcePath, sourceSize = d.snapshotPath(s), s.SizeBytes
	case srcVolumeID != "":
		src := d.state.Volumes[srcVolumeID]
		if src == nil {
			return nil, status.Errorf(codes.NotFound, "source volume %s not found", srcVolumeID)
		}
		if src.Kind != kind {
			return nil, status.Errorf(codes.InvalidArgument, "source volume %s is a %s volume, %s was requested", src.ID, src.Kind, kind)
		}
		sourcePath, sourceSize = d.volumePath(src), src.CapacityBytes
	}
	if size < sourceSize {
		if lim := req.GetCapacityRange().GetLimitBytes(); lim > 0 && lim < sourceSize {
			return nil, status.Errorf(codes.OutOfRange, "limit bytes %d are smaller than the source's %d bytes", lim, sourceSize)
		}
		size = sourceSize
	}
	v.CapacityBytes = size

	path := d.volumePath(v)
	err = createAtomically(path, func(tmp string) error {
		switch {
		case kind == kindFilesystem && sourcePath == "":
			if err := os.Mkdir(tmp, 0o777); err != nil {
				return err
			}
			return os.Chmod(tmp, 0o777) // past the umask: pods of any user may write
		case kind == kindFilesystem:
			return copyTree(sourcePath, tmp)
		case sourcePath == "":
			return createImage(tmp, size)
		default:
			if err := copyImage(sourcePath, tmp); err != nil {
				return err
			}
			return os.Truncate(tmp, size) // grow to the requested size
		}
	})
	if err != nil {
		return nil, status.Errorf(codes.Internal, "creating data of volume %s: %v", v.ID, err)
	}
	d.state.Volumes[v.ID] = v
	if err := d.persist(); err != nil {
		delete(d.state.Volumes, v.ID)
		os.RemoveAll(path)
		return nil, status.Errorf(codes.Internal, "saving state: %v", err)
	}
	d.log.Info("volume created", "volume", v.ID, "name", v.Name, "kind", v.Kind, "capacityBytes", v.CapacityBytes,
		"sourceSnapshot", srcSnapshotID, "sourceVolume", srcVolumeID)
	return &csi.CreateVolumeResponse{Volume: csiVolume(v)}, nil
}

// createImage creates a sparse image file of size bytes.
func createImage(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// DeleteVolume deletes a volume and its data. Unknown IDs succeed; a volume that is
// still published is refused with FailedPrecondition.
func (d *Driver) DeleteVolume(_ context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume ID is missing")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	v := d.state.Volumes[req.GetVolumeId()]
	if v == nil {
		return &csi.DeleteVolumeResponse{}, nil
	}
	if len(v.Publications) > 0 {
		targets := make([]string, 0, len(v.Publications))
		for t := range v.Publications {
			targets = append(targets, t)
		}
		return nil, status.Errorf(codes.FailedPrecondition, "volume %s is still published at %v", v.ID, targets)
	}
	if err := removeData(d.volumePath(v)); err != nil {
		return nil, status.Errorf(codes.Internal, "deleting volume %s: %v", v.ID, err)
	}
	delete(d.state.Volumes, v.ID)
	if err := d.persist(); err != nil {
		return nil, status.Errorf(codes.Internal, "saving state: %v", err)
	}
	d.pruneSums()
	d.log.Info("volume deleted", "volume", v.ID, "name", v.Name)
	return &csi.DeleteVolumeResponse{}, nil
}

// ControllerGetCapabilities lists what the controller service implements.
func (d *Driver) ControllerGetCapabilities(context.Context, *csi.ControllerGetCapabilitiesRequest) (*csi.ControllerGetCapabilitiesResponse, error) {
	var caps []*csi.ControllerServiceCapability
	for _, t := range []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
		csi.ControllerServiceCapability_RPC_LIST_VOLUMES,
		csi.ControllerServiceCapability_RPC_GET_CAPACITY,
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT,
		csi.ControllerServiceCapability_RPC_LIST_SNAPSHOTS,
		csi.ControllerServiceCapability_RPC_CLONE_VOLUME,
		csi.ControllerServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER,
	} {
		caps = append(caps, &csi.ControllerServiceCapability{Type: &csi.ControllerServiceCapability_Rpc{
			Rpc: &csi.ControllerServiceCapability_RPC{Type: t}}})
	}
	return &csi.ControllerGetCapabilitiesResponse{Capabilities: caps}, nil
}

// ValidateVolumeCapabilities confirms the capabilities when the driver supports all of
// them for this volume's kind; otherwise it answers unconfirmed with a message.
func (d *Driver) ValidateVolumeCapabilities(_ context.Context, req *csi.ValidateVolumeCapabilitiesRequest) (*csi.ValidateVolumeCapabilitiesResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume ID is missing")
	}
	if len(req.GetVolumeCapabilities()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "volume capabilities are missing")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	v := d.state.Volumes[req.GetVolumeId()]
	if v == nil {
		return nil, status.Errorf(codes.NotFound, "volume %s not found", req.GetVolumeId())
	}
	kind, err := capabilitiesKind(req.GetVolumeCapabilities())
	if err != nil {
		return &csi.ValidateVolumeCapabilitiesResponse{Message: err.Error()}, nil
	}
	if kind != v.Kind {
		return &csi.ValidateVolumeCapabilitiesResponse{Message: fmt.Sprintf("volume %s is a %s volume", v.ID, v.Kind)}, nil
	}
	return &csi.ValidateVolumeCapabilitiesResponse{Confirmed: &csi.ValidateVolumeCapabilitiesResponse_Confirmed{
		VolumeContext:      req.GetVolumeContext(),
		VolumeCapabilities: req.GetVolumeCapabilities(),
		Parameters:         req.GetParameters(),
	}}, nil
}

// page returns the [start, end) window of n entries for a starting token and max entries,
// and the next token ("" when the window reaches the end).
func page(n int, token string, maxEntries int32) (start, end int, next string, err error) {
	if maxEntries < 0 {
		return 0, 0, "", status.Error(codes.InvalidArgument, "max entries must not be negative")
	}
	if token != "" {
		start, err = strconv.Atoi(token)
		if err != nil || start < 0 || start > n {
			return 0, 0, "", status.Errorf(codes.Aborted, "invalid starting token %q", token)
		}
	}
	end = n
	if maxEntries > 0 && start+int(maxEntries) < n {
		end = start + int(maxEntries)
		next = strconv.Itoa(end)
	}
	return start, end, next, nil
}

// ListVolumes pages through all volumes in ID order; the token is an index.
func (d *Driver) ListVolumes(_ context.Context, req *csi.ListVolumesRequest) (*csi.ListVolumesResponse, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	vols := d.state.sortedVolumes()
	start, end, next, err := page(len(vols), req.GetStartingToken(), req.GetMaxEntries())
	if err != nil {
		return nil, err
	}
	resp := &csi.ListVolumesResponse{NextToken: next}
	for _, v := range vols[start:end] {
		resp.Entries = append(resp.Entries, &csi.ListVolumesResponse_Entry{Volume: csiVolume(v)})
	}
	return resp, nil
}

// GetCapacity reports the space left on the file system holding the state directory
// (0 for capabilities the driver does not support).
func (d *Driver) GetCapacity(_ context.Context, req *csi.GetCapacityRequest) (*csi.GetCapacityResponse, error) {
	if len(req.GetVolumeCapabilities()) > 0 {
		if _, err := capabilitiesKind(req.GetVolumeCapabilities()); err != nil {
			return &csi.GetCapacityResponse{}, nil
		}
	}
	var st unix.Statfs_t
	if err := unix.Statfs(d.cfg.StateDir, &st); err != nil {
		return nil, status.Errorf(codes.Internal, "statfs %s: %v", d.cfg.StateDir, err)
	}
	return &csi.GetCapacityResponse{AvailableCapacity: int64(st.Bavail) * st.Bsize}, nil
}

// CreateSnapshot copies the source volume's data; the snapshot is ready when this returns.
// The same name with the same source returns the existing snapshot.
func (d *Driver) CreateSnapshot(_ context.Context, req *csi.CreateSnapshotRequest) (*csi.CreateSnapshotResponse, error) {
	if req.GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "snapshot name is missing")
	}
	if req.GetSourceVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "source volume ID is missing")
	}
	d.mu.Lock()
	defer d.mu.Unlock()

	if s := d.state.snapshotByName(req.GetName()); s != nil {
		if s.SourceVolumeID != req.GetSourceVolumeId() {
			return nil, status.Errorf(codes.AlreadyExists, "snapshot %q already exists as %s of volume %s",
				req.GetName(), s.ID, s.SourceVolumeID)
		}
		return &csi.CreateSnapshotResponse{Snapshot: csiSnapshot(s)}, nil
	}
	v := d.state.Volumes[req.GetSourceVolumeId()]
	if v == nil {
		return nil, status.Errorf(codes.NotFound, "source volume %s not found", req.GetSourceVolumeId())
	}
	s := &snapshot{
		ID: newID(), Name: req.GetName(), SourceVolumeID: v.ID, Kind: v.Kind, SizeBytes: v.CapacityBytes,
		Parameters: req.GetParameters(), CreatedAt: time.Now().UTC(),
	}
	path := d.snapshotPath(s)
	err := createAtomically(path, func(tmp string) error {
		if v.Kind == kindBlock {
			return copyImage(d.volumePath(v), tmp)
		}
		return copyTree(d.volumePath(v), tmp)
	})
	if err != nil {
		return nil, status.Errorf(codes.Internal, "copying volume %s into snapshot %s: %v", v.ID, s.ID, err)
	}
	if d.cfg.SnapshotMetadata && s.Kind == kindBlock {
		// Hash the snapshot's copy, not the volume, which may have changed since.
		sums, err := computeSums(path, sumsHeader{Version: sumsVersion, BlockSize: sumBlockSize, SizeBytes: s.SizeBytes,
			SnapshotID: s.ID, SourceVolumeID: v.ID, CreatedAt: s.CreatedAt})
		if err == nil {
			err = sums.write(d.sumsPath(s.ID))
		}
		if err != nil {
			os.RemoveAll(path)
			return nil, status.Errorf(codes.Internal, "recording block hashes of snapshot %s: %v", s.ID, err)
		}
	}
	d.state.Snapshots[s.ID] = s
	if err := d.persist(); err != nil {
		delete(d.state.Snapshots, s.ID)
		os.RemoveAll(path)
		os.Remove(d.sumsPath(s.ID))
		return nil, status.Errorf(codes.Internal, "saving state: %v", err)
	}
	d.log.Info("snapshot created", "snapshot", s.ID, "name", s.Name, "volume", v.ID, "sizeBytes", s.SizeBytes)
	return &csi.CreateSnapshotResponse{Snapshot: csiSnapshot(s)}, nil
}

// DeleteSnapshot deletes a snapshot and its data; unknown IDs succeed.
func (d *Driver) DeleteSnapshot(_ context.Context, req *csi.DeleteSnapshotRequest) (*csi.DeleteSnapshotResponse, error) {
	if req.GetSnapshotId() == "" {
		return nil, status.Error(codes.InvalidArgument, "snapshot ID is missing")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.state.Snapshots[req.GetSnapshotId()]
	if s == nil {
		return &csi.DeleteSnapshotResponse{}, nil
	}
	if err := removeData(d.snapshotPath(s)); err != nil {
		return nil, status.Errorf(codes.Internal, "deleting snapshot %s: %v", s.ID, err)
	}
	delete(d.state.Snapshots, s.ID)
	if err := d.persist(); err != nil {
		return nil, status.Errorf(codes.Internal, "saving state: %v", err)
	}
	d.pruneSums() // after persisting: a crash in between leaves a .sums file, never a snapshot without one
	d.log.Info("snapshot deleted", "snapshot", s.ID, "name", s.Name)
	return &csi.DeleteSnapshotResponse{}, nil
}

// ListSnapshots pages through the snapshots in ID order, filtered by snapshot ID and/or
// source volume ID.
func (d *Driver) ListSnapshots(_ context.Context, req *csi.ListSnapshotsRequest) (*csi.ListSnapshotsResponse, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	all := d.state.sortedSnapshots()
	var snaps []*snapshot
	for _, s := range all {
		if (req.GetSnapshotId() == "" || s.ID == req.GetSnapshotId()) &&
			(req.GetSourceVolumeId() == "" || s.SourceVolumeID == req.GetSourceVolumeId()) {
			snaps = append(snaps, s)
		}
	}
	start, end, next, err := page(len(snaps), req.GetStartingToken(), req.GetMaxEntries())
	if err != nil {
		return nil, err
	}
	resp := &csi.ListSnapshotsResponse{NextToken: next}
	for _, s := range snaps[start:end] {
		resp.Entries = append(resp.Entries, &csi.ListSnapshotsResponse_Entry{Snapshot: csiSnapshot(s)})
	}
	return resp, nil
}
