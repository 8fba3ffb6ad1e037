package blockobj

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"

	"github.com/kopia/kopia/repo"
	"github.com/kopia/kopia/repo/compression"
	"github.com/kopia/kopia/repo/content"
	"github.com/kopia/kopia/repo/object"
	"github.com/pkg/errors"
	"golang.org/x/sync/errgroup"
)

const (
	// BlockSize is the size of every block but the last: each is one direct object of
	// one content.
	BlockSize = 1 << 20

	// Splitter is kopia's splitter that cuts a block's writer into exactly one content
	// (repo/splitter/splitter.go, "FIXED-1M").
	Splitter = "FIXED-1M"

	// indexPrefix is the content prefix of index objects, kopia's indirectContentPrefix
	// (repo/object/object_writer.go), which packs them into metadata (q) blobs.
	indexPrefix content.IDPrefix = "x"

	// indexStream is the stream name of kopia's indirect objects (writeIndirectObject).
	indexStream = "kopia:indirect"

	// DefaultParallel is how many blocks are read and written at once unless asked
	// otherwise.
	DefaultParallel = 4
)

// RangeKind says what Request.Ranges mean, and so what happens to the blocks they do not
// touch.
type RangeKind int

const (
	// ReadAll reads every block; Ranges must be empty.
	ReadAll RangeKind = iota
	// ChangedSinceParent: Ranges are the changes since the parent (a CSI
	// GetMetadataDelta from the parent's snapshot). A block they do not touch reuses the
	// parent's entry; an empty list means nothing changed. If the parent cannot be used,
	// every block is read.
	ChangedSinceParent
	// Allocated: Ranges are the allocated ranges (a CSI GetMetadataAllocated). A block
	// they do not touch is a hole, stored as zeros without reading.
	Allocated
)

// String names the kind for logs.
func (k RangeKind) String() string {
	switch k {
	case ReadAll:
		return "all"
	case ChangedSinceParent:
		return "changed"
	case Allocated:
		return "allocated"
	}
	return fmt.Sprintf("RangeKind(%d)", int(k))
}

// Range is a byte range of the device, as a CSI BlockMetadata reports it.
type Range struct {
	Offset, Length int64
}

// Request is what Write writes.
type Request struct {
	// Device is read with ReadAt at block offsets, from several goroutines at once.
	Device io.ReaderAt
	// Size is the device's size in bytes, the object's length.
	Size int64
	// Parent is the file object of the parent backup of the same device; set only with
	// Kind ChangedSinceParent.
	Parent object.ID
	// Kind says what Ranges mean.
	Kind RangeKind
	// Ranges may overlap, come in any order and reach past Size (that part is ignored).
	Ranges []Range
}

// Progress is what Write has done so far.
type Progress struct {
	// Done is the bytes of the device accounted for: read, reused or zero.
	Done int64
	// Read is the bytes read from the device.
	Read int64
}

// Options tune Write; the zero value is fine.
type Options struct {
	// Parallel is how many blocks are read and written at once; 0 is DefaultParallel.
	Parallel int
	// Compressor compresses the blocks; "" stores them uncompressed, Velero's default.
	Compressor compression.Name
	// OnProgress, if set, is called after each block read and once for the reused and
	// zero blocks, never concurrently, with totals so far. It must not block for long.
	OnProgress func(Progress)
}

// Result is what Write wrote.
type Result struct {
	// ObjectID is the file object, of length Size.
	ObjectID object.ID
	// BytesRead is what was read from the device.
	BytesRead int64
	// BlocksWritten were read and written; BlocksReused reuse the parent's entry;
	// BlocksZero are holes stored as zeros.
	BlocksWritten, BlocksReused, BlocksZero int
	// ParentUnusable says why the parent was not used (so every block was read), or is
	// empty when it was used or none was given.
	ParentUnusable string
}

// Write writes the device's content as a file object of aligned 1 MiB blocks (see the
// package comment) and returns its ID. It blocks until done; the objects are in w, for
// the caller to reference (a snapshot) and flush. On error (a read, a write, ctx) it
// returns no object: the blocks already written are referenced by nothing, and kopia's
// maintenance collects them.
func Write(ctx context.Context, w repo.RepositoryWriter, req Request, opts Options) (Result, error) {
	if err := req.validate(); err != nil {
		return Result{}, err
	}
	var res Result
	if req.Size == 0 { // kopia cannot read an index without entries
		ow := w.NewObjectWriter(ctx, object.WriterOptions{Description: "EMPTY BLOCK DEVICE"})
		defer ow.Close() //nolint:errcheck
		id, err := ow.Result()
		res.ObjectID = id
		return res, errors.Wrap(err, "writing an empty object")
	}

	var parent []object.IndirectObjectEntry
	if req.Kind == ChangedSinceParent {
		var err error
		parent, res.ParentUnusable, err = LoadParent(ctx, w, req.Parent)
		if err != nil {
			return Result{}, err
		}
	}
	plan := makePlan(req, parent)
	entries := make([]object.IndirectObjectEntry, len(plan))
	for i, a := range plan {
		entries[i] = object.IndirectObjectEntry{Start: int64(i) * BlockSize, Length: blockLength(req.Size, i)}
		if a == reuse {
			entries[i].Object = parent[i].Object
		}
	}

	wr := &writer{w: w, dev: req.Device, comp: opts.Compressor, onProgress: opts.OnProgress}
	if err := wr.zeros(ctx, plan, entries); err != nil {
		return Result{}, err
	}
	var reused int64
	for i, a := range plan {
		switch a {
		case reuse:
			res.BlocksReused++
			reused += entries[i].Length
		case zero:
			res.BlocksZero++
			reused += entries[i].Length
		case read:
			res.BlocksWritten++
		}
	}
	wr.progress(reused, 0)
	if err := wr.reads(ctx, plan, entries, opts.Parallel); err != nil {
		return Result{}, err
	}
	res.BytesRead = wr.done.Read

	id, err := writeIndex(ctx, w, entries)
	if err != nil {
		return Result{}, err
	}
	res.ObjectID = id
	return res, nil
}

func (r Request) validate() error {
	switch {
	case r.Size < 0:
		return errors.Errorf("device size %d is negative", r.Size)
	case r.Device == nil && r.Size > 0:
		return errors.New("no device to read")
	case r.Kind == ReadAll && len(r.Ranges) > 0:
		return errors.New("ranges given to read everything")
	case r.Kind == ChangedSinceParent && r.Parent == object.EmptyID:
		return errors.New("changed ranges without a parent")
	case r.Kind != ChangedSinceParent && r.Parent != object.EmptyID:
		return errors.Errorf("a parent with %s ranges: only changed ranges use it", r.Kind)
	case r.Kind < ReadAll || r.Kind > Allocated:
		return errors.Errorf("unknown range kind %d", int(r.Kind))
	}
	for _, rg := range r.Ranges {
		if rg.Offset < 0 || rg.Length < 0 {
			return errors.Errorf("range at %d of length %d is negative", rg.Offset, rg.Length)
		}
	}
	return nil
}

// LoadParent returns the entries of parent if they are aligned 1 MiB blocks that Write
// can reuse, or why not (unusable) and no entries. It fails only if ctx is done; a parent
// that cannot be read is unusable, so the backup reads everything instead.
func LoadParent(ctx context.Context, rep repo.Repository, parent object.ID) (entries []object.IndirectObjectEntry, unusable string, err error) {
	index, ok := parent.IndexObjectID()
	if !ok {
		return nil, fmt.Sprintf("parent object %s is not an indirect object of blocks", parent), nil
	}
	d, ok := rep.(repo.DirectRepository)
	if !ok {
		return nil, "the repository is not a direct one, so the parent's index cannot be read", nil
	}
	entries, err = object.LoadIndexObject(ctx, contentReader{d.ContentReader(), d}, index)
	if err != nil {
		if ctx.Err() != nil {
			return nil, "", errors.Wrapf(ctx.Err(), "reading the index of parent object %s", parent)
		}
		return nil, fmt.Sprintf("reading the index of parent object %s: %v", parent, err), nil
	}
	if why := unaligned(entries); why != "" {
		return nil, fmt.Sprintf("parent object %s: %s", parent, why), nil
	}
	return entries, "", nil
}

// contentReader is what object.LoadIndexObject reads with: a direct repository's
// content reader, which lacks the repository's PrefetchContents.
type contentReader struct {
	content.Reader
	rep repo.Repository
}

func (c contentReader) PrefetchContents(ctx context.Context, ids []content.ID, hint string) []content.ID {
	return c.rep.PrefetchContents(ctx, ids, hint)
}

// unaligned says why entries are not aligned 1 MiB blocks, or "".
func unaligned(entries []object.IndirectObjectEntry) string {
	if len(entries) == 0 {
		return "it has no entries"
	}
	for i, e := range entries {
		last := i == len(entries)-1
		switch {
		case e.Start != int64(i)*BlockSize:
			return fmt.Sprintf("entry %d starts at %d, not at %d", i, e.Start, int64(i)*BlockSize)
		case !last && e.Length != BlockSize:
			return fmt.Sprintf("entry %d is %d bytes long, not %d", i, e.Length, BlockSize)
		case last && (e.Length <= 0 || e.Length > BlockSize):
			return fmt.Sprintf("its last entry is %d bytes long", e.Length)
		}
	}
	return ""
}

// action is what happens to one block.
type action uint8

const (
	read action = iota
	reuse
	zero
)

func blocks(size int64) int { return int((size + BlockSize - 1) / BlockSize) }

func blockLength(size int64, i int) int64 { return min(BlockSize, size-int64(i)*BlockSize) }

// makePlan decides each block's action. parent is nil unless it is usable.
func makePlan(req Request, parent []object.IndirectObjectEntry) []action {
	n := blocks(req.Size)
	plan := make([]action, n) // read
	if req.Kind == ReadAll || (req.Kind == ChangedSinceParent && parent == nil) {
		return plan
	}
	touched := make([]bool, n)
	for _, rg := range req.Ranges {
		if rg.Length == 0 || rg.Offset >= req.Size {
			continue
		}
		end := req.Size
		if rg.Length < req.Size-rg.Offset { // no overflow for ranges reaching far past the end
			end = rg.Offset + rg.Length
		}
		for i := rg.Offset / BlockSize; i <= (end-1)/BlockSize; i++ {
			touched[i] = true
		}
	}
	for i := range plan {
		switch {
		case touched[i]:
		case req.Kind == Allocated:
			plan[i] = zero
		case i < len(parent) && parent[i].Length == blockLength(req.Size, i):
			plan[i] = reuse
		}
	}
	return plan
}

// writer writes the blocks of one Write.
type writer struct {
	w          repo.RepositoryWriter
	dev        io.ReaderAt
	comp       compression.Name
	onProgress func(Progress)

	mu   sync.Mutex
	done Progress
}

func (wr *writer) progress(done, read int64) {
	wr.mu.Lock()
	defer wr.mu.Unlock()
	wr.done.Done += done
	wr.done.Read += read
	if wr.onProgress != nil {
		wr.onProgress(wr.done)
	}
}

// zeros writes the zero objects the plan needs: one shared by every full hole, and one
// for a short hole at the end.
func (wr *writer) zeros(ctx context.Context, plan []action, entries []object.IndirectObjectEntry) error {
	var full object.ID
	for i, a := range plan {
		if a != zero {
			continue
		}
		n := entries[i].Length
		if n == BlockSize && full != object.EmptyID {
			entries[i].Object = full
			continue
		}
		id, err := wr.writeBlock(ctx, make([]byte, n))
		if err != nil {
			return errors.Wrapf(err, "writing a zero block of %d bytes", n)
		}
		entries[i].Object = id
		if n == BlockSize {
			full = id
		}
	}
	return nil
}

// reads reads and writes the blocks the plan reads, parallel at once, and fills their
// entries.
func (wr *writer) reads(ctx context.Context, plan []action, entries []object.IndirectObjectEntry, parallel int) error {
	if parallel <= 0 {
		parallel = DefaultParallel
	}
	g, ctx := errgroup.WithContext(ctx)
	next := make(chan int)
	g.Go(func() error {
		defer close(next)
		for i, a := range plan {
			if a != read {
				continue
			}
			select {
			case next <- i:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
	for range parallel {
		g.Go(func() error {
			buf := make([]byte, BlockSize)
			for i := range next {
				id, err := wr.readBlock(ctx, buf[:entries[i].Length], entries[i].Start)
				if err != nil {
					return err
				}
				entries[i].Object = id // each goroutine writes its own elements
				wr.progress(entries[i].Length, entries[i].Length)
			}
			return nil
		})
	}
	return g.Wait()
}

func (wr *writer) readBlock(ctx context.Context, buf []byte, off int64) (object.ID, error) {
	if err := ctx.Err(); err != nil {
		return object.EmptyID, err
	}
	n, err := wr.dev.ReadAt(buf, off)
	switch {
	case n == len(buf): // io.ReaderAt may say EOF with the last bytes
		err = nil
	case err == nil || errors.Is(err, io.EOF):
		err = io.ErrUnexpectedEOF // the device is shorter than its size
	}
	if err != nil {
		return object.EmptyID, errors.Wrapf(err, "reading %d bytes of the device at %d", len(buf), off)
	}
	id, err := wr.writeBlock(ctx, buf)
	return id, errors.Wrapf(err, "writing the block at %d", off)
}

// writeBlock writes b (at most BlockSize bytes) as one direct object of one content.
func (wr *writer) writeBlock(ctx context.Context, b []byte) (object.ID, error) {
	ow := wr.w.NewObjectWriter(ctx, object.WriterOptions{
		Description: "BLOCK",
		Compressor:  wr.comp,
		Splitter:    Splitter,
	})
	defer ow.Close() //nolint:errcheck
	if _, err := ow.Write(b); err != nil {
		return object.EmptyID, errors.Wrap(err, "writing the block's object")
	}
	id, err := ow.Result()
	if err != nil {
		return object.EmptyID, errors.Wrap(err, "writing the block's object")
	}
	if _, _, ok := id.ContentID(); !ok { // a FIXED-1M splitter cuts at most one content
		return object.EmptyID, errors.Errorf("the block's object %s is not one content", id)
	}
	return id, nil
}

// indirectObject is kopia's index of an indirect object (repo/object/object_reader.go).
type indirectObject struct {
	Stream  string                       `json:"stream"`
	Entries []object.IndirectObjectEntry `json:"entries"`
}

// writeIndex writes entries as the index of an indirect object and returns that object's
// ID, as kopia's objectWriter.checkpointLocked does.
func writeIndex(ctx context.Context, w repo.RepositoryWriter, entries []object.IndirectObjectEntry) (object.ID, error) {
	var b bytes.Buffer
	if err := json.NewEncoder(&b).Encode(indirectObject{Stream: indexStream, Entries: entries}); err != nil {
		return object.EmptyID, errors.Wrap(err, "encoding the block index")
	}
	ow := w.NewObjectWriter(ctx, object.WriterOptions{Description: "BLOCK DEVICE INDEX", Prefix: indexPrefix})
	defer ow.Close() //nolint:errcheck
	if _, err := ow.Write(b.Bytes()); err != nil {
		return object.EmptyID, errors.Wrap(err, "writing the block index")
	}
	index, err := ow.Result()
	if err != nil {
		return object.EmptyID, errors.Wrap(err, "writing the block index")
	}
	id, err := object.ParseID("I" + index.String()) // kopia's indirectObjectID is unexported
	return id, errors.Wrapf(err, "naming the object of index %s", index)
}
