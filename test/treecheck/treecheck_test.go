package treecheck

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/snapmove/snapmove/test/datagen"
)

func TestCompare(t *testing.T) {
	base := Tree{
		".":        {Type: TypeDir, Mode: 0o755, Mtime: 10},
		"f":        {Type: TypeFile, Mode: 0o644, UID: 1001, GID: 1002, Mtime: 1_000_000_123, Size: 3, SHA256: "aaa", Blocks: 8, Nlink: 1, Ino: 1},
		"d":        {Type: TypeDir, Mode: 0o775 | os.ModeSetgid, Mtime: 20, Nlink: 2},
		"l":        {Type: TypeSymlink, Mode: 0o777, Mtime: 1_000_000_123, Target: "f"},
		"p":        {Type: TypeFIFO, Mode: 0o644},
		"h1":       {Type: TypeFile, Mode: 0o644, Size: 1, SHA256: "bbb", Blocks: 8, Nlink: 2, Ino: 7},
		"h2":       {Type: TypeFile, Mode: 0o644, Size: 1, SHA256: "bbb", Blocks: 8, Nlink: 2, Ino: 7},
		"sparse":   {Type: TypeFile, Mode: 0o644, Size: 64 << 20, SHA256: "ccc", Blocks: 256, Nlink: 1, Ino: 3},
		"x/y":      {Type: TypeFile, Mode: 0o600, Size: 1, SHA256: "ddd", Nlink: 1, Ino: 4},
		"x":        {Type: TypeDir, Mode: 0o755},
		"lost+fnd": {Type: TypeDir, Mode: 0o700},
	}
	// kopiaLike is what a kopia restore of base gives: new inodes, hard links split, no
	// FIFO, holes filled, symlink mtime rounded up to the microsecond.
	kopiaLike := func() Tree {
		t := Tree{}
		ino := uint64(100)
		for p, e := range base {
			ino++
			e.Ino = ino
			if e.Type == TypeFile {
				e.Nlink = 1
				e.Blocks = (e.Size + 4095) / 4096 * 8
			}
			if e.Type == TypeSymlink {
				e.Mtime = (e.Mtime + 999) / 1000 * 1000
			}
			t[p] = e
		}
		delete(t, "p")
		return t
	}
	with := func(edit func(Tree)) Tree {
		t := kopiaLike()
		edit(t)
		return t
	}
	set := func(p string, edit func(*Entry)) func(Tree) {
		return func(t Tree) {
			e := t[p]
			edit(&e)
			t[p] = e
		}
	}
	for _, tc := range []struct {
		name string
		got  Tree
		opts Options
		want []string
	}{
		{name: "identical", got: base},
		{name: "what kopia restores passes the defaults", got: kopiaLike()},
		{name: "hard links", got: kopiaLike(), opts: Options{CheckHardLinks: true}, want: []string{
			`"h1": link count 1, want 2`,
			`"h2": link count 1, want 2`,
			`"h1": shares its inode with ["h1"], want ["h1" "h2"]`,
			`"h2": shares its inode with ["h2"], want ["h1" "h2"]`,
		}},
		{name: "special files", got: kopiaLike(), opts: Options{CheckSpecial: true}, want: []string{`"p": missing (want fifo)`}},
		{name: "allocation", got: kopiaLike(), opts: Options{CheckAllocation: true}, want: []string{
			`"sparse": allocates 67108864 bytes, want at most 1179648 (holes were filled)`,
		}},
		{name: "symlink nanoseconds", got: kopiaLike(), opts: Options{ExactSymlinkMtime: true}, want: []string{
			`"l": mtime 1970-01-01T00:00:01.000001Z, want 1970-01-01T00:00:01.000000123Z`,
		}},
		{name: "symlink off by a microsecond", got: with(set("l", func(e *Entry) { e.Mtime += 1000 })), want: []string{
			`"l": mtime 1970-01-01T00:00:01.000002Z, want 1970-01-01T00:00:01.000000123Z`,
		}},
		{name: "missing and unexpected", got: with(func(t Tree) { delete(t, "x/y"); t["new"] = Entry{Type: TypeSymlink} }), want: []string{
			`"new": unexpected symlink`,
			`"x/y": missing (want file)`,
		}},
		{name: "unexpected FIFO is ignored", got: with(func(t Tree) { t["q"] = Entry{Type: TypeFIFO} })},
		{name: "type", got: with(set("x", func(e *Entry) { e.Type = TypeFile })), want: []string{`"x": type file, want dir`}},
		{name: "setgid lost", got: with(set("d", func(e *Entry) { e.Mode &^= os.ModeSetgid })), want: []string{
			`"d": mode 0775, want 2775`,
		}},
		{name: "owner", got: with(set("f", func(e *Entry) { e.UID, e.GID = 0, 0 })), want: []string{`"f": owner 0:0, want 1001:1002`}},
		{name: "owner ignored", got: with(set("f", func(e *Entry) { e.UID, e.GID = 0, 0 })), opts: Options{IgnoreOwner: true}},
		{name: "file mtime", got: with(set("f", func(e *Entry) { e.Mtime++ })), want: []string{
			`"f": mtime 1970-01-01T00:00:01.000000124Z, want 1970-01-01T00:00:01.000000123Z`,
		}},
		{name: "root mtime", got: with(set(".", func(e *Entry) { e.Mtime = 0 })), want: []string{
			`".": mtime 1970-01-01T00:00:00Z, want 1970-01-01T00:00:00.00000001Z`,
		}},
		{name: "directory mtimes ignored", got: with(set(".", func(e *Entry) { e.Mtime = 0 })), opts: Options{IgnoreDirMtime: true}},
		{name: "content", got: with(set("f", func(e *Entry) { e.SHA256 = "zzz" })), want: []string{`"f": content differs (sha256 zzz…, want aaa…)`}},
		{name: "size", got: with(set("f", func(e *Entry) { e.Size = 4 })), want: []string{`"f": size 4, want 3`}},
		{name: "symlink target", got: with(set("l", func(e *Entry) { e.Target = "/f" })), want: []string{`"l": symlink target "/f", want "f"`}},
		{name: "ignored paths", got: with(func(t Tree) { delete(t, "x"); delete(t, "x/y"); delete(t, "lost+fnd") }), opts: Options{IgnorePaths: []string{"x/", "lost+fnd"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, Compare(base, tc.got, tc.opts))
		})
	}
}

func TestCompareCapsItsList(t *testing.T) {
	want := Tree{}
	for i := range 300 {
		want[fmt.Sprintf("f%03d", i)] = Entry{Type: TypeFile}
	}
	diffs := Compare(want, Tree{}, Options{})
	require.Len(t, diffs, maxDifferences+1)
	require.Equal(t, "... and 100 more differences", diffs[maxDifferences])
}

// TestKopiaLikeRestoreOfTrickyTree copies datagen's tricky tree the way kopia's restore
// does and checks that exactly the documented differences remain.
func TestKopiaLikeRestoreOfTrickyTree(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("datagen.GenTricky chowns: needs root")
	}
	src, dst := filepath.Join(t.TempDir(), "src"), filepath.Join(t.TempDir(), "dst")
	require.NoError(t, datagen.GenTricky(src))
	kopiaRestore(t, src, dst)

	want, err := Manifest(src)
	require.NoError(t, err)
	got, err := Manifest(dst)
	require.NoError(t, err)
	require.Empty(t, Compare(want, got, Options{}))

	diffs := func(opts Options) []string {
		var ps []string
		for _, d := range Compare(want, got, opts) {
			p, _, _ := strings.Cut(d, ": ")
			ps = append(ps, p)
		}
		return ps
	}
	require.Equal(t, []string{`"deep/d1/hardlink-c"`, `"hardlink-a"`, `"hardlink-b"`, `"deep/d1/hardlink-c"`, `"hardlink-a"`, `"hardlink-b"`},
		diffs(Options{CheckHardLinks: true}))
	require.Equal(t, []string{`"fifo"`}, diffs(Options{CheckSpecial: true}))
	require.Equal(t, []string{`"all-hole.img"`, `"sparse.img"`}, diffs(Options{CheckAllocation: true}))
	symlinks := diffs(Options{ExactSymlinkMtime: true})
	require.NotEmpty(t, symlinks)
	for _, p := range symlinks {
		require.Equal(t, TypeSymlink, want[strings.Trim(p, `"`)].Type, p)
	}
}

// kopiaRestore copies src to dst like kopia's restore (snapshot/restore
// local_fs_output.go): regular files written in full, each path its own inode, symlinks
// recreated, FIFOs skipped; owner, then mode, then mtime (atime = mtime; symlinks with
// lutimes' microseconds, rounded up); directories finished after their content.
func kopiaRestore(t *testing.T, src, dst string) {
	t.Helper()
	var dirs []string
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		fi, err := os.Lstat(p)
		require.NoError(t, err)
		st := fi.Sys().(*syscall.Stat_t)
		switch {
		case fi.IsDir():
			require.NoError(t, os.MkdirAll(out, 0o700))
			dirs = append(dirs, rel)
			return nil
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			require.NoError(t, err)
			require.NoError(t, os.Symlink(target, out))
			require.NoError(t, os.Lchown(out, int(st.Uid), int(st.Gid)))
			tv := unix.NsecToTimeval(fi.ModTime().UnixNano()) // rounds up to the microsecond
			require.NoError(t, unix.Lutimes(out, []unix.Timeval{tv, tv}))
			return nil
		case !fi.Mode().IsRegular():
			return nil // unknown types are not in the snapshot
		}
		in, err := os.Open(p)
		require.NoError(t, err)
		defer in.Close() //nolint:errcheck
		f, err := os.OpenFile(out, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
		require.NoError(t, err)
		_, err = io.Copy(struct{ io.Writer }{f}, in) // no ReadFrom: no copy_file_range, holes are written
		require.NoError(t, err)
		require.NoError(t, f.Close())
		setAttrs(t, out, fi)
		return nil
	})
	require.NoError(t, err)
	sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
	for _, rel := range dirs {
		fi, err := os.Lstat(filepath.Join(src, rel))
		require.NoError(t, err)
		setAttrs(t, filepath.Join(dst, rel), fi)
	}
}

func setAttrs(t *testing.T, p string, fi os.FileInfo) {
	st := fi.Sys().(*syscall.Stat_t)
	require.NoError(t, os.Chown(p, int(st.Uid), int(st.Gid)))
	require.NoError(t, os.Chmod(p, fi.Mode()&modeBits))
	require.NoError(t, os.Chtimes(p, fi.ModTime(), fi.ModTime()))
}

func TestSparse(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "holes")
	f, err := os.Create(p)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(8<<20))
	_, err = f.WriteAt([]byte(strings.Repeat("x", 4096)), 1<<20)
	require.NoError(t, err)
	require.NoError(t, f.Close())

	s, err := Sparse(p)
	require.NoError(t, err)
	require.Equal(t, int64(8<<20), s.Size)
	require.Equal(t, []Extent{{Off: 1 << 20, Len: 4096}}, s.Data)
	require.Equal(t, int64(8<<20-4096), s.HoleBytes())
	require.True(t, s.HasHoles())
	require.Less(t, s.Allocated, int64(1<<20))

	full := filepath.Join(dir, "full")
	require.NoError(t, os.WriteFile(full, make([]byte, 1<<20), 0o644))
	s, err = Sparse(full)
	require.NoError(t, err)
	require.False(t, s.HasHoles(), "written zeros are data")
	require.Equal(t, []Extent{{Off: 0, Len: 1 << 20}}, s.Data)

	empty := filepath.Join(dir, "empty")
	require.NoError(t, os.WriteFile(empty, nil, 0o644))
	s, err = Sparse(empty)
	require.NoError(t, err)
	require.Empty(t, s.Data)
	require.False(t, s.HasHoles())

	_, err = Sparse(filepath.Join(dir, "nope"))
	require.Error(t, err)
}

func TestManifestRecordsTypesAndContent(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "f"), []byte("abc"), 0o640))
	require.NoError(t, os.Symlink("f", filepath.Join(dir, "l")))
	require.NoError(t, syscall.Mkfifo(filepath.Join(dir, "p"), 0o600))
	require.NoError(t, os.Mkdir(filepath.Join(dir, "d"), 0o750))
	require.NoError(t, os.Chmod(filepath.Join(dir, "d"), 0o750|os.ModeSticky))
	mt := time.Unix(1234567890, 123456789)
	require.NoError(t, os.Chtimes(filepath.Join(dir, "f"), mt, mt))

	m, err := Manifest(dir)
	require.NoError(t, err)
	require.Len(t, m, 5)
	require.Equal(t, TypeDir, m["."].Type)
	f := m["f"]
	require.Equal(t, TypeFile, f.Type)
	require.Equal(t, os.FileMode(0o640), f.Mode)
	require.Equal(t, int64(3), f.Size)
	require.Equal(t, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", f.SHA256)
	require.Equal(t, mt.UnixNano(), f.Mtime)
	require.Equal(t, uint64(1), f.Nlink)
	require.Equal(t, TypeSymlink, m["l"].Type)
	require.Equal(t, "f", m["l"].Target)
	require.Equal(t, TypeFIFO, m["p"].Type)
	require.Equal(t, os.FileMode(0o750)|os.ModeSticky, m["d"].Mode)

	_, err = Manifest(filepath.Join(dir, "missing"))
	require.Error(t, err)
}
