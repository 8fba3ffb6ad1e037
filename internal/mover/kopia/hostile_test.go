//go:build unix

package kopia

// Restores of crafted snapshots: what kopia never writes (two entries of one name in a
// directory, names that are not one path component) and targets holding symlinks that
// point outside. Nothing outside the target may be created or changed.

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kopia/kopia/fs"
	"github.com/kopia/kopia/repo"
	"github.com/kopia/kopia/repo/object"
	"github.com/kopia/kopia/snapshot"
	"github.com/kopia/kopia/snapshot/snapshotfs"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/mover/kopia/kopiatest"
	"github.com/snapmove/snapmove/internal/mover/kopia/restore"
	"github.com/snapmove/snapmove/internal/mover/kopia/tree"
)

// craftNode is an entry of a crafted snapshot.
type craftNode struct {
	name string
	typ  snapshot.EntryType
	data string      // file content or symlink target
	mode os.FileMode // 0: 0644 for files, 0755 for directories
	kids []craftNode
}

func craftFile(name, data string) craftNode {
	return craftNode{name: name, typ: snapshot.EntryTypeFile, data: data}
}
func craftLink(name, target string) craftNode {
	return craftNode{name: name, typ: snapshot.EntryTypeSymlink, data: target}
}
func craftDir(name string, kids ...craftNode) craftNode {
	return craftNode{name: name, typ: snapshot.EntryTypeDirectory, kids: kids}
}

var craftedMtime = time.Date(2020, 1, 2, 3, 4, 5, 6789, time.UTC)

// writeSnapshot writes root as a snapshot the way kopia's snapshotfs does (file and
// symlink objects, directory manifests in the given order, a snapshot manifest) and
// returns its ID.
func writeSnapshot(t *testing.T, r *Repository, root craftNode) string {
	t.Helper()
	var id string
	err := repo.WriteSession(context.Background(), r.st.Direct(), repo.WriteSessionOptions{Purpose: "crafted snapshot"},
		func(ctx context.Context, w repo.RepositoryWriter) error {
			entry, err := writeCraftNode(ctx, w, root)
			if err != nil {
				return err
			}
			now := fs.UTCTimestampFromTime(time.Now())
			mid, err := snapshot.SaveSnapshot(ctx, w, &snapshot.Manifest{
				Source:    snapshot.SourceInfo{UserName: "default", Host: "default", Path: "crafted"},
				StartTime: now, EndTime: now, RootEntry: entry,
			})
			id = string(mid)
			return err
		})
	require.NoError(t, err)
	return id
}

func writeCraftNode(ctx context.Context, w repo.RepositoryWriter, n craftNode) (*snapshot.DirEntry, error) {
	e := &snapshot.DirEntry{Name: n.name, Type: n.typ, ModTime: fs.UTCTimestampFromTime(craftedMtime),
		UserID: uint32(os.Getuid()), GroupID: uint32(os.Getgid())} //nolint:gosec
	mode := n.mode
	switch n.typ {
	case snapshot.EntryTypeDirectory:
		var dm snapshot.DirManifest
		dm.StreamType = "kopia:directory"
		dm.Summary = &fs.DirectorySummary{}
		for _, k := range n.kids {
			ke, err := writeCraftNode(ctx, w, k)
			if err != nil {
				return nil, err
			}
			dm.Entries = append(dm.Entries, ke)
		}
		oid, err := snapshotfs.WriteDirManifest(ctx, w, n.name, &dm, "")
		if err != nil {
			return nil, err
		}
		e.ObjectID = oid
		if mode == 0 {
			mode = 0o755
		}
	default:
		ow := w.NewObjectWriter(ctx, object.WriterOptions{Description: "crafted " + n.name})
		defer ow.Close() //nolint:errcheck
		if _, err := ow.Write([]byte(n.data)); err != nil {
			return nil, err
		}
		oid, err := ow.Result()
		if err != nil {
			return nil, err
		}
		e.ObjectID = oid
		e.FileSize = int64(len(n.data))
		if mode == 0 {
			mode = 0o644
		}
		if n.typ == snapshot.EntryTypeSymlink {
			mode = 0o777
		}
	}
	e.Permissions = snapshot.Permissions(mode)
	return e, nil
}

// withBothResolutions runs f with openat2 (where the kernel has it) and with the
// per-component openat walk that replaces it on older kernels.
func withBothResolutions(t *testing.T, f func(t *testing.T)) {
	for _, walk := range []bool{false, true} {
		name := "openat2"
		if walk {
			name = "openat walk"
		}
		t.Run(name, func(t *testing.T) {
			t.Cleanup(restore.SetOpenat2Missing(walk))
			f(t)
		})
	}
}

// escapeSandbox is a base directory holding the restore target and an outside directory
// (with one file) that a restore must not touch.
type escapeSandbox struct {
	base, target, outside, outsideFile string
	before                             map[string]entryInfo
}

func newEscapeSandbox(t *testing.T) *escapeSandbox {
	base := t.TempDir()
	s := &escapeSandbox{base: base, target: filepath.Join(base, "target"), outside: filepath.Join(base, "outside")}
	s.outsideFile = filepath.Join(s.outside, "keep")
	require.NoError(t, os.Mkdir(s.target, 0o755))
	require.NoError(t, os.Mkdir(s.outside, 0o755))
	require.NoError(t, os.WriteFile(s.outsideFile, []byte("keep"), 0o640))
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	for _, p := range []string{s.outsideFile, s.outside, base} {
		require.NoError(t, os.Chtimes(p, old, old))
	}
	s.before = s.describeOutside(t)
	return s
}

// describeOutside describes the base directory and the outside tree, not the target.
func (s *escapeSandbox) describeOutside(t *testing.T) map[string]entryInfo {
	tree := describeTree(t, s.outside)
	st, err := os.Lstat(s.base)
	require.NoError(t, err)
	tree["<base>"] = entryInfo{Mode: st.Mode(), ModTime: st.ModTime().UTC()}
	names, err := os.ReadDir(s.base)
	require.NoError(t, err)
	for _, n := range names {
		tree["<base>/"+n.Name()] = entryInfo{}
	}
	return tree
}

func (s *escapeSandbox) requireOutsideUntouched(t *testing.T) {
	t.Helper()
	requireSameTree(t, s.before, s.describeOutside(t))
}

// requireNoDescriptorsBelow fails if the process holds a descriptor of dir or of
// anything below it: a restore closes every directory it opened. Linux only
// (/proc/self/fd); elsewhere it checks nothing.
func requireNoDescriptorsBelow(t *testing.T, dir string) {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, fd := range fds {
		p, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && (p == dir || strings.HasPrefix(p, dir+"/")) {
			t.Errorf("descriptor %s is still open on %s", fd.Name(), p)
		}
	}
}

func TestRestoreRefusesHostileSnapshots(t *testing.T) {
	ctx := context.Background()
	r := openRepo(t, kopiatest.Location(t), Options{Create: true})
	for _, tc := range []struct {
		name string
		tree func(outside string) craftNode
		want []string // in the error; "<target>" is replaced
	}{{
		name: "a directory and a symlink out of the target named x",
		tree: func(outside string) craftNode {
			return craftDir("", craftFile("a", "ok"), craftDir("x", craftFile("evil", "pwned")), craftLink("x", outside))
		},
		want: []string{`<target> holds 2 entries named "x", none restored`},
	}, {
		name: "a symlink out of the target, then a directory of its name holding a file",
		tree: func(outside string) craftNode {
			return craftDir("", craftDir("sub", craftLink("s", outside), craftDir("s", craftFile("evil", "pwned"),
				craftDir("deeper", craftFile("evil2", "pwned")))))
		},
		want: []string{`<target>/sub holds 2 entries named "s", none restored`},
	}, {
		name: "two files of one name, unsorted",
		tree: func(string) craftNode {
			return craftDir("", craftFile("b", "1"), craftFile("a", "2"), craftFile("b", "3"))
		},
		want: []string{`<target> holds 2 entries named "b", none restored`},
	}, {
		name: "a bad name below files already queued",
		tree: func(string) craftNode {
			return craftDir("", craftFile("a", "1"), craftFile("b", "2"), craftDir("d", craftFile("c", "3"), craftFile("..", "pwned")))
		},
		want: []string{`refusing entry name ".." in <target>/d`},
	}, {
		name: "a file named ..",
		tree: func(string) craftNode { return craftDir("", craftFile("..", "pwned")) },
		want: []string{`refusing entry name ".." in <target>`},
	}, {
		name: "a directory named .. holding a file",
		tree: func(string) craftNode { return craftDir("", craftDir("d", craftDir("..", craftFile("evil", "pwned")))) },
		want: []string{`refusing entry name ".." in <target>/d`},
	}, {
		name: "a name with a slash",
		tree: func(string) craftNode { return craftDir("", craftDir("a"), craftFile("a/b", "pwned")) },
		want: []string{`refusing entry name "a/b" in <target>`},
	}, {
		name: "a symlink named ../outside/evil",
		tree: func(string) craftNode { return craftDir("", craftLink("../outside/evil", "/")) },
		want: []string{`refusing entry name "../outside/evil"`},
	}, {
		name: "an empty name",
		tree: func(string) craftNode { return craftDir("", craftFile("", "pwned")) },
		want: []string{`refusing entry name ""`},
	}, {
		name: "a name .",
		tree: func(string) craftNode { return craftDir("", craftDir(".", craftFile("evil", "pwned"))) },
		want: []string{`refusing entry name "."`},
	}, {
		name: "a name with NUL",
		tree: func(string) craftNode { return craftDir("", craftFile("a\x00b", "pwned")) },
		want: []string{`refusing entry name "a\x00b"`},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			withBothResolutions(t, func(t *testing.T) {
				s := newEscapeSandbox(t)
				id := writeSnapshot(t, r, tc.tree(s.outside))
				_, err := r.Restore(ctx, datapath.RestoreRequest{SnapshotID: id, Path: s.target, Parallel: 4})
				s.requireOutsideUntouched(t)
				requireNoDescriptorsBelow(t, s.base)
				require.Error(t, err)
				for _, w := range tc.want {
					require.ErrorContains(t, err, strings.ReplaceAll(w, "<target>", s.target))
				}
				_, err = os.Lstat(filepath.Join(s.target, "evil"))
				require.True(t, os.IsNotExist(err), "nothing named evil in the target either")
			})
		})
	}
}

// TestRestoreReplacesSymlinksOutOfTheTarget: symlinks already in the target that point
// outside are entries in the way: replaced by the snapshot's file, directory or symlink,
// never followed by a write, a chmod, a chown or a time change.
func TestRestoreReplacesSymlinksOutOfTheTarget(t *testing.T) {
	ctx := context.Background()
	r := openRepo(t, kopiatest.Location(t), Options{Create: true})
	withBothResolutions(t, func(t *testing.T) {
		s := newEscapeSandbox(t)
		tree := craftDir("",
			craftNode{name: "f", typ: snapshot.EntryTypeFile, data: "restored", mode: 0o750 | os.ModeSetuid},
			craftNode{name: "d", typ: snapshot.EntryTypeDirectory, mode: 0o751 | os.ModeSticky, kids: []craftNode{craftFile("g", "in d")}},
			craftNode{name: "keep", typ: snapshot.EntryTypeFile, data: "not the outside one", mode: 0o600},
			craftLink("l", "f"),
			craftDir("nested", craftNode{name: "e", typ: snapshot.EntryTypeDirectory, mode: 0o700,
				kids: []craftNode{craftFile("h", "in e")}}),
			craftFile("was-dir", "a file now"),
			craftFile("was-fifo", "a file now"),
		)
		id := writeSnapshot(t, r, tree)

		// in the way: symlinks out of the target where the snapshot has a file (f, and
		// keep, pointing at the outside file of that name), a directory (d, and nested/e a
		// level down) and a symlink (l)
		require.NoError(t, os.Symlink(s.outsideFile, filepath.Join(s.target, "f")))
		require.NoError(t, os.Symlink(s.outside, filepath.Join(s.target, "d")))
		require.NoError(t, os.Symlink(s.outsideFile, filepath.Join(s.target, "keep")))
		require.NoError(t, os.Symlink(s.outside, filepath.Join(s.target, "l")))
		require.NoError(t, os.Mkdir(filepath.Join(s.target, "nested"), 0o700))
		require.NoError(t, os.Symlink(s.outside, filepath.Join(s.target, "nested", "e")))
		require.NoError(t, os.Symlink(s.outside, filepath.Join(s.target, "other"))) // not in the snapshot
		// a directory where a file goes, holding symlinks out (removed, not followed), and
		// a FIFO where a file goes (opening it for writing would wait for a reader)
		require.NoError(t, os.MkdirAll(filepath.Join(s.target, "was-dir", "sub"), 0o755))
		require.NoError(t, os.Symlink(s.outside, filepath.Join(s.target, "was-dir", "out")))
		require.NoError(t, os.Symlink(s.outsideFile, filepath.Join(s.target, "was-dir", "sub", "out")))
		require.NoError(t, unix.Mkfifo(filepath.Join(s.target, "was-fifo"), 0o600))

		_, err := r.Restore(ctx, datapath.RestoreRequest{SnapshotID: id, Path: s.target, Parallel: 4})
		require.NoError(t, err)
		s.requireOutsideUntouched(t)
		requireNoDescriptorsBelow(t, s.base)

		got := describeTree(t, s.target)
		require.Equal(t, os.FileMode(0o750)|os.ModeSetuid, got["f"].Mode)
		require.Equal(t, os.ModeDir|os.ModeSticky|0o751, got["d"].Mode)
		require.Equal(t, os.FileMode(0o600), got["keep"].Mode)
		require.Equal(t, os.ModeSymlink, got["l"].Mode.Type())
		require.Equal(t, "f", got["l"].Link)
		require.Equal(t, os.ModeDir|0o700, got["nested/e"].Mode)
		require.Equal(t, s.outside, got["other"].Link, "entries not in the snapshot are left alone")
		for p, want := range map[string]string{"f": "restored", "d/g": "in d", "keep": "not the outside one", "nested/e/h": "in e",
			"was-dir": "a file now", "was-fifo": "a file now"} {
			b, err := os.ReadFile(filepath.Join(s.target, p))
			require.NoError(t, err)
			require.Equal(t, want, string(b), p)
			require.True(t, got[p].ModTime.Equal(craftedMtime), p)
		}
		for _, p := range []string{"d", "nested/e", "l"} {
			require.True(t, got[p].ModTime.Equal(craftedMtime), p)
		}
	})
}

// TestOpenBeneath: directories are reached below the target only through directories,
// never through a symlink (out of the target or within it) or "..".

// A snapshot written by Velero's node-agent or the kopia CLI stores each byte of a name
// that is not UTF-8 as U+FFFD, so "caf\xe9" and "caf\xe8" are both "caf\uFFFD": a restore
// writes everything else and fails naming them; nothing is lost silently.
func TestRestoreCollidingNames(t *testing.T) {
	ctx := context.Background()
	r := openRepo(t, kopiatest.Location(t), Options{Create: true})
	id := writeSnapshot(t, r, craftDir("",
		craftFile("caf\uFFFD", "latin-1 e acute"), craftFile("caf\uFFFD", "latin-1 e grave"), craftFile("other", "kept"),
		craftDir("d", craftFile("x\uFFFD", "1"), craftDir("x\uFFFD", craftFile("evil", "2")), craftFile("y", "kept too"))))
	const (
		top = "holds 2 entries named \"caf\uFFFD\", none restored"
		sub = "/d holds 2 entries named \"x\uFFFD\", none restored"
	)
	requireRestored := func(t *testing.T, target string, want map[string]string) {
		t.Helper()
		for name, data := range want {
			got, err := os.ReadFile(filepath.Join(target, name))
			require.NoError(t, err, name)
			require.Equal(t, data, string(got), name)
		}
		for _, name := range []string{"caf\uFFFD", "d/x\uFFFD"} {
			_, err := os.Lstat(filepath.Join(target, name))
			require.True(t, os.IsNotExist(err), "%s is not restored", name)
		}
	}

	target := t.TempDir()
	_, err := r.Restore(ctx, datapath.RestoreRequest{SnapshotID: id, Path: target, Parallel: 4})
	var ce *tree.CollisionError
	require.ErrorAs(t, err, &ce)
	require.Len(t, ce.Collisions, 2)
	require.ErrorContains(t, err, target+" "+top)
	require.ErrorContains(t, err, target+sub)
	requireRestored(t, target, map[string]string{"other": "kept", "d/y": "kept too"})

	for _, tc := range []struct {
		paths   []string
		want    map[string]string
		wantErr []string
	}{
		{paths: []string{"/"}, want: map[string]string{"other": "kept", "d/y": "kept too"}, wantErr: []string{top, sub}},
		{paths: []string{"caf*"}, wantErr: []string{`"." of snapshot ` + id + " " + top}},
		{paths: []string{"other", "d"}, want: map[string]string{"other": "kept", "d/y": "kept too"}, wantErr: []string{sub}},
		{paths: []string{"other", "d/y"}, want: map[string]string{"other": "kept", "d/y": "kept too"}},
	} {
		t.Run(strings.Join(tc.paths, ","), func(t *testing.T) {
			target := t.TempDir()
			_, err := r.RestoreFiles(ctx, datapath.FilesRequest{SnapshotID: id, Paths: tc.paths, Target: target})
			if len(tc.wantErr) == 0 {
				require.NoError(t, err)
			}
			for _, w := range tc.wantErr {
				require.ErrorAs(t, err, &ce)
				require.ErrorContains(t, err, w)
			}
			requireRestored(t, target, tc.want)
		})
	}
}
