package driver

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// sumBlockSize is the granularity of the per-block hashes recorded at CreateSnapshot
// and so of GetMetadataDelta's ranges. 64 KiB divides 1 MiB (the block of snapmove's
// and Velero's block uploads, so a changed range never splits one of their blocks
// unevenly), is a multiple of every file system's block size (the granularity of
// SEEK_DATA/SEEK_HOLE), is fine enough for tests to see exact ranges, and costs
// 512 KiB of hashes per GiB of volume.
const sumBlockSize = 64 << 10

// sumsVersion is the version of the .sums file format written by writeSums.
const sumsVersion = 1

// extent is a byte range [Offset, Offset+Length) of an image.
type extent struct {
	Offset, Length int64
}

func (e extent) end() int64 { return e.Offset + e.Length }

// dataExtents calls yield for each allocated (data) extent of f that ends after start,
// in order, clipped to [start, size): an extent that straddles start begins at start.
// It asks the file system with lseek SEEK_DATA/SEEK_HOLE and so reads no data. A file
// system without hole support reports the whole file as data, which is still correct.
func dataExtents(f *os.File, start, size int64, yield func(extent) error) error {
	fd := int(f.Fd())
	for off := start; off < size; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) { // no data at or after off
			return nil
		}
		if err != nil {
			return fmt.Errorf("seeking data of %s from %d: %w", f.Name(), off, err)
		}
		if data >= size {
			return nil
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return fmt.Errorf("seeking hole of %s from %d: %w", f.Name(), data, err)
		}
		hole = min(hole, size)
		if err := yield(extent{Offset: data, Length: hole - data}); err != nil {
			return err
		}
		off = hole
	}
	return nil
}

// sumsHeader is the first line (JSON) of a .sums file; the raw 32-byte SHA-256 hashes
// of the blocks follow it, one per sumBlockSize block of the image, the last block
// possibly short. It says everything GetMetadataDelta needs, so a .sums file can
// outlive its snapshot (see Config.KeepDeletedSums).
type sumsHeader struct {
	Version        int       `json:"version"`
	BlockSize      int64     `json:"blockSize"`
	SizeBytes      int64     `json:"sizeBytes"`
	SnapshotID     string    `json:"snapshotID"`
	SourceVolumeID string    `json:"sourceVolumeID"`
	CreatedAt      time.Time `json:"createdAt"`
}

// blockSums is a snapshot's block hashes.
type blockSums struct {
	sumsHeader
	Sums [][sha256.Size]byte
}

func numBlocks(size, blockSize int64) int64 { return (size + blockSize - 1) / blockSize }

// zeroSum returns the hash of n zero bytes (what a hole of n bytes reads as).
func zeroSum(n int64) [sha256.Size]byte {
	h := sha256.New()
	if _, err := io.CopyN(h, zeroReader{}, n); err != nil {
		panic(err) // zeroReader never fails
	}
	var s [sha256.Size]byte
	h.Sum(s[:0])
	return s
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// computeSums hashes the image at path block by block. Blocks that hold no data (by
// SEEK_DATA) are hashed as zeros without being read, so an all-zero data block and a
// hole are equal, as they read the same.
func computeSums(path string, hdr sumsHeader) (*blockSums, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening image %s: %w", path, err)
	}
	defer f.Close()
	var data []extent
	if err := dataExtents(f, 0, hdr.SizeBytes, func(e extent) error { data = append(data, e); return nil }); err != nil {
		return nil, err
	}
	bs := &blockSums{sumsHeader: hdr, Sums: make([][sha256.Size]byte, numBlocks(hdr.SizeBytes, hdr.BlockSize))}
	fullZero := zeroSum(hdr.BlockSize)
	buf := make([]byte, hdr.BlockSize)
	next := 0 // first data extent that may overlap the current block
	for i := range bs.Sums {
		off := int64(i) * hdr.BlockSize
		n := min(hdr.BlockSize, hdr.SizeBytes-off)
		for next < len(data) && data[next].end() <= off {
			next++
		}
		if next == len(data) || data[next].Offset >= off+n { // a hole
			if n == hdr.BlockSize {
				bs.Sums[i] = fullZero
			} else {
				bs.Sums[i] = zeroSum(n)
			}
			continue
		}
		got, err := f.ReadAt(buf[:n], off)
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("reading %s at %d: %w", path, off, err)
		}
		clear(buf[got:n]) // past the end of a short file reads as zeros
		bs.Sums[i] = sha256.Sum256(buf[:n])
	}
	return bs, nil
}

// write stores the hashes at path atomically.
func (bs *blockSums) write(path string) error {
	return createAtomically(path, func(tmp string) error {
		f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		w := bufio.NewWriter(f)
		hdr, err := json.Marshal(bs.sumsHeader)
		if err != nil {
			f.Close()
			return fmt.Errorf("encoding sums header: %w", err)
		}
		w.Write(append(hdr, '\n')) //nolint:errcheck // the error sticks to w and Flush returns it
		for _, s := range bs.Sums {
			w.Write(s[:]) //nolint:errcheck // as above
		}
		if err := w.Flush(); err != nil {
			f.Close()
			return fmt.Errorf("writing %s: %w", tmp, err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return fmt.Errorf("syncing %s: %w", tmp, err)
		}
		return f.Close()
	})
}

// readSumsHeader reads only the header of the .sums file at path.
func readSumsHeader(path string) (sumsHeader, *bufio.Reader, *os.File, error) {
	var hdr sumsHeader
	f, err := os.Open(path)
	if err != nil {
		return hdr, nil, nil, err
	}
	r := bufio.NewReader(f)
	line, err := r.ReadBytes('\n')
	if err != nil {
		f.Close()
		return hdr, nil, nil, fmt.Errorf("reading header of %s: %w", path, err)
	}
	if err := json.Unmarshal(bytes.TrimSpace(line), &hdr); err != nil {
		f.Close()
		return hdr, nil, nil, fmt.Errorf("parsing header of %s: %w", path, err)
	}
	if hdr.Version != sumsVersion || hdr.BlockSize <= 0 || hdr.SizeBytes < 0 {
		f.Close()
		return hdr, nil, nil, fmt.Errorf("%s: unsupported sums header %+v", path, hdr)
	}
	return hdr, r, f, nil
}

// readSums reads the .sums file at path; a missing file is an error satisfying
// errors.Is(err, fs.ErrNotExist).
func readSums(path string) (*blockSums, error) {
	hdr, r, f, err := readSumsHeader(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	bs := &blockSums{sumsHeader: hdr, Sums: make([][sha256.Size]byte, numBlocks(hdr.SizeBytes, hdr.BlockSize))}
	for i := range bs.Sums {
		if _, err := io.ReadFull(r, bs.Sums[i][:]); err != nil {
			return nil, fmt.Errorf("reading hash %d of %s: %w", i, path, err)
		}
	}
	if _, err := r.ReadByte(); err != io.EOF {
		return nil, fmt.Errorf("%s: trailing data after %d hashes", path, len(bs.Sums))
	}
	return bs, nil
}

// changedExtents calls yield for the ranges of target that differ from base, in order,
// merging adjacent changed blocks and clipping to [start, target.SizeBytes). Blocks
// past the end of base (a grown volume) count as changed, as does a block whose length
// differs between the two. Both must have the same block size.
func changedExtents(base, target *blockSums, start int64, yield func(extent) error) error {
	if base.BlockSize != target.BlockSize {
		return fmt.Errorf("block sizes differ: %d and %d", base.BlockSize, target.BlockSize)
	}
	bsz, size := target.BlockSize, target.SizeBytes
	blockLen := func(s *blockSums, i int64) int64 { return min(bsz, s.SizeBytes-i*bsz) }
	var cur *extent // the changed range being merged
	for i := max(start, 0) / bsz; i < int64(len(target.Sums)); i++ {
		changed := i >= int64(len(base.Sums)) || base.Sums[i] != target.Sums[i] ||
			blockLen(base, i) != blockLen(target, i)
		if !changed {
			if cur != nil {
				if err := yield(*cur); err != nil {
					return err
				}
				cur = nil
			}
			continue
		}
		from, to := max(i*bsz, start), min((i+1)*bsz, size)
		if cur == nil {
			cur = &extent{Offset: from}
		}
		cur.Length = to - cur.Offset
	}
	if cur != nil {
		return yield(*cur)
	}
	return nil
}

// sumsPath is where a block snapshot's hashes live; it may outlive the snapshot.
func (d *Driver) sumsPath(snapshotID string) string {
	return filepath.Join(d.cfg.StateDir, "snapshots", snapshotID+".sums")
}

// pruneSums removes the .sums files of deleted snapshots that can no longer serve as
// a delta base: all of them unless Config.KeepDeletedSums, otherwise those whose
// source volume is gone and has no snapshot left. Callers hold d.mu. Failures are
// logged, not returned: a leftover .sums file costs disk space, nothing else.
func (d *Driver) pruneSums() {
	dir := filepath.Join(d.cfg.StateDir, "snapshots")
	entries, err := os.ReadDir(dir)
	if err != nil {
		d.log.Warn("listing snapshot hashes to prune", "dir", dir, "error", err)
		return
	}
	liveVolumes := map[string]bool{}
	for id := range d.state.Volumes {
		liveVolumes[id] = true
	}
	for _, s := range d.state.Snapshots {
		liveVolumes[s.SourceVolumeID] = true
	}
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".sums")
		if !ok || strings.HasPrefix(id, ".") || d.state.Snapshots[id] != nil {
			continue
		}
		path := filepath.Join(dir, e.Name())
		if d.cfg.KeepDeletedSums {
			hdr, _, f, err := readSumsHeader(path)
			if err == nil {
				f.Close()
				if liveVolumes[hdr.SourceVolumeID] {
					continue
				}
			}
		}
		if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
			d.log.Warn("removing hashes of a deleted snapshot", "path", path, "error", err)
			continue
		}
		d.log.Info("hashes of a deleted snapshot removed", "snapshot", id)
	}
}
