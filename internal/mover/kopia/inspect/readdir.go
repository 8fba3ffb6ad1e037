package inspect

import (
	"context"
	iofs "io/fs"
	"path"
	"sort"

	"github.com/kopia/kopia/repo"
	"github.com/kopia/kopia/snapshot"
	"github.com/pkg/errors"
	velerokopia "github.com/vmware-tanzu/velero/pkg/kopia"

	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/mover/kopia/store"
	"github.com/snapmove/snapmove/internal/mover/kopia/tree"
)

// ReadDir reads path rel of snapshot snapshotID (slash-separated, relative to the
// snapshot's root; "", "/" and "." are the root), as `ls -l` shows it: self is the entry
// at rel (the root is named "/"), and when it is a directory children are its entries
// sorted by name (non-nil, possibly empty); for a file or symlink children is nil.
//
// Entries carry the type bits (fs.ModeDir, fs.ModeSymlink; fs.ModeIrregular for a type
// kopia does not know) and the permission bits including setuid, setgid and sticky,
// owner, size (a file's; a symlink's target length; 0 for a directory, whose size kopia
// does not keep), modification time (a directory's own, not the newest below it as
// snapshotfs reports) and a symlink's target; symlinks are never followed, in rel either. rel is cleaned; one that leaves the
// root is refused. A snapshot or a path that does not exist, or a path through a
// non-directory, returns an error that wraps tree.ErrNotFound. Checkpoints can be read too. A
// directory holding a name that is not one path component (which kopia never writes) is
// refused as the restore refuses it; a name it holds more than once (tree.CheckNames) is
// listed as often, and a path through it is refused as ambiguous.
func ReadDir(ctx context.Context, r *store.Repository, snapshotID, rel string) (self datapath.Entry, children []datapath.Entry, err error) {
	kctx := velerokopia.SetupKopiaLog(ctx, r.Log().WithField("snapshotID", snapshotID))
	fail := func(err error) (datapath.Entry, []datapath.Entry, error) {
		return datapath.Entry{}, nil, errors.Wrapf(err, "reading %q of snapshot %s", rel, snapshotID)
	}
	clean, err := tree.CleanPath(rel)
	if err != nil {
		return fail(err)
	}
	man, err := tree.LoadSnapshot(kctx, r.Direct(), snapshotID, r.Location())
	if err != nil {
		return fail(err)
	}
	sr := tree.NewReader(r.Direct(), snapshotID)
	de, err := sr.Lookup(kctx, man.RootEntry, clean)
	if err != nil {
		return fail(err)
	}
	name := "/"
	if clean != "." {
		name = path.Base(clean)
	}
	if self, err = entryOf(kctx, r.Direct(), de, name, clean); err != nil {
		return fail(err)
	}
	if de.Type != snapshot.EntryTypeDirectory {
		return self, nil, nil
	}
	entries, err := sr.ListAll(kctx, tree.Dir{Entry: de, Rel: clean})
	if err != nil {
		return fail(err)
	}
	children = make([]datapath.Entry, 0, len(entries))
	for _, e := range entries {
		c, err := entryOf(kctx, r.Direct(), e, e.Name, path.Join(clean, e.Name))
		if err != nil {
			return fail(err)
		}
		children = append(children, c)
	}
	sort.Slice(children, func(i, j int) bool { return children[i].Name < children[j].Name })
	return self, children, nil
}

// entryOf describes de, named name, at path rel of the snapshot.
func entryOf(ctx context.Context, rep repo.Repository, de *snapshot.DirEntry, name, rel string) (datapath.Entry, error) {
	e := datapath.Entry{
		Name:    name,
		Mode:    entryMode(de),
		UID:     de.UserID,
		GID:     de.GroupID,
		Size:    de.FileSize,
		ModTime: de.ModTime.ToTime(),
	}
	if de.Type == snapshot.EntryTypeSymlink {
		link, err := tree.ReadObject(ctx, rep, de.ObjectID)
		if err != nil {
			return e, errors.Wrapf(err, "reading symlink %q", rel)
		}
		e.LinkTarget = string(link)
	}
	return e, nil
}

// entryMode is the mode of de as os.Lstat reports it: kopia keeps os.FileMode's
// permission, setuid, setgid and sticky bits (fs.ModBits), as the restore sets them
// (tree.Perm), and the type apart.
func entryMode(de *snapshot.DirEntry) iofs.FileMode {
	mode := tree.Perm(de)
	switch de.Type {
	case snapshot.EntryTypeDirectory:
		mode |= iofs.ModeDir
	case snapshot.EntryTypeSymlink:
		mode |= iofs.ModeSymlink
	case snapshot.EntryTypeFile:
	default:
		mode |= iofs.ModeIrregular
	}
	return mode
}
