package inspect

import (
	"context"
	"fmt"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kopia/kopia/fs"
	"github.com/kopia/kopia/repo"
	"github.com/kopia/kopia/repo/blob"
	"github.com/kopia/kopia/repo/manifest"
	"github.com/kopia/kopia/snapshot"
	"github.com/pkg/errors"
	"github.com/sirupsen/logrus"
	velerokopia "github.com/vmware-tanzu/velero/pkg/kopia"
	"golang.org/x/sync/errgroup"

	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/mover/kopia/store"
	"github.com/snapmove/snapmove/internal/mover/kopia/tree"
)

// Verification reads a saved snapshot back through kopia's read path, which authenticates
// every content it returns (decryption with an authenticated cipher, then the content's
// hash): what is read back is what the upload wrote. VerifyMetadata reads the manifest,
// every directory object and every file's seek table, looks every file content up in the
// index and checks that the pack blobs holding them exist (without reading file data);
// VerifySample and VerifyFull also read file data. Nothing is written. Contents read go
// through kopia's cache like any read (a cache holds only what was read before, never
// what was written, so the first read of a content comes from the storage).

const (
	// maxVerifyProblems is how many problems a verification collects; it stops there.
	maxVerifyProblems = 5
	// maxProblemLen bounds one problem's text (kopia's errors name blobs and contents).
	maxProblemLen = 300
	// defaultMaxParallel caps the default number of readers, as a backup's default caps
	// the files it reads at once (package backup): a reader holds a content or two.
	defaultMaxParallel = 4
	// readAttempts is how many times a read that fails for a reason that may pass
	// (store.IsTransient) is tried before the verification ends with that error.
	readAttempts = 4
)

// retryDelay is the pause before the second attempt of a read; it doubles before each
// further one (a variable for tests).
var retryDelay = time.Second

// verifyPartBytes is the size of the parts a large file's content is read in, in
// parallel (a variable for tests).
var verifyPartBytes int64 = 64 << 20

// Verify reads snapshot snapshotID back from the repository as mode says and
// checks it: the manifest is a complete snapshot; every directory object decodes and
// holds safe names; the entries below each directory add up to the summary stored for it
// and, when want is not nil, the whole tree to want (what the upload reported); every
// file's chunks are in the index, contiguous and as long as the file, and the pack blobs
// holding them exist. For VerifySample (a share of the files, chosen by hashing the
// snapshot ID and the file's path: the same snapshot always gets the same sample, and at
// least one file) and VerifyFull (every file) the file content is read back in full,
// which authenticates it.
//
// It reads only, blocks until done, and may run on a read-only repository. A snapshot that
// fails returns a *datapath.VerificationError listing the first problems found; other errors are
// the snapshot not loading, ctx ending, or the store failing a read readAttempts times for
// a reason that may pass (store.IsTransient: unreachable, a 5xx, throttling). Such a read
// says nothing about the data: the verification ends with that error, transient, and a
// later one may succeed. Only what the store returned and is wrong (a content that does
// not authenticate, a missing blob or content, an object that does not decode, counts
// that do not add up) is a problem. The zero mode is VerifyMetadata; VerifyNone
// returns at once. The result is data (what was checked, how long it took); the
// sentences for people are the printer's (package catalog).
//
// parallel is the number of readers; 0 means NumCPU, at most defaultMaxParallel.
func Verify(ctx context.Context, r *store.Repository, snapshotID string, mode datapath.VerifyMode, want *datapath.TreeCounts, parallel int) (datapath.VerifyResult, error) {
	if mode.Level == "" {
		mode.Level = datapath.VerifyMetadata
	}
	res := datapath.VerifyResult{Mode: mode}
	switch mode.Level {
	case datapath.VerifyNone:
		return res, nil
	case datapath.VerifyMetadata, datapath.VerifyFull:
	case datapath.VerifySample:
		if mode.Percent < 1 || mode.Percent > 100 {
			return res, errors.Errorf("verifying snapshot %s: sample of %d%%: want 1 to 100", snapshotID, mode.Percent)
		}
	default:
		return res, errors.Errorf("verifying snapshot %s: unknown verify level %q", snapshotID, mode.Level)
	}
	if snapshotID == "" {
		return res, errors.New("verifying snapshot: empty snapshot ID")
	}
	if parallel <= 0 {
		parallel = min(runtime.NumCPU(), defaultMaxParallel)
	}
	log := r.Log().WithField("snapshotID", snapshotID)
	kctx := velerokopia.SetupKopiaLog(ctx, log)
	started := time.Now()

	rep, done, err := readBack(kctx, r, r.Direct(), mode, log)
	if err != nil {
		return res, err
	}
	defer done()
	man, err := snapshot.LoadSnapshot(kctx, rep, manifest.ID(snapshotID))
	if err != nil {
		return res, errors.Wrapf(err, "loading snapshot %s from repository at %s", snapshotID, r.Location())
	}
	v := &verifier{rep: rep, cr: tree.NewContentReader(rep), mode: mode, seed: snapshotID}
	return v.result(kctx, res, man, nil, want, parallel, started, log)
}

// VerifiedTag, on a snapshot's manifest, is the mode it was verified with before it was
// saved (datapath.VerifyMode's text: "metadata", "sample:10", "full"). A later backup's
// verification trusts what it shares with such a parent (VerifyNew).
const VerifiedTag = "snapmove.io/verified"

// VerifyNew verifies man, a snapshot uploaded through w whose contents w has flushed
// but whose manifest is not saved yet, as Verify verifies a saved one: the caller saves
// it only when it passes, tagged VerifiedTag (so a snapshot that fails is never saved,
// and never becomes a parent). What man shares with parent, a snapshot of the same
// source tagged verified with a mode that covers mode (Covers), is not read back again:
// a directory whose object is the parent's directory at the same path (kopia's objects
// are named by their content, so the whole subtree is the same) is counted from its
// summary, and a file whose object is the parent's file at the same path is not looked
// up. Everything else, so every content the backup wrote, is checked as Verify checks
// it. A nil parent, or one not verified to mode, verifies the whole tree.
//
// A failure's *datapath.VerificationError has no snapshot ID (none was saved).
func VerifyNew(ctx context.Context, r *store.Repository, w repo.DirectRepositoryWriter, man, parent *snapshot.Manifest, mode datapath.VerifyMode, want *datapath.TreeCounts, parallel int) (datapath.VerifyResult, error) {
	if mode.Level == "" {
		mode.Level = datapath.VerifyMetadata
	}
	res := datapath.VerifyResult{Mode: mode}
	if err := checkMode(mode); err != nil {
		return res, errors.Wrap(err, "verifying the new snapshot")
	}
	if mode.Level == datapath.VerifyNone {
		return res, nil
	}
	if parallel <= 0 {
		parallel = min(runtime.NumCPU(), defaultMaxParallel)
	}
	log := r.Log().WithField("source", man.Source.Path)
	kctx := velerokopia.SetupKopiaLog(ctx, log)
	started := time.Now()
	rep, done, err := readBack(kctx, r, w, mode, log)
	if err != nil {
		return res, err
	}
	defer done()
	var base *snapshot.DirEntry
	if parent != nil && parent.IncompleteReason == "" && Covers(parent.Tags[VerifiedTag], mode) {
		base = parent.RootEntry
		log = log.WithField("verifiedParent", parent.ID)
	}
	// The sample is chosen by the root's object, the snapshot's content, as the ID of a
	// saved one chooses it.
	v := &verifier{rep: rep, cr: tree.NewContentReader(rep), mode: mode, seed: man.RootObjectID().String()}
	return v.result(kctx, res, man, base, want, parallel, started, log)
}

// readBack is what a verification reads through: rep, or when file contents are read
// back from a cached repository a new connection without the cache (UncachedReader; for
// a new snapshot, opened after its contents were flushed). done closes that connection.
func readBack(ctx context.Context, r *store.Repository, rep repo.DirectRepository, mode datapath.VerifyMode, log logrus.FieldLogger) (repo.DirectRepository, func(), error) {
	if mode.Level == datapath.VerifyMetadata || !r.Cached() {
		return rep, func() {}, nil
	}
	reader, err := r.UncachedReader(ctx)
	if err != nil {
		return nil, nil, errors.Wrap(err, "opening a connection to read the snapshot back")
	}
	return reader, func() {
		if err := reader.Close(ctx); err != nil {
			log.WithError(err).Warn("closing the read-back connection")
		}
	}, nil
}

// Covers reports whether a snapshot verified with the mode whose text is verified (its
// VerifiedTag) checked at least what mode checks: metadata < sample (of a share at
// least as large) < full.
func Covers(verified string, mode datapath.VerifyMode) bool {
	if mode.Level == "" {
		mode.Level = datapath.VerifyMetadata
	}
	rank := func(l datapath.VerifyLevel) int {
		switch l {
		case datapath.VerifyMetadata:
			return 1
		case datapath.VerifySample:
			return 2
		case datapath.VerifyFull:
			return 3
		}
		return 0
	}
	level, pct, _ := strings.Cut(verified, ":")
	had := datapath.VerifyMode{Level: datapath.VerifyLevel(level)}
	if had.Level == datapath.VerifySample {
		n, err := strconv.Atoi(pct)
		if err != nil {
			return false
		}
		had.Percent = n
	}
	switch {
	case rank(had.Level) == 0 || rank(mode.Level) == 0:
		return false
	case had.Level == datapath.VerifySample && mode.Level == datapath.VerifySample:
		return had.Percent >= mode.Percent
	}
	return rank(had.Level) >= rank(mode.Level)
}

func checkMode(mode datapath.VerifyMode) error {
	switch mode.Level {
	case datapath.VerifyNone, datapath.VerifyMetadata, datapath.VerifyFull:
		return nil
	case datapath.VerifySample:
		if mode.Percent < 1 || mode.Percent > 100 {
			return errors.Errorf("sample of %d%%: want 1 to 100", mode.Percent)
		}
		return nil
	}
	return errors.Errorf("unknown verify level %q", mode.Level)
}

// result runs v over man (sharing what base holds, when set) and puts what it checked
// into res.
func (v *verifier) result(ctx context.Context, res datapath.VerifyResult, man *snapshot.Manifest, base *snapshot.DirEntry, want *datapath.TreeCounts, parallel int, started time.Time, log logrus.FieldLogger) (datapath.VerifyResult, error) {
	name := "the new snapshot"
	if v.seed != "" && man.ID != "" {
		name = "snapshot " + string(man.ID)
	}
	v.base = base
	counts, err := v.run(ctx, man, want, parallel)
	if err != nil {
		return res, errors.Wrapf(err, "verifying %s", name)
	}
	res.Checked = counts
	res.Shared = v.sharedCounts()
	res.FilesRead, res.BytesRead = v.filesRead.Load(), v.bytesRead.Load()
	res.Duration = time.Since(started)
	if len(v.problems) > 0 {
		return res, &datapath.VerificationError{SnapshotID: string(man.ID), Mode: res.Mode, Problems: v.problems, Stopped: v.stopped}
	}
	log.WithFields(logrus.Fields{
		"verify": res.Mode.String(), "files": counts.Files, "dirs": counts.Dirs, "symlinks": counts.Symlinks,
		"bytes": counts.Bytes, "filesRead": res.FilesRead, "bytesRead": res.BytesRead,
		"sharedFiles": res.Shared.Files, "sharedDirs": res.Shared.Dirs,
		"duration": res.Duration.Round(time.Millisecond).String(),
	}).Info("verified snapshot")
	return res, nil
}

// UploadCounts are the counts the upload reported for the tree it wrote (its root
// directory summary); nil when the manifest holds none.
func UploadCounts(man *snapshot.Manifest) *datapath.TreeCounts {
	if man == nil || man.RootEntry == nil || man.RootEntry.DirSummary == nil {
		return nil
	}
	s := man.RootEntry.DirSummary
	return &datapath.TreeCounts{Files: s.TotalFileCount, Dirs: s.TotalDirCount, Symlinks: s.TotalSymlinkCount, Bytes: s.TotalFileSize}
}

// verifier holds one verification's state. Walkers list directories and check files, up
// to parallel at once (inline when none is free, as the restore's walkers do).
type verifier struct {
	rep  repo.DirectRepository
	cr   tree.ContentReader
	mode datapath.VerifyMode
	seed string // the snapshot ID, mixed into the sample's hash

	stop context.CancelFunc

	mu       sync.Mutex
	problems []string
	stopped  bool
	dirs     []dirNode
	// sampledFiles counts non-empty files sampled; fallback is the non-empty file
	// with the lowest hash, read when none was.
	sampledFiles int
	fallback     *sampleCandidate
	// packs are the pack blobs holding file contents: the end of the last content
	// in each, and a file it holds.
	packs map[blob.ID]packUse
	// base is the root of a verified parent (VerifyNew): what the tree shares with it is
	// counted, not checked, into shared.
	base   *snapshot.DirEntry
	shared datapath.TreeCounts

	filesRead, bytesRead atomic.Int64
}

// dirNode is one directory of the tree: what is directly in it, and the summary its
// parent stored for it. Children come after their parent in verifier.dirs.
type dirNode struct {
	rel     string
	parent  int // -1 for the root
	summary *fs.DirectorySummary
	own     datapath.TreeCounts // the directory itself, its files and symlinks
}

type packUse struct {
	end int64
	rel string
}

type sampleCandidate struct {
	hash uint64
	rel  string
	e    *snapshot.DirEntry
}

// run checks man's tree and returns its counts. Problems are collected in v.problems; the
// error is only ctx's.
func (v *verifier) run(ctx context.Context, man *snapshot.Manifest, want *datapath.TreeCounts, parallel int) (datapath.TreeCounts, error) {
	if man.IncompleteReason != "" {
		v.problem(".", "the snapshot is incomplete (%s)", man.IncompleteReason)
	}
	root := man.RootEntry
	switch {
	case root == nil:
		v.problem(".", "the snapshot has no root entry")
		return datapath.TreeCounts{}, nil
	case root.Type != snapshot.EntryTypeDirectory:
		v.problem(".", "the snapshot root is not a directory (type %q)", root.Type)
		return datapath.TreeCounts{}, nil
	case root.DirSummary == nil:
		v.problem(".", "the snapshot root has no directory summary")
	}

	walkCtx, stop := context.WithCancel(ctx)
	defer stop()
	v.stop = stop
	walkers, wctx := tree.NewWalker(walkCtx, parallel)
	err := walkers.Walk(func() error { return v.walk(wctx, walkers, tree.Root(root), -1, v.base) })
	if ctx.Err() != nil {
		return datapath.TreeCounts{}, context.Cause(ctx)
	}
	if err != nil && !v.isStopped() {
		if !store.IsTransient(err) || !v.stopWithProblems() {
			return datapath.TreeCounts{}, err
		}
		// The store went away after problems were found: they are wrong whatever it does.
	}
	if v.isStopped() {
		sort.Strings(v.problems)
		return datapath.TreeCounts{}, nil // the tree was not walked to the end: no totals
	}
	if c := v.fallback; v.mode.Level == datapath.VerifySample && v.sampledFiles == 0 && c != nil {
		if err := v.checkFile(ctx, nil, c.rel, c.e, true); err != nil {
			return datapath.TreeCounts{}, err
		}
	}

	// Problems found in the walk come first, sorted. Counts are compared only without
	// them: a directory that could not be listed, for one, miscounts all its parents.
	sort.Strings(v.problems)
	compare := len(v.problems) == 0
	total := v.totals(compare)
	if !compare {
		return total, nil
	}
	// The manifest's Stats are not compared: kopia's uploader counts each part of a file
	// uploaded in parts as a file, counts a file taken from the parent in CachedFiles
	// only, and adds the size of a symlink taken from the parent to TotalFileSize. The
	// directory summaries are built from the entries written, and want from them.
	if want != nil {
		compareCounts(v, ".", "the upload reported", *want, total)
	}
	if err := v.checkPacks(ctx, parallel); err != nil {
		return datapath.TreeCounts{}, err
	}
	sort.Strings(v.problems)
	return total, nil
}

// checkPacks checks that every pack blob holding file contents exists and is long enough
// for them (the index can outlive a pack; kopia's verifier checks the same against a
// listing of all blobs). Reading a content finds this too; the metadata level reads none.
func (v *verifier) checkPacks(ctx context.Context, parallel int) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(parallel)
	for id, use := range v.packs {
		g.Go(func() error {
			var md blob.Metadata
			err := retry(gctx, func() (err error) {
				md, err = v.rep.BlobReader().GetMetadata(gctx, id)
				return err
			})
			switch {
			case gctx.Err() != nil:
				return gctx.Err()
			case errors.Is(err, blob.ErrBlobNotFound):
				v.problem(use.rel, "its content is in pack blob %s, which is missing", id)
			case err != nil:
				return v.failed(gctx, use.rel, err, "reading the metadata of pack blob %s", id)
			case md.Length < use.end:
				v.problem(use.rel, "pack blob %s holding its content is %d bytes long, the index says at least %d", id, md.Length, use.end)
			}
			return nil
		})
	}
	err := g.Wait()
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	if err != nil && store.IsTransient(err) && v.stopWithProblems() {
		return nil
	}
	return err
}

// totals adds each directory's entries to its parents' and, with compare, compares every
// directory's total with its stored summary, children before parents. It returns the root's total.
func (v *verifier) totals(compare bool) datapath.TreeCounts {
	v.mu.Lock()
	dirs := v.dirs
	v.mu.Unlock()
	if len(dirs) == 0 {
		return datapath.TreeCounts{}
	}
	total := make([]datapath.TreeCounts, len(dirs))
	for i := len(dirs) - 1; i >= 0; i-- {
		d := dirs[i]
		t := &total[i]
		t.Files += d.own.Files
		t.Dirs += d.own.Dirs
		t.Symlinks += d.own.Symlinks
		t.Bytes += d.own.Bytes
		if s := d.summary; s != nil && compare {
			compareCounts(v, d.rel, "its directory summary says",
				datapath.TreeCounts{Files: s.TotalFileCount, Dirs: s.TotalDirCount, Symlinks: s.TotalSymlinkCount, Bytes: s.TotalFileSize}, *t)
		}
		if d.parent >= 0 {
			p := &total[d.parent]
			p.Files += t.Files
			p.Dirs += t.Dirs
			p.Symlinks += t.Symlinks
			p.Bytes += t.Bytes
		}
	}
	return total[0]
}

// compareCounts records a problem for each count of got that differs from want.
func compareCounts(v *verifier, rel, source string, want, got datapath.TreeCounts) {
	for _, c := range []struct {
		what      string
		want, got int64
	}{
		{"files", want.Files, got.Files},
		{"directories", want.Dirs, got.Dirs},
		{"symlinks", want.Symlinks, got.Symlinks},
		{"bytes of files", want.Bytes, got.Bytes},
	} {
		if c.want != c.got {
			v.problem(rel, "%s %d %s, the repository holds %d", source, c.want, c.what, c.got)
		}
	}
}

// walk lists directory d and checks its entries; subdirectories and files are handed to
// other walkers when one is free. Unlike the restore it goes on past an unsafe name (a
// problem, the entry skipped), to report what else is wrong.
func (v *verifier) walk(ctx context.Context, walkers *tree.Walker, d tree.Dir, parent int, base *snapshot.DirEntry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	rel := d.Rel
	if s := d.Entry.DirSummary; base != nil && base.Type == snapshot.EntryTypeDirectory && base.ObjectID == d.Entry.ObjectID && s != nil {
		// The verified parent's directory: its totals, without a summary to compare them with.
		c := datapath.TreeCounts{Files: s.TotalFileCount, Dirs: s.TotalDirCount, Symlinks: s.TotalSymlinkCount, Bytes: s.TotalFileSize}
		v.addDir(dirNode{rel: rel, parent: parent, own: c})
		v.addShared(c)
		return nil
	}
	node := dirNode{rel: rel, parent: parent, summary: d.Entry.DirSummary, own: datapath.TreeCounts{Dirs: 1}}
	var entries []*snapshot.DirEntry
	err := retry(ctx, func() (err error) {
		entries, err = tree.ReadDir(ctx, v.rep, d.Entry.ObjectID)
		return err
	})
	if err != nil {
		v.addDir(node)
		return v.failed(ctx, rel, err, "listing the directory")
	}
	baseEntries := v.baseEntries(ctx, base)
	for _, e := range entries {
		if !tree.SafeName(e.Name) {
			v.problem(rel, "unsafe entry name %q", e.Name)
			continue
		}
		switch e.Type {
		case snapshot.EntryTypeSymlink:
			node.own.Symlinks++
		case snapshot.EntryTypeFile:
			node.own.Files++
			node.own.Bytes += e.FileSize
		}
	}
	self := v.addDir(node)

	for _, e := range entries {
		if !tree.SafeName(e.Name) {
			continue
		}
		p := tree.Join(rel, e.Name)
		b := baseEntries[e.Name]
		var job func() error
		switch e.Type {
		case snapshot.EntryTypeDirectory:
			job = func() error { return v.walk(ctx, walkers, d.Child(e), self, b) }
		case snapshot.EntryTypeSymlink:
			job = func() error { return v.checkSymlink(ctx, p, e) }
		case snapshot.EntryTypeFile:
			if b != nil && b.Type == snapshot.EntryTypeFile && b.ObjectID == e.ObjectID && b.FileSize == e.FileSize {
				v.addShared(datapath.TreeCounts{Files: 1, Bytes: e.FileSize})
				continue
			}
			read := v.selected(p, e)
			job = func() error { return v.checkFile(ctx, walkers, p, e, read) }
		default:
			continue // the policy ignores unknown types; the restore skips them
		}
		if err := walkers.Go(job); err != nil {
			return err
		}
	}
	return nil
}

// baseEntries lists the verified parent's directory base by name; nil when there is
// none or it cannot be read (then nothing below is shared: everything is checked).
func (v *verifier) baseEntries(ctx context.Context, base *snapshot.DirEntry) map[string]*snapshot.DirEntry {
	if base == nil || base.Type != snapshot.EntryTypeDirectory {
		return nil
	}
	var entries []*snapshot.DirEntry
	if err := retry(ctx, func() (err error) {
		entries, err = tree.ReadDir(ctx, v.rep, base.ObjectID)
		return err
	}); err != nil {
		return nil
	}
	out := make(map[string]*snapshot.DirEntry, len(entries))
	for _, e := range entries {
		out[e.Name] = e
	}
	return out
}

func (v *verifier) addShared(c datapath.TreeCounts) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.shared.Files += c.Files
	v.shared.Dirs += c.Dirs
	v.shared.Symlinks += c.Symlinks
	v.shared.Bytes += c.Bytes
}

func (v *verifier) sharedCounts() datapath.TreeCounts {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.shared
}

func (v *verifier) addDir(n dirNode) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.dirs = append(v.dirs, n)
	return len(v.dirs) - 1
}

// failed records err while doing what as a problem of rel, unless ctx has ended (then
// the walk stops with ctx's error) or err may pass (store.IsTransient; retry has tried
// already): then the walk stops with err, transient, since a store that did not answer
// says nothing about the snapshot.
func (v *verifier) failed(ctx context.Context, rel string, err error, what string, args ...any) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if store.IsTransient(err) {
		return datapath.Transient(errors.Wrapf(err, "%s: %s: the store failed %d attempts", rel, fmt.Sprintf(what, args...), readAttempts))
	}
	v.problem(rel, "%s: %v", fmt.Sprintf(what, args...), err)
	return nil
}

// retry runs op until it succeeds, fails for a reason that will not pass, or has failed
// readAttempts times, pausing retryDelay, then twice as long, and so on between
// attempts; it returns op's last error, at once when ctx ends.
func retry(ctx context.Context, op func() error) error {
	delay := retryDelay
	for attempt := 1; ; attempt++ {
		err := op()
		if err == nil || attempt == readAttempts || ctx.Err() != nil || !store.IsTransient(err) {
			return err
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		delay *= 2
	}
}

// stopWithProblems marks the verification stopped when it has found problems, and says
// whether it had.
func (v *verifier) stopWithProblems() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.problems) == 0 {
		return false
	}
	v.stopped = true
	return true
}

// problem records what is wrong with rel, escaped (datapath.EscapeName: the problems reach
// the movement's message and terminals). The verification stops at maxVerifyProblems.
func (v *verifier) problem(rel, format string, args ...any) {
	msg := datapath.EscapeName(rel) + ": " + fmt.Sprintf(format, args...)
	if len(msg) > maxProblemLen {
		msg = msg[:maxProblemLen-3] + "..."
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.stopped {
		return
	}
	v.problems = append(v.problems, msg)
	if len(v.problems) == maxVerifyProblems {
		v.stopped = true
		if v.stop != nil {
			v.stop()
		}
	}
}

func (v *verifier) isStopped() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.stopped
}
