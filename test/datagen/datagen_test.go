package datagen

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/snapmove/snapmove/test/treecheck"
)

// treeDigest hashes paths, types, sizes and contents below root in walk order (sorted),
// and, with modes, permission bits, owners and mtimes.
func treeDigest(t *testing.T, root string, modes bool) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		rel, _ := filepath.Rel(root, p)
		fi, err := os.Lstat(p)
		require.NoError(t, err)
		fmt.Fprintf(h, "%q %s", rel, fi.Mode().Type())
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			require.NoError(t, err)
			fmt.Fprintf(h, " %d %x", len(b), sha256.Sum256(b))
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			target, err := os.Readlink(p)
			require.NoError(t, err)
			fmt.Fprintf(h, " -> %q", target)
		}
		if modes {
			st := fi.Sys().(*syscall.Stat_t)
			fmt.Fprintf(h, " %v %d:%d %d", fi.Mode(), st.Uid, st.Gid, fi.ModTime().UnixNano())
		}
		fmt.Fprintln(h)
		return nil
	})
	require.NoError(t, err)
	return hex.EncodeToString(h.Sum(nil))
}

func fileDigest(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// The pinned digests change only when the generators' output changes; then bump Version.
func TestGeneratorsArePinned(t *testing.T) {
	dir := t.TempDir()
	pg := filepath.Join(dir, "pg")
	require.NoError(t, GenPG(pg, 42, 0.001))
	require.Equal(t, "30e50d192b9b2ee51140cfeb74f88acbfa422798bd75ba69319200a2518aeb04", treeDigest(t, pg, false), "GenPG output changed: bump Version")
	m, err := MutatePG(pg, 101, 5)
	require.NoError(t, err)
	require.Equal(t, Mutation{Files: 31, Bytes: 83 * page, FileBytes: 31 * page}, m)
	require.Equal(t, "d2420590462ca8093b947604428669f6c127996bc43bba65436d0ba8f1514212", treeDigest(t, pg, false), "MutatePG output changed: bump Version")

	large := filepath.Join(dir, "disk.img")
	require.NoError(t, GenLarge(large, 7, 64<<20+12345))
	require.Equal(t, "56e578ab8a4f964d99e44657268d5e350855f4b58e8ba03b4d7431e75a51a7f4", fileDigest(t, large), "GenLarge output changed: bump Version")
	m, err = MutateLarge(large, 201, 5)
	require.NoError(t, err)
	require.Equal(t, Mutation{Files: 1, Bytes: 3 << 20, FileBytes: 64<<20 + 12345}, m)
	require.Equal(t, "0dab02331036538f87985dbb8676934650b88e085c20392df9fbb24c23a872e8", fileDigest(t, large), "MutateLarge output changed: bump Version")
}

func TestGenPGShape(t *testing.T) {
	for _, tc := range []struct {
		scale       float64
		files       int
		smallMaxMax int64
	}{
		{scale: 1, files: 2500, smallMaxMax: 1 << 20},
		{scale: 0.5, files: 2178},
		{scale: 0.1, files: 1581},
		{scale: 0.0625, files: 1440},
		{scale: 0.05, files: 1378},
		{scale: 0.02, files: 1149},
		{scale: 0.01, files: 1001},
		{scale: 0.001, files: 635},
	} {
		t.Run(fmt.Sprint(tc.scale), func(t *testing.T) {
			p, err := planPG(tc.scale)
			require.NoError(t, err)
			require.Equal(t, tc.files, p.smallFiles+len(p.bigs)+pgWALSegments, "update GenPG's table")
			require.GreaterOrEqual(t, p.smallMax, int64(page))
			require.LessOrEqual(t, p.smallMax, int64(pgSmallMax))
			for _, b := range append(p.bigs, p.walSize) {
				require.Zero(t, b%page)
			}
		})
	}
	for _, bad := range []float64{0, -1, 1.5} {
		_, err := planPG(bad)
		require.Error(t, err, bad)
	}

	dir := t.TempDir()
	require.NoError(t, GenPG(dir, 1, 0.001), "an empty directory is fine")
	s, err := Measure(dir)
	require.NoError(t, err)
	require.Equal(t, 635, s.Files)
	require.Equal(t, 33, s.Dirs)
	require.Zero(t, s.Bytes%page)
	require.ErrorContains(t, GenPG(dir, 1, 0.001), "not empty")
}

func TestGenLargeHasRealHoles(t *testing.T) {
	p := filepath.Join(t.TempDir(), "disk.img")
	const size = 256 << 20
	require.NoError(t, GenLarge(p, 7, size))
	info, err := treecheck.Sparse(p)
	require.NoError(t, err)
	require.Equal(t, int64(size), info.Size)
	require.True(t, info.HasHoles())
	require.Less(t, info.Allocated, int64(size)-info.HoleBytes()+1<<20, "holes are not allocated")
	require.Greater(t, info.HoleBytes(), int64(size/20), "about 1/16 of the blocks start a 1–8 MiB hole")

	// Regenerating over a mutated file gives the original bytes and holes again.
	want := fileDigest(t, p)
	_, err = MutateLarge(p, 3, 50)
	require.NoError(t, err)
	require.NoError(t, GenLarge(p, 7, size))
	require.Equal(t, want, fileDigest(t, p))
	again, err := treecheck.Sparse(p)
	require.NoError(t, err)
	require.Equal(t, info.Data, again.Data)
}

func TestMutatePGTouchesPctOfFiles(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, GenPG(dir, 42, 0.001))
	before, err := treecheck.Manifest(dir)
	require.NoError(t, err)
	time.Sleep(10 * time.Millisecond)
	m, err := MutatePG(dir, 7, 10)
	require.NoError(t, err)
	after, err := treecheck.Manifest(dir)
	require.NoError(t, err)
	changed, changedBytes := 0, int64(0)
	for p, a := range after {
		b := before[p]
		if a.Type == treecheck.TypeFile && a.Mtime != b.Mtime {
			changed++
			changedBytes += a.Size
			require.Equal(t, b.Size, a.Size, p)
		}
	}
	require.Equal(t, 63, m.Files) // 10% of 635, rounded down
	require.Equal(t, m.Files, changed)
	require.Equal(t, m.FileBytes, changedBytes)
	require.LessOrEqual(t, m.Bytes, int64(4*page*m.Files))
}

func TestEnsureReusesOnlyMatchingStamps(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pg")
	reused, err := EnsurePG(dir, 42, 0.001)
	require.NoError(t, err)
	require.False(t, reused)
	reused, err = EnsurePG(dir, 42, 0.001)
	require.NoError(t, err)
	require.True(t, reused)
	reused, err = EnsurePG(dir, 43, 0.001)
	require.NoError(t, err)
	require.False(t, reused, "another seed regenerates")
	stamp, err := os.ReadFile(dir + ".stamp")
	require.NoError(t, err)
	require.Equal(t, fmt.Sprintf("datagen v%d pg seed=43 scale=0.001\n", Version), string(stamp))

	require.NoError(t, os.Remove(dir+".stamp"))
	reused, err = EnsurePG(dir, 43, 0.001)
	require.NoError(t, err)
	require.False(t, reused, "no stamp: the tree may be half written")

	large := filepath.Join(t.TempDir(), "large")
	img := filepath.Join(large, "disk.img")
	reused, err = EnsureLarge(img, 7, 4<<20)
	require.NoError(t, err)
	require.False(t, reused)
	reused, err = EnsureLarge(img, 7, 4<<20)
	require.NoError(t, err)
	require.True(t, reused)
	ents, err := os.ReadDir(large)
	require.NoError(t, err)
	require.Len(t, ents, 1, "the stamp is outside the directory")
	require.FileExists(t, large+".stamp")
}

func TestGenTricky(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("GenTricky chowns: needs root")
	}
	a, b := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	require.NoError(t, GenTricky(a))
	require.NoError(t, GenTricky(b))
	require.Equal(t, treeDigest(t, a, true), treeDigest(t, b, true), "deterministic")

	want, err := treecheck.Manifest(a)
	require.NoError(t, err)
	got, err := treecheck.Manifest(b)
	require.NoError(t, err)
	strict := treecheck.Options{CheckHardLinks: true, CheckSpecial: true, CheckAllocation: true, ExactSymlinkMtime: true}
	require.Empty(t, treecheck.Compare(want, got, strict))

	e := func(p string) treecheck.Entry {
		t.Helper()
		x, ok := want[p]
		require.True(t, ok, p)
		return x
	}
	require.Equal(t, os.FileMode(0o755), e(".").Mode)
	require.Equal(t, os.FileMode(0o755)|os.ModeSetuid, e("setuid-bin").Mode)
	require.Equal(t, os.FileMode(0o775)|os.ModeSetgid, e("setgid-dir").Mode)
	require.Equal(t, os.FileMode(0o777)|os.ModeSticky, e("sticky-dir").Mode)
	require.Equal(t, os.FileMode(0), e("mode-0000").Mode)
	require.Equal(t, [2]uint32{TrickyUID, TrickyGID}, [2]uint32{e("owned-dir").UID, e("owned-dir").GID})
	require.Equal(t, [2]uint32{TrickyUID, TrickyGID}, [2]uint32{e("link-owned").UID, e("link-owned").GID})
	require.Equal(t, uint32(TrickyGID), e("setgid-dir/file").GID)
	require.Equal(t, uint64(3), e("hardlink-a").Nlink)
	require.Equal(t, e("hardlink-a").Ino, e("deep/d1/hardlink-c").Ino)
	require.Equal(t, treecheck.TypeFIFO, e("fifo").Type)
	require.Equal(t, "does/not/exist", e("link-dangling").Target)
	require.Equal(t, treecheck.TypeDir, e("deep/d1/d2/d3/d4/d5/d6/d7/d8/empty").Type)
	require.Equal(t, int64(-31536000*1e9+987654321), e("mtime-1969").Mtime)
	require.NotZero(t, e("regular.txt").Mtime%1e9, "nanoseconds")
	require.NotZero(t, e("deep").Mtime%1e3, "directory nanoseconds")
	require.NotZero(t, e("link-rel").Mtime%1e3, "symlink nanoseconds")
	require.Len(t, strings.Repeat("é", 127)+"x", 255)
	e(strings.Repeat("é", 127) + "x")
	e("long-" + strings.Repeat("n", 250))
	e("new\nline")

	for name, holes := range map[string]int64{"sparse.img": 16<<20 + 12345 - 192<<10, "all-hole.img": 16<<20 + 12345} {
		s, err := treecheck.Sparse(filepath.Join(a, name))
		require.NoError(t, err)
		require.Equal(t, holes, s.HoleBytes(), name)
	}
	require.ErrorContains(t, GenTricky(a), "not empty")
}

// GenMany: n files, 1,000 to a directory, none above 2 KiB, the same tree every time
// (its two writers take directories in any order).
func TestGenManyShape(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	require.NoError(t, GenMany(a, 5, 2500))
	require.NoError(t, GenMany(b, 5, 2500))
	s, err := Measure(a)
	require.NoError(t, err)
	require.Equal(t, 2500, s.Files)
	require.Equal(t, 4, s.Dirs, "the root and three directories")
	require.Less(t, s.Bytes, int64(2500*manyMaxSize))
	require.Greater(t, s.Bytes, int64(2500*manyMaxSize/4))
	require.Equal(t, treeDigest(t, a, false), treeDigest(t, b, false))
	entries, err := os.ReadDir(filepath.Join(a, "d00002"))
	require.NoError(t, err)
	require.Len(t, entries, 500)
}

// GenSegments: whole segments of random bytes, the same for the same seed.
func TestGenSegments(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	require.NoError(t, GenSegments(a, 9, 2*SegmentSize+5))
	require.NoError(t, GenSegments(b, 9, 2*SegmentSize))
	s, err := Measure(a)
	require.NoError(t, err)
	require.Equal(t, 2, s.Files)
	require.Equal(t, int64(2*SegmentSize), s.Bytes)
	require.Equal(t, treeDigest(t, a, false), treeDigest(t, b, false))
	require.NotEqual(t, fileDigest(t, filepath.Join(a, "00000000")), fileDigest(t, filepath.Join(a, "00000001")))
}
