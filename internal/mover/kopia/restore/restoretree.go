package restore

import (
	"context"
	stderrors "errors"
	iofs "io/fs"
	"os"
	"sort"
	"time"

	"github.com/kopia/kopia/snapshot"
	"github.com/pkg/errors"

	"github.com/snapmove/snapmove/internal/mover/kopia/tree"
)

// restoredDir is a directory whose attributes are set once its content is written.
type restoredDir struct {
	rel   string // relative to the target, "." for the target itself
	depth int
	attrs *attrs
}

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

	return rs.walkInto(ctx, top, func(ctx context.Context, w *walker) error {
		return w.walk(ctx, tree.Root(root), top.hold())
	})
}

// walkInto restores into top: start walks (on walkers it hands to other walkers while
// the writers write the files), then directory attributes are set and the filesystem is
// synced (finish).
func (rs *restorer) walkInto(ctx context.Context, top *targetDir, start func(ctx context.Context, w *walker) error) error {
	err := rs.run(ctx, func(ctx context.Context, jobs chan<- job) error {
		walkers, ctx := tree.NewWalker(ctx, rs.parallel)
		w := &walker{rs: rs, jobs: jobs, walkers: walkers}
		return walkers.Walk(func() error { return start(ctx, w) })
	})
	if err != nil {
		return err
	}
	if err := rs.finish(top); err != nil {
		return err
	}
	return tree.CollisionsError(rs.collisions)
}

// addCollisions records names that a snapshot directory holds more than once: their
// entries are not restored, and the restore fails naming them once the rest is written.
func (rs *restorer) addCollisions(cs []tree.Collision) {
	if len(cs) == 0 {
		return
	}
	rs.dirsMu.Lock()
	rs.collisions = append(rs.collisions, cs...)
	rs.dirsMu.Unlock()
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

// walker restores what the tree walker reaches: each directory is listed, made and
// walked by one of walkers; its files are queued on jobs for the writers.
type walker struct {
	rs      *restorer
	jobs    chan<- job
	walkers *tree.Walker
}

// walk restores the entries of snapshot directory d into dir, the target directory at
// d.Rel, and releases dir.
func (w *walker) walk(ctx context.Context, d tree.Dir, dir *targetDir) error {
	defer dir.release()
	if err := ctx.Err(); err != nil {
		return context.Cause(ctx)
	}
	w.rs.addDir(restoredDir{rel: d.Rel, depth: d.Depth, attrs: attrsOf(d.Entry)})
	w.rs.restored.dirs.Add(1)

	entries, err := tree.ReadDir(ctx, w.rs.rep, d.Entry.ObjectID)
	if err != nil {
		return errors.Wrapf(err, "listing snapshot directory for %s", dir.path)
	}
	entries, collisions, err := tree.CheckNames(entries, dir.path)
	if err != nil {
		return err
	}
	w.rs.addCollisions(collisions)
	var subdirs []*snapshot.DirEntry
	for _, e := range entries {
		if len(d.Rel)+1+len(e.Name) > tree.MaxPath {
			return errors.Errorf("refusing %s: longer than %d bytes below the target", dir.join(e.Name), tree.MaxPath)
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
		if err := w.restoreSubdir(ctx, dir, d.Child(sd)); err != nil {
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
		link, err := tree.ReadObject(ctx, w.rs.rep, e.ObjectID)
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
		t := &fileTarget{dir: dir.hold(), name: e.Name, path: p, attrs: attrsOf(e), size: e.FileSize, mode: w.rs.mode, replace: w.rs.replace}
		if err := w.rs.enqueue(ctx, w.jobs, t, chunks); err != nil {
			return err
		}
		w.rs.restored.files.Add(1)
	default:
		w.rs.log.WithField("path", p).Warnf("skipping snapshot entry of type %q", e.Type)
	}
	return nil
}

// restoreSubdir makes directory sd in dir and walks it on a free walker, or inline when
// none is free.
func (w *walker) restoreSubdir(ctx context.Context, dir *targetDir, sd tree.Dir) error {
	sub, err := dir.mkdir(sd.Entry.Name)
	if err != nil {
		return err
	}
	return w.walkers.Go(func() error { return w.walk(ctx, sd, sub) })
}

// addDir records a directory whose attributes finish sets.
func (rs *restorer) addDir(d restoredDir) {
	rs.dirsMu.Lock()
	rs.dirs = append(rs.dirs, d)
	rs.dirsMu.Unlock()
}

// attrs are the attributes a restore sets on an entry.
type attrs struct {
	mode     os.FileMode // permission, setuid, setgid and sticky bits
	uid, gid uint32
	mtime    time.Time
}

func attrsOf(de *snapshot.DirEntry) *attrs {
	return &attrs{
		mode:  tree.Perm(de),
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
