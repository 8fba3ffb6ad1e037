package datagen

import (
	"fmt"
	"os"
)

const (
	block = 1 << 20 // GenLarge's and MutateLarge's unit

	// LargeSize is perf-anchors' "large" data set: one 2 GiB file.
	LargeSize = 2 << 30
)

// GenLarge (re)creates path as a size-byte file of 1 MiB random blocks. With p=1/16 a
// run of 1–8 MiB is skipped instead: it is never written, so it is a real hole (the file
// is sized with truncate first). A quarter of the data blocks also carry a written
// 64–256 KiB zero run. At size LargeSize and seed 7 this is perf-anchors' data set:
// 2,147,483,648 bytes, ≈453 MB in holes, ≈1.6 GB allocated.
func GenLarge(path string, seed, size int64) error {
	if size < 0 {
		return fmt.Errorf("generating %s: negative size %d", path, size)
	}
	r := newRand(seed)
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("creating %s: %w", path, err)
	}
	if err := f.Truncate(size); err != nil {
		_ = f.Close()
		return fmt.Errorf("sizing %s: %w", path, err)
	}
	buf := make([]byte, block)
	var off int64
	for off < size {
		if r.IntN(16) == 0 {
			off += min(int64(1+r.IntN(8))*block, size-off)
			continue
		}
		fillRandom(r, buf)
		if r.IntN(4) == 0 {
			s := r.IntN(len(buf) / 2)
			l := (64 + r.IntN(192)) << 10
			clear(buf[s:min(s+l, len(buf))])
		}
		n := min(int64(len(buf)), size-off)
		if _, err := f.WriteAt(buf[:n], off); err != nil {
			_ = f.Close()
			return fmt.Errorf("writing %s: %w", path, err)
		}
		off += n
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", path, err)
	}
	return nil
}

// MutateLarge overwrites pct% of the file's whole 1 MiB blocks, chosen at random (with
// repetition), with new random data: scattered writes like a database on a block device.
// At 2 GiB and pct 5 that is 102 blocks, 107 MB.
func MutateLarge(path string, seed int64, pct int) (Mutation, error) {
	var m Mutation
	r := newRand(seed)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return m, fmt.Errorf("opening %s: %w", path, err)
	}
	defer f.Close() //nolint:errcheck // the explicit Close below reports errors
	st, err := f.Stat()
	if err != nil {
		return m, fmt.Errorf("reading %s: %w", path, err)
	}
	blocks := st.Size() / block
	n := blocks * int64(pct) / 100
	buf := make([]byte, block)
	for i := int64(0); i < n; i++ {
		fillRandom(r, buf)
		if _, err := f.WriteAt(buf, r.Int64N(blocks)*block); err != nil {
			return m, fmt.Errorf("writing %s: %w", path, err)
		}
		m.Bytes += block
	}
	if err := f.Close(); err != nil {
		return m, fmt.Errorf("closing %s: %w", path, err)
	}
	m.Files, m.FileBytes = 1, st.Size()
	return m, nil
}
