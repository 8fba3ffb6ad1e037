package driver

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestPublishFilesystemVolume(t *testing.T) {
	requireRoot(t)
	tests := []struct {
		name     string
		mode     csi.VolumeCapability_AccessMode_Mode
		readonly bool
		wantRO   bool
	}{
		{name: "single node writer", mode: rwo},
		{name: "single node writer, readonly flag", mode: rwo, readonly: true, wantRO: true},
		{name: "many readers", mode: csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY, wantRO: true},
		{name: "single node reader", mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY, wantRO: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			ctx := context.Background()
			d := newTestDriver(t, dir)
			vol, err := d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "v", VolumeCapabilities: []*csi.VolumeCapability{capability(tt.mode, false)}})
			require.NoError(t, err)
			id := vol.GetVolume().GetVolumeId()
			data := filepath.Join(dir, "state", "volumes", id)
			require.NoError(t, os.WriteFile(filepath.Join(data, "existing"), []byte("data"), 0o644))

			target := filepath.Join(dir, "pods", "uid", "mount") // parents are created by the driver
			req := &csi.NodePublishVolumeRequest{VolumeId: id, TargetPath: target, VolumeCapability: capability(tt.mode, false), Readonly: tt.readonly}
			for range 2 { // idempotent
				_, err = d.NodePublishVolume(ctx, req)
				require.NoError(t, err)
			}
			got, err := os.ReadFile(filepath.Join(target, "existing"))
			require.NoError(t, err)
			require.Equal(t, "data", string(got))

			err = os.WriteFile(filepath.Join(target, "new"), []byte("new"), 0o644)
			if tt.wantRO {
				require.ErrorIs(t, err, syscall.EROFS)
				_, err = d.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: id, TargetPath: target, VolumeCapability: capability(rwo, false)})
				require.Equal(t, codes.AlreadyExists, status.Code(err), "republish read-write: %v", err)
			} else {
				require.NoError(t, err)
				_, err = os.Stat(filepath.Join(data, "new"))
				require.NoError(t, err, "a write through the target lands in the volume directory")
			}

			_, err = d.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id})
			require.Equal(t, codes.FailedPrecondition, status.Code(err), "deleting a published volume: %v", err)

			for range 2 { // idempotent
				_, err = d.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target})
				require.NoError(t, err)
			}
			_, err = os.Lstat(target)
			require.True(t, errors.Is(err, os.ErrNotExist), "target removed: %v", err)
			mounts, _ := leftovers(t, dir)
			require.Empty(t, mounts)
			_, err = d.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id})
			require.NoError(t, err)
		})
	}
}

func TestPublishBlockVolume(t *testing.T) {
	requireLoop(t)
	for _, readOnly := range []bool{false, true} {
		t.Run(map[bool]string{false: "read-write", true: "read-only"}[readOnly], func(t *testing.T) {
			dir := t.TempDir()
			ctx := context.Background()
			d := newTestDriver(t, dir)
			vol, err := d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "b", VolumeCapabilities: []*csi.VolumeCapability{capability(rwo, true)},
				CapacityRange: &csi.CapacityRange{RequiredBytes: 16 << 20}})
			require.NoError(t, err)
			id := vol.GetVolume().GetVolumeId()
			image := filepath.Join(dir, "state", "volumes", id+".img")
			fi, err := os.Stat(image)
			require.NoError(t, err)
			require.EqualValues(t, 16<<20, fi.Size())
			f, err := os.OpenFile(image, os.O_WRONLY, 0)
			require.NoError(t, err)
			_, err = f.WriteAt([]byte("from-image"), 4096)
			require.NoError(t, err)
			require.NoError(t, f.Close())

			_, err = d.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: id, TargetPath: filepath.Join(dir, "mnt"),
				VolumeCapability: capability(rwo, false)})
			require.Equal(t, codes.InvalidArgument, status.Code(err), "block volume published as filesystem: %v", err)

			target := filepath.Join(dir, "pods", "uid", "dev", "b")
			_, err = d.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: id, TargetPath: target,
				VolumeCapability: capability(rwo, true), Readonly: readOnly})
			require.NoError(t, err)
			fi, err = os.Stat(target)
			require.NoError(t, err)
			require.NotZero(t, fi.Mode()&os.ModeDevice, "target is the loop device node, mode %v", fi.Mode())
			_, loops := leftovers(t, dir)
			require.Len(t, loops, 1)

			dev, err := os.Open(target)
			require.NoError(t, err)
			buf := make([]byte, 10)
			_, err = dev.ReadAt(buf, 4096)
			require.NoError(t, err)
			require.Equal(t, "from-image", string(buf))
			require.NoError(t, dev.Close())

			w, err := os.OpenFile(target, os.O_WRONLY, 0)
			if readOnly {
				// Depending on the kernel the open or the write is refused.
				if err == nil {
					_, err = w.WriteAt([]byte("from-pod"), 8192)
					if err == nil {
						err = w.Sync()
					}
					require.NoError(t, w.Close())
				}
				require.Error(t, err, "writing to a read-only block volume")
			} else {
				require.NoError(t, err)
				_, err = w.WriteAt([]byte("from-pod"), 8192)
				require.NoError(t, err)
				require.NoError(t, w.Sync())
				require.NoError(t, w.Close())
			}

			_, err = d.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target})
			require.NoError(t, err)
			mounts, loops := leftovers(t, dir)
			require.Empty(t, mounts)
			require.Empty(t, loops, "loop device detached")
			_, err = os.Lstat(target)
			require.True(t, errors.Is(err, os.ErrNotExist), "target removed: %v", err)
			if !readOnly {
				img, err := os.ReadFile(image)
				require.NoError(t, err)
				require.Equal(t, "from-pod", string(img[8192:8200]))
			}
		})
	}
}

func TestNodeRequestsForUnknownVolumes(t *testing.T) {
	d := newTestDriver(t, t.TempDir())
	ctx := context.Background()
	_, err := d.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: "nope", TargetPath: "/nonexistent/x", VolumeCapability: capability(rwo, false)})
	require.Equal(t, codes.NotFound, status.Code(err))
	_, err = d.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: "nope", TargetPath: "/nonexistent/x"})
	require.Equal(t, codes.NotFound, status.Code(err))
}

func TestUnescapeMountinfo(t *testing.T) {
	require.Equal(t, "/a b/c\td", unescapeMountinfo(`/a\040b/c\011d`))
	require.Equal(t, `/plain`, unescapeMountinfo(`/plain`))
	require.Equal(t, `/trailing\04`, unescapeMountinfo(`/trailing\04`))
}
