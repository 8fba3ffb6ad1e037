package restore

import (
	"context"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/kopia/kopia/snapshot"
	"github.com/pkg/errors"
	"github.com/sirupsen/logrus"
	velerokopia "github.com/vmware-tanzu/velero/pkg/kopia"

	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/mover/kopia/store"
	"github.com/snapmove/snapmove/internal/mover/kopia/tree"
)

// outermost returns the matches that are not beneath another match, grouped by parent
// directory.
func outermost(matches []tree.Match) []tree.Match {
	matched := make(map[string]bool, len(matches))
	for _, m := range matches {
		matched[m.Rel] = true
	}
	var out []tree.Match
	for _, m := range matches {
		beneath := false
		for d := m.Rel; d != "." && !beneath; {
			d = path.Dir(d)
			beneath = matched[d]
		}
		if !beneath {
			out = append(out, m)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return path.Dir(out[i].Rel) < path.Dir(out[j].Rel) })
	return out
}

// Files restores the entries of snapshot req.SnapshotID that req.Paths match into
// req.Target, each at its path relative to the snapshot's root (data/a.txt is written to
// Target/data/a.txt). Each path is cleaned ("", "/" and "." are the root: the whole
// snapshot, whose attributes the target then gets, as Restore does) and each of its
// components may be a path.Match pattern, matched against the names of the snapshot
// directory at that level (where "*" matches names starting with a dot too). Every path
// must match: a bad pattern, a path that leaves the root, or a path that matches nothing
// (an error wrapping tree.ErrNotFound, naming the path) fails the request before anything is
// written. A matched directory is restored with everything beneath it; a match beneath
// another match is restored once, with it. Checkpoints (incomplete snapshots) may be
// restored; a block volume snapshot is a directory holding one file.
//
// Matches are restored exactly as Restore restores entries, by the same code: data,
// holes with req.WriteSparse (allocated otherwise), modes including setuid, setgid and
// sticky, owners (permission errors ignored, as for a non-root mover), modification
// times, symlinks, directory attributes set after their content; an entry in the way of
// a match (a file, a directory with its content, a symlink, which is not followed) is
// replaced. Parent directories of a match that the target lacks are created with the
// snapshot directory's attributes; existing ones are opened without following a symlink
// and left as they are (only the entries restored into them change their times), and a
// parent position holding anything but a directory (a symlink, even to a directory, or a
// file) fails the request rather than being replaced: those are checked before anything
// is written. Each file is written beside the entry it replaces, under a temporary name
// (".snapmove-restore-" and 16 hex digits), synced, and renamed into place when complete:
// a restore that fails or is canceled mid-file leaves what was there, never a truncated
// or zero-filled file, and removes the temporary file (only a killed process leaves one
// behind). Nothing is written outside req.Target; nothing in it but the matches and
// their missing parents changes. The target filesystem is synced before RestoreFiles
// returns. Cancelling ctx stops it with a partial restore.
//
// The result lists every matched path (sorted, "." for the root) and counts the entries
// and bytes written: the outermost matches and everything beneath them, not the parents
// made for them. req.Parallel 0 means NumCPU writers. req.OnProgress is called every
// req.ProgressInterval (0: datapath.DefaultProgressInterval) with the total size of the matched
// files, and once at the end with both fields equal to the bytes restored.
func Files(ctx context.Context, r *store.Repository, req datapath.FilesRequest) (datapath.FilesResult, error) {
	if req.SnapshotID == "" || req.Target == "" || len(req.Paths) == 0 {
		return datapath.FilesResult{}, errors.New("restoring files of a snapshot: snapshot ID, paths and target are required")
	}
	fail := func(err error) (datapath.FilesResult, error) {
		return datapath.FilesResult{}, errors.Wrapf(err, "restoring files of snapshot %s to %s", req.SnapshotID, req.Target)
	}
	log := r.Log().WithField("snapshotID", req.SnapshotID)
	kctx := velerokopia.SetupKopiaLog(ctx, log)

	man, err := tree.LoadSnapshot(kctx, r.Direct(), req.SnapshotID, r.Location())
	if err != nil {
		return fail(err)
	}
	reader := tree.NewReader(r.Direct(), req.SnapshotID)
	matches, err := reader.Match(kctx, man.RootEntry, req.Paths)
	if err != nil {
		return fail(err)
	}
	res := datapath.FilesResult{Matched: make([]string, len(matches))}
	for i, m := range matches {
		res.Matched[i] = m.Rel
	}
	tops := outermost(matches)
	var total int64
	for _, m := range tops {
		switch {
		case m.Entry.Type == snapshot.EntryTypeFile:
			total += m.Entry.FileSize
		case m.Entry.Type == snapshot.EntryTypeDirectory && m.Entry.DirSummary != nil:
			total += m.Entry.DirSummary.TotalFileSize
		}
	}

	rs := newRestorer(r.Direct(), datapath.RestoreRequest{Parallel: req.Parallel, WriteSparse: req.WriteSparse}, total, log)
	rs.replace = true // the target may be a live volume
	rs.addCollisions(reader.Collisions())
	stopProgress := rs.startProgress(req.OnProgress, req.ProgressInterval)
	started := time.Now()
	err = rs.restoreFiles(kctx, tops, req.Target)
	stopProgress()
	if err != nil {
		return fail(err)
	}
	res.Restored = rs.restoredCounts()
	if req.OnProgress != nil {
		req.OnProgress(datapath.Progress{TotalBytes: res.Restored.Bytes, BytesDone: res.Restored.Bytes})
	}
	log.WithFields(logrus.Fields{
		"paths":      len(req.Paths),
		"matched":    len(matches),
		"files":      res.Restored.Files,
		"totalBytes": res.Restored.Bytes,
		"duration":   time.Since(started).Round(time.Millisecond).String(),
	}).Info("restored files of snapshot")
	return res, nil
}

// restoreFiles restores matches, none beneath another, into target as RestoreFiles
// says: the parents of every match are checked first, then walkers restore the matches
// (making missing parents) while writers write the files, then directory attributes are
// set and the filesystem is synced (finish).
func (rs *restorer) restoreFiles(ctx context.Context, matches []tree.Match, target string) error {
	top, err := createTarget(target)
	if err != nil {
		return err
	}
	defer top.release()

	checked := map[string]bool{".": true} // the target itself
	for _, m := range matches {
		if parent := path.Dir(m.Rel); !checked[parent] {
			checked[parent] = true
			dir, err := rs.openParents(top, m, false)
			if err != nil {
				return err
			}
			if dir != nil {
				dir.release()
			}
		}
	}

	return rs.walkInto(ctx, top, func(ctx context.Context, w *walker) error {
		return w.restoreMatches(ctx, top, matches)
	})
}

// restoreMatches restores each match into its parent directory beneath top: a directory
// is made and walked (restoreSubdir), a file or symlink restored (restoreLeaf). Matches
// sharing a parent directory follow each other and share its opening.
func (w *walker) restoreMatches(ctx context.Context, top *targetDir, matches []tree.Match) error {
	var (
		parent    *targetDir
		parentRel string
	)
	defer func() {
		if parent != nil {
			parent.release()
		}
	}()
	for _, m := range matches {
		if err := ctx.Err(); err != nil {
			return context.Cause(ctx)
		}
		if m.Rel == "." { // the whole snapshot
			if err := w.walk(ctx, tree.Root(m.Entry), top.hold()); err != nil {
				return err
			}
			continue
		}
		if dirRel := path.Dir(m.Rel); parent == nil || dirRel != parentRel {
			if parent != nil {
				parent.release()
				parent = nil
			}
			dir, err := w.rs.openParents(top, m, true)
			if err != nil {
				return err
			}
			parent, parentRel = dir, dirRel
		}
		var err error
		if m.Entry.Type == snapshot.EntryTypeDirectory {
			err = w.restoreSubdir(ctx, parent, tree.Dir{Entry: m.Entry, Rel: m.Rel, Depth: len(m.Chain)})
		} else {
			err = w.restoreLeaf(ctx, parent, m.Entry)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// openParents opens the parent directory of match m beneath top, component by component
// without following a symlink (targetDir.parentDir): existing directories are kept as
// they are, anything else in their place is refused. With create, missing directories
// are made and recorded, with the snapshot directory's attributes, for finish; without,
// a missing one ends the walk and a nil directory is returned.
func (rs *restorer) openParents(top *targetDir, m tree.Match, create bool) (*targetDir, error) {
	names := tree.Components(m.Rel)
	dir := top.hold()
	for i := range len(names) - 1 { // none for the root
		name := names[i]
		next, created, err := dir.parentDir(name, create)
		dir.release()
		if err != nil || next == nil {
			return nil, err
		}
		if created {
			rs.addDir(restoredDir{rel: strings.Join(names[:i+1], "/"), depth: i + 1, attrs: attrsOf(m.Chain[i])})
		}
		dir = next
	}
	return dir, nil
}
