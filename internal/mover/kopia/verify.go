package kopia

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kopia/kopia/fs"
	"github.com/kopia/kopia/repo"
	"github.com/kopia/kopia/repo/blob"
	"github.com/kopia/kopia/repo/manifest"
	"github.com/kopia/kopia/repo/object"
	"github.com/kopia/kopia/snapshot"
	"github.com/pkg/errors"
	"github.com/sirupsen/logrus"
	velerokopia "github.com/vmware-tanzu/velero/pkg/kopia"
	"golang.org/x/sync/errgroup"

	"github.com/snapmove/snapmove/internal/mover/datapath"
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
	// verifyDeleteTimeout bounds deleting a snapshot that failed verification (after a
	// cancellation too).
	verifyDeleteTimeout = time.Minute
)

// verifyPartBytes is the size of the parts a large file's content is read in, in
// parallel (a variable for tests).
var verifyPartBytes int64 = 64 << 20

// VerificationError says that a snapshot failed verification and what was wrong.
type VerificationError struct {
	SnapshotID string
	Mode       datapath.VerifyMode
	// Problems are "path: what is wrong", path relative to the volume ("." is its root),
	// sorted; at most maxVerifyProblems, then the verification stopped (Stopped).
	Problems []string
	Stopped  bool
	// Deleted: the snapshot's manifest was deleted after the verification failed.
	Deleted bool
}

func (e *VerificationError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "snapshot %s failed verification (%s)", e.SnapshotID, e.Mode.String())
	if e.Deleted {
		b.WriteString(" and was deleted")
	}
	b.WriteString(": ")
	b.WriteString(strings.Join(e.Problems, "; "))
	if e.Stopped {
		fmt.Fprintf(&b, " (stopped after %d problems)", len(e.Problems))
	}
	return b.String()
}

// VerifySnapshot reads snapshot snapshotID back from the repository as mode says and
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
// fails returns a *VerificationError listing the first problems found; other errors are
// the snapshot not loading or ctx ending. The zero mode is VerifyMetadata; VerifyNone
// returns at once.
func (r *Repository) VerifySnapshot(ctx context.Context, snapshotID string, mode datapath.VerifyMode, want *datapath.TreeCounts) (datapath.VerifyResult, error) {
	return r.verifySnapshot(ctx, snapshotID, mode, want, 0)
}

// verifySnapshot is VerifySnapshot with parallel readers (0: NumCPU, at most
// defaultMaxBackupParallel, as for a backup: a reader holds a content or two in memory).
func (r *Repository) verifySnapshot(ctx context.Context, snapshotID string, mode datapath.VerifyMode, want *datapath.TreeCounts, parallel int) (datapath.VerifyResult, error) {
	if mode.Level == "" {
		mode.Level = datapath.VerifyMetadata
	}
	res := datapath.VerifyResult{Mode: mode}
	switch mode.Level {
	case datapath.VerifyNone:
		res.Summary = verifySummary(res)
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
		parallel = min(runtime.NumCPU(), defaultMaxBackupParallel)
	}
	log := r.log.WithField("snapshotID", snapshotID)
	kctx := velerokopia.SetupKopiaLog(ctx, log)
	started := time.Now()

	rep := r.rep
	if mode.Level != datapath.VerifyMetadata && r.opts.CacheLimitMB >= 0 {
		// File contents are read back: not through the cache (uncachedReader).
		reader, err := r.uncachedReader(kctx)
		if err != nil {
			return res, errors.Wrap(err, "opening a connection to read the snapshot back")
		}
		defer func() {
			if err := reader.Close(kctx); err != nil {
				log.WithError(err).Warn("closing the read-back connection")
			}
		}()
		rep = reader
	}
	man, err := snapshot.LoadSnapshot(kctx, rep, manifest.ID(snapshotID))
	if err != nil {
		return res, errors.Wrapf(err, "loading snapshot %s from repository at %s", snapshotID, r.loc)
	}
	v := &verifier{rep: rep, cr: contentReader{Reader: rep.ContentReader(), rep: rep}, mode: mode, seed: snapshotID}
	counts, err := v.run(kctx, man, want, parallel)
	if err != nil {
		return res, errors.Wrapf(err, "verifying snapshot %s", snapshotID)
	}
	res.Checked = counts
	res.FilesRead, res.BytesRead = v.filesRead.Load(), v.bytesRead.Load()
	res.Duration = time.Since(started)
	res.Summary = verifySummary(res)
	if len(v.problems) > 0 {
		return res, &VerificationError{SnapshotID: snapshotID, Mode: mode, Problems: v.problems, Stopped: v.stopped}
	}
	log.WithFields(logrus.Fields{
		"verify": mode.String(), "files": counts.Files, "dirs": counts.Dirs, "symlinks": counts.Symlinks,
		"bytes": counts.Bytes, "filesRead": res.FilesRead, "bytesRead": res.BytesRead,
		"duration": res.Duration.Round(time.Millisecond).String(),
	}).Info("verified snapshot")
	return res, nil
}

// deleteUnverified deletes the manifest of a snapshot that failed verification, also when
// ctx has ended: no later backup may take it as its parent.
func (r *Repository) deleteUnverified(ctx context.Context, snapshotID string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), verifyDeleteTimeout)
	defer cancel()
	kctx := velerokopia.SetupKopiaLog(ctx, r.log.WithField("snapshotID", snapshotID))
	err := repo.WriteSession(kctx, r.rep, repo.WriteSessionOptions{Purpose: "snapmove delete unverified snapshot"},
		func(ctx context.Context, w repo.RepositoryWriter) error {
			return w.DeleteManifest(ctx, manifest.ID(snapshotID))
		})
	return errors.Wrapf(err, "deleting snapshot %s from repository at %s", snapshotID, r.loc)
}

// uploadCounts are the counts the upload reported for the tree it wrote (its root
// directory summary).
func uploadCounts(man *snapshot.Manifest) *datapath.TreeCounts {
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
	cr   contentReader
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
	g, gctx := errgroup.WithContext(walkCtx)
	g.SetLimit(parallel)
	g.Go(func() error { return v.walk(gctx, g, root, ".", -1) })
	err := g.Wait()
	if ctx.Err() != nil {
		return datapath.TreeCounts{}, context.Cause(ctx)
	}
	if err != nil && !v.isStopped() {
		return datapath.TreeCounts{}, err
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
			md, err := v.rep.BlobReader().GetMetadata(gctx, id)
			switch {
			case gctx.Err() != nil:
				return gctx.Err()
			case errors.Is(err, blob.ErrBlobNotFound):
				v.problem(use.rel, "its content is in pack blob %s, which is missing", id)
			case err != nil:
				v.problem(use.rel, "reading the metadata of pack blob %s: %v", id, err)
			case md.Length < use.end:
				v.problem(use.rel, "pack blob %s holding its content is %d bytes long, the index says at least %d", id, md.Length, use.end)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil && ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return nil
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

// walk lists directory d (rel below the root) and checks its entries; subdirectories and
// files are handed to other walkers when one is free.
func (v *verifier) walk(ctx context.Context, g *errgroup.Group, d *snapshot.DirEntry, rel string, parent int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	node := dirNode{rel: rel, parent: parent, summary: d.DirSummary, own: datapath.TreeCounts{Dirs: 1}}
	entries, err := readDirectory(ctx, v.rep, d.ObjectID)
	if err != nil {
		v.addDir(node)
		return v.failed(ctx, rel, err, "listing the directory")
	}
	for _, e := range entries {
		if !isSafeName(e.Name) {
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
		if !isSafeName(e.Name) {
			continue
		}
		p := joinRel(rel, e.Name)
		var job func() error
		switch e.Type {
		case snapshot.EntryTypeDirectory:
			job = func() error { return v.walk(ctx, g, e, p, self) }
		case snapshot.EntryTypeSymlink:
			job = func() error { return v.checkSymlink(ctx, p, e) }
		case snapshot.EntryTypeFile:
			read := v.selected(p, e)
			job = func() error { return v.checkFile(ctx, g, p, e, read) }
		default:
			continue // the policy ignores unknown types; the restore skips them
		}
		if g.TryGo(job) {
			continue
		}
		if err := job(); err != nil {
			return err
		}
	}
	return nil
}

func (v *verifier) addDir(n dirNode) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.dirs = append(v.dirs, n)
	return len(v.dirs) - 1
}

// selected says whether file rel's content is read back, and keeps the sample's fallback.
func (v *verifier) selected(rel string, e *snapshot.DirEntry) bool {
	switch v.mode.Level {
	case datapath.VerifyFull:
		return true
	case datapath.VerifySample:
	default:
		return false
	}
	d := sha256.Sum256([]byte(v.seed + "\x00" + rel)) // FNV's low bits follow similar names
	sum := binary.BigEndian.Uint64(d[:8])
	in := sum%10000 < uint64(v.mode.Percent)*100 //nolint:gosec // 1..100
	if e.FileSize > 0 {
		v.mu.Lock()
		if in {
			v.sampledFiles++
		} else if c := v.fallback; c == nil || sum < c.hash || (sum == c.hash && rel < c.rel) {
			v.fallback = &sampleCandidate{hash: sum, rel: rel, e: e}
		}
		v.mu.Unlock()
	}
	return in
}

// checkFile checks that file rel's chunks are in the index, contiguous and as long as the
// file, and with read reads them back (parts of a large file on other walkers when g has
// one free; g nil reads inline).
func (v *verifier) checkFile(ctx context.Context, g *errgroup.Group, rel string, e *snapshot.DirEntry, read bool) error {
	chunks, err := v.chunks(ctx, e)
	if err != nil {
		return v.failed(ctx, rel, err, "reading the file's seek table")
	}
	for _, c := range chunks {
		if err := v.checkIndexed(ctx, rel, c); err != nil {
			return v.failed(ctx, rel, err, "looking up bytes %d-%d", c.Start, c.Start+c.Length)
		}
	}
	if !read {
		return nil
	}
	v.filesRead.Add(1)
	for len(chunks) > 0 {
		n, size := 0, int64(0)
		for n < len(chunks) && (n == 0 || size < verifyPartBytes) {
			size += chunks[n].Length
			n++
		}
		part := chunks[:n]
		chunks = chunks[n:]
		job := func() error { return v.readChunks(ctx, rel, part) }
		if len(chunks) > 0 && g != nil && g.TryGo(job) {
			continue
		}
		if err := job(); err != nil {
			return err
		}
	}
	return nil
}

// chunks is the seek table of file e: where each chunk of its content goes.
func (v *verifier) chunks(ctx context.Context, e *snapshot.DirEntry) ([]object.IndirectObjectEntry, error) {
	indexID, indirect := e.ObjectID.IndexObjectID()
	if !indirect {
		return []object.IndirectObjectEntry{{Start: 0, Length: e.FileSize, Object: e.ObjectID}}, nil
	}
	entries, err := object.LoadIndexObject(ctx, v.cr, indexID)
	if err != nil {
		return nil, err
	}
	var next int64
	for _, c := range entries {
		if c.Start != next {
			return nil, errors.Errorf("a chunk starts at %d, expected %d", c.Start, next)
		}
		next += c.Length
	}
	if next != e.FileSize {
		return nil, errors.Errorf("the chunks hold %d bytes, the directory says %d", next, e.FileSize)
	}
	return entries, nil
}

// checkIndexed checks that chunk c of file rel is in the index, not deleted, and (when
// not compressed at the object level) as long as the chunk, and notes its pack blob.
func (v *verifier) checkIndexed(ctx context.Context, rel string, c object.IndirectObjectEntry) error {
	cid, compressed, direct := c.Object.ContentID()
	if !direct {
		_, err := v.rep.VerifyObject(ctx, c.Object)
		return err
	}
	info, err := v.rep.ContentInfo(ctx, cid)
	if err != nil {
		return err
	}
	if info.Deleted {
		return errors.Errorf("content %v is marked deleted", cid)
	}
	if !compressed && int64(info.OriginalLength) != c.Length {
		return errors.Errorf("content %v holds %d bytes, the seek table says %d", cid, info.OriginalLength, c.Length)
	}
	end := int64(info.PackOffset) + int64(info.PackedLength)
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.packs == nil {
		v.packs = map[blob.ID]packUse{}
	}
	if use, ok := v.packs[info.PackBlobID]; !ok || end > use.end {
		if ok {
			rel = use.rel
		}
		v.packs[info.PackBlobID] = packUse{end: end, rel: rel}
	}
	return nil
}

// readChunks reads chunks of file rel back in full.
func (v *verifier) readChunks(ctx context.Context, rel string, chunks []object.IndirectObjectEntry) error {
	for _, c := range chunks {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := readAllOf(ctx, v.rep, c.Object)
		if err == nil && n != c.Length {
			err = errors.Errorf("read %d bytes, expected %d", n, c.Length)
		}
		if err != nil {
			return v.failed(ctx, rel, err, "reading bytes %d-%d", c.Start, c.Start+c.Length)
		}
		v.bytesRead.Add(n)
	}
	return nil
}

// readAllOf reads object oid to its end and returns its length.
func readAllOf(ctx context.Context, rep repo.Repository, oid object.ID) (int64, error) {
	rd, err := rep.OpenObject(ctx, oid)
	if err != nil {
		return 0, err
	}
	defer rd.Close() //nolint:errcheck
	return io.Copy(io.Discard, rd)
}

// checkSymlink checks that symlink rel's target is in the index.
func (v *verifier) checkSymlink(ctx context.Context, rel string, e *snapshot.DirEntry) error {
	if _, err := v.rep.VerifyObject(ctx, e.ObjectID); err != nil {
		return v.failed(ctx, rel, err, "looking up the symlink's target")
	}
	return nil
}

// failed records err while doing what as a problem of rel, unless ctx has ended (then
// the walk stops with ctx's error).
func (v *verifier) failed(ctx context.Context, rel string, err error, what string, args ...any) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	v.problem(rel, "%s: %v", fmt.Sprintf(what, args...), err)
	return nil
}

// problem records what is wrong with rel. The verification stops at maxVerifyProblems.
func (v *verifier) problem(rel, format string, args ...any) {
	msg := rel + ": " + fmt.Sprintf(format, args...)
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

func joinRel(dir, name string) string {
	if dir == "." {
		return name
	}
	return dir + "/" + name
}

// verifySummary is VerifyResult.Summary.
func verifySummary(r datapath.VerifyResult) string {
	if r.Mode.Level == datapath.VerifyNone {
		return "not verified (verify: none)"
	}
	c := r.Checked
	var b strings.Builder
	fmt.Fprintf(&b, "verified (%s): %s, %s", r.Mode.String(), nounCount(c.Files, "file"), nounCount(c.Dirs, "directory"))
	if c.Symlinks > 0 {
		fmt.Fprintf(&b, ", %s", nounCount(c.Symlinks, "symlink"))
	}
	fmt.Fprintf(&b, ", %s", formatBytes(c.Bytes))
	if r.Mode.Level != datapath.VerifyMetadata {
		fmt.Fprintf(&b, "; content of %s (%s) read back", nounCount(r.FilesRead, "file"), formatBytes(r.BytesRead))
	}
	fmt.Fprintf(&b, " in %s", formatDuration(r.Duration))
	return b.String()
}

// nounCount is "1 file", "2 files", "1 directory", "2 directories".
func nounCount(n int64, noun string) string {
	switch {
	case n == 1:
	case strings.HasSuffix(noun, "y"):
		noun = strings.TrimSuffix(noun, "y") + "ies"
	default:
		noun += "s"
	}
	return fmt.Sprintf("%d %s", n, noun)
}

// formatBytes writes n in decimal units with three significant digits ("1.15 GB").
func formatBytes(n int64) string {
	if n < 1000 {
		return fmt.Sprintf("%d B", n)
	}
	f := float64(n)
	unit := ""
	for _, u := range []string{"kB", "MB", "GB", "TB", "PB", "EB"} {
		f /= 1000
		unit = u
		if f < 999.5 {
			break
		}
	}
	switch {
	case f < 9.995:
		return fmt.Sprintf("%.2f %s", f, unit)
	case f < 99.95:
		return fmt.Sprintf("%.1f %s", f, unit)
	}
	return fmt.Sprintf("%.0f %s", f, unit)
}

func formatDuration(d time.Duration) string {
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(100 * time.Millisecond).String()
}
