package driver

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// metaClient serves d on a socket below dir and returns a SnapshotMetadata client.
func metaClient(t *testing.T, d *Driver, dir string) (csi.SnapshotMetadataClient, csi.IdentityClient) {
	t.Helper()
	sock := filepath.Join(dir, "csi.sock")
	serve(t, d, sock)
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return csi.NewSnapshotMetadataClient(conn), csi.NewIdentityClient(conn)
}

// metaResponse is what both RPCs stream.
type metaResponse interface {
	GetBlockMetadataType() csi.BlockMetadataType
	GetVolumeCapacityBytes() int64
	GetBlockMetadata() []*csi.BlockMetadata
}

// drain reads a stream to its end and returns the tuples of each message.
func drain[R metaResponse](t *testing.T, recv func() (R, error), capacity int64) ([][]extent, error) {
	t.Helper()
	var msgs [][]extent
	for {
		r, err := recv()
		if errors.Is(err, io.EOF) {
			return msgs, nil
		}
		if err != nil {
			return msgs, err
		}
		require.Equal(t, csi.BlockMetadataType_VARIABLE_LENGTH, r.GetBlockMetadataType())
		require.Equal(t, capacity, r.GetVolumeCapacityBytes())
		var m []extent
		for _, bm := range r.GetBlockMetadata() {
			m = append(m, extent{Offset: bm.GetByteOffset(), Length: bm.GetSizeBytes()})
		}
		msgs = append(msgs, m)
	}
}

func allocated(t *testing.T, c csi.SnapshotMetadataClient, capacity int64, req *csi.GetMetadataAllocatedRequest) ([][]extent, error) {
	t.Helper()
	s, err := c.GetMetadataAllocated(context.Background(), req)
	require.NoError(t, err)
	return drain(t, s.Recv, capacity)
}

func delta(t *testing.T, c csi.SnapshotMetadataClient, capacity int64, req *csi.GetMetadataDeltaRequest) ([][]extent, error) {
	t.Helper()
	s, err := c.GetMetadataDelta(context.Background(), req)
	require.NoError(t, err)
	return drain(t, s.Recv, capacity)
}

// writeVolume writes fill bytes into ranges of a block volume's image.
func writeVolume(t *testing.T, d *Driver, volumeID string, fill byte, data ...extent) {
	t.Helper()
	f, err := os.OpenFile(d.volumePath(d.state.Volumes[volumeID]), os.O_WRONLY, 0)
	require.NoError(t, err)
	defer f.Close()
	for _, e := range data {
		b := make([]byte, e.Length)
		for i := range b {
			b[i] = fill
		}
		_, err := f.WriteAt(b, e.Offset)
		require.NoError(t, err)
	}
}

// zeroVolume writes zero bytes (allocating, not punching holes) into a range.
func zeroVolume(t *testing.T, d *Driver, volumeID string, e extent) {
	t.Helper()
	f, err := os.OpenFile(d.volumePath(d.state.Volumes[volumeID]), os.O_WRONLY, 0)
	require.NoError(t, err)
	defer f.Close()
	_, err = f.WriteAt(make([]byte, e.Length), e.Offset)
	require.NoError(t, err)
}

func createVolume(t *testing.T, d *Driver, name string, block bool, size int64) string {
	t.Helper()
	r, err := d.CreateVolume(context.Background(), &csi.CreateVolumeRequest{
		Name: name, CapacityRange: &csi.CapacityRange{RequiredBytes: size},
		VolumeCapabilities: []*csi.VolumeCapability{capability(rwo, block)},
	})
	require.NoError(t, err)
	return r.GetVolume().GetVolumeId()
}

func createSnapshot(t *testing.T, d *Driver, name, volumeID string) string {
	t.Helper()
	r, err := d.CreateSnapshot(context.Background(), &csi.CreateSnapshotRequest{Name: name, SourceVolumeId: volumeID})
	require.NoError(t, err)
	return r.GetSnapshot().GetSnapshotId()
}

func TestSnapshotMetadata(t *testing.T) {
	dir := t.TempDir()
	requireHoles(t, dir)
	d := newTestDriver(t, dir)
	c, _ := metaClient(t, d, dir)

	const size = 1<<20 + 10*kib // 16 hash blocks and a short 17th
	vol := createVolume(t, d, "vol", true, size)
	writeVolume(t, d, vol, 0x5a, extent{0, 4 * kib}, extent{128 * kib, 128 * kib}, extent{1 << 20, 10 * kib})
	snap1 := createSnapshot(t, d, "snap1", vol)
	// Change hash blocks 3 and 4 (adjacent), 8, and the short last one; write zeros
	// over a hole (block 5), which reads the same and so is no change.
	writeVolume(t, d, vol, 0xa5, extent{192*kib + 100, 8 * kib}, extent{300 * kib, 1}, extent{512 * kib, 1}, extent{1<<20 + 9*kib, 1})
	zeroVolume(t, d, vol, extent{320 * kib, 64 * kib})
	snap2 := createSnapshot(t, d, "snap2", vol)
	require.FileExists(t, d.sumsPath(snap1))

	fsVol := createVolume(t, d, "fsvol", false, 1<<20)
	fsSnap := createSnapshot(t, d, "fssnap", fsVol)
	require.NoFileExists(t, d.sumsPath(fsSnap), "filesystem snapshots have no block hashes")
	// A restored volume is another volume: its snapshots are no delta of vol's.
	r, err := d.CreateVolume(context.Background(), &csi.CreateVolumeRequest{
		Name: "restored", VolumeCapabilities: []*csi.VolumeCapability{capability(rwo, true)},
		VolumeContentSource: &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
			Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: snap1}}},
	})
	require.NoError(t, err)
	otherSnap := createSnapshot(t, d, "other", r.GetVolume().GetVolumeId())

	allocAll := []extent{{0, 4 * kib}, {128 * kib, 128 * kib}, {1 << 20, 10 * kib}}
	t.Run("allocated", func(t *testing.T) {
		tests := []struct {
			name  string
			start int64
			max   int32
			want  [][]extent
		}{
			{name: "all in one message", want: [][]extent{allocAll}},
			{name: "one per message", max: 1, want: [][]extent{allocAll[:1], allocAll[1:2], allocAll[2:]}},
			{name: "two per message", max: 2, want: [][]extent{allocAll[:2], allocAll[2:]}},
			{name: "exactly max", max: 3, want: [][]extent{allocAll}},
			{name: "start straddles an extent", start: 200 * kib, want: [][]extent{{{200 * kib, 56 * kib}, allocAll[2]}}},
			{name: "start in a hole", start: 100 * kib, max: 1, want: [][]extent{allocAll[1:2], allocAll[2:]}},
			{name: "start at the end: one empty message", start: size, want: [][]extent{nil}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, err := allocated(t, c, size, &csi.GetMetadataAllocatedRequest{SnapshotId: snap1, StartingOffset: tt.start, MaxResults: tt.max})
				require.NoError(t, err)
				require.Equal(t, tt.want, got)
			})
		}
	})

	changes := []extent{{192 * kib, 128 * kib}, {512 * kib, 64 * kib}, {1 << 20, 10 * kib}}
	t.Run("delta", func(t *testing.T) {
		tests := []struct {
			name         string
			base, target string
			start        int64
			max          int32
			want         [][]extent
		}{
			{name: "all in one message", base: snap1, target: snap2, want: [][]extent{changes}},
			{name: "one per message", base: snap1, target: snap2, max: 1, want: [][]extent{changes[:1], changes[1:2], changes[2:]}},
			{name: "two per message", base: snap1, target: snap2, max: 2, want: [][]extent{changes[:2], changes[2:]}},
			{name: "start straddles a range", base: snap1, target: snap2, start: 200 * kib,
				want: [][]extent{{{200 * kib, 120 * kib}, changes[1], changes[2]}}},
			{name: "start between ranges", base: snap1, target: snap2, start: 400 * kib, want: [][]extent{changes[1:]}},
			{name: "start at the end: one empty message", base: snap1, target: snap2, start: size, want: [][]extent{nil}},
			{name: "a snapshot against itself", base: snap2, target: snap2, want: [][]extent{nil}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, err := delta(t, c, size, &csi.GetMetadataDeltaRequest{
					BaseSnapshotId: tt.base, TargetSnapshotId: tt.target, StartingOffset: tt.start, MaxResults: tt.max})
				require.NoError(t, err)
				require.Equal(t, tt.want, got)
			})
		}
	})

	t.Run("errors", func(t *testing.T) {
		allocTests := []struct {
			name string
			req  *csi.GetMetadataAllocatedRequest
			want codes.Code
		}{
			{name: "no ID", req: &csi.GetMetadataAllocatedRequest{}, want: codes.InvalidArgument},
			{name: "negative max", req: &csi.GetMetadataAllocatedRequest{SnapshotId: snap1, MaxResults: -1}, want: codes.InvalidArgument},
			{name: "filesystem snapshot", req: &csi.GetMetadataAllocatedRequest{SnapshotId: fsSnap}, want: codes.InvalidArgument},
			{name: "unknown snapshot", req: &csi.GetMetadataAllocatedRequest{SnapshotId: "nope"}, want: codes.NotFound},
			{name: "negative start", req: &csi.GetMetadataAllocatedRequest{SnapshotId: snap1, StartingOffset: -1}, want: codes.OutOfRange},
			{name: "start past the end", req: &csi.GetMetadataAllocatedRequest{SnapshotId: snap1, StartingOffset: size + 1}, want: codes.OutOfRange},
		}
		for _, tt := range allocTests {
			t.Run("allocated: "+tt.name, func(t *testing.T) {
				got, err := allocated(t, c, 0, tt.req)
				require.Empty(t, got)
				require.Equal(t, tt.want, status.Code(err), "%v", err)
			})
		}
		deltaTests := []struct {
			name string
			req  *csi.GetMetadataDeltaRequest
			want codes.Code
		}{
			{name: "no base", req: &csi.GetMetadataDeltaRequest{TargetSnapshotId: snap2}, want: codes.InvalidArgument},
			{name: "no target", req: &csi.GetMetadataDeltaRequest{BaseSnapshotId: snap1}, want: codes.InvalidArgument},
			{name: "negative max", req: &csi.GetMetadataDeltaRequest{BaseSnapshotId: snap1, TargetSnapshotId: snap2, MaxResults: -1}, want: codes.InvalidArgument},
			{name: "filesystem target", req: &csi.GetMetadataDeltaRequest{BaseSnapshotId: snap1, TargetSnapshotId: fsSnap}, want: codes.InvalidArgument},
			{name: "filesystem base", req: &csi.GetMetadataDeltaRequest{BaseSnapshotId: fsSnap, TargetSnapshotId: snap2}, want: codes.InvalidArgument},
			{name: "other volume", req: &csi.GetMetadataDeltaRequest{BaseSnapshotId: snap1, TargetSnapshotId: otherSnap}, want: codes.InvalidArgument},
			{name: "target older than base", req: &csi.GetMetadataDeltaRequest{BaseSnapshotId: snap2, TargetSnapshotId: snap1}, want: codes.InvalidArgument},
			{name: "unknown base", req: &csi.GetMetadataDeltaRequest{BaseSnapshotId: "nope", TargetSnapshotId: snap2}, want: codes.NotFound},
			{name: "unknown target", req: &csi.GetMetadataDeltaRequest{BaseSnapshotId: snap1, TargetSnapshotId: "nope"}, want: codes.NotFound},
			{name: "negative start", req: &csi.GetMetadataDeltaRequest{BaseSnapshotId: snap1, TargetSnapshotId: snap2, StartingOffset: -1}, want: codes.OutOfRange},
			{name: "start past the end", req: &csi.GetMetadataDeltaRequest{BaseSnapshotId: snap1, TargetSnapshotId: snap2, StartingOffset: size + 1}, want: codes.OutOfRange},
		}
		for _, tt := range deltaTests {
			t.Run("delta: "+tt.name, func(t *testing.T) {
				got, err := delta(t, c, 0, tt.req)
				require.Empty(t, got)
				require.Equal(t, tt.want, status.Code(err), "%v", err)
			})
		}
	})

	t.Run("a deleted base keeps its hashes while the volume lives", func(t *testing.T) {
		_, err := d.DeleteSnapshot(context.Background(), &csi.DeleteSnapshotRequest{SnapshotId: snap1})
		require.NoError(t, err)
		require.NoFileExists(t, d.snapshotPath(&snapshot{ID: snap1, Kind: kindBlock}))
		got, err := delta(t, c, size, &csi.GetMetadataDeltaRequest{BaseSnapshotId: snap1, TargetSnapshotId: snap2})
		require.NoError(t, err)
		require.Equal(t, [][]extent{changes}, got)
		_, err = allocated(t, c, 0, &csi.GetMetadataAllocatedRequest{SnapshotId: snap1})
		require.Equal(t, codes.NotFound, status.Code(err))

		// Deleting the volume keeps them while a snapshot of it is left ...
		_, err = d.DeleteVolume(context.Background(), &csi.DeleteVolumeRequest{VolumeId: vol})
		require.NoError(t, err)
		require.FileExists(t, d.sumsPath(snap1))
		// ... and drops them with the last one.
		_, err = d.DeleteSnapshot(context.Background(), &csi.DeleteSnapshotRequest{SnapshotId: snap2})
		require.NoError(t, err)
		require.NoFileExists(t, d.sumsPath(snap1))
		require.NoFileExists(t, d.sumsPath(snap2))
	})
}

func TestSnapshotMetadataBaseNeeded(t *testing.T) {
	dir := t.TempDir()
	requireHoles(t, dir)
	t.Cleanup(func() { forceCleanup(t, dir) })
	d, err := New(Config{NodeID: "n", StateDir: filepath.Join(dir, "state"), SnapshotMetadata: true}, nil) // KeepDeletedSums off
	require.NoError(t, err)
	c, _ := metaClient(t, d, dir)
	vol := createVolume(t, d, "vol", true, 1<<20)
	snap1 := createSnapshot(t, d, "snap1", vol)
	writeVolume(t, d, vol, 0x5a, extent{0, 1})
	snap2 := createSnapshot(t, d, "snap2", vol)
	got, err := delta(t, c, 1<<20, &csi.GetMetadataDeltaRequest{BaseSnapshotId: snap1, TargetSnapshotId: snap2})
	require.NoError(t, err)
	require.Equal(t, [][]extent{{{0, sumBlockSize}}}, got)

	_, err = d.DeleteSnapshot(context.Background(), &csi.DeleteSnapshotRequest{SnapshotId: snap1})
	require.NoError(t, err)
	require.NoFileExists(t, d.sumsPath(snap1))
	_, err = delta(t, c, 0, &csi.GetMetadataDeltaRequest{BaseSnapshotId: snap1, TargetSnapshotId: snap2})
	require.Equal(t, codes.NotFound, status.Code(err), "%v", err)
}

func TestSnapshotMetadataEnabledLater(t *testing.T) {
	dir := t.TempDir()
	requireHoles(t, dir)
	t.Cleanup(func() { forceCleanup(t, dir) })
	state := filepath.Join(dir, "state")

	off, err := New(Config{NodeID: "n", StateDir: state}, nil)
	require.NoError(t, err)
	caps, err := off.GetPluginCapabilities(context.Background(), &csi.GetPluginCapabilitiesRequest{})
	require.NoError(t, err)
	require.Len(t, caps.GetCapabilities(), 1, "only CONTROLLER_SERVICE without the flag")
	offClient, _ := metaClient(t, off, filepath.Join(dir, "off"))
	_, err = allocated(t, offClient, 0, &csi.GetMetadataAllocatedRequest{SnapshotId: "x"})
	require.Equal(t, codes.Unimplemented, status.Code(err), "the service is not registered without the flag")
	vol := createVolume(t, off, "vol", true, 1<<20)
	snap1 := createSnapshot(t, off, "snap1", vol)
	require.NoFileExists(t, off.sumsPath(snap1))

	// The driver restarts with the flag: older snapshots have no hashes.
	on, err := New(Config{NodeID: "n", StateDir: state, SnapshotMetadata: true, KeepDeletedSums: true}, nil)
	require.NoError(t, err)
	c, ic := metaClient(t, on, filepath.Join(dir, "on"))
	caps, err = ic.GetPluginCapabilities(context.Background(), &csi.GetPluginCapabilitiesRequest{})
	require.NoError(t, err)
	require.Equal(t, csi.PluginCapability_Service_SNAPSHOT_METADATA_SERVICE, caps.GetCapabilities()[1].GetService().GetType())
	snap2 := createSnapshot(t, on, "snap2", vol)
	snap3 := createSnapshot(t, on, "snap3", vol)
	_, err = delta(t, c, 0, &csi.GetMetadataDeltaRequest{BaseSnapshotId: snap1, TargetSnapshotId: snap2})
	require.Equal(t, codes.FailedPrecondition, status.Code(err), "%v", err)
	got, err := delta(t, c, 1<<20, &csi.GetMetadataDeltaRequest{BaseSnapshotId: snap2, TargetSnapshotId: snap3})
	require.NoError(t, err)
	require.Equal(t, [][]extent{nil}, got)
	// Allocated needs no hashes.
	got, err = allocated(t, c, 1<<20, &csi.GetMetadataAllocatedRequest{SnapshotId: snap1})
	require.NoError(t, err)
	require.Equal(t, [][]extent{nil}, got)
}
