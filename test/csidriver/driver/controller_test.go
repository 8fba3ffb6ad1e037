package driver

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestRequestedCapacity(t *testing.T) {
	tests := []struct {
		name    string
		r       *csi.CapacityRange
		want    int64
		wantErr bool
	}{
		{name: "no range gives the default", r: nil, want: defaultCapacityBytes},
		{name: "required wins", r: &csi.CapacityRange{RequiredBytes: 5 << 20, LimitBytes: 8 << 20}, want: 5 << 20},
		{name: "small limit only", r: &csi.CapacityRange{LimitBytes: 8 << 20}, want: 8 << 20},
		{name: "large limit only gives the default", r: &csi.CapacityRange{LimitBytes: 8 << 30}, want: defaultCapacityBytes},
		{name: "required above limit", r: &csi.CapacityRange{RequiredBytes: 9, LimitBytes: 8}, wantErr: true},
		{name: "negative", r: &csi.CapacityRange{RequiredBytes: -1}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := requestedCapacity(tt.r)
			if tt.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestPage(t *testing.T) {
	tests := []struct {
		name             string
		n                int
		token            string
		max              int32
		start, end       int
		next             string
		wantCode         codes.Code
		wantErrorPresent bool
	}{
		{name: "all", n: 5, start: 0, end: 5},
		{name: "first page", n: 5, max: 2, start: 0, end: 2, next: "2"},
		{name: "middle page", n: 5, token: "2", max: 2, start: 2, end: 4, next: "4"},
		{name: "last page", n: 5, token: "4", max: 2, start: 4, end: 5},
		{name: "rest", n: 5, token: "2", start: 2, end: 5},
		{name: "token at end", n: 5, token: "5", start: 5, end: 5},
		{name: "garbage token", n: 5, token: "invalid-token", wantErrorPresent: true, wantCode: codes.Aborted},
		{name: "token past end", n: 5, token: "6", wantErrorPresent: true, wantCode: codes.Aborted},
		{name: "negative max", n: 5, max: -1, wantErrorPresent: true, wantCode: codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start, end, next, err := page(tt.n, tt.token, tt.max)
			if tt.wantErrorPresent {
				require.Equal(t, tt.wantCode, status.Code(err))
				return
			}
			require.NoError(t, err)
			require.Equal(t, []any{tt.start, tt.end, tt.next}, []any{start, end, next})
		})
	}
}

func TestCreateVolumeValidationAndIdempotency(t *testing.T) {
	d := newTestDriver(t, t.TempDir())
	ctx := context.Background()
	mib := func(n int64) *csi.CapacityRange {
		return &csi.CapacityRange{RequiredBytes: n << 20, LimitBytes: n << 20}
	}
	first, err := d.CreateVolume(ctx, &csi.CreateVolumeRequest{
		Name: "pvc-1", CapacityRange: mib(10), VolumeCapabilities: []*csi.VolumeCapability{capability(rwo, false)},
	})
	require.NoError(t, err)
	require.EqualValues(t, 10<<20, first.GetVolume().GetCapacityBytes())

	tests := []struct {
		name     string
		req      *csi.CreateVolumeRequest
		wantCode codes.Code
	}{
		{name: "same name and arguments", wantCode: codes.OK, req: &csi.CreateVolumeRequest{
			Name: "pvc-1", CapacityRange: mib(10), VolumeCapabilities: []*csi.VolumeCapability{capability(rwo, false)}}},
		{name: "same name, other capacity", wantCode: codes.AlreadyExists, req: &csi.CreateVolumeRequest{
			Name: "pvc-1", CapacityRange: mib(20), VolumeCapabilities: []*csi.VolumeCapability{capability(rwo, false)}}},
		{name: "same name, block", wantCode: codes.AlreadyExists, req: &csi.CreateVolumeRequest{
			Name: "pvc-1", CapacityRange: mib(10), VolumeCapabilities: []*csi.VolumeCapability{capability(rwo, true)}}},
		{name: "no name", wantCode: codes.InvalidArgument, req: &csi.CreateVolumeRequest{
			VolumeCapabilities: []*csi.VolumeCapability{capability(rwo, false)}}},
		{name: "no capabilities", wantCode: codes.InvalidArgument, req: &csi.CreateVolumeRequest{Name: "pvc-2"}},
		{name: "multi-node writer", wantCode: codes.InvalidArgument, req: &csi.CreateVolumeRequest{
			Name: "pvc-2", VolumeCapabilities: []*csi.VolumeCapability{capability(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER, false)}}},
		{name: "mount and block mixed", wantCode: codes.InvalidArgument, req: &csi.CreateVolumeRequest{
			Name: "pvc-2", VolumeCapabilities: []*csi.VolumeCapability{capability(rwo, false), capability(rwo, true)}}},
		{name: "unknown snapshot", wantCode: codes.NotFound, req: &csi.CreateVolumeRequest{
			Name: "pvc-2", VolumeCapabilities: []*csi.VolumeCapability{capability(rwo, false)},
			VolumeContentSource: &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
				Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: "nope"}}}}},
		{name: "clone into a smaller limit", wantCode: codes.OutOfRange, req: &csi.CreateVolumeRequest{
			Name: "pvc-2", CapacityRange: mib(5), VolumeCapabilities: []*csi.VolumeCapability{capability(rwo, false)},
			VolumeContentSource: &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{
				Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: first.GetVolume().GetVolumeId()}}}}},
		{name: "read-only-many from a clone", wantCode: codes.OK, req: &csi.CreateVolumeRequest{
			Name: "pvc-3", VolumeCapabilities: []*csi.VolumeCapability{capability(csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY, false)},
			VolumeContentSource: &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{
				Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: first.GetVolume().GetVolumeId()}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := d.CreateVolume(ctx, tt.req)
			require.Equal(t, tt.wantCode, status.Code(err), "error: %v", err)
			if tt.req.GetName() == "pvc-1" && err == nil {
				require.Equal(t, first.GetVolume().GetVolumeId(), resp.GetVolume().GetVolumeId())
			}
		})
	}
}

func TestStateSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	d := newTestDriver(t, dir)
	vol, err := d.CreateVolume(ctx, &csi.CreateVolumeRequest{
		Name: "pvc-a", VolumeCapabilities: []*csi.VolumeCapability{capability(rwo, false)},
	})
	require.NoError(t, err)
	volID := vol.GetVolume().GetVolumeId()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "state", "volumes", volID, "f"), []byte("x"), 0o644))
	snap, err := d.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snap-a", SourceVolumeId: volID})
	require.NoError(t, err)

	restarted := newTestDriver(t, dir)
	vols, err := restarted.ListVolumes(ctx, &csi.ListVolumesRequest{})
	require.NoError(t, err)
	require.Len(t, vols.GetEntries(), 1)
	require.Equal(t, volID, vols.GetEntries()[0].GetVolume().GetVolumeId())
	snaps, err := restarted.ListSnapshots(ctx, &csi.ListSnapshotsRequest{SourceVolumeId: volID})
	require.NoError(t, err)
	require.Len(t, snaps.GetEntries(), 1)
	got := snaps.GetEntries()[0].GetSnapshot()
	require.Equal(t, snap.GetSnapshot().GetSnapshotId(), got.GetSnapshotId())
	require.True(t, got.GetReadyToUse())
	require.EqualValues(t, defaultCapacityBytes, got.GetSizeBytes())
	require.Equal(t, snap.GetSnapshot().GetCreationTime().AsTime(), got.GetCreationTime().AsTime())

	again, err := restarted.CreateVolume(ctx, &csi.CreateVolumeRequest{
		Name: "pvc-a", VolumeCapabilities: []*csi.VolumeCapability{capability(rwo, false)},
	})
	require.NoError(t, err)
	require.Equal(t, volID, again.GetVolume().GetVolumeId())
}

// TestSnapshotAndRestoreKeepFileMetadata checks that snapshot, restore and clone keep
// modes, owners, mtimes, symlinks and holes.
func TestSnapshotAndRestoreKeepFileMetadata(t *testing.T) {
	requireRoot(t) // chown
	dir := t.TempDir()
	ctx := context.Background()
	d := newTestDriver(t, dir)
	caps := []*csi.VolumeCapability{capability(rwo, false)}
	vol, err := d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "src", VolumeCapabilities: caps})
	require.NoError(t, err)
	src := filepath.Join(dir, "state", "volumes", vol.GetVolume().GetVolumeId())

	mtime := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	require.NoError(t, os.MkdirAll(filepath.Join(src, "sub"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(src, "sub", "file"), []byte("hello"), 0o640))
	require.NoError(t, os.Chmod(filepath.Join(src, "sub", "file"), 0o640))
	require.NoError(t, os.Lchown(filepath.Join(src, "sub", "file"), 1234, 5678))
	require.NoError(t, os.Chtimes(filepath.Join(src, "sub", "file"), mtime, mtime))
	require.NoError(t, os.Symlink("sub/file", filepath.Join(src, "link")))
	sparse, err := os.Create(filepath.Join(src, "sparse"))
	require.NoError(t, err)
	_, err = sparse.WriteAt([]byte("end"), 256<<20)
	require.NoError(t, err)
	require.NoError(t, sparse.Close())

	snap, err := d.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snap", SourceVolumeId: vol.GetVolume().GetVolumeId()})
	require.NoError(t, err)
	// Changes after the snapshot must not show up in the restore.
	require.NoError(t, os.WriteFile(filepath.Join(src, "later"), []byte("later"), 0o644))

	restored, err := d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "restored", VolumeCapabilities: caps,
		VolumeContentSource: &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
			Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: snap.GetSnapshot().GetSnapshotId()}}}})
	require.NoError(t, err)
	require.Equal(t, snap.GetSnapshot().GetSnapshotId(), restored.GetVolume().GetContentSource().GetSnapshot().GetSnapshotId())
	clone, err := d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "clone", VolumeCapabilities: caps,
		VolumeContentSource: &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{
			Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: vol.GetVolume().GetVolumeId()}}}})
	require.NoError(t, err)

	for name, id := range map[string]string{"restored": restored.GetVolume().GetVolumeId(), "clone": clone.GetVolume().GetVolumeId()} {
		t.Run(name, func(t *testing.T) {
			root := filepath.Join(dir, "state", "volumes", id)
			fi, err := os.Lstat(filepath.Join(root, "sub", "file"))
			require.NoError(t, err)
			require.Equal(t, os.FileMode(0o640), fi.Mode().Perm())
			require.True(t, fi.ModTime().Equal(mtime), "mtime %v", fi.ModTime())
			st := fi.Sys().(*syscall.Stat_t)
			require.Equal(t, []uint32{1234, 5678}, []uint32{st.Uid, st.Gid})
			target, err := os.Readlink(filepath.Join(root, "link"))
			require.NoError(t, err)
			require.Equal(t, "sub/file", target)
			fi, err = os.Stat(filepath.Join(root, "sparse"))
			require.NoError(t, err)
			require.EqualValues(t, 256<<20+3, fi.Size())
			require.Less(t, fi.Sys().(*syscall.Stat_t).Blocks*512, int64(1<<20), "sparse file was filled in")
			_, err = os.Stat(filepath.Join(root, "later"))
			require.Equal(t, name == "clone", err == nil, "file written after the snapshot: %v", err)
		})
	}

	_, err = d.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: snap.GetSnapshot().GetSnapshotId()})
	require.NoError(t, err)
	_, err = os.Stat(filepath.Join(dir, "state", "snapshots", snap.GetSnapshot().GetSnapshotId()))
	require.True(t, os.IsNotExist(err))
}

func TestValidateVolumeCapabilities(t *testing.T) {
	d := newTestDriver(t, t.TempDir())
	ctx := context.Background()
	vol, err := d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "v", VolumeCapabilities: []*csi.VolumeCapability{capability(rwo, false)}})
	require.NoError(t, err)
	tests := []struct {
		name      string
		caps      []*csi.VolumeCapability
		confirmed bool
	}{
		{name: "single node writer", caps: []*csi.VolumeCapability{capability(rwo, false)}, confirmed: true},
		{name: "many readers", caps: []*csi.VolumeCapability{capability(csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY, false)}, confirmed: true},
		{name: "single node single writer", caps: []*csi.VolumeCapability{capability(csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER, false)}, confirmed: true},
		{name: "block on a filesystem volume", caps: []*csi.VolumeCapability{capability(rwo, true)}},
		{name: "many writers", caps: []*csi.VolumeCapability{capability(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER, false)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := d.ValidateVolumeCapabilities(ctx, &csi.ValidateVolumeCapabilitiesRequest{
				VolumeId: vol.GetVolume().GetVolumeId(), VolumeCapabilities: tt.caps})
			require.NoError(t, err)
			require.Equal(t, tt.confirmed, resp.GetConfirmed() != nil, resp.GetMessage())
		})
	}
}
