package treecheck

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// Extent is a byte range of a file.
type Extent struct{ Off, Len int64 }

// SparseInfo describes how a file is laid out on disk.
type SparseInfo struct {
	Size int64
	// Allocated is st_blocks × 512: data, plus preallocated (fallocate) ranges, plus
	// filesystem metadata blocks.
	Allocated int64
	// Data lists the ranges that are not holes, from lseek SEEK_DATA/SEEK_HOLE. A
	// filesystem without hole reporting gives one extent covering the file.
	Data []Extent
}

// HoleBytes is the part of the file that lies in holes.
func (s SparseInfo) HoleBytes() int64 {
	n := s.Size
	for _, e := range s.Data {
		n -= e.Len
	}
	return n
}

// HasHoles reports whether any part of the file is a hole.
func (s SparseInfo) HasHoles() bool { return s.HoleBytes() > 0 }

// Linux lseek whence values for holes (unexported in package syscall).
const (
	seekData = 3
	seekHole = 4
)

// Sparse reports path's size, allocation and data extents.
func Sparse(path string) (SparseInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return SparseInfo{}, fmt.Errorf("opening %s: %w", path, err)
	}
	defer f.Close() //nolint:errcheck // read only
	fi, err := f.Stat()
	if err != nil {
		return SparseInfo{}, fmt.Errorf("reading %s: %w", path, err)
	}
	s := SparseInfo{Size: fi.Size()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.Allocated = st.Blocks * 512
	}
	fd := int(f.Fd())
	for off := int64(0); off < s.Size; {
		start, err := syscall.Seek(fd, off, seekData)
		if errors.Is(err, syscall.ENXIO) {
			break // only a hole remains
		}
		if err != nil {
			return SparseInfo{}, fmt.Errorf("finding data in %s: %w", path, err)
		}
		end, err := syscall.Seek(fd, start, seekHole)
		if err != nil {
			return SparseInfo{}, fmt.Errorf("finding holes in %s: %w", path, err)
		}
		s.Data = append(s.Data, Extent{Off: start, Len: end - start})
		off = end
	}
	return s, nil
}
