package blockobj

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/kopia/kopia/repo"
	"github.com/kopia/kopia/repo/content"
	"github.com/kopia/kopia/repo/content/index"
	"github.com/kopia/kopia/repo/object"
	"github.com/pkg/errors"
	"github.com/stretchr/testify/require"

	"github.com/snapmove/snapmove/internal/mover/kopia/kopiatest"
	"github.com/snapmove/snapmove/internal/mover/kopia/store"
)

const (
	mib = BlockSize
	// imageSize is odd on purpose: 20 full blocks and a 4 KiB tail.
	imageSize = 20*mib + 4096
)

// device is an in-memory block device that records which blocks were read.
type device struct {
	b []byte

	mu     sync.Mutex
	reads  []int // block indexes, sorted by check
	failAt int64 // offset whose read fails, or -1
}

func newDevice(b []byte) *device { return &device{b: b, failAt: -1} }

func (d *device) ReadAt(p []byte, off int64) (int, error) {
	d.mu.Lock()
	d.reads = append(d.reads, int(off/BlockSize))
	d.mu.Unlock()
	if off == d.failAt {
		return 0, errors.New("I/O error")
	}
	if off >= int64(len(d.b)) {
		return 0, io.EOF
	}
	n := copy(p, d.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (d *device) readBlocks() []int {
	d.mu.Lock()
	defer d.mu.Unlock()
	r := slices.Clone(d.reads)
	slices.Sort(r)
	return r
}

// fill writes random bytes over [off, off+n) of img.
func fill(rng *rand.Rand, img []byte, off, n int64) {
	for i := off; i < off+n; i++ {
		img[i] = byte(rng.UintN(256))
	}
}

// sparseImage is the test's device: data only in its allocated ranges, zeros elsewhere.
func sparseImage(rng *rand.Rand) ([]byte, []Range) {
	img := make([]byte, imageSize)
	allocated := []Range{
		{Offset: 20 * mib, Length: 4096},         // the tail
		{Offset: 0, Length: 4096},                // block 0
		{Offset: 3*mib + 100, Length: mib + 200}, // blocks 3 and 4
		{Offset: 10 * mib, Length: mib},          // block 10
		{Offset: 10*mib + 5, Length: 10},         // overlapping
	}
	for _, r := range allocated {
		fill(rng, img, r.Offset, r.Length)
	}
	return img, allocated
}

// openWriter opens a new filesystem repository and a write session on it.
func openWriter(t *testing.T) (context.Context, *store.Repository, repo.RepositoryWriter) {
	t.Helper()
	ctx := context.Background()
	r, err := store.Open(ctx, kopiatest.Location(t), kopiatest.Password, store.Options{Create: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Close(ctx) })
	ctx, w, err := r.Direct().NewWriter(ctx, repo.WriteSessionOptions{Purpose: "blockobj test"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = w.Close(ctx) })
	return ctx, r, w
}

// readObject reads the whole object back.
func readObject(ctx context.Context, t *testing.T, rep repo.Repository, id object.ID) []byte {
	t.Helper()
	rd, err := rep.OpenObject(ctx, id)
	require.NoError(t, err)
	defer rd.Close() //nolint:errcheck
	b, err := io.ReadAll(rd)
	require.NoError(t, err)
	require.Equal(t, int64(len(b)), rd.Length())
	return b
}

// requireSame fails if got differs from want, naming the first differing offset
// instead of printing megabytes.
func requireSame(t *testing.T, want, got []byte, msg string) {
	t.Helper()
	if bytes.Equal(want, got) {
		return
	}
	i := 0
	for i < min(len(want), len(got)) && want[i] == got[i] {
		i++
	}
	t.Fatalf("%s: %d bytes read, %d wanted, first difference at %d", msg, len(got), len(want), i)
}

// entries returns the object's index.
func entries(ctx context.Context, t *testing.T, rep repo.Repository, id object.ID) []object.IndirectObjectEntry {
	t.Helper()
	e, why, err := LoadParent(ctx, rep, id)
	require.NoError(t, err)
	require.Empty(t, why)
	return e
}

func blockRange(from, to int) []int {
	var r []int
	for i := from; i < to; i++ {
		r = append(r, i)
	}
	return r
}

// TestWrite backs up the sparse image once (the parent), changes it, and backs it up
// again as each case says; both objects must read back as their device.
func TestWrite(t *testing.T) {
	type parentKind int
	const (
		aligned      parentKind = iota // Write with allocated ranges
		defaultSplit                   // one stream with kopia's default splitter
		directObject                   // a 100 KiB stream: one direct object
		noParent
	)
	for _, tc := range []struct {
		name   string
		parent parentKind
		// change returns the second image from the first, and the ranges it changed.
		change func(rng *rand.Rand, img []byte) ([]byte, []Range)
		kind   RangeKind
		// wantRead are the blocks read in the second backup; wantReused the blocks that
		// reuse the parent's entry; wantZero counts the holes.
		wantRead, wantReused []int
		wantZero             int
		wantUnusable         string
	}{{
		name: "changed blocks only, reusing the rest",
		change: func(rng *rand.Rand, img []byte) ([]byte, []Range) {
			img = slices.Clone(img)
			fill(rng, img, 4*mib+10, 5)
			fill(rng, img, 7*mib, mib) // was a hole
			fill(rng, img, 20*mib+1, 10)
			// unsorted, one reaching past the end
			return img, []Range{{20*mib + 1, 10 * mib}, {7 * mib, mib}, {4*mib + 10, 5}, {5 * mib, 0}, {1 << 62, 1 << 62}}
		},
		kind:       ChangedSinceParent,
		wantRead:   []int{4, 7, 20},
		wantReused: append(append(blockRange(0, 4), 5, 6), blockRange(8, 20)...),
	}, {
		name: "nothing changed",
		change: func(_ *rand.Rand, img []byte) ([]byte, []Range) {
			return img, []Range{}
		},
		kind:       ChangedSinceParent,
		wantReused: blockRange(0, 21),
	}, {
		name: "grown: the parent's short tail and the new blocks are read",
		change: func(rng *rand.Rand, img []byte) ([]byte, []Range) {
			img = append(slices.Clone(img), make([]byte, 3*mib+1024)...)
			fill(rng, img, 22*mib, 10)
			fill(rng, img, 1*mib, 1)
			return img, []Range{{1 * mib, 1}}
		},
		kind:       ChangedSinceParent,
		wantRead:   []int{1, 20, 21, 22, 23},
		wantReused: append([]int{0}, blockRange(2, 20)...),
	}, {
		name: "shrunk to a short last block: it is read, entries past it dropped",
		change: func(_ *rand.Rand, img []byte) ([]byte, []Range) {
			return img[:15*mib+512], nil
		},
		kind:       ChangedSinceParent,
		wantRead:   []int{15},
		wantReused: blockRange(0, 15),
	}, {
		name: "shrunk to whole blocks: nothing read",
		change: func(_ *rand.Rand, img []byte) ([]byte, []Range) {
			return img[:10*mib], nil
		},
		kind:       ChangedSinceParent,
		wantReused: blockRange(0, 10),
	}, {
		name:   "parent cut by kopia's default splitter: not used, everything read",
		parent: defaultSplit,
		change: func(rng *rand.Rand, img []byte) ([]byte, []Range) {
			img = slices.Clone(img)
			fill(rng, img, 7*mib, 10)
			return img, []Range{{7 * mib, 10}}
		},
		kind:         ChangedSinceParent,
		wantRead:     blockRange(0, 21),
		wantUnusable: "is not an indirect object of blocks", // replaced below if kopia split it
	}, {
		name:   "parent a direct object: not used, everything read",
		parent: directObject,
		change: func(_ *rand.Rand, img []byte) ([]byte, []Range) {
			return img, nil
		},
		kind:         ChangedSinceParent,
		wantRead:     blockRange(0, 21),
		wantUnusable: "is not an indirect object of blocks",
	}, {
		name:   "allocated ranges without a parent: holes are zero",
		parent: noParent,
		change: func(rng *rand.Rand, img []byte) ([]byte, []Range) {
			img = slices.Clone(img)
			clear(img[3*mib : 5*mib]) // discarded
			clear(img[10*mib : 11*mib])
			fill(rng, img, 12*mib, 3*mib)
			return img, []Range{{12 * mib, 3 * mib}, {0, 4096}, {20 * mib, 4096}}
		},
		kind:     Allocated,
		wantRead: []int{0, 12, 13, 14, 20},
		wantZero: 16,
	}, {
		name:   "allocated hole at the short tail: its own zero object",
		parent: noParent,
		change: func(_ *rand.Rand, img []byte) ([]byte, []Range) {
			img = slices.Clone(img)
			clear(img[20*mib:])
			return img, []Range{{0, 20 * mib}}
		},
		kind:     Allocated,
		wantRead: blockRange(0, 20),
		wantZero: 1,
	}, {
		name:   "read all",
		parent: noParent,
		change: func(_ *rand.Rand, img []byte) ([]byte, []Range) {
			return img, nil
		},
		kind:     ReadAll,
		wantRead: blockRange(0, 21),
	}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, r, w := openWriter(t)
			rng := rand.New(rand.NewPCG(1, 2))
			img, allocated := sparseImage(rng)

			// The parent.
			var parent object.ID
			switch tc.parent {
			case aligned:
				dev := newDevice(img)
				res, err := Write(ctx, w, Request{Device: dev, Size: imageSize, Kind: Allocated, Ranges: allocated}, Options{Parallel: 3})
				require.NoError(t, err)
				require.Equal(t, []int{0, 3, 4, 10, 20}, dev.readBlocks(), "only allocated blocks are read")
				require.Equal(t, Result{ObjectID: res.ObjectID, BytesRead: 4*mib + 4096, BlocksWritten: 5, BlocksZero: 16}, res)
				requireSame(t, img, readObject(ctx, t, w, res.ObjectID), "the parent reads back as the device")
				zeros := map[object.ID]bool{}
				for i, e := range entries(ctx, t, w, res.ObjectID) {
					if !slices.Contains([]int{0, 3, 4, 10, 20}, i) {
						zeros[e.Object] = true
					}
				}
				require.Len(t, zeros, 1, "the holes share one zero object")
				parent = res.ObjectID
			case defaultSplit:
				parent = writeStream(ctx, t, w, img)
				if _, ok := parent.IndexObjectID(); ok {
					tc.wantUnusable = "parent object " + parent.String() + ": entry 0 is"
				}
			case directObject:
				parent = writeStream(ctx, t, w, img[:100<<10])
			}

			// The second backup.
			img2, ranges := tc.change(rng, img)
			dev := newDevice(img2)
			req := Request{Device: dev, Size: int64(len(img2)), Kind: tc.kind, Ranges: ranges}
			if tc.kind == ChangedSinceParent {
				req.Parent = parent
			}
			var last Progress
			backwards := 0
			res, err := Write(ctx, w, req, Options{Parallel: 3, OnProgress: func(p Progress) {
				if p.Done < last.Done || p.Read < last.Read {
					backwards++
				}
				last = p
			}})
			require.NoError(t, err)
			require.Zero(t, backwards, "progress never goes back")
			require.Equal(t, tc.wantRead, dev.readBlocks())
			require.Contains(t, res.ParentUnusable, tc.wantUnusable)
			if tc.wantUnusable == "" {
				require.Empty(t, res.ParentUnusable)
			}
			require.Equal(t, len(tc.wantRead), res.BlocksWritten)
			require.Equal(t, len(tc.wantReused), res.BlocksReused)
			require.Equal(t, tc.wantZero, res.BlocksZero)
			require.Equal(t, Progress{Done: req.Size, Read: res.BytesRead}, last)
			var wantBytes int64
			for _, i := range tc.wantRead {
				wantBytes += blockLength(req.Size, i)
			}
			require.Equal(t, wantBytes, res.BytesRead)

			requireSame(t, img2, readObject(ctx, t, w, res.ObjectID), "the object reads back as the device")
			got := entries(ctx, t, w, res.ObjectID)
			require.Len(t, got, blocks(req.Size))
			if len(tc.wantReused) > 0 {
				prev := entries(ctx, t, w, parent)
				for _, i := range tc.wantReused {
					require.Equal(t, prev[i].Object, got[i].Object, "block %d reuses the parent's object", i)
				}
			}
			if len(tc.wantReused) == blocks(imageSize) && req.Size == imageSize {
				require.Equal(t, parent, res.ObjectID, "an unchanged device gives the parent's object")
			}
			// kopia's verification (and its garbage collection) follows the entries.
			cids, err := w.VerifyObject(ctx, res.ObjectID)
			require.NoError(t, err)
			require.NotEmpty(t, cids)

			// The same after a flush, from a fresh reader.
			require.NoError(t, w.Flush(ctx))
			rd, err := r.UncachedReader(ctx)
			require.NoError(t, err)
			defer rd.Close(ctx) //nolint:errcheck
			requireSame(t, img2, readObject(ctx, t, rd, res.ObjectID), "after a flush")
		})
	}
}

// writeStream writes b as kopia writes a streaming file: one writer, the default splitter.
func writeStream(ctx context.Context, t *testing.T, w repo.RepositoryWriter, b []byte) object.ID {
	t.Helper()
	ow := w.NewObjectWriter(ctx, object.WriterOptions{Description: "FILE"})
	defer ow.Close() //nolint:errcheck
	_, err := ow.Write(b)
	require.NoError(t, err)
	id, err := ow.Result()
	require.NoError(t, err)
	return id
}

// TestWriteReadError fails one read in the middle: Write returns the error and no
// object, and writes no index; the blocks written are referenced by nothing.
func TestWriteReadError(t *testing.T) {
	for _, tc := range []struct {
		name     string
		parallel int
	}{{"one at a time", 1}, {"parallel", 4}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, _, w := openWriter(t)
			img, _ := sparseImage(rand.New(rand.NewPCG(3, 4)))
			indexes := func() int {
				n := 0
				err := w.(repo.DirectRepositoryWriter).ContentReader().IterateContents(ctx,
					content.IterateOptions{Range: index.PrefixRange(indexPrefix)},
					func(content.Info) error { n++; return nil })
				require.NoError(t, err)
				return n
			}
			before := indexes()
			dev := newDevice(img)
			dev.failAt = 10 * mib
			res, err := Write(ctx, w, Request{Device: dev, Size: imageSize}, Options{Parallel: tc.parallel})
			require.ErrorContains(t, err, "reading 1048576 bytes of the device at 10485760: I/O error")
			require.Equal(t, Result{}, res)
			require.Equal(t, before, indexes(), "no index was written")
		})
	}
}

// TestWriteShortDevice: a device shorter than the size it claims is an error.
func TestWriteShortDevice(t *testing.T) {
	ctx, _, w := openWriter(t)
	_, err := Write(ctx, w, Request{Device: newDevice(make([]byte, 2*mib)), Size: 3 * mib}, Options{})
	require.ErrorContains(t, err, "reading 1048576 bytes of the device at 2097152: unexpected EOF")
}

// TestWriteCanceled: a done context stops Write with its error.
func TestWriteCanceled(t *testing.T) {
	ctx, _, w := openWriter(t)
	ctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err := Write(ctx, w, Request{Device: newDevice(make([]byte, 3*mib)), Size: 3 * mib}, Options{})
	require.ErrorIs(t, err, context.Canceled)
}

// TestWriteEmpty: an empty device is an empty object.
func TestWriteEmpty(t *testing.T) {
	ctx, _, w := openWriter(t)
	res, err := Write(ctx, w, Request{}, Options{})
	require.NoError(t, err)
	require.Empty(t, readObject(ctx, t, w, res.ObjectID))
}

// TestWriteSmall: devices of one block or less are still indirect objects of blocks, so
// the next backup can reuse them.
func TestWriteSmall(t *testing.T) {
	for _, size := range []int{1, 4096, mib - 1, mib, mib + 1} {
		ctx, _, w := openWriter(t)
		img := make([]byte, size)
		fill(rand.New(rand.NewPCG(5, uint64(size))), img, 0, int64(size))
		res, err := Write(ctx, w, Request{Device: newDevice(img), Size: int64(size)}, Options{})
		require.NoError(t, err)
		requireSame(t, img, readObject(ctx, t, w, res.ObjectID), "the parent reads back as the device")
		dev := newDevice(img)
		res2, err := Write(ctx, w, Request{Device: dev, Size: int64(size), Kind: ChangedSinceParent, Parent: res.ObjectID}, Options{})
		require.NoError(t, err)
		require.Empty(t, dev.readBlocks(), "size %d", size)
		require.Equal(t, res.ObjectID, res2.ObjectID, "size %d", size)
	}
}

func TestRequestValidate(t *testing.T) {
	dev := newDevice(nil)
	parent, err := object.ParseID("Ixabcdef0123456789abcdef0123456789")
	require.NoError(t, err)
	for _, tc := range []struct {
		name string
		req  Request
		want string
	}{
		{"negative size", Request{Device: dev, Size: -1}, "device size -1 is negative"},
		{"no device", Request{Size: 1}, "no device to read"},
		{"ranges to read all", Request{Device: dev, Size: 1, Ranges: []Range{{0, 1}}}, "ranges given to read everything"},
		{"changes without parent", Request{Device: dev, Size: 1, Kind: ChangedSinceParent}, "changed ranges without a parent"},
		{"parent with allocated", Request{Device: dev, Size: 1, Kind: Allocated, Parent: parent}, "a parent with allocated ranges"},
		{"unknown kind", Request{Device: dev, Size: 1, Kind: 7}, "unknown range kind 7"},
		{"negative range", Request{Device: dev, Size: 1, Kind: Allocated, Ranges: []Range{{-1, 1}}}, "range at -1 of length 1 is negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.ErrorContains(t, tc.req.validate(), tc.want)
		})
	}
}

func TestUnaligned(t *testing.T) {
	e := func(start, length int64) object.IndirectObjectEntry {
		return object.IndirectObjectEntry{Start: start, Length: length}
	}
	for _, tc := range []struct {
		name    string
		entries []object.IndirectObjectEntry
		want    string
	}{
		{"aligned", []object.IndirectObjectEntry{e(0, mib), e(mib, mib), e(2*mib, 5)}, ""},
		{"one full", []object.IndirectObjectEntry{e(0, mib)}, ""},
		{"empty", nil, "it has no entries"},
		{"short middle", []object.IndirectObjectEntry{e(0, mib-1), e(mib-1, mib)}, "entry 0 is 1048575 bytes long, not 1048576"},
		{"misplaced", []object.IndirectObjectEntry{e(0, mib), e(mib+1, mib)}, "entry 1 starts at 1048577, not at 1048576"},
		{"long last", []object.IndirectObjectEntry{e(0, mib+1)}, "its last entry is 1048577 bytes long"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, unaligned(tc.entries))
		})
	}
}

func TestMakePlanZeroLengthRange(t *testing.T) {
	plan := makePlan(Request{Size: 2 * mib, Kind: Allocated, Ranges: []Range{{mib, 0}, {5 * mib, 1}}}, nil)
	require.Equal(t, []action{zero, zero}, plan)
}
