package kopia

import (
	"context"
	"encoding/json"
	stderrors "errors"
	iofs "io/fs"
	"os"
	"path/filepath"
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
	path  string
	depth int
	attrs *attrs
}

// restoreTree restores a directory snapshot: walkers list directories (up to parallel at
// once, inline when none is free) and create directories and symlinks; writers write
// file data; directory attributes are set last, deepest first, then the filesystem is
// synced.
func (rs *restorer) restoreTree(ctx context.Context, root *snapshot.DirEntry, target string) error {
	if root.Type != snapshot.EntryTypeDirectory {
		return errors.Errorf("snapshot root is not a directory (type %q)", root.Type)
	}
	target, err := filepath.Abs(target)
	if err != nil {
		return errors.Wrapf(err, "resolving %s", target)
	}
	if err := os.MkdirAll(target, 0o700); err != nil {
		return errors.Wrapf(err, "creating %s", target)
	}

	err = rs.run(ctx, func(ctx context.Context, jobs chan<- job) error {
		walkers, ctx := errgroup.WithContext(ctx)
		walkers.SetLimit(rs.parallel)
		w := &walker{rs: rs, jobs: jobs, group: walkers}
		walkers.Go(func() error { return w.walk(ctx, root, target, 0) })
		return walkers.Wait()
	})
	if err != nil {
		return err
	}

	sort.SliceStable(rs.dirs, func(i, j int) bool { return rs.dirs[i].depth > rs.dirs[j].depth })
	for _, d := range rs.dirs {
		if err := applyPathAttributes(d.path, d.attrs); err != nil {
			return err
		}
	}
	return syncFilesystem(target)
}

type walker struct {
	rs    *restorer
	jobs  chan<- job
	group *errgroup.Group
}

func (w *walker) walk(ctx context.Context, d *snapshot.DirEntry, target string, depth int) error {
	if err := ctx.Err(); err != nil {
		return context.Cause(ctx)
	}
	if depth > 0 {
		if err := makeDirectory(target); err != nil {
			return err
		}
	}
	w.rs.dirsMu.Lock()
	w.rs.dirs = append(w.rs.dirs, restoredDir{path: target, depth: depth, attrs: attrsOf(d)})
	w.rs.dirsMu.Unlock()

	entries, err := readDirectory(ctx, w.rs.rep, d.ObjectID)
	if err != nil {
		return errors.Wrapf(err, "listing snapshot directory for %s", target)
	}
	var subdirs []*snapshot.DirEntry
	for _, e := range entries {
		if !isSafeName(e.Name) {
			return errors.Errorf("refusing entry name %q in %s", e.Name, target)
		}
		p := filepath.Join(target, e.Name)
		switch e.Type {
		case snapshot.EntryTypeDirectory:
			subdirs = append(subdirs, e)
		case snapshot.EntryTypeSymlink:
			if err := restoreSymlink(ctx, w.rs.rep, e, p); err != nil {
				return err
			}
		case snapshot.EntryTypeFile:
			chunks, err := w.rs.chunks(ctx, e.ObjectID, e.FileSize)
			if err != nil {
				return errors.Wrapf(err, "reading %s", p)
			}
			t := &fileTarget{path: p, attrs: attrsOf(e), size: e.FileSize, mode: w.rs.mode}
			if err := w.rs.enqueue(ctx, w.jobs, t, chunks); err != nil {
				return err
			}
		default:
			w.rs.log.WithField("path", p).Warnf("skipping snapshot entry of type %q", e.Type)
		}
	}
	for _, sd := range subdirs {
		p := filepath.Join(target, sd.Name)
		if w.group.TryGo(func() error { return w.walk(ctx, sd, p, depth+1) }) {
			continue
		}
		if err := w.walk(ctx, sd, p, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// readDirectory reads the entries of a snapshot directory object. It does not use
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
	return dm.Entries, nil
}

// isSafeName rejects names that would escape the target directory.
func isSafeName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsRune(name, '/')
}

// makeDirectory creates a directory, replacing a file or symlink in the way.
func makeDirectory(p string) error {
	err := os.Mkdir(p, 0o700)
	if err == nil || !os.IsExist(err) {
		return errors.Wrapf(err, "creating directory %s", p)
	}
	st, err := os.Lstat(p)
	if err != nil {
		return errors.Wrapf(err, "creating directory %s", p)
	}
	if st.IsDir() {
		return nil
	}
	if err := os.Remove(p); err != nil {
		return errors.Wrapf(err, "replacing %s with a directory", p)
	}
	return errors.Wrapf(os.Mkdir(p, 0o700), "creating directory %s", p)
}

func restoreSymlink(ctx context.Context, rep repo.Repository, e *snapshot.DirEntry, p string) error {
	linkTarget, err := readObject(ctx, rep, e.ObjectID)
	if err != nil {
		return errors.Wrapf(err, "reading symlink %s from the snapshot", p)
	}
	if st, err := os.Lstat(p); err == nil {
		if st.IsDir() {
			if err := os.RemoveAll(p); err != nil {
				return errors.Wrapf(err, "replacing directory %s with a symlink", p)
			}
		} else if err := os.Remove(p); err != nil {
			return errors.Wrapf(err, "replacing %s with a symlink", p)
		}
	}
	if err := os.Symlink(string(linkTarget), p); err != nil {
		return errors.Wrapf(err, "creating symlink %s", p)
	}
	return applyPathAttributes(p, attrsOf(e))
}

// attrs are the attributes a restore sets on an entry.
type attrs struct {
	mode     os.FileMode // permission, setuid, setgid and sticky bits
	uid, gid uint32
	mtime    time.Time
	symlink  bool
}

func attrsOf(de *snapshot.DirEntry) *attrs {
	return &attrs{
		mode:    os.FileMode(de.Permissions) & fs.ModBits, //nolint:gosec
		uid:     de.UserID,
		gid:     de.GroupID,
		mtime:   de.ModTime.ToTime(),
		symlink: de.Type == snapshot.EntryTypeSymlink,
	}
}

// applyFileAttributes sets owner, mode and mtime of a restored regular file: owner first
// (chown clears setuid/setgid), then mode. Permission errors are ignored as Velero's
// restore ignores them (a non-root mover cannot chown).
func applyFileAttributes(f *os.File, p string, a *attrs) error {
	if a == nil {
		return nil
	}
	if err := ignorePermission(f.Chown(int(a.uid), int(a.gid))); err != nil {
		return errors.Wrapf(err, "changing owner of %s", p)
	}
	if err := ignorePermission(f.Chmod(a.mode)); err != nil {
		return errors.Wrapf(err, "changing mode of %s", p)
	}
	return setModTime(p, a.mtime)
}

// applyPathAttributes sets owner, mode (not for symlinks) and mtime of a directory or a
// symlink, without following symlinks.
func applyPathAttributes(p string, a *attrs) error {
	if err := ignorePermission(os.Lchown(p, int(a.uid), int(a.gid))); err != nil {
		return errors.Wrapf(err, "changing owner of %s", p)
	}
	if !a.symlink {
		if err := ignorePermission(os.Chmod(p, a.mode)); err != nil {
			return errors.Wrapf(err, "changing mode of %s", p)
		}
	}
	return setModTime(p, a.mtime)
}

// ignorePermission drops permission errors (EPERM, EACCES, also wrapped), which a
// non-root mover gets when it sets owners.
func ignorePermission(err error) error {
	if err == nil || stderrors.Is(err, iofs.ErrPermission) {
		return nil
	}
	return err
}
