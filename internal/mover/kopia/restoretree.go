package kopia

import (
	"context"
	"encoding/json"
	stderrors "errors"
	iofs "io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/kopia/kopia/fs"
	"github.com/kopia/kopia/repo"
	"github.com/kopia/kopia/repo/object"
	"github.com/kopia/kopia/snapshot"
	"github.com/pkg/errors"
	"golang.org/x/sync/errgroup"
)

// directoryStreamType marks kopia directory objects (snapshotfs/dir_reader.go).
const directoryStreamType = "kopia:directory"

// restoredDir is a directory whose attributes are set once its content is written.
type restoredDir struct {
	rel   string // relative to the target, "." for the target itself
	depth int
	attrs *attrs
}

// maxRelPath bounds the paths of a snapshot below the target: what a backup could read
// (PATH_MAX). It keeps the directories a walk holds open, and openat2's path, bounded.
const maxRelPath = 4095

// restoreTree restores a directory snapshot: walkers list directories (up to parallel at
// once, inline when none is free) and create directories and symlinks; writers write
// file data; directory attributes are set last, deepest first, then the filesystem is
// synced. beneath_unix.go says how entries are reached.
func (rs *restorer) restoreTree(ctx context.Context, root *snapshot.DirEntry, target string) error {
	if root.Type != snapshot.EntryTypeDirectory {
		return errors.Errorf("snapshot root is not a directory (type %q)", root.Type)
	}
	top, err := createTarget(target)
	if err != nil {
		return err
	}
	defer top.release()

	err = rs.run(ctx, func(ctx context.Context, jobs chan<- job) error {
		walkers, ctx := errgroup.WithContext(ctx)
		walkers.SetLimit(rs.parallel)
		w := &walker{rs: rs, jobs: jobs, group: walkers}
		top.hold()
		walkers.Go(func() error { return w.walk(ctx, root, top, ".", 0) })
		return walkers.Wait()
	})
	if err != nil {
		return err
	}
	return rs.finish(top)
}

// finish sets the attributes of the directories restored beneath top, deepest first (a
// directory's time after its content is written, its mode after its children's), then
// syncs the filesystem of top.
func (rs *restorer) finish(top *targetDir) error {
	sort.SliceStable(rs.dirs, func(i, j int) bool { return rs.dirs[i].depth > rs.dirs[j].depth })
	for _, d := range rs.dirs {
		if err := setDirAttributes(top, d.rel, d.attrs); err != nil {
			return err
		}
	}
	return syncFilesystem(top.f)
}

type walker struct {
	rs    *restorer
	jobs  chan<- job
	group *errgroup.Group
}

// walk restores the entries of snapshot directory d into dir, target directory rel, and
// releases dir.
func (w *walker) walk(ctx context.Context, d *snapshot.DirEntry, dir *targetDir, rel string, depth int) error {
	defer dir.release()
	if err := ctx.Err(); err != nil {
		return context.Cause(ctx)
	}
	w.rs.addDir(restoredDir{rel: rel, depth: depth, attrs: attrsOf(d)})
	w.rs.restored.dirs.Add(1)

	entries, err := readDirectory(ctx, w.rs.rep, d.ObjectID)
	if err != nil {
		return errors.Wrapf(err, "listing snapshot directory for %s", dir.path)
	}
	if err := checkNames(entries, dir.path); err != nil {
		return err
	}
	var subdirs []*snapshot.DirEntry
	for _, e := range entries {
		if len(rel)+1+len(e.Name) > maxRelPath {
			return errors.Errorf("refusing %s: longer than %d bytes below the target", dir.join(e.Name), maxRelPath)
		}
		if e.Type == snapshot.EntryTypeDirectory {
			subdirs = append(subdirs, e)
			continue
		}
		if err := w.restoreLeaf(ctx, dir, e); err != nil {
			return err
		}
	}
	for _, sd := range subdirs {
		if err := w.restoreSubdir(ctx, dir, sd, path.Join(rel, sd.Name), depth+1); err != nil {
			return err
		}
	}
	return nil
}

// restoreLeaf restores entry e of dir that is not a directory: a symlink is made, a file
// is queued for the writers, an entry of another type is skipped with a warning.
func (w *walker) restoreLeaf(ctx context.Context, dir *targetDir, e *snapshot.DirEntry) error {
	p := dir.join(e.Name)
	switch e.Type {
	case snapshot.EntryTypeSymlink:
		link, err := readObject(ctx, w.rs.rep, e.ObjectID)
		if err != nil {
			return errors.Wrapf(err, "reading symlink %s from the snapshot", p)
		}
		if err := dir.symlink(e.Name, string(link), attrsOf(e)); err != nil {
			return err
		}
		w.rs.restored.symlinks.Add(1)
	case snapshot.EntryTypeFile:
		chunks, err := w.rs.chunks(ctx, e.ObjectID, e.FileSize)
		if err != nil {
			return errors.Wrapf(err, "reading %s", p)
		}
		t := &fileTarget{dir: dir.hold(), name: e.Name, path: p, attrs: attrsOf(e), size: e.FileSize, mode: w.rs.mode}
		if err := w.rs.enqueue(ctx, w.jobs, t, chunks); err != nil {
			return err
		}
		w.rs.restored.files.Add(1)
	default:
		w.rs.log.WithField("path", p).Warnf("skipping snapshot entry of type %q", e.Type)
	}
	return nil
}

// restoreSubdir makes directory sd in dir (target directory rel, at depth) and walks it
// on a free walker, or inline when none is free.
func (w *walker) restoreSubdir(ctx context.Context, dir *targetDir, sd *snapshot.DirEntry, rel string, depth int) error {
	sub, err := dir.mkdir(sd.Name)
	if err != nil {
		return err
	}
	if w.group.TryGo(func() error { return w.walk(ctx, sd, sub, rel, depth) }) {
		return nil
	}
	return w.walk(ctx, sd, sub, rel, depth)
}

// addDir records a directory whose attributes finish sets.
func (rs *restorer) addDir(d restoredDir) {
	rs.dirsMu.Lock()
	rs.dirs = append(rs.dirs, d)
	rs.dirsMu.Unlock()
}

// checkNames rejects a directory listing holding a name that is not one path component,
// or a name twice (whose entries would race each other in the target): kopia writes
// neither, so the snapshot is hostile or corrupt. dirPath names the directory in errors.
func checkNames(entries []*snapshot.DirEntry, dirPath string) error {
	sorted := true // as kopia writes them: no duplicates if strictly ascending
	for i, e := range entries {
		if !isSafeName(e.Name) {
			return errors.Errorf("refusing entry name %q in %s", e.Name, dirPath)
		}
		if i > 0 && entries[i-1].Name >= e.Name {
			sorted = false
		}
	}
	if sorted {
		return nil
	}
	seen := make(map[string]bool, len(entries))
	for _, e := range entries {
		if seen[e.Name] {
			return errors.Errorf("refusing snapshot directory %s: it holds two entries named %q", dirPath, e.Name)
		}
		seen[e.Name] = true
	}
	return nil
}

// readDirectory reads the entries of a snapshot directory object, their names decoded
// (names.go): every reader of a snapshot sees the names the backup read. It does not use
// snapshotfs, which reports a directory's modification time as the newest one below it;
// the entries hold the directory's own.
func readDirectory(ctx context.Context, rep repo.Repository, oid object.ID) ([]*snapshot.DirEntry, error) {
	rd, err := rep.OpenObject(ctx, oid)
	if err != nil {
		return nil, err
	}
	defer rd.Close() //nolint:errcheck
	var dm snapshot.DirManifest
	if err := json.NewDecoder(rd).Decode(&dm); err != nil {
		return nil, errors.Wrap(err, "decoding directory object")
	}
	if dm.StreamType != directoryStreamType {
		return nil, errors.Errorf("not a directory object (stream %q)", dm.StreamType)
	}
	for _, e := range dm.Entries {
		if e.Name, err = originalName(e.Name); err != nil {
			return nil, err
		}
	}
	return dm.Entries, nil
}

// isSafeName reports whether name is one path component: not empty, ".", or "..", and
// without "/" or NUL.
func isSafeName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, "/\x00")
}

// attrs are the attributes a restore sets on an entry.
type attrs struct {
	mode     os.FileMode // permission, setuid, setgid and sticky bits
	uid, gid uint32
	mtime    time.Time
}

func attrsOf(de *snapshot.DirEntry) *attrs {
	return &attrs{
		mode:  os.FileMode(de.Permissions) & fs.ModBits, //nolint:gosec
		uid:   de.UserID,
		gid:   de.GroupID,
		mtime: de.ModTime.ToTime(),
	}
}

// ignorePermission drops permission errors (EPERM, EACCES, also wrapped), which a
// non-root mover gets when it sets owners.
func ignorePermission(err error) error {
	if err == nil || stderrors.Is(err, iofs.ErrPermission) {
		return nil
	}
	return err
}
