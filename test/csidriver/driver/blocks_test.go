package driver

import (
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const kib = 1 << 10

// writeSparse creates a sparse file of size bytes holding fill bytes in the given
// ranges and holes everywhere else.
func writeSparse(t *testing.T, path string, size int64, data ...extent) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	require.NoError(t, err)
	defer f.Close()
	require.NoError(t, f.Truncate(size))
	for _, e := range data {
		_, err := f.WriteAt(bytes.Repeat([]byte{0xa5}, int(e.Length)), e.Offset)
		require.NoError(t, err)
	}
}

// requireHoles skips when the file system under dir does not report holes.
func requireHoles(t *testing.T, dir string) {
	t.Helper()
	p := filepath.Join(dir, "holes-probe")
	writeSparse(t, p, 1<<20, extent{Offset: 512 * kib, Length: 4 * kib})
	f, err := os.Open(p)
	require.NoError(t, err)
	defer f.Close()
	var got []extent
	require.NoError(t, dataExtents(f, 0, 1<<20, func(e extent) error { got = append(got, e); return nil }))
	if len(got) != 1 || got[0] != (extent{Offset: 512 * kib, Length: 4 * kib}) {
		t.Skipf("the file system of %s does not report holes exactly (got %v)", dir, got)
	}
}

func collect(t *testing.T, walk func(yield func(extent) error) error) []extent {
	t.Helper()
	var got []extent
	require.NoError(t, walk(func(e extent) error { got = append(got, e); return nil }))
	return got
}

func TestDataExtents(t *testing.T) {
	dir := t.TempDir()
	requireHoles(t, dir)
	size := int64(1<<20 + 10*kib) // a short last 4 KiB block
	data := []extent{{0, 4 * kib}, {128 * kib, 128 * kib}, {1 << 20, 10 * kib}}
	path := filepath.Join(dir, "img")
	writeSparse(t, path, size, data...)
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()

	tests := []struct {
		name        string
		start, size int64
		want        []extent
	}{
		{name: "all", start: 0, size: size, want: data},
		{name: "start straddles an extent", start: 200 * kib, size: size,
			want: []extent{{200 * kib, 56 * kib}, {1 << 20, 10 * kib}}},
		{name: "start in a hole", start: 4 * kib, size: size, want: data[1:]},
		{name: "start at the end of an extent", start: 256 * kib, size: size, want: data[2:]},
		{name: "start at the end", start: size, size: size, want: nil},
		{name: "size clips", start: 0, size: 192 * kib, want: []extent{{0, 4 * kib}, {128 * kib, 64 * kib}}},
		{name: "size past the end of the file", start: 300 * kib, size: 4 << 20, want: data[2:]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := collect(t, func(y func(extent) error) error { return dataExtents(f, tt.start, tt.size, y) })
			require.Equal(t, tt.want, got)
		})
	}
}

func TestComputeSums(t *testing.T) {
	dir := t.TempDir()
	requireHoles(t, dir)
	size := int64(3*sumBlockSize + 100)
	hdr := sumsHeader{Version: sumsVersion, BlockSize: sumBlockSize, SizeBytes: size, SnapshotID: "s", SourceVolumeID: "v",
		CreatedAt: time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)}

	holes := filepath.Join(dir, "holes")
	writeSparse(t, holes, size)
	zeros := filepath.Join(dir, "zeros") // the same content, written out
	require.NoError(t, os.WriteFile(zeros, make([]byte, size), 0o600))
	data := filepath.Join(dir, "data")
	writeSparse(t, data, size, extent{Offset: sumBlockSize + 5, Length: 1}, extent{Offset: 3 * sumBlockSize, Length: 1})

	h, err := computeSums(holes, hdr)
	require.NoError(t, err)
	z, err := computeSums(zeros, hdr)
	require.NoError(t, err)
	require.Equal(t, h.Sums, z.Sums, "a hole hashes like zeros")
	require.Len(t, h.Sums, 4)
	require.Equal(t, zeroSum(100), h.Sums[3], "the short last block hashes its own length")
	require.Equal(t, sha256.Sum256(make([]byte, sumBlockSize)), h.Sums[0])

	ds, err := computeSums(data, hdr)
	require.NoError(t, err)
	require.Equal(t, []bool{true, false, true, false}, []bool{
		ds.Sums[0] == h.Sums[0], ds.Sums[1] == h.Sums[1], ds.Sums[2] == h.Sums[2], ds.Sums[3] == h.Sums[3]})

	// write and read back
	p := filepath.Join(dir, "data.sums")
	require.NoError(t, ds.write(p))
	back, err := readSums(p)
	require.NoError(t, err)
	require.Equal(t, ds, back)

	// a truncated file is refused
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(p, b[:len(b)-1], 0o600))
	_, err = readSums(p)
	require.ErrorContains(t, err, "reading hash 3")
}

func TestChangedExtents(t *testing.T) {
	const b = 4 // a small block size keeps the table readable
	sums := func(size int64, blocks string) *blockSums {
		bs := &blockSums{sumsHeader: sumsHeader{BlockSize: b, SizeBytes: size}}
		for _, c := range blocks {
			bs.Sums = append(bs.Sums, [sha256.Size]byte{byte(c)})
		}
		require.Len(t, bs.Sums, int(numBlocks(size, b)), "test table: blocks for size %d", size)
		return bs
	}
	tests := []struct {
		name         string
		base, target *blockSums
		start        int64
		want         []extent
	}{
		{name: "same", base: sums(16, "abcd"), target: sums(16, "abcd"), want: nil},
		{name: "one block", base: sums(16, "abcd"), target: sums(16, "abXd"), want: []extent{{8, 4}}},
		{name: "adjacent blocks merge", base: sums(16, "abcd"), target: sums(16, "aXYd"), want: []extent{{4, 8}}},
		{name: "separate ranges", base: sums(20, "abcde"), target: sums(20, "XbcYZ"), want: []extent{{0, 4}, {12, 8}}},
		{name: "all", base: sums(8, "ab"), target: sums(8, "XY"), want: []extent{{0, 8}}},
		{name: "start inside a changed range", base: sums(16, "abcd"), target: sums(16, "aXYd"), start: 6, want: []extent{{6, 6}}},
		{name: "start at a block boundary", base: sums(16, "abcd"), target: sums(16, "aXYd"), start: 8, want: []extent{{8, 4}}},
		{name: "start past the changes", base: sums(16, "abcd"), target: sums(16, "aXYd"), start: 12, want: nil},
		{name: "start at the end", base: sums(16, "abcd"), target: sums(16, "XXXX"), start: 16, want: nil},
		{name: "grown: the tail is changed", base: sums(8, "ab"), target: sums(16, "abcd"), want: []extent{{8, 8}}},
		{name: "grown within the last block", base: sums(6, "ab"), target: sums(7, "ab"), want: []extent{{4, 3}}},
		{name: "grown, unaligned", base: sums(6, "ab"), target: sums(14, "abcd"), want: []extent{{4, 10}}},
		{name: "shrunk: only the target's size counts", base: sums(16, "abcd"), target: sums(8, "aX"), want: []extent{{4, 4}}},
		{name: "short last block changed", base: sums(10, "abc"), target: sums(10, "abX"), want: []extent{{8, 2}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := collect(t, func(y func(extent) error) error { return changedExtents(tt.base, tt.target, tt.start, y) })
			require.Equal(t, tt.want, got)
		})
	}

	t.Run("different block sizes", func(t *testing.T) {
		other := &blockSums{sumsHeader: sumsHeader{BlockSize: 8, SizeBytes: 16}, Sums: make([][sha256.Size]byte, 2)}
		require.ErrorContains(t, changedExtents(sums(16, "abcd"), other, 0, func(extent) error { return nil }), "block sizes differ")
	})
}
