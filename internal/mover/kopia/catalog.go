package kopia

// What the user's repository commands read: the snapshots of moved volumes (Snapshots),
// one directory of a snapshot (ReadDir), chosen paths of a snapshot restored into a
// directory (RestoreFiles), and the namespaces that hold a repository (Namespaces). None
// writes to the repository, so they work on a Repository opened read-only. Snapshot trees
// are read with readDirectory, not snapshotfs (see readDirectory), and RestoreFiles writes
// its target with the restore's walker and writers: restoretree.go, fileswriter.go and
// beneath_unix.go.

import (
	"context"
	stderrors "errors"
	"fmt"
	iofs "io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/kopia/kopia/repo"
	"github.com/kopia/kopia/repo/blob"
	"github.com/kopia/kopia/repo/format"
	"github.com/kopia/kopia/repo/manifest"
	"github.com/kopia/kopia/repo/object"
	"github.com/kopia/kopia/snapshot"
	"github.com/pkg/errors"
	"github.com/sirupsen/logrus"
	velerokopia "github.com/vmware-tanzu/velero/pkg/kopia"
	"golang.org/x/sync/errgroup"

	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/mover/repository"
)

// ErrNotFound is wrapped by the errors of ReadDir and RestoreFiles for a snapshot that
// does not exist, a path that is not in the snapshot, and a RestoreFiles path that
// matches nothing; test with errors.Is. The message names the snapshot and the path.
var ErrNotFound = stderrors.New("not found")

// notFoundError is an error that wraps ErrNotFound with its own message.
type notFoundError struct{ msg string }

func (e *notFoundError) Error() string        { return e.msg }
func (e *notFoundError) Is(target error) bool { return target == ErrNotFound }

func notFound(format string, args ...any) error {
	return &notFoundError{msg: fmt.Sprintf(format, args...)}
}

// cliTagPrefix is the prefix of the tags the kopia CLI writes (snapshot create --tags);
// Velero's data mover and ours write tags without it.
const cliTagPrefix = "tag:"

// Snapshots lists every snapshot of a moved volume in the repository: the manifests,
// complete ones and checkpoints (Incomplete set), whose source path is
// snapshot-data-upload-download/kopia/<ns>/<pvc>, written by Velero's data mover or by
// us, whatever the source's user and host. Snapshots of other sources (Velero's file
// system backups, the kopia CLI) are left out. The list is sorted by namespace, PVC and
// start time (then ID). It reads manifests only, which kopia keeps in memory once listed.
//
// Tags are returned as they were given, without the "tag:" prefix the kopia CLI adds;
// Counts and Errors come from the root directory's summary (Errors from the upload's
// statistics when there is none).
func (r *Repository) Snapshots(ctx context.Context) ([]datapath.Snapshot, error) {
	kctx := velerokopia.SetupKopiaLog(ctx, r.log)
	entries, err := r.rep.FindManifests(kctx, map[string]string{manifest.TypeLabelKey: snapshot.ManifestType})
	if err != nil {
		return nil, errors.Wrapf(err, "listing snapshots in repository at %s", r.loc)
	}
	out := make([]datapath.Snapshot, 0, len(entries))
	for _, e := range entries {
		if _, _, ok := parseSourcePath(e.Labels[snapshot.PathLabel]); !ok {
			continue
		}
		man, err := snapshot.LoadSnapshot(kctx, r.rep, e.ID)
		if stderrors.Is(err, snapshot.ErrSnapshotNotFound) {
			continue // deleted since it was listed
		}
		if err != nil {
			return nil, errors.Wrapf(err, "loading snapshot %s from repository at %s", e.ID, r.loc)
		}
		ns, pvc, ok := parseSourcePath(man.Source.Path)
		if !ok {
			continue
		}
		out = append(out, snapshotInfo(man, ns, pvc))
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		switch {
		case a.Namespace != b.Namespace:
			return a.Namespace < b.Namespace
		case a.PVC != b.PVC:
			return a.PVC < b.PVC
		case !a.StartTime.Equal(b.StartTime):
			return a.StartTime.Before(b.StartTime)
		}
		return a.ID < b.ID
	})
	return out, nil
}

// parseSourcePath returns the namespace and PVC of a source path that snapshotSourcePath
// writes, and whether it is one.
func parseSourcePath(p string) (namespace, pvc string, ok bool) {
	prefix := strings.TrimSuffix(snapshotSourcePath("", ""), "/") // ".../kopia/"
	rest, ok := strings.CutPrefix(p, prefix)
	if !ok {
		return "", "", false
	}
	namespace, pvc, ok = strings.Cut(rest, "/")
	if !ok || namespace == "" || pvc == "" || strings.Contains(pvc, "/") || snapshotSourcePath(namespace, pvc) != p {
		return "", "", false
	}
	return namespace, pvc, true
}

func snapshotInfo(man *snapshot.Manifest, namespace, pvc string) datapath.Snapshot {
	s := datapath.Snapshot{
		ID:         string(man.ID),
		Namespace:  namespace,
		PVC:        pvc,
		Source:     man.Source.String(),
		StartTime:  man.StartTime.ToTime(),
		EndTime:    man.EndTime.ToTime(),
		Incomplete: man.IncompleteReason,
		Errors:     int(man.Stats.ErrorCount + man.Stats.IgnoredErrorCount),
	}
	if c := uploadCounts(man); c != nil {
		s.Counts = *c
		sum := man.RootEntry.DirSummary
		s.Errors = sum.FatalErrorCount + sum.IgnoredErrorCount
	}
	if len(man.Tags) > 0 {
		s.Tags = make(map[string]string, len(man.Tags))
		for k, v := range man.Tags {
			key, cli := strings.CutPrefix(k, cliTagPrefix)
			if _, given := man.Tags[key]; cli && given {
				continue // both "x" and "tag:x": the unprefixed one wins
			}
			s.Tags[key] = v
		}
	}
	return s
}

// loadSnapshot loads snapshot id, which must have a root entry. An unknown ID wraps
// ErrNotFound.
func (r *Repository) loadSnapshot(ctx context.Context, id string) (*snapshot.Manifest, error) {
	if id == "" {
		return nil, errors.New("empty snapshot ID")
	}
	man, err := snapshot.LoadSnapshot(ctx, r.rep, manifest.ID(id))
	if stderrors.Is(err, snapshot.ErrSnapshotNotFound) {
		return nil, notFound("snapshot %s not found in repository at %s", id, r.loc)
	}
	if err != nil {
		return nil, errors.Wrapf(err, "loading snapshot %s from repository at %s", id, r.loc)
	}
	if man.RootEntry == nil {
		return nil, errors.Errorf("snapshot %s has no root entry", id)
	}
	return man, nil
}

// cleanSnapshotPath cleans a slash-separated path relative to a snapshot's root: "", "/"
// and "." are the root, returned as "."; leading slashes are dropped. A path that leaves
// the root ("..") is refused.
func cleanSnapshotPath(p string) (string, error) {
	c := path.Clean(strings.TrimLeft(p, "/"))
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", errors.Errorf("path %q leaves the snapshot's root", p)
	}
	return c, nil
}

// pathComponents splits a cleaned path into its components; the root has none.
func pathComponents(clean string) []string {
	if clean == "." {
		return nil
	}
	return strings.Split(clean, "/")
}

// snapshotReader lists directories of one snapshot, each once, and refuses a directory
// that the restore would refuse (checkNames).
type snapshotReader struct {
	rep   repo.Repository
	id    string
	lists map[object.ID][]*snapshot.DirEntry
}

func newSnapshotReader(rep repo.Repository, id string) *snapshotReader {
	return &snapshotReader{rep: rep, id: id, lists: map[object.ID][]*snapshot.DirEntry{}}
}

// list returns the entries of directory de, path rel of the snapshot.
func (sr *snapshotReader) list(ctx context.Context, de *snapshot.DirEntry, rel string) ([]*snapshot.DirEntry, error) {
	if entries, ok := sr.lists[de.ObjectID]; ok {
		return entries, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, context.Cause(ctx)
	}
	entries, err := readDirectory(ctx, sr.rep, de.ObjectID)
	if err != nil {
		return nil, errors.Wrapf(err, "listing %q of snapshot %s", rel, sr.id)
	}
	if err := checkNames(entries, fmt.Sprintf("%q of snapshot %s", rel, sr.id)); err != nil {
		return nil, err
	}
	sr.lists[de.ObjectID] = entries
	return entries, nil
}

// lookup returns the entry at clean (cleanSnapshotPath) below root, by exact names.
func (sr *snapshotReader) lookup(ctx context.Context, root *snapshot.DirEntry, clean string) (*snapshot.DirEntry, error) {
	de, rel := root, "."
	for _, name := range pathComponents(clean) {
		if de.Type != snapshot.EntryTypeDirectory {
			return nil, notFound("%q not found in snapshot %s: %q is not a directory", clean, sr.id, rel)
		}
		entries, err := sr.list(ctx, de, rel)
		if err != nil {
			return nil, err
		}
		i := slices.IndexFunc(entries, func(e *snapshot.DirEntry) bool { return e.Name == name })
		if i < 0 {
			return nil, notFound("%q not found in snapshot %s", clean, sr.id)
		}
		de, rel = entries[i], path.Join(rel, name)
	}
	return de, nil
}

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
// non-directory, returns an error that wraps ErrNotFound. Checkpoints can be read too. A
// directory holding a name that is not one path component, or a name twice (which kopia
// never writes), is refused as the restore refuses it.
func (r *Repository) ReadDir(ctx context.Context, snapshotID, rel string) (self datapath.Entry, children []datapath.Entry, err error) {
	kctx := velerokopia.SetupKopiaLog(ctx, r.log.WithField("snapshotID", snapshotID))
	fail := func(err error) (datapath.Entry, []datapath.Entry, error) {
		return datapath.Entry{}, nil, errors.Wrapf(err, "reading %q of snapshot %s", rel, snapshotID)
	}
	clean, err := cleanSnapshotPath(rel)
	if err != nil {
		return fail(err)
	}
	man, err := r.loadSnapshot(kctx, snapshotID)
	if err != nil {
		return fail(err)
	}
	sr := newSnapshotReader(r.rep, snapshotID)
	de, err := sr.lookup(kctx, man.RootEntry, clean)
	if err != nil {
		return fail(err)
	}
	name := "/"
	if clean != "." {
		name = path.Base(clean)
	}
	if self, err = r.entryOf(kctx, de, name, clean); err != nil {
		return fail(err)
	}
	if de.Type != snapshot.EntryTypeDirectory {
		return self, nil, nil
	}
	entries, err := sr.list(kctx, de, clean)
	if err != nil {
		return fail(err)
	}
	children = make([]datapath.Entry, 0, len(entries))
	for _, e := range entries {
		c, err := r.entryOf(kctx, e, e.Name, path.Join(clean, e.Name))
		if err != nil {
			return fail(err)
		}
		children = append(children, c)
	}
	sort.Slice(children, func(i, j int) bool { return children[i].Name < children[j].Name })
	return self, children, nil
}

// entryOf describes de, named name, at path rel of the snapshot.
func (r *Repository) entryOf(ctx context.Context, de *snapshot.DirEntry, name, rel string) (datapath.Entry, error) {
	e := datapath.Entry{
		Name:    name,
		Mode:    entryMode(de),
		UID:     de.UserID,
		GID:     de.GroupID,
		Size:    de.FileSize,
		ModTime: de.ModTime.ToTime(),
	}
	if de.Type == snapshot.EntryTypeSymlink {
		link, err := readObject(ctx, r.rep, de.ObjectID)
		if err != nil {
			return e, errors.Wrapf(err, "reading symlink %q", rel)
		}
		e.LinkTarget = string(link)
	}
	return e, nil
}

// entryMode is the mode of de as os.Lstat reports it: kopia keeps os.FileMode's
// permission, setuid, setgid and sticky bits (fs.ModBits), as the restore sets them
// (attrsOf), and the type apart.
func entryMode(de *snapshot.DirEntry) iofs.FileMode {
	mode := attrsOf(de).mode
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

// fileMatch is an entry of a snapshot that a RestoreFiles path matched.
type fileMatch struct {
	rel   string // slash-separated, relative to the snapshot's root; "." for the root
	entry *snapshot.DirEntry
	chain []*snapshot.DirEntry // the entry of each component of rel; the last is entry
}

// matchPaths resolves the RestoreFiles paths below root: each is cleaned, and each of its
// components is a path.Match pattern matched against the names of the directory at that
// level (only directories are descended into). Every pattern is checked, and every path
// must match, before anything is written: a bad pattern, a path leaving the root or a
// path matching nothing (which wraps ErrNotFound) fails the request. The matches are
// returned once each, sorted by path.
func matchPaths(ctx context.Context, sr *snapshotReader, root *snapshot.DirEntry, paths []string) ([]fileMatch, error) {
	patterns := make([][]string, len(paths))
	for i, p := range paths {
		clean, err := cleanSnapshotPath(p)
		if err != nil {
			return nil, err
		}
		patterns[i] = pathComponents(clean)
		for _, c := range patterns[i] {
			if _, err := path.Match(c, ""); err != nil {
				return nil, errors.Wrapf(err, "path %q", p)
			}
		}
	}
	found := map[string]fileMatch{}
	for i, p := range paths {
		n := 0
		err := sr.expand(ctx, root, ".", nil, patterns[i], func(m fileMatch) {
			n++
			found[m.rel] = m
		})
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return nil, notFound("path %q matches nothing in snapshot %s", p, sr.id)
		}
	}
	matches := make([]fileMatch, 0, len(found))
	for _, m := range found {
		if len(m.rel) > maxRelPath {
			return nil, errors.Errorf("refusing %q: longer than %d bytes", m.rel, maxRelPath)
		}
		matches = append(matches, m)
	}
	sort.Slice(matches, func(i, j int) bool { return matches[i].rel < matches[j].rel })
	return matches, nil
}

// expand calls emit for every entry below de (path rel, reached through chain) that the
// components of pattern match.
func (sr *snapshotReader) expand(ctx context.Context, de *snapshot.DirEntry, rel string, chain []*snapshot.DirEntry, pattern []string, emit func(fileMatch)) error {
	if len(pattern) == 0 {
		emit(fileMatch{rel: rel, entry: de, chain: chain})
		return nil
	}
	if de.Type != snapshot.EntryTypeDirectory {
		return nil
	}
	entries, err := sr.list(ctx, de, rel)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if ok, _ := path.Match(pattern[0], e.Name); !ok { // patterns were checked
			continue
		}
		err := sr.expand(ctx, e, path.Join(rel, e.Name), append(slices.Clip(chain), e), pattern[1:], emit)
		if err != nil {
			return err
		}
	}
	return nil
}

// outermost returns the matches that are not beneath another match, grouped by parent
// directory.
func outermost(matches []fileMatch) []fileMatch {
	matched := make(map[string]bool, len(matches))
	for _, m := range matches {
		matched[m.rel] = true
	}
	var out []fileMatch
	for _, m := range matches {
		beneath := false
		for d := m.rel; d != "." && !beneath; {
			d = path.Dir(d)
			beneath = matched[d]
		}
		if !beneath {
			out = append(out, m)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return path.Dir(out[i].rel) < path.Dir(out[j].rel) })
	return out
}

// RestoreFiles restores the entries of snapshot req.SnapshotID that req.Paths match into
// req.Target, each at its path relative to the snapshot's root (data/a.txt is written to
// Target/data/a.txt). Each path is cleaned ("", "/" and "." are the root: the whole
// snapshot, whose attributes the target then gets, as Restore does) and each of its
// components may be a path.Match pattern, matched against the names of the snapshot
// directory at that level (where "*" matches names starting with a dot too). Every path
// must match: a bad pattern, a path that leaves the root, or a path that matches nothing
// (an error wrapping ErrNotFound, naming the path) fails the request before anything is
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
// is written. Nothing is written outside req.Target; nothing in it but the matches and
// their missing parents changes. The target filesystem is synced before RestoreFiles
// returns. Cancelling ctx stops it with a partial restore.
//
// The result lists every matched path (sorted, "." for the root) and counts the entries
// and bytes written: the outermost matches and everything beneath them, not the parents
// made for them. req.Parallel 0 means NumCPU writers. req.OnProgress is called every
// req.ProgressInterval (0: DefaultProgressInterval) with the total size of the matched
// files, and once at the end with both fields equal to the bytes restored.
func (r *Repository) RestoreFiles(ctx context.Context, req datapath.FilesRequest) (datapath.FilesResult, error) {
	if req.SnapshotID == "" || req.Target == "" || len(req.Paths) == 0 {
		return datapath.FilesResult{}, errors.New("restoring files of a snapshot: snapshot ID, paths and target are required")
	}
	fail := func(err error) (datapath.FilesResult, error) {
		return datapath.FilesResult{}, errors.Wrapf(err, "restoring files of snapshot %s to %s", req.SnapshotID, req.Target)
	}
	log := r.log.WithField("snapshotID", req.SnapshotID)
	kctx := velerokopia.SetupKopiaLog(ctx, log)

	man, err := r.loadSnapshot(kctx, req.SnapshotID)
	if err != nil {
		return fail(err)
	}
	matches, err := matchPaths(kctx, newSnapshotReader(r.rep, req.SnapshotID), man.RootEntry, req.Paths)
	if err != nil {
		return fail(err)
	}
	res := datapath.FilesResult{Matched: make([]string, len(matches))}
	for i, m := range matches {
		res.Matched[i] = m.rel
	}
	tops := outermost(matches)
	var total int64
	for _, m := range tops {
		switch {
		case m.entry.Type == snapshot.EntryTypeFile:
			total += m.entry.FileSize
		case m.entry.Type == snapshot.EntryTypeDirectory && m.entry.DirSummary != nil:
			total += m.entry.DirSummary.TotalFileSize
		}
	}

	rs := newRestorer(r.rep, datapath.RestoreRequest{Parallel: req.Parallel, WriteSparse: req.WriteSparse}, total, log)
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
func (rs *restorer) restoreFiles(ctx context.Context, matches []fileMatch, target string) error {
	top, err := createTarget(target)
	if err != nil {
		return err
	}
	defer top.release()

	checked := map[string]bool{".": true} // the target itself
	for _, m := range matches {
		if parent := path.Dir(m.rel); !checked[parent] {
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

	err = rs.run(ctx, func(ctx context.Context, jobs chan<- job) error {
		walkers, ctx := errgroup.WithContext(ctx)
		walkers.SetLimit(rs.parallel)
		w := &walker{rs: rs, jobs: jobs, group: walkers}
		err := w.restoreMatches(ctx, top, matches)
		if waitErr := walkers.Wait(); err == nil {
			err = waitErr
		}
		return err
	})
	if err != nil {
		return err
	}
	return rs.finish(top)
}

// restoreMatches restores each match into its parent directory beneath top: a directory
// is made and walked (restoreSubdir), a file or symlink restored (restoreLeaf). Matches
// sharing a parent directory follow each other and share its opening.
func (w *walker) restoreMatches(ctx context.Context, top *targetDir, matches []fileMatch) error {
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
		if m.rel == "." { // the whole snapshot
			if err := w.walk(ctx, m.entry, top.hold(), ".", 0); err != nil {
				return err
			}
			continue
		}
		if dirRel := path.Dir(m.rel); parent == nil || dirRel != parentRel {
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
		if m.entry.Type == snapshot.EntryTypeDirectory {
			err = w.restoreSubdir(ctx, parent, m.entry, m.rel, len(m.chain))
		} else {
			err = w.restoreLeaf(ctx, parent, m.entry)
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
func (rs *restorer) openParents(top *targetDir, m fileMatch, create bool) (*targetDir, error) {
	names := pathComponents(m.rel)
	dir := top.hold()
	for i := range len(names) - 1 { // none for the root
		name := names[i]
		next, created, err := dir.parentDir(name, create)
		dir.release()
		if err != nil || next == nil {
			return nil, err
		}
		if created {
			rs.addDir(restoredDir{rel: strings.Join(names[:i+1], "/"), depth: i + 1, attrs: attrsOf(m.chain[i])})
		}
		dir = next
	}
	return dir, nil
}

// Namespaces lists, sorted, the namespaces that hold a kopia repository below loc, whose
// Prefix is the parent of the per-namespace repositories: "<bsl prefix>/kopia/", with
// the trailing slash. A namespace holds one when the blob <ns>/kopia.repository exists
// directly below, as Open finds it. A filesystem location whose directory does not exist
// holds none; storage errors are classified as Open's (ErrBucketNotFound,
// ErrAccessDenied, ErrUnreachable, ...). Nothing is written.
//
// Cost: on S3 one listing request per 1000 entries directly below the prefix (kopia lists
// S3 with a "/" delimiter, so namespaces show as common prefixes), then one small listing
// per namespace; on a filesystem one directory read per namespace. GCS and Azure list
// every blob below the prefix, pack blobs of every repository included, because kopia's
// storage for them lists without a delimiter and the blob.Storage interface offers no
// other way.
func Namespaces(ctx context.Context, loc repository.Location) ([]string, error) {
	st, err := openStorage(ctx, loc, false)
	if stderrors.Is(err, errNoRepositoryDir) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer st.Close(ctx) //nolint:errcheck
	var namespaces []string
	if loc.Provider == repository.ProviderFilesystem {
		namespaces, err = filesystemNamespaces(ctx, loc)
	} else {
		namespaces, err = listNamespaces(ctx, st, loc)
	}
	if err != nil {
		return nil, err
	}
	sort.Strings(namespaces)
	return namespaces, nil
}

// filesystemNamespaces reads the directory of loc: kopia's filesystem storage lists the
// blobs of subdirectories as if they were shards, joining the names without "/" (and
// walks every one), so each subdirectory is checked as Open checks a repository.
func filesystemNamespaces(ctx context.Context, loc repository.Location) ([]string, error) {
	dir := filepath.Join(loc.Path, loc.Prefix)
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, listError(err, loc)
	}
	var out []string
	for _, e := range entries {
		if st, err := os.Stat(filepath.Join(dir, e.Name())); err != nil || !st.IsDir() {
			continue // not a directory (or gone since)
		}
		sub := loc
		sub.Prefix = path.Join(loc.Prefix, e.Name()) + "/"
		st, err := openStorage(ctx, sub, false)
		if stderrors.Is(err, errNoRepositoryDir) {
			continue
		}
		if err != nil {
			return nil, err
		}
		found, err := repositoryExists(ctx, st, sub)
		_ = st.Close(ctx)
		if err != nil {
			return nil, err
		}
		if found {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// listNamespaces lists the blobs below st (any depth or, on S3, one level, where a
// common prefix is listed as the blob "<ns>/"): each "<ns>/kopia.repository" names a
// namespace, each "<ns>/" is a namespace to look into.
func listNamespaces(ctx context.Context, st blob.Storage, loc repository.Location) ([]string, error) {
	found := map[string]bool{}
	var candidates []string
	err := st.ListBlobs(ctx, "", func(m blob.Metadata) error {
		ns, rest, ok := strings.Cut(string(m.BlobID), "/")
		switch {
		case !ok || ns == "":
		case rest == format.KopiaRepositoryBlobID:
			found[ns] = true
		case rest == "":
			candidates = append(candidates, ns)
		}
		return nil
	})
	if err != nil {
		return nil, listError(err, loc)
	}
	for _, ns := range candidates {
		if found[ns] {
			continue
		}
		id := blob.ID(ns + "/" + format.KopiaRepositoryBlobID)
		err := st.ListBlobs(ctx, id, func(m blob.Metadata) error {
			if m.BlobID == id {
				found[ns] = true
			}
			return nil
		})
		if err != nil {
			return nil, listError(err, loc)
		}
	}
	out := make([]string, 0, len(found))
	for ns := range found {
		out = append(out, ns)
	}
	return out, nil
}

// listError classifies an error listing loc as Open would.
func listError(err error, loc repository.Location) error {
	if classified := classifyStorageError(err, loc); classified != nil {
		return classified
	}
	return errors.Wrapf(err, "listing repositories at %s", loc)
}
