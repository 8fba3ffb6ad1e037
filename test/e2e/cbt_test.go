//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	crclient "sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/mover/kopia/kopiatest/maintain"
	"github.com/snapmove/snapmove/internal/mover/kopia/store"
	"github.com/snapmove/snapmove/internal/mover/repository"
	"github.com/snapmove/snapmove/internal/naming"
)

// cbtDisk is the size of the block volume of TestBlockChangedBlocks.
const cbtDisk = 64 << 20

// TestBlockChangedBlocks (issue #25): a block PVC shaped like a VM's disk (an ext4
// filesystem, files written into it between backups from the host, as a guest would) is
// backed up three times through the stack's real CSI snapshot metadata sidecar:
//   - the first backup reads the allocated blocks only, the next ones exactly the 1 MiB
//     blocks that changed since their parent (the test computes them from the images
//     itself), and the DataUpload's incrementalSize agrees with the mover's own count;
//   - each backup restores byte-identical (snapmove's restore);
//   - a PVC of the same name on a new volume is not taken for the old one: its backup
//     reads the allocated blocks and says why;
//   - deleting the middle backup and running maintenance leaves the third restorable
//     (its reused blocks belong to the first two), by snapmove and by the kopia CLI.
//
// Stock Velero's node-agent restoring such a backup is in noLockIn.
func TestBlockChangedBlocks(t *testing.T) {
	parallel(t)
	s := env
	ns := s.namespace(t, "cbt")
	disk := newExt4(t, s.pvc(t, ns, "disk", "64Mi", corev1.PersistentVolumeBlock))
	disk.write("etc/config", 8<<10)
	disk.write("var/lib/db", 3<<20)
	s.app(t, ns, "disk", true)

	type generation struct {
		backup string
		image  []byte
		du     velerov2alpha1.DataUpload
		read   datapath.BlockRead
	}
	backup := func(name string) generation {
		t.Helper()
		b := s.backup(t, name, "--include-namespaces", ns, "--snapshot-move-data")
		require.Equal(t, velerov1.BackupPhaseCompleted, b.Status.Phase, s.backupLogs(t, name))
		dus := s.dataUploads(t, name)
		require.Len(t, dus, 1)
		g := generation{backup: name, image: disk.image(), du: dus[0], read: blockReadOf(t, dus[0])}
		t.Logf("%s: %s; incrementalSize %d; message %q", name, g.read.Method, g.du.Status.IncrementalBytes, g.du.Status.Message)
		require.Equal(t, g.read.BytesRead, g.du.Status.IncrementalBytes, "incrementalSize is what the mover read")
		require.Contains(t, g.du.Status.Message, g.read.String())
		return g
	}

	g1 := backup(ns + "-b1")
	require.Equal(t, datapath.BlockReadAllocated, g1.read.Method)
	require.Equal(t, "no earlier backup of the volume", g1.read.Fallback)
	require.GreaterOrEqual(t, g1.read.BytesRead, nonZeroMiB(g1.image), "every block holding data is read")
	require.Less(t, g1.read.BytesRead, int64(cbtDisk)/2, "the holes are not read")

	disk.write("var/lib/db-journal", 512<<10)
	disk.write("etc/config", 8<<10) // rewritten elsewhere
	g2 := backup(ns + "-b2")
	disk.write("home/user/notes", 100<<10)
	g3 := backup(ns + "-b3")
	for _, gs := range [][2]generation{{g1, g2}, {g2, g3}} {
		parent, g := gs[0], gs[1]
		require.Equal(t, datapath.BlockReadChanged, g.read.Method, g.read.Fallback)
		require.Equal(t, parent.du.Status.SnapshotID, g.read.Parent)
		require.Equal(t, changedMiB(parent.image, g.image), g.read.BytesRead, "exactly the changed 1 MiB blocks are read")
		require.Positive(t, g.read.BytesRead)
		require.Less(t, g.read.BytesRead, int64(cbtDisk)/8)
	}

	// Each backup restores byte-identical; the middle one is then deleted.
	restored := func(g generation, n string) {
		t.Helper()
		target := ns + "-" + n
		t.Cleanup(func() { s.deleteNamespace(t, target) })
		r := s.restore(t, ns+"-"+n, "--from-backup", g.backup, "--namespace-mappings", ns+":"+target)
		require.Equal(t, velerov1.RestorePhaseCompleted, r.Status.Phase)
		got, err := os.ReadFile(s.volumePath(t, target, "disk"))
		require.NoError(t, err)
		require.True(t, bytes.Equal(g.image, got), "restore of %s differs", g.backup)
	}
	restored(g1, "r1")
	restored(g2, "r2")

	// Another volume behind the same PVC name: its backup does not take the old
	// volume's blocks for its own.
	disk.path = s.replaceVolume(t, ns, "disk", g3.image)
	other := backup(ns + "-b4")
	require.Equal(t, datapath.BlockReadAllocated, other.read.Method)
	require.Contains(t, other.read.Fallback, "another volume behind the PVC")
	require.Equal(t, g3.image, other.image)

	s.veleroCLI(t, "backup", "delete", g2.backup, "--confirm")
	poll(t, "backup "+g2.backup+" to be deleted", 3*time.Minute, func(ctx context.Context) (bool, error) {
		err := s.c.Get(ctx, crclient.ObjectKey{Namespace: s.veleroNS, Name: g2.backup}, &velerov1.Backup{})
		return apierrors.IsNotFound(err), crclient.IgnoreNotFound(err)
	})
	s.maintainReclaiming(t, ns)
	restored(g3, "r3")

	// The kopia CLI reads it as the one file of a block volume's snapshot.
	kcfg := s.kopiaConnect(t, ns, s.bslPrefix+"/kopia/"+ns+"/")
	dir := t.TempDir()
	run(t, s.kopia, append([]string{"snapshot", "restore", g3.du.Status.SnapshotID, dir}, kcfg...)...)
	files, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, files, 1)
	got, err := os.ReadFile(filepath.Join(dir, files[0].Name()))
	require.NoError(t, err)
	require.True(t, bytes.Equal(g3.image, got), "the kopia CLI's restore of %s differs", g3.backup)
	s.requireNoLeftovers(t)
}

// blockReadOf is what the mover recorded it read for a block volume's DataUpload.
func blockReadOf(t *testing.T, du velerov2alpha1.DataUpload) datapath.BlockRead {
	t.Helper()
	require.Equal(t, velerov2alpha1.DataUploadPhaseCompleted, du.Status.Phase, du.Status.Message)
	v := du.Annotations[naming.BlockReadAnnotation]
	require.NotEmpty(t, v, "DataUpload %s says nothing of what it read", du.Name)
	var br datapath.BlockRead
	require.NoError(t, json.Unmarshal([]byte(v), &br))
	return br
}

// changedMiB is the bytes of the 1 MiB blocks in which a and b differ.
func changedMiB(a, b []byte) int64 {
	var n int64
	for off := 0; off < len(b); off += 1 << 20 {
		end := min(off+1<<20, len(b))
		if end > len(a) || !bytes.Equal(a[off:end], b[off:end]) {
			n += int64(end - off)
		}
	}
	return n
}

// nonZeroMiB is the bytes of the 1 MiB blocks of img that hold a byte other than zero.
func nonZeroMiB(img []byte) int64 {
	zero := make([]byte, 1<<20)
	var n int64
	for off := 0; off < len(img); off += 1 << 20 {
		end := min(off+1<<20, len(img))
		if !bytes.Equal(img[off:end], zero[:end-off]) {
			n += int64(end - off)
		}
	}
	return n
}

// ext4 is a block volume's image holding an ext4 filesystem, written from the host
// without mounting it (mke2fs and debugfs of e2fsprogs), as a VM writes its disk.
type ext4 struct {
	t     *testing.T
	path  string
	dirs  map[string]bool // made so far: debugfs's mkdir of one that exists leaks an inode
	files map[string]bool
}

func newExt4(t *testing.T, path string) *ext4 {
	run(t, "mkfs.ext4", "-q", "-F", "-b", "4096", "-E", "nodiscard", path)
	return &ext4{t: t, path: path, dirs: map[string]bool{}, files: map[string]bool{}}
}

// write (re)writes the file name with size random bytes, making its directories.
func (e *ext4) write(name string, size int64) {
	e.t.Helper()
	src := filepath.Join(e.t.TempDir(), "src")
	require.NoError(e.t, writeRandomBlocks(src, size))
	var cmds []string
	dir := ""
	for _, part := range strings.Split(filepath.Dir(name), "/") {
		if part == "." {
			break
		}
		dir += "/" + part
		if !e.dirs[dir] {
			cmds = append(cmds, "mkdir "+dir)
			e.dirs[dir] = true
		}
	}
	if e.files[name] {
		cmds = append(cmds, "rm /"+name)
	}
	e.files[name] = true
	cmds = append(cmds, "write "+src+" /"+name)
	script := filepath.Join(e.t.TempDir(), "cmds")
	require.NoError(e.t, os.WriteFile(script, []byte(strings.Join(cmds, "\n")+"\n"), 0o600))
	out := run(e.t, "debugfs", "-w", "-f", script, e.path)
	require.NotContains(e.t, out, "Allocated inode: 0", out)
	// debugfs exits 0 whatever its commands did: the filesystem is checked instead.
	run(e.t, "e2fsck", "-fn", e.path)
	got := run(e.t, "debugfs", "-R", "stat /"+name, e.path)
	require.Contains(e.t, got, "Size: "+strconv.FormatInt(size, 10), got)
}

// image is the volume's content now.
func (e *ext4) image() []byte {
	e.t.Helper()
	b, err := os.ReadFile(e.path)
	require.NoError(e.t, err)
	require.Len(e.t, b, cbtDisk)
	return b
}

// replaceVolume deletes PVC ns/name and its app pod, makes the PVC again (a new volume,
// another CSI volume handle) holding content, runs the app pod on it, and returns the
// volume's image.
func (s *stack) replaceVolume(t *testing.T, ns, name string, content []byte) string {
	t.Helper()
	for _, obj := range []crclient.Object{
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app-" + name}},
		&corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}},
	} {
		require.NoError(t, crclient.IgnoreNotFound(s.c.Delete(ctxT(t), obj)))
		poll(t, "the old "+obj.GetName()+" to be gone", 2*time.Minute, func(ctx context.Context) (bool, error) {
			err := s.c.Get(ctx, crclient.ObjectKeyFromObject(obj), obj)
			return apierrors.IsNotFound(err), crclient.IgnoreNotFound(err)
		})
	}
	img := s.pvc(t, ns, name, "64Mi", corev1.PersistentVolumeBlock)
	require.NoError(t, os.WriteFile(img, content, 0o600))
	s.app(t, ns, name, true)
	return img
}

// maintainReclaiming runs kopia's full maintenance with the test-only safety that frees
// what deleted snapshots held at once, on the repository of namespace ns, which must be
// the test's alone (see requireMaintenanceReclaims).
func (s *stack) maintainReclaiming(t *testing.T, ns string) {
	t.Helper()
	loc := repository.Location{Provider: repository.ProviderAWS, Bucket: s.bucket, Prefix: s.bslPrefix + "/kopia/" + ns + "/", Region: "minio",
		Endpoint: s.s3Endpoint, DisableTLS: true, AccessKeyID: s.accessKey, SecretAccessKey: s.secretKey}
	r, err := store.Open(ctxT(t), loc, s.repoPassword(t), store.Options{CacheLimitMB: -1})
	require.NoError(t, err)
	defer func() { require.NoError(t, r.Close(ctxT(t))) }()
	require.NoError(t, maintain.RunMaintenance(ctxT(t), r, maintain.MaintenanceSafetyReclaim))
}
