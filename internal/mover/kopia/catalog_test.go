//go:build unix

package kopia

import (
	"context"
	stderrors "errors"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kopia/kopia/repo"
	"github.com/kopia/kopia/repo/manifest"
	"github.com/kopia/kopia/snapshot"
	"github.com/kopia/kopia/snapshot/upload"
	"github.com/stretchr/testify/require"

	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/mover/kopia/inspect"
	"github.com/snapmove/snapmove/internal/mover/kopia/kopiatest"
	"github.com/snapmove/snapmove/internal/mover/kopia/store"
	"github.com/snapmove/snapmove/internal/mover/repository"
)

func TestSnapshots(t *testing.T) {
	ctx := context.Background()
	r := openRepo(t, kopiatest.Location(t), Options{Create: true})
	src := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(src, "f"), []byte("data"), 0o600))
	require.NoError(t, os.MkdirAll(filepath.Join(src, "dir"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(src, "dir", "g"), []byte("more data"), 0o600))
	require.NoError(t, os.Symlink("f", filepath.Join(src, "l")))

	req := kopiatest.BackupRequest(src)
	req.Tags = map[string]string{"velero.io/async-operation-id": "du-1"}
	first, err := r.Backup(ctx, req)
	require.NoError(t, err)
	second, err := r.Backup(ctx, kopiatest.BackupRequest(src))
	require.NoError(t, err)
	db, err := r.Backup(ctx, datapath.BackupRequest{SourceNamespace: "another", SourcePVC: "db", Path: src})
	require.NoError(t, err)

	// A checkpoint of another/db (tagged by the kopia CLI too), and copies of db's manifest
	// under sources that are not moved volumes.
	dbMan, err := snapshot.LoadSnapshot(ctx, r.st.Direct(), manifest.ID(db.SnapshotID))
	require.NoError(t, err)
	var checkpointID string
	require.NoError(t, repo.WriteSession(ctx, r.st.Direct(), repo.WriteSessionOptions{Purpose: "test"}, func(ctx context.Context, w repo.RepositoryWriter) error {
		cp := *dbMan
		cp.ID = ""
		cp.IncompleteReason = upload.IncompleteReasonCheckpoint
		cp.StartTime = dbMan.StartTime.Add(time.Second)
		cp.Tags = map[string]string{store.TagRequester: store.Requester, "tag:kopia-cli": "yes", "tag:" + store.TagUploader: "shadowed"}
		for k, v := range dbMan.Tags {
			cp.Tags[k] = v
		}
		id, err := snapshot.SaveSnapshot(ctx, w, &cp)
		checkpointID = string(id)
		if err != nil {
			return err
		}
		for _, p := range []string{
			"snapshot-data-upload-download/kopia/another",
			"snapshot-data-upload-download/kopia/a/b/c",
			"snapshot-data-upload-download/kopia//db",
			"pod-volume-backup-restore/kopia/another/db",
			"/var/lib/kubelet/pods/uid/volumes/kubernetes.io~csi/pvc/mount",
		} {
			foreign := *dbMan
			foreign.ID = ""
			foreign.Source.Path = p
			if _, err := snapshot.SaveSnapshot(ctx, w, &foreign); err != nil {
				return err
			}
		}
		return nil
	}))
	writeSnapshot(t, r, craftDir("", craftFile("x", "y"))) // source default@default:crafted

	// another process, read-only, lists them
	ro := openRepo(t, r.st.Location(), Options{ReadOnly: true})
	got, err := ro.Snapshots(ctx)
	require.NoError(t, err)
	var ids []string
	for _, s := range got {
		ids = append(ids, s.ID)
	}
	require.Equal(t, []string{db.SnapshotID, checkpointID, first.SnapshotID, second.SnapshotID}, ids)

	man, err := snapshot.LoadSnapshot(ctx, r.st.Direct(), manifest.ID(first.SnapshotID))
	require.NoError(t, err)
	require.Equal(t, datapath.Snapshot{
		ID:        first.SnapshotID,
		Namespace: "app",
		PVC:       "data",
		Source:    "default@default:snapshot-data-upload-download/kopia/app/data",
		StartTime: man.StartTime.ToTime(),
		EndTime:   man.EndTime.ToTime(),
		Tags: map[string]string{
			"snapshot-requester":           "snapshot-data-upload-download",
			"snapshot-uploader":            "kopia",
			"velero.io/async-operation-id": "du-1",
			"snapmove.io/verified":         "metadata",
		},
		Counts: datapath.TreeCounts{Files: 2, Dirs: 2, Symlinks: 1, Bytes: int64(len("data") + len("more data"))},
	}, got[2])
	require.False(t, got[2].StartTime.IsZero())
	require.False(t, got[2].EndTime.Before(got[2].StartTime))
	require.Equal(t, *inspect.UploadCounts(man), got[2].Counts)

	cp := got[1]
	require.Equal(t, "another", cp.Namespace)
	require.Equal(t, "db", cp.PVC)
	require.Equal(t, "checkpoint", cp.Incomplete)
	require.Equal(t, map[string]string{
		"snapshot-requester":   "snapshot-data-upload-download",
		"snapshot-uploader":    "kopia",
		"snapmove.io/verified": "metadata", // copied from the complete snapshot
		"kopia-cli":            "yes",
	}, cp.Tags, `"tag:" is dropped; an unprefixed tag wins over a prefixed one`)
	require.Empty(t, got[0].Incomplete)
	require.True(t, got[0].StartTime.Before(cp.StartTime))

	// a checkpoint can be browsed
	self, children, err := ro.ReadDir(ctx, checkpointID, "/")
	require.NoError(t, err)
	require.Equal(t, "/", self.Name)
	require.Len(t, children, 3)

	// an empty repository lists none
	empty, err := openRepo(t, kopiatest.Location(t), Options{Create: true}).Snapshots(ctx)
	require.NoError(t, err)
	require.Empty(t, empty)
}

func TestSnapshotsSourcePath(t *testing.T) {
	ns, pvc, ok := store.ParseSourcePath(store.SourcePath("ns-1", "pvc.a"))
	require.True(t, ok)
	require.Equal(t, []string{"ns-1", "pvc.a"}, []string{ns, pvc})
	for _, p := range []string{
		"",
		"snapshot-data-upload-download/kopia/ns",
		"snapshot-data-upload-download/kopia/ns/",
		"snapshot-data-upload-download/kopia//pvc",
		"snapshot-data-upload-download/kopia/ns/pvc/x",
		"snapshot-data-upload-download/kopia/ns//pvc",
		"/snapshot-data-upload-download/kopia/ns/pvc",
		"snapshot-data-upload-download/restic/ns/pvc",
		"other/kopia/ns/pvc",
	} {
		_, _, ok := store.ParseSourcePath(p)
		require.False(t, ok, p)
	}
}

// backupTree backs up buildTree (with a few more files in dir/) and returns the source
// root and the snapshot ID.
func backupTree(t *testing.T, r *Repository) (string, string) {
	root := t.TempDir()
	for _, f := range []string{"dir/a.txt", "dir/b.txt", "dir/c.log", "dir/sub/d.txt"} {
		p := filepath.Join(root, f)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte("content of "+f), 0o644))
	}
	buildTree(t, root) // sets owners and times of those too
	// buildTree's chown clears the setuid bit it set (and it checks too late to set it
	// again); chmod leaves the time alone.
	require.NoError(t, os.Chmod(filepath.Join(root, "a/b/exec.sh"), 0o755|os.ModeSetuid))
	res, err := r.Backup(context.Background(), kopiatest.BackupRequest(root))
	require.NoError(t, err)
	return root, res.SnapshotID
}

// requireEntryOf checks e against os.Lstat of the source entry p.
func requireEntryOf(t *testing.T, p string, e datapath.Entry) {
	t.Helper()
	st, err := os.Lstat(p)
	require.NoError(t, err)
	sys := st.Sys().(*syscall.Stat_t)
	require.Equal(t, st.Mode(), e.Mode, p)
	require.Equal(t, sys.Uid, e.UID, p)
	require.Equal(t, sys.Gid, e.GID, p)
	require.True(t, st.ModTime().Equal(e.ModTime), "%s: mtime %v, want %v", p, e.ModTime, st.ModTime())
	if st.IsDir() {
		require.Zero(t, e.Size, "%s: kopia keeps no directory size", p)
	} else {
		require.Equal(t, st.Size(), e.Size, p)
	}
	if st.Mode()&os.ModeSymlink != 0 {
		link, err := os.Readlink(p)
		require.NoError(t, err)
		require.Equal(t, link, e.LinkTarget, p)
	} else {
		require.Empty(t, e.LinkTarget, p)
	}
}

func TestReadDir(t *testing.T) {
	ctx := context.Background()
	r := openRepo(t, kopiatest.Location(t), Options{Create: true})
	src, id := backupTree(t, r)

	for _, tc := range []struct {
		name, rel string
		want      string // the source entry, relative to src
		children  []string
		leaf      bool
	}{
		{name: "root", rel: "", want: ".", children: []string{"a", "big", "dangling", "dir", "dir-link", "empty-dir", "odd", "setgid-dir", "sparse.img", "top.txt", "with space"}},
		{name: "root as /", rel: "/", want: ".", children: []string{"a", "big", "dangling", "dir", "dir-link", "empty-dir", "odd", "setgid-dir", "sparse.img", "top.txt", "with space"}},
		{name: "root as .", rel: ".", want: "."},
		{name: "nested directory", rel: "a/b", want: "a/b", children: []string{"c", "exec.sh"}},
		{name: "unclean path", rel: "//a/./c/../b/", want: "a/b", children: []string{"c", "exec.sh"}},
		{name: "setuid file", rel: "a/b/exec.sh", want: "a/b/exec.sh", leaf: true},
		{name: "symlink", rel: "a/link-relative", want: "a/link-relative", leaf: true},
		{name: "symlink to a directory is not followed", rel: "dir-link", want: "dir-link", leaf: true},
		{name: "setgid and sticky directory, empty", rel: "setgid-dir", want: "setgid-dir", children: []string{}},
		{name: "odd names", rel: "odd", want: "odd", children: []string{"-leading-dash", "new\nline"}},
		{name: "unicode", rel: "with space/ünïcødé名前.txt", want: "with space/ünïcødé名前.txt", leaf: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			self, children, err := r.ReadDir(ctx, id, tc.rel)
			require.NoError(t, err)
			requireEntryOf(t, filepath.Join(src, tc.want), self)
			if tc.want == "." {
				require.Equal(t, "/", self.Name)
			} else {
				require.Equal(t, path.Base(tc.want), self.Name)
			}
			if tc.leaf {
				require.Nil(t, children)
				return
			}
			require.NotNil(t, children)
			var names []string
			for _, c := range children {
				names = append(names, c.Name)
				requireEntryOf(t, filepath.Join(src, tc.want, c.Name), c)
			}
			if tc.children != nil {
				require.Equal(t, tc.children, append([]string{}, names...))
			}
			require.True(t, sort.StringsAreSorted(names))
		})
	}

	self, _, err := r.ReadDir(ctx, id, "a/b/exec.sh")
	require.NoError(t, err)
	require.Equal(t, os.ModeSetuid|0o755, self.Mode)
	self, _, err = r.ReadDir(ctx, id, "setgid-dir")
	require.NoError(t, err)
	require.Equal(t, os.ModeDir|os.ModeSetgid|os.ModeSticky|0o775, self.Mode)
	self, _, err = r.ReadDir(ctx, id, "a/link-absolute")
	require.NoError(t, err)
	require.Equal(t, "/etc/hostname", self.LinkTarget)
	require.Equal(t, os.ModeSymlink|0o777, self.Mode)

	for _, tc := range []struct {
		name, snapshotID, rel string
		notFound              bool
		want                  string
	}{
		{name: "missing entry", snapshotID: id, rel: "nope", notFound: true, want: `"nope" not found in snapshot ` + id},
		{name: "missing nested entry", snapshotID: id, rel: "a/nope/x", notFound: true, want: `"a/nope/x" not found in snapshot ` + id},
		{name: "below a file", snapshotID: id, rel: "top.txt/x", notFound: true, want: `"top.txt" is not a directory`},
		{name: "below a symlink", snapshotID: id, rel: "dir-link/c", notFound: true, want: `"dir-link" is not a directory`},
		{name: "unknown snapshot", snapshotID: "0123456789abcdef0123456789abcdef", rel: "", notFound: true, want: "snapshot 0123456789abcdef0123456789abcdef not found"},
		{name: "leaving the root", snapshotID: id, rel: "../x", want: `path "../x" leaves the snapshot's root`},
		{name: "leaving the root later", snapshotID: id, rel: "/a/../../x", want: "leaves the snapshot's root"},
		{name: "no snapshot ID", rel: "a", want: "empty snapshot ID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := r.ReadDir(ctx, tc.snapshotID, tc.rel)
			require.ErrorContains(t, err, tc.want)
			require.Equal(t, tc.notFound, stderrors.Is(err, ErrNotFound), "%v", err)
		})
	}
}

// subtree is what a file-level restore of keep writes: the entries at and below each
// path of keep, and their parent directories ("." keeps everything).
func subtree(tree map[string]entryInfo, keep ...string) map[string]entryInfo {
	out := map[string]entryInfo{}
	for rel, info := range tree {
		for _, k := range keep {
			if k == "." || rel == k || strings.HasPrefix(rel, k+"/") || strings.HasPrefix(k, rel+"/") {
				out[rel] = info
			}
		}
	}
	return out
}

// countSubtree counts the entries at and below each path of keep, as RestoreFiles does.
func countSubtree(tree map[string]entryInfo, keep ...string) datapath.TreeCounts {
	var c datapath.TreeCounts
	for rel, info := range tree {
		for _, k := range keep {
			if k != "." && rel != k && !strings.HasPrefix(rel, k+"/") {
				continue
			}
			switch {
			case info.Mode.IsDir():
				c.Dirs++
			case info.Mode&os.ModeSymlink != 0:
				c.Symlinks++
			default:
				c.Files++
				c.Bytes += info.Size
			}
			break
		}
	}
	return c
}

func TestRestoreFiles(t *testing.T) {
	ctx := context.Background()
	r := openRepo(t, kopiatest.Location(t), Options{Create: true})
	src, id := backupTree(t, r)
	source := describeTree(t, src)

	for _, tc := range []struct {
		name        string
		paths       []string
		matched     []string
		keep        []string // what is restored (with the parents); default matched
		writeSparse bool
		check       func(t *testing.T, target string)
	}{
		{name: "one file", paths: []string{"top.txt"}, matched: []string{"top.txt"}},
		{
			name: "a setuid file below missing parents", paths: []string{"/a/b/exec.sh"}, matched: []string{"a/b/exec.sh"},
			check: func(t *testing.T, target string) {
				st, err := os.Stat(filepath.Join(target, "a/b/exec.sh"))
				require.NoError(t, err)
				require.Equal(t, os.ModeSetuid|0o755, st.Mode())
			},
		},
		{name: "a directory", paths: []string{"a/b/"}, matched: []string{"a/b"}},
		{name: "a glob", paths: []string{"dir/*.txt"}, matched: []string{"dir/a.txt", "dir/b.txt"}},
		{name: "globs at several levels", paths: []string{"*/b/*", "[t]op.tx?"}, matched: []string{"a/b/c", "a/b/exec.sh", "top.txt"}},
		{
			name: "overlapping matches are restored once", paths: []string{"dir/a.txt", "dir", "dir/*", "./dir/sub/../a.txt"},
			matched: []string{"dir", "dir/a.txt", "dir/b.txt", "dir/c.log", "dir/sub"}, keep: []string{"dir"},
		},
		{
			name: "symlinks are restored, not followed", paths: []string{"dangling", "dir-link", "a/link-*"},
			matched: []string{"a/link-absolute", "a/link-relative", "dangling", "dir-link"},
		},
		{name: "setgid, sticky and empty directories", paths: []string{"setgid-dir", "empty-dir"}, matched: []string{"empty-dir", "setgid-dir"}},
		{name: "odd names", paths: []string{"odd/*", "with space"}, matched: []string{"odd/-leading-dash", "odd/new\nline", "with space"}},
		{
			name: "holes with WriteSparse", paths: []string{"sparse.img"}, matched: []string{"sparse.img"}, writeSparse: true,
			check: func(t *testing.T, target string) {
				require.Less(t, allocatedBytes(t, filepath.Join(target, "sparse.img")), int64(1<<20))
			},
		},
		{
			name: "allocated without WriteSparse", paths: []string{"sparse.img", "big"}, matched: []string{"big", "sparse.img"},
			check: func(t *testing.T, target string) {
				require.GreaterOrEqual(t, allocatedBytes(t, filepath.Join(target, "sparse.img")), int64(24<<20))
			},
		},
		{name: "the whole snapshot", paths: []string{"", "a"}, matched: []string{".", "a"}, keep: []string{"."}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := filepath.Join(t.TempDir(), "target")
			var last datapath.Progress
			res, err := r.RestoreFiles(ctx, datapath.FilesRequest{
				SnapshotID: id, Paths: tc.paths, Target: target, Parallel: 3, WriteSparse: tc.writeSparse,
				OnProgress: func(p datapath.Progress) { last = p }, ProgressInterval: time.Millisecond,
			})
			require.NoError(t, err)
			require.Equal(t, tc.matched, res.Matched)
			keep := tc.keep
			if keep == nil {
				keep = tc.matched
			}
			require.Equal(t, countSubtree(source, keep...), res.Restored)
			require.Equal(t, datapath.Progress{TotalBytes: res.Restored.Bytes, BytesDone: res.Restored.Bytes}, last)

			want, got := subtree(source, keep...), describeTree(t, target)
			if keep[0] != "." {
				delete(got, ".") // the target's own attributes are its own
			}
			requireSameTree(t, want, got)
			if tc.check != nil {
				tc.check(t, target)
			}
			requireNoDescriptorsBelow(t, target)
		})
	}

	t.Run("into a target holding other entries", func(t *testing.T) {
		target := t.TempDir()
		require.NoError(t, os.Mkdir(filepath.Join(target, "a"), 0o700))
		require.NoError(t, os.Chmod(filepath.Join(target, "a"), 0o711))
		require.NoError(t, os.WriteFile(filepath.Join(target, "a", "mine"), []byte("mine"), 0o600))
		require.NoError(t, os.WriteFile(filepath.Join(target, "unrelated"), []byte("unrelated"), 0o600))
		require.NoError(t, os.WriteFile(filepath.Join(target, "top.txt"), []byte("to be replaced"), 0o600))
		before := describeTree(t, target)

		res, err := r.RestoreFiles(ctx, datapath.FilesRequest{SnapshotID: id, Paths: []string{"a/b/exec.sh", "top.txt"}, Target: target})
		require.NoError(t, err)
		require.Equal(t, datapath.TreeCounts{Files: 2, Bytes: source["a/b/exec.sh"].Size + source["top.txt"].Size}, res.Restored)

		got := describeTree(t, target)
		for _, rel := range []string{"unrelated", "a/mine"} {
			require.Equal(t, before[rel], got[rel], "%s is left alone", rel)
		}
		a := got["a"]
		require.Equal(t, before["a"].Mode, a.Mode, "an existing parent keeps its mode")
		require.Equal(t, before["a"].UID, a.UID)
		require.Equal(t, before["a"].GID, a.GID)
		for _, rel := range []string{"a/b", "a/b/exec.sh", "top.txt"} {
			require.Equal(t, source[rel], got[rel], rel)
		}
	})
}

func TestRestoreFilesRefuses(t *testing.T) {
	ctx := context.Background()
	r := openRepo(t, kopiatest.Location(t), Options{Create: true})
	_, id := backupTree(t, r)

	for _, tc := range []struct {
		name       string
		snapshotID string
		paths      []string
		notFound   bool
		want       string
	}{
		{name: "a path matching nothing", paths: []string{"top.txt", "nope/*.txt"}, notFound: true, want: `path "nope/*.txt" matches nothing in snapshot ` + id},
		{name: "a glob matching nothing", paths: []string{"dir/*.md", "dir"}, notFound: true, want: `path "dir/*.md" matches nothing`},
		{name: "a path below a file", paths: []string{"top.txt/x"}, notFound: true, want: `path "top.txt/x" matches nothing`},
		{name: "a path below a symlink", paths: []string{"dir-link/c"}, notFound: true, want: `path "dir-link/c" matches nothing`},
		{name: "a bad pattern", paths: []string{"top.txt", "a/[b"}, want: `path "a/[b": syntax error in pattern`},
		{name: "leaving the root", paths: []string{"a/../../etc"}, want: `path "a/../../etc" leaves the snapshot's root`},
		{name: "an unknown snapshot", snapshotID: "0123456789abcdef0123456789abcdef", paths: []string{"a"}, notFound: true, want: "not found"},
		{name: "no paths", want: "required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := filepath.Join(t.TempDir(), "target")
			snapshotID := tc.snapshotID
			if snapshotID == "" {
				snapshotID = id
			}
			_, err := r.RestoreFiles(ctx, datapath.FilesRequest{SnapshotID: snapshotID, Paths: tc.paths, Target: target})
			require.ErrorContains(t, err, tc.want)
			require.Equal(t, tc.notFound, stderrors.Is(err, ErrNotFound), "%v", err)
			require.NoDirExists(t, target, "nothing is written")
		})
	}
	_, err := r.RestoreFiles(ctx, datapath.FilesRequest{SnapshotID: id, Paths: []string{"a/["}, Target: t.TempDir()})
	require.ErrorIs(t, err, path.ErrBadPattern)
}

func TestRestoreFilesStaysInTarget(t *testing.T) {
	ctx := context.Background()
	r := openRepo(t, kopiatest.Location(t), Options{Create: true})
	_, id := backupTree(t, r)

	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, s *escapeSandbox)
		paths []string
		want  string // in the error; "" for success
		check func(t *testing.T, s *escapeSandbox)
	}{{
		name: "a symlink out of the target at a parent position is refused",
		setup: func(t *testing.T, s *escapeSandbox) {
			require.NoError(t, os.Symlink(s.outside, filepath.Join(s.target, "a")))
		},
		paths: []string{"top.txt", "a/b/exec.sh"},
		want:  "refusing to restore beneath " + filepath.Join("<target>", "a") + ": it is not a directory",
		check: func(t *testing.T, s *escapeSandbox) {
			require.NoFileExists(t, filepath.Join(s.target, "top.txt"), "parents are checked before anything is written")
		},
	}, {
		name: "a symlink out of the target deeper at a parent position is refused",
		setup: func(t *testing.T, s *escapeSandbox) {
			require.NoError(t, os.Mkdir(filepath.Join(s.target, "a"), 0o755))
			require.NoError(t, os.Symlink(s.outside, filepath.Join(s.target, "a", "b")))
		},
		paths: []string{"a/b/c"},
		want:  "it is not a directory (a symlink or a file is in the way)",
	}, {
		name: "a file at a parent position is refused, not replaced",
		setup: func(t *testing.T, s *escapeSandbox) {
			require.NoError(t, os.WriteFile(filepath.Join(s.target, "dir"), []byte("user's"), 0o600))
		},
		paths: []string{"dir/a.txt"},
		want:  "refusing to restore beneath " + filepath.Join("<target>", "dir"),
		check: func(t *testing.T, s *escapeSandbox) {
			b, err := os.ReadFile(filepath.Join(s.target, "dir"))
			require.NoError(t, err)
			require.Equal(t, "user's", string(b))
		},
	}, {
		name: "symlinks out of the target at matched positions are replaced",
		setup: func(t *testing.T, s *escapeSandbox) {
			require.NoError(t, os.Symlink(s.outsideFile, filepath.Join(s.target, "top.txt")))
			require.NoError(t, os.Symlink(s.outside, filepath.Join(s.target, "dir")))
			require.NoError(t, os.Mkdir(filepath.Join(s.target, "a"), 0o755))
			require.NoError(t, os.Symlink(s.outside, filepath.Join(s.target, "a", "b")))
		},
		paths: []string{"top.txt", "dir", "a/b"},
		check: func(t *testing.T, s *escapeSandbox) {
			for _, p := range []string{"top.txt", "dir/a.txt", "dir/sub/d.txt", "a/b/exec.sh", "a/b/c/deep.bin"} {
				st, err := os.Lstat(filepath.Join(s.target, p))
				require.NoError(t, err)
				require.True(t, st.Mode().IsRegular(), p)
			}
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			withBothResolutions(t, func(t *testing.T) {
				s := newEscapeSandbox(t)
				tc.setup(t, s)
				_, err := r.RestoreFiles(ctx, datapath.FilesRequest{SnapshotID: id, Paths: tc.paths, Target: s.target, Parallel: 4})
				if tc.want == "" {
					require.NoError(t, err)
				} else {
					require.ErrorContains(t, err, strings.ReplaceAll(tc.want, "<target>", s.target))
				}
				s.requireOutsideUntouched(t)
				if tc.check != nil {
					tc.check(t, s)
				}
				requireNoDescriptorsBelow(t, s.base)
			})
		})
	}
}

// Crafted snapshots holding what kopia never writes are refused by ReadDir and
// RestoreFiles as by Restore; when a path's matching meets one, nothing is written. A
// name held twice is listed twice, and restore-files writes everything else and fails
// naming it.
func TestRestoreFilesRefusesHostileSnapshots(t *testing.T) {
	ctx := context.Background()
	r := openRepo(t, kopiatest.Location(t), Options{Create: true})
	s := newEscapeSandbox(t)
	id := writeSnapshot(t, r, craftDir("", craftFile("ok", "fine"),
		craftDir("d", craftFile("c", "3"), craftLink("..", s.outside)),
		craftDir("twice", craftFile("x", "1"), craftLink("x", s.outsideFile))))

	target := filepath.Join(s.target, "sub")
	_, err := r.RestoreFiles(ctx, datapath.FilesRequest{SnapshotID: id, Paths: []string{"ok", "d/*"}, Target: target})
	require.ErrorContains(t, err, "refusing")
	require.NoDirExists(t, target, "nothing is written")
	_, err = r.RestoreFiles(ctx, datapath.FilesRequest{SnapshotID: id, Paths: []string{"d"}, Target: target})
	require.ErrorContains(t, err, "refusing")
	_, _, err = r.ReadDir(ctx, id, "d")
	require.ErrorContains(t, err, "refusing")
	for _, paths := range [][]string{{"ok", "twice/x"}, {"twice"}} {
		_, err := r.RestoreFiles(ctx, datapath.FilesRequest{SnapshotID: id, Paths: paths, Target: target})
		require.ErrorContains(t, err, `holds 2 entries named "x", none restored`)
		require.NoFileExists(t, filepath.Join(target, "twice", "x"))
	}
	_, children, err := r.ReadDir(ctx, id, "twice")
	require.NoError(t, err)
	require.Len(t, children, 2, "both entries named x are listed")
	_, _, err = r.ReadDir(ctx, id, "twice/x")
	require.ErrorContains(t, err, `"twice" holds 2 entries named "x", one cannot be told from the other`)
	s.requireOutsideUntouched(t)
	require.NoError(t, os.RemoveAll(target))

	res, err := r.RestoreFiles(ctx, datapath.FilesRequest{SnapshotID: id, Paths: []string{"ok"}, Target: target})
	require.NoError(t, err)
	require.Equal(t, datapath.TreeCounts{Files: 1, Bytes: 4}, res.Restored)
}

func TestNamespaces(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	for _, ns := range []string{"zeta", "alpha"} {
		loc := repository.Location{Provider: repository.ProviderFilesystem, Path: base, Prefix: repository.RepositoryPrefix("velero", ns)}
		require.NoError(t, openRepo(t, loc, Options{Create: true}).Close(ctx))
	}
	parent := filepath.Join(base, "velero", "kopia")
	require.NoError(t, os.MkdirAll(filepath.Join(parent, "empty"), 0o700))
	require.NoError(t, os.MkdirAll(filepath.Join(parent, "other", "data"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(parent, "other", "kopia.repository"), []byte("x"), 0o600)) // no .f
	require.NoError(t, os.WriteFile(filepath.Join(parent, "kopia.repository.f"), []byte("x"), 0o600))
	require.NoError(t, os.Symlink(filepath.Join(parent, "alpha"), filepath.Join(parent, "linked")))

	loc := repository.Location{Provider: repository.ProviderFilesystem, Path: base, Prefix: "velero/kopia/"}
	got, err := Namespaces(ctx, loc)
	require.NoError(t, err)
	require.Equal(t, []string{"alpha", "linked", "zeta"}, got, "a symlinked directory is what Open reads too")
	require.NoFileExists(t, filepath.Join(parent, ".shards"), "nothing is written")

	for _, tc := range []struct {
		name string
		loc  repository.Location
	}{
		{"missing directory", repository.Location{Provider: repository.ProviderFilesystem, Path: t.TempDir(), Prefix: "velero/kopia/"}},
		{"no repository below", repository.Location{Provider: repository.ProviderFilesystem, Path: base, Prefix: "velero/kopia/other/"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Namespaces(ctx, tc.loc)
			require.NoError(t, err)
			require.Empty(t, got)
		})
	}

	_, err = Namespaces(ctx, repository.Location{Provider: repository.ProviderFilesystem, Path: filepath.Join(base, "nope"), Prefix: "velero/kopia/"})
	require.ErrorIs(t, err, ErrBucketNotFound)
}
