package driver

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
)

// requireRoot skips tests that mount or attach loop devices when not run as root.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the test bind-mounts directories and attaches loop devices")
	}
}

// loopUnavailable returns why loop devices cannot be used here, or "".
func loopUnavailable() string {
	if _, err := exec.LookPath("losetup"); err != nil {
		return "losetup(8) is not installed"
	}
	if out, err := exec.Command("losetup", "--find").CombinedOutput(); err != nil {
		return "no free loop device: `losetup --find` failed: " + strings.TrimSpace(string(out))
	}
	return ""
}

// requireLoop skips block-volume tests when loop devices are unavailable.
func requireLoop(t *testing.T) {
	t.Helper()
	requireRoot(t)
	if reason := loopUnavailable(); reason != "" {
		t.Skip(reason)
	}
}

// newTestDriver returns a driver on a fresh state directory below dir, and registers a
// cleanup that removes every mount and loop device left below dir, so that a failing
// test never leaks them (and t.TempDir's RemoveAll never deletes through a mount).
func newTestDriver(t *testing.T, dir string) *Driver {
	t.Helper()
	t.Cleanup(func() { forceCleanup(t, dir) })
	d, err := New(Config{NodeID: "test-node", StateDir: filepath.Join(dir, "state"), SnapshotMetadata: true, KeepDeletedSums: true}, nil)
	require.NoError(t, err)
	return d
}

// leftovers returns the mount points and loop devices that still refer to paths below dir.
func leftovers(t *testing.T, dir string) (mounts, loops []string) {
	t.Helper()
	mounts, err := mountsUnder(dir)
	require.NoError(t, err)
	if _, err := exec.LookPath("losetup"); err != nil {
		return mounts, nil
	}
	out, err := run("losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE")
	require.NoError(t, err)
	for _, line := range strings.Split(out, "\n") {
		fields := strings.Fields(line)
		if len(fields) >= 2 && strings.HasPrefix(fields[1], filepath.Clean(dir)+"/") {
			loops = append(loops, fields[0])
		}
	}
	return mounts, loops
}

// forceCleanup unmounts (deepest first) and detaches whatever is left below dir.
func forceCleanup(t *testing.T, dir string) {
	mounts, loops := leftovers(t, dir)
	for i := len(mounts) - 1; i >= 0; i-- {
		if err := unmountAll(mounts[i]); err != nil {
			t.Errorf("cleaning up mount %s: %v", mounts[i], err)
		}
	}
	for _, dev := range loops {
		if _, err := run("losetup", "--detach", dev); err != nil {
			t.Errorf("cleaning up loop device %s: %v", dev, err)
		}
	}
}

// serve starts a gRPC server for d on the unix socket sock until the test ends.
func serve(t *testing.T, d *Driver, sock string) {
	t.Helper()
	l, _, err := ListenUnix("unix://" + sock)
	require.NoError(t, err)
	srv := grpc.NewServer()
	d.Register(srv)
	go srv.Serve(l) //nolint:errcheck // returns when the server stops
	t.Cleanup(srv.Stop)
}

func capability(mode csi.VolumeCapability_AccessMode_Mode, block bool) *csi.VolumeCapability {
	c := &csi.VolumeCapability{AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode}}
	if block {
		c.AccessType = &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}}
	} else {
		c.AccessType = &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}}
	}
	return c
}

const rwo = csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER
