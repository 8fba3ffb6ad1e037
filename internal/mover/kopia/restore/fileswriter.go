package restore

import (
	"bytes"
	"context"
	stderrors "errors"
	"os"
	"sync"
	"sync/atomic"

	"github.com/kopia/kopia/repo/object"
	"github.com/pkg/errors"

	"github.com/snapmove/snapmove/internal/mover/kopia/tree"
)

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

// minWriteback is the smallest range of a file whose writeback a restore starts itself
// (startWriteback).
const minWriteback = 256 << 10

// readCost is the memory reading a chunk of n bytes holds until it is written: kopia's
// read path keeps the ciphertext and the plaintext in pooled buffers and decrypts in a
// pooled 8 MiB one, then GetContent returns a copy, about 3n + 8 MiB in all (kopia's pools
// keep what the most concurrent reads used). Unbounded, NumCPU writers of 4 MiB chunks
// took a 2 GiB restore to 306 MiB peak RSS at Parallel 8 and 377 MiB at 16. Capped at
// the budget so that any chunk can be read.
func readCost(n int64) int64 { return min(3*n+decryptBufferBytes, readBudget) }

// fileTarget is one file being written by one or more jobs.
type fileTarget struct {
	dir   *targetDir // holding name; held until the file is done (nil for a block device)
	name  string
	path  string // for messages
	attrs *attrs // nil for a block device
	size  int64
	mode  writeMode
	// replace writes the file beside name, under a temporary name (tmp, once open),
	// and renames it into place when it is complete and synced: whatever name was
	// stays as it is until then, also when the restore fails.
	replace bool

	mu      sync.Mutex
	tmp     string
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

// abandon drops a job; the last job of a file closes it and removes its temporary file.
func (rs *restorer) abandon(t *fileTarget) {
	if t.pending.Add(-1) == 0 {
		t.mu.Lock()
		if t.f != nil && !t.keep {
			_ = t.f.Close()
			if t.tmp != "" {
				t.dir.removeTemp(t.tmp)
			}
		}
		t.mu.Unlock()
		t.releaseDir()
	}
}

// releaseDir releases the directory of a file that is done.
func (t *fileTarget) releaseDir() {
	if t.dir != nil {
		t.dir.release()
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
		if size := last.Start + last.Length - first.Start; size >= minWriteback {
			startWriteback(f, first.Start, size)
		}
	}
	if t.pending.Add(-1) > 0 {
		return nil
	}
	// last job of the file
	defer t.releaseDir()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.keep {
		return nil
	}
	if t.tmp == "" {
		err = t.dir.setFileAttributes(f, t.name, t.attrs)
		if closeErr := f.Close(); err == nil && closeErr != nil {
			err = errors.Wrapf(closeErr, "closing %s", t.path)
		}
		return err
	}
	// written beside name: attributes, sync, then rename into place
	err = t.dir.setFileAttributes(f, t.tmp, t.attrs)
	if err == nil {
		err = errors.Wrapf(f.Sync(), "syncing %s", t.path)
	}
	if closeErr := f.Close(); err == nil && closeErr != nil {
		err = errors.Wrapf(closeErr, "closing %s", t.path)
	}
	if err == nil {
		err = t.dir.renameOver(t.tmp, t.name)
	}
	if err != nil {
		t.dir.removeTemp(t.tmp)
	}
	return err
}

// open opens (creating and sizing) the target file once for all its jobs: with replace,
// a new temporary file beside it.
func (t *fileTarget) open() (*os.File, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.f != nil {
		return t.f, nil
	}
	var (
		f   *os.File
		tmp string
		err error
	)
	if t.replace {
		f, tmp, err = t.dir.createTemp()
	} else {
		f, err = t.dir.createFile(t.name)
	}
	if err != nil {
		return nil, err
	}
	if err := f.Truncate(t.size); err != nil {
		_ = f.Close()
		if tmp != "" {
			t.dir.removeTemp(tmp)
		}
		return nil, errors.Wrapf(err, "sizing %s", t.path)
	}
	t.tmp = tmp
	t.f = f
	return f, nil
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
		data, err = tree.ReadObject(ctx, rs.rep, c.Object)
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

// chunks returns the seek table of a file object: where each chunk goes.
func (rs *restorer) chunks(ctx context.Context, oid object.ID, size int64) ([]object.IndirectObjectEntry, error) {
	if size == 0 {
		return nil, nil
	}
	return tree.Chunks(ctx, rs.cr, oid, size)
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

const (
	// sparseBlock is the granularity of hole detection: the common filesystem block.
	sparseBlock = 4096
	// minAllocateRun: shorter all-zero runs are written like data in writeAllocate mode.
	minAllocateRun = 64 << 10
)

// zeros is a read-only source of zero bytes.
var zeros = make([]byte, 1<<20)

func allZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeros))
		if !bytes.Equal(b[:n], zeros[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

// writeData writes one chunk at off. In writeSparse and writeAllocate modes it looks for
// all-zero blocks (aligned to the file, not the chunk) and hands runs of them to
// writeZeros; the file was truncated to its size, so skipped blocks read as zeros.
func (rs *restorer) writeData(f *os.File, off int64, data []byte, mode writeMode) error {
	if mode == writeAll {
		return pwriteAll(f, data, off)
	}
	i := 0
	for i < len(data) {
		end := min(i+sparseBlock-int((off+int64(i))%sparseBlock), len(data))
		zero := allZero(data[i:end])
		j := end
		for j < len(data) {
			e := min(j+sparseBlock, len(data))
			if allZero(data[j:e]) != zero {
				break
			}
			j = e
		}
		var err error
		switch {
		case !zero:
			err = pwriteAll(f, data[i:j], off+int64(i))
		case mode == writeAllocate && j-i < minAllocateRun:
			err = pwriteAll(f, data[i:j], off+int64(i))
		default:
			err = rs.writeZeros(f, off+int64(i), int64(j-i), mode)
		}
		if err != nil {
			return err
		}
		i = j
	}
	return nil
}

// writeZeros makes [off, off+n) read as zeros: nothing to do for a hole, fallocate to
// allocate, or plain writes (block devices, or filesystems without fallocate).
func (rs *restorer) writeZeros(f *os.File, off, n int64, mode writeMode) error {
	switch mode {
	case writeSparse:
		return nil
	case writeAllocate:
		if !rs.noFallocate.Load() {
			err := allocate(f, off, n)
			if err == nil {
				return nil
			}
			if !stderrors.Is(err, stderrors.ErrUnsupported) {
				return errors.Wrap(err, "allocating")
			}
			rs.noFallocate.Store(true)
		}
	}
	for n > 0 {
		k := min(n, int64(len(zeros)))
		if err := pwriteAll(f, zeros[:k], off); err != nil {
			return err
		}
		off += k
		n -= k
	}
	return nil
}

func pwriteAll(f *os.File, b []byte, off int64) error {
	_, err := f.WriteAt(b, off)
	return err
}
