package kopia

import (
	"context"
	"encoding/json"
	stderrors "errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kopia/kopia/fs"
	"github.com/kopia/kopia/repo"
	"github.com/kopia/kopia/repo/content"
	"github.com/kopia/kopia/repo/manifest"
	"github.com/kopia/kopia/repo/object"
	"github.com/kopia/kopia/snapshot"
	"github.com/pkg/errors"
	"github.com/sirupsen/logrus"
	velerokopia "github.com/vmware-tanzu/velero/pkg/kopia"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"
	"golang.org/x/sys/unix"
)

// directoryStreamType marks kopia directory objects (snapshotfs/dir_reader.go).
const directoryStreamType = "kopia:directory"

// Files at least splitThreshold long are restored as several ranges of about rangeBytes
// (cut at chunk boundaries) written concurrently. Chunk reads are admitted against
// readBudget (see readCost), so a restore's memory does not grow with Parallel.
// Variables so tests can lower them.
var (
	splitThreshold int64 = 64 << 20
	rangeBytes     int64 = 32 << 20
	readBudget     int64 = 64 << 20
)

// decryptBufferBytes is the pooled buffer kopia decrypts every content in (8 MiB, or
// 16 MiB for the rare larger content).
const decryptBufferBytes = 8 << 20

// readCost is the memory reading a chunk of n bytes holds until it is written: kopia's
// read path keeps the ciphertext and the plaintext in pooled buffers and decrypts in a
// pooled 8 MiB one, then GetContent returns a copy, about 3n + 8 MiB in all (kopia's pools
// keep what the most concurrent reads used). Unbounded, NumCPU writers of 4 MiB chunks
// took a 2 GiB restore to 306 MiB peak RSS at Parallel 8 and 377 MiB at 16. Capped at
// the budget so that any chunk can be read.
func readCost(n int64) int64 { return min(3*n+decryptBufferBytes, readBudget) }

// RestoreRequest says what to restore where.
type RestoreRequest struct {
	SnapshotID string
	// Path is the target directory (created if missing), or with Block the device
	// (a regular file is accepted too, for tests).
	Path  string
	Block bool
	// Parallel is the number of concurrent writers; 0 means NumCPU.
	Parallel int
	// WriteSparse turns all-zero filesystem blocks into holes. Without it, all-zero runs
	// of 64 KiB or more are allocated (fallocate) instead of written, so files keep their
	// allocation but zeros cost no I/O. Block devices are always written in full.
	WriteSparse bool
	// OnProgress, when set, is called every ProgressInterval (0: DefaultProgressInterval)
	// and once at the end with both fields equal to the restored size.
	OnProgress       func(Progress)
	ProgressInterval time.Duration
}

// RestoreResult describes a finished restore.
type RestoreResult struct{ TotalBytes int64 }

// Restore writes snapshot req.SnapshotID to req.Path: file data, modes (including
// setuid/setgid/sticky), owners, modification times, symlinks and empty directories.
// Existing entries in the way are replaced; other existing entries are left alone. The
// target filesystem (or device) is synced before Restore returns. Cancelling ctx stops it
// with a partial tree.
func (r *Repository) Restore(ctx context.Context, req RestoreRequest) (RestoreResult, error) {
	if req.SnapshotID == "" || req.Path == "" {
		return RestoreResult{}, errors.New("restoring a snapshot: snapshot ID and path are required")
	}
	log := r.log.WithField("snapshotID", req.SnapshotID)
	kctx := velerokopia.SetupKopiaLog(ctx, log)

	man, err := snapshot.LoadSnapshot(kctx, r.rep, manifest.ID(req.SnapshotID))
	if err != nil {
		return RestoreResult{}, errors.Wrapf(err, "loading snapshot %s from repository at %s", req.SnapshotID, r.loc)
	}
	root := man.RootEntry
	if root == nil {
		return RestoreResult{}, errors.Errorf("snapshot %s has no root entry", req.SnapshotID)
	}

	defer lowerGCTarget()()
	rs := newRestorer(r.rep, req, man.Stats.TotalFileSize, log)
	stopProgress := rs.startProgress(req.OnProgress, req.ProgressInterval)
	started := time.Now()
	if req.Block {
		err = rs.restoreBlock(kctx, root, req.Path)
	} else {
		err = rs.restoreTree(kctx, root, req.Path)
	}
	stopProgress()
	if err != nil {
		return RestoreResult{}, errors.Wrapf(err, "restoring snapshot %s to %s", req.SnapshotID, req.Path)
	}
	total := rs.done.Load()
	if req.OnProgress != nil {
		req.OnProgress(Progress{TotalBytes: total, BytesDone: total})
	}
	log.WithFields(logrus.Fields{"totalBytes": total, "duration": time.Since(started).Round(time.Millisecond).String()}).
		Info("Restored snapshot")
	return RestoreResult{TotalBytes: total}, nil
}

// writeMode says how all-zero data is written.
type writeMode int

const (
	writeAll      writeMode = iota // write every byte (block devices)
	writeSparse                    // leave all-zero blocks as holes
	writeAllocate                  // allocate all-zero runs without writing them
)

type restorer struct {
	rep      repo.DirectRepository
	cr       contentReader
	parallel int
	mode     writeMode
	total    int64
	done     atomic.Int64
	log      logrus.FieldLogger

	// reads admits chunk reads by readCost; inFlight and peakInFlight are what it
	// admitted (for tests).
	reads                  *semaphore.Weighted
	inFlight, peakInFlight atomic.Int64

	// zeroContents remembers contents known to be all zeros (holes dedup to one).
	zeroContents sync.Map
	noFallocate  atomic.Bool

	dirsMu sync.Mutex
	dirs   []restoredDir
}

// contentReader is what object.LoadIndexObject needs from a repository.
type contentReader struct {
	content.Reader
	rep repo.Repository
}

func (c contentReader) PrefetchContents(ctx context.Context, ids []content.ID, hint string) []content.ID {
	return c.rep.PrefetchContents(ctx, ids, hint)
}

func newRestorer(rep repo.DirectRepository, req RestoreRequest, total int64, log logrus.FieldLogger) *restorer {
	parallel := req.Parallel
	if parallel <= 0 {
		parallel = runtime.NumCPU()
	}
	mode := writeAllocate
	if req.WriteSparse {
		mode = writeSparse
	}
	return &restorer{
		rep:      rep,
		cr:       contentReader{Reader: rep.ContentReader(), rep: rep},
		parallel: parallel,
		mode:     mode,
		total:    total,
		log:      log,
		reads:    semaphore.NewWeighted(readBudget),
	}
}

func (rs *restorer) startProgress(report func(Progress), interval time.Duration) func() {
	if report == nil {
		return func() {}
	}
	if interval <= 0 {
		interval = DefaultProgressInterval
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				report(Progress{TotalBytes: rs.total, BytesDone: rs.done.Load()})
			}
		}
	}()
	return func() { close(stop); wg.Wait() }
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

// fileTarget is one file being written by one or more jobs.
type fileTarget struct {
	path  string
	attrs *attrs // nil for a block device
	size  int64
	mode  writeMode

	mu      sync.Mutex
	f       *os.File
	keep    bool // f was opened by the caller (block device): do not close
	pending atomic.Int32
}

// job is a contiguous run of chunks of one file.
type job struct {
	target *fileTarget
	chunks []object.IndirectObjectEntry
}

// run starts the writers, lets walk feed them, and waits for both.
func (rs *restorer) run(ctx context.Context, walk func(ctx context.Context, jobs chan<- job) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	jobs := make(chan job, 2*rs.parallel)
	var writers sync.WaitGroup
	for range rs.parallel {
		writers.Add(1)
		go func() {
			defer writers.Done()
			for j := range jobs {
				if ctx.Err() != nil {
					rs.abandon(j.target)
					continue
				}
				if err := rs.runJob(ctx, j); err != nil {
					rs.abandon(j.target)
					cancel(err)
				}
			}
		}()
	}

	walkErr := walk(ctx, jobs)
	close(jobs)
	writers.Wait()
	if walkErr != nil {
		cancel(walkErr)
	}
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return nil
}

// abandon drops a job; the last job of a file closes it.
func (rs *restorer) abandon(t *fileTarget) {
	if t.pending.Add(-1) == 0 {
		t.mu.Lock()
		if t.f != nil && !t.keep {
			_ = t.f.Close()
		}
		t.mu.Unlock()
	}
}

func (rs *restorer) runJob(ctx context.Context, j job) error {
	t := j.target
	f, err := t.open()
	if err != nil {
		return err
	}
	for _, c := range j.chunks {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := rs.restoreChunk(ctx, t, f, c); err != nil {
			return err
		}
		rs.done.Add(c.Length)
	}
	if n := len(j.chunks); n > 0 {
		first, last := j.chunks[0], j.chunks[n-1]
		startWriteback(f, first.Start, last.Start+last.Length-first.Start)
	}
	if t.pending.Add(-1) > 0 {
		return nil
	}
	// last job of the file
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.keep {
		return nil
	}
	err = applyFileAttributes(f, t.path, t.attrs)
	if closeErr := f.Close(); err == nil && closeErr != nil {
		err = errors.Wrapf(closeErr, "closing %s", t.path)
	}
	return err
}

// open opens (creating and sizing) the target file once for all its jobs.
func (t *fileTarget) open() (*os.File, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.f != nil {
		return t.f, nil
	}
	f, err := openForWrite(t.path)
	if err != nil {
		return nil, err
	}
	if err := f.Truncate(t.size); err != nil {
		_ = f.Close()
		return nil, errors.Wrapf(err, "sizing %s", t.path)
	}
	t.f = f
	return f, nil
}

// openForWrite creates or truncates a regular file without following a symlink in the
// way (which is replaced).
func openForWrite(p string) (*os.File, error) {
	const flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC | unix.O_NOFOLLOW | unix.O_CLOEXEC
	f, err := os.OpenFile(p, flags, 0o600)
	if err != nil && stderrors.Is(err, unix.ELOOP) {
		if rmErr := os.Remove(p); rmErr != nil {
			return nil, errors.Wrapf(rmErr, "replacing symlink %s", p)
		}
		f, err = os.OpenFile(p, flags, 0o600)
	}
	return f, errors.Wrapf(err, "creating %s", p)
}

// restoreChunk reads one chunk, within the read budget, and writes it to f.
func (rs *restorer) restoreChunk(ctx context.Context, t *fileTarget, f *os.File, c object.IndirectObjectEntry) error {
	if cid, _, direct := c.Object.ContentID(); direct {
		if _, ok := rs.zeroContents.Load(cid); ok {
			return errors.Wrapf(rs.writeZeros(f, c.Start, c.Length, t.mode), "writing %s at offset %d", t.path, c.Start)
		}
	}
	cost := readCost(c.Length)
	if err := rs.reads.Acquire(ctx, cost); err != nil {
		return err
	}
	defer rs.reads.Release(cost)
	for n := rs.inFlight.Add(cost); ; {
		peak := rs.peakInFlight.Load()
		if n <= peak || rs.peakInFlight.CompareAndSwap(peak, n) {
			break
		}
	}
	defer rs.inFlight.Add(-cost)

	data, zero, err := rs.readChunk(ctx, c)
	if err != nil {
		return errors.Wrapf(err, "reading %s at offset %d", t.path, c.Start)
	}
	if zero {
		err = rs.writeZeros(f, c.Start, c.Length, t.mode)
	} else {
		err = rs.writeData(f, c.Start, data, t.mode)
	}
	return errors.Wrapf(err, "writing %s at offset %d", t.path, c.Start)
}

// readChunk returns the bytes of one chunk, or zero=true when they are all zeros.
func (rs *restorer) readChunk(ctx context.Context, c object.IndirectObjectEntry) ([]byte, bool, error) {
	cid, compressed, direct := c.Object.ContentID()
	var (
		data []byte
		err  error
	)
	if direct && !compressed {
		data, err = rs.cr.GetContent(ctx, cid)
	} else {
		data, err = readObject(ctx, rs.rep, c.Object)
	}
	if err != nil {
		return nil, false, err
	}
	if int64(len(data)) != c.Length {
		return nil, false, errors.Errorf("chunk %v has %d bytes, the index says %d", c.Object, len(data), c.Length)
	}
	if allZero(data) {
		if direct {
			rs.zeroContents.Store(cid, struct{}{})
		}
		return nil, true, nil
	}
	return data, false, nil
}

func readObject(ctx context.Context, rep repo.Repository, oid object.ID) ([]byte, error) {
	rd, err := rep.OpenObject(ctx, oid)
	if err != nil {
		return nil, err
	}
	defer rd.Close() //nolint:errcheck
	data := make([]byte, rd.Length())
	_, err = io.ReadFull(rd, data)
	return data, err
}

// chunks returns the seek table of a file object: where each chunk goes.
func (rs *restorer) chunks(ctx context.Context, oid object.ID, size int64) ([]object.IndirectObjectEntry, error) {
	if size == 0 {
		return nil, nil
	}
	indexID, indirect := oid.IndexObjectID()
	if !indirect {
		return []object.IndirectObjectEntry{{Start: 0, Length: size, Object: oid}}, nil
	}
	entries, err := object.LoadIndexObject(ctx, rs.cr, indexID)
	if err != nil {
		return nil, errors.Wrapf(err, "loading index of object %v", oid)
	}
	var next int64
	for _, e := range entries {
		if e.Start != next {
			return nil, errors.Errorf("object %v: chunk at %d, expected %d", oid, e.Start, next)
		}
		next += e.Length
	}
	if next != size {
		return nil, errors.Errorf("object %v holds %d bytes, the directory says %d", oid, next, size)
	}
	return entries, nil
}

// enqueue splits a file into jobs and sends them.
func (rs *restorer) enqueue(ctx context.Context, jobs chan<- job, t *fileTarget, chunks []object.IndirectObjectEntry) error {
	var parts [][]object.IndirectObjectEntry
	if t.size < splitThreshold {
		parts = [][]object.IndirectObjectEntry{chunks}
	} else {
		start, acc := 0, int64(0)
		for i, c := range chunks {
			acc += c.Length
			if acc >= rangeBytes || i == len(chunks)-1 {
				parts = append(parts, chunks[start:i+1])
				start, acc = i+1, 0
			}
		}
	}
	t.pending.Store(int32(len(parts)))
	for i, p := range parts {
		select {
		case jobs <- job{target: t, chunks: p}:
		case <-ctx.Done():
			for range parts[i:] {
				rs.abandon(t)
			}
			return context.Cause(ctx)
		}
	}
	return nil
}

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
			w.rs.log.WithField("path", p).Warnf("Skipping snapshot entry of type %q", e.Type)
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

// restoreBlock writes the one file of a block volume snapshot to the device.
func (rs *restorer) restoreBlock(ctx context.Context, root *snapshot.DirEntry, device string) error {
	file, err := blockFile(ctx, rs.rep, root)
	if err != nil {
		return err
	}
	device, err = filepath.EvalSymlinks(device)
	if err != nil {
		return errors.Wrapf(err, "resolving %s", device)
	}
	st, err := os.Stat(device)
	if err != nil {
		return errors.Wrapf(err, "reading %s", device)
	}
	size := file.FileSize
	var f *os.File
	switch {
	case isBlockDevice(st):
		if f, err = os.OpenFile(device, os.O_WRONLY|unix.O_CLOEXEC, 0); err != nil {
			return errors.Wrapf(err, "opening %s", device)
		}
		devSize, err := f.Seek(0, io.SeekEnd)
		if err == nil && devSize < size {
			err = errors.Errorf("device %s has %d bytes, the snapshot %d", device, devSize, size)
		}
		if err != nil {
			_ = f.Close()
			return err
		}
	case st.Mode().IsRegular():
		if f, err = os.OpenFile(device, os.O_WRONLY|os.O_TRUNC|unix.O_CLOEXEC, 0); err != nil {
			return errors.Wrapf(err, "opening %s", device)
		}
		if err := f.Truncate(size); err != nil {
			_ = f.Close()
			return errors.Wrapf(err, "sizing %s", device)
		}
	default:
		return errors.Errorf("%s is not a block device", device)
	}
	defer f.Close() //nolint:errcheck

	chunks, err := rs.chunks(ctx, file.ObjectID, size)
	if err != nil {
		return err
	}
	t := &fileTarget{path: device, size: size, mode: writeAll, f: f, keep: true}
	err = rs.run(ctx, func(ctx context.Context, jobs chan<- job) error {
		return rs.enqueue(ctx, jobs, t, chunks)
	})
	if err != nil {
		return err
	}
	return errors.Wrapf(f.Sync(), "syncing %s", device)
}

// blockFile finds the device file in a block volume snapshot: the only entry of the root
// directory (Velero's layout), or the root itself when it is a file.
func blockFile(ctx context.Context, rep repo.Repository, root *snapshot.DirEntry) (*snapshot.DirEntry, error) {
	switch root.Type {
	case snapshot.EntryTypeFile:
		return root, nil
	case snapshot.EntryTypeDirectory:
	default:
		return nil, errors.Errorf("not a block volume snapshot: the root has type %q", root.Type)
	}
	entries, err := readDirectory(ctx, rep, root.ObjectID)
	if err != nil {
		return nil, errors.Wrap(err, "listing snapshot root")
	}
	if len(entries) != 1 || entries[0].Type != snapshot.EntryTypeFile {
		return nil, errors.Errorf("not a block volume snapshot: the root holds %d entries, not one file", len(entries))
	}
	return entries[0], nil
}

// syncFilesystem flushes the filesystem holding dir (Velero's flushVolume).
func syncFilesystem(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return errors.Wrapf(err, "opening %s", dir)
	}
	defer d.Close() //nolint:errcheck
	return errors.Wrapf(unix.Syncfs(int(d.Fd())), "syncing filesystem of %s", dir)
}
