package datagen

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
)

const (
	// manyPerDir is how many files GenMany puts in one directory.
	manyPerDir = 1000
	// manyMaxSize bounds GenMany's file sizes: uniform in [0, manyMaxSize), 1 KiB on
	// average, so 2 million files hold about 2 GB.
	manyMaxSize = 2048
)

// GenMany writes n small files of random bytes below dir, manyPerDir to a directory
// (d00000/f0000 ...), sizes uniform in [0, 2 KiB): the "2 million small files" volume
// of Velero's sizing guide, on which its node agent needs more than 1 GiB. Each directory
// draws from its own generator, so the tree does not depend on the order of writing
// (two writers run at once).
func GenMany(dir string, seed int64, n int) error {
	if n < 0 {
		return fmt.Errorf("GenMany: %d files", n)
	}
	dirs := (n + manyPerDir - 1) / manyPerDir
	work := make(chan int)
	errs := make(chan error, 2)
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, manyMaxSize)
			for d := range work {
				if err := genManyDir(dir, seed, d, min(manyPerDir, n-d*manyPerDir), buf); err != nil {
					errs <- err
					for range work { // drain
					}
					return
				}
			}
		}()
	}
	for d := range dirs {
		work <- d
	}
	close(work)
	wg.Wait()
	close(errs)
	return errors.Join(<-errs, <-errs)
}

func genManyDir(root string, seed int64, d, files int, buf []byte) error {
	dir := filepath.Join(root, fmt.Sprintf("d%05d", d))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	r := newRand(seed + int64(d)*0x5851f42d)
	for i := range files {
		b := buf[:r.IntN(manyMaxSize)]
		for j := 0; j+8 <= len(b); j += 8 {
			v := r.Uint64()
			for k := range 8 {
				b[j+k] = byte(v >> (8 * k))
			}
		}
		for j := len(b) &^ 7; j < len(b); j++ {
			b[j] = byte(r.Uint32())
		}
		p := filepath.Join(dir, fmt.Sprintf("f%04d", i))
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", p, err)
		}
	}
	return nil
}

// EnsureMany is EnsurePG for GenMany(dir, seed, n).
func EnsureMany(dir string, seed int64, n int) (bool, error) {
	stamp := fmt.Sprintf("datagen v%d many seed=%d files=%d\n", Version, seed, n)
	return ensure(dir, dir+".stamp", stamp, func() error { return GenMany(dir, seed, n) })
}

// SegmentSize is the size of GenSegments' files: a postgres WAL segment.
const SegmentSize = 16 << 20

// GenSegments writes size bytes (rounded down to whole segments, at least one) of random,
// incompressible bytes below dir in files of SegmentSize: a volume of WAL segments or
// media, where a resumed upload skips whole files.
func GenSegments(dir string, seed, size int64) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	var key [32]byte
	for i := range 8 {
		key[i] = byte(seed >> (8 * i))
	}
	rng := rand.NewChaCha8(key)
	buf := make([]byte, SegmentSize)
	for i := range max(1, size/SegmentSize) {
		_, _ = rng.Read(buf)
		p := filepath.Join(dir, fmt.Sprintf("%08d", i))
		if err := os.WriteFile(p, buf, 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", p, err)
		}
	}
	return nil
}

// EnsureSegments is EnsurePG for GenSegments(dir, seed, size).
func EnsureSegments(dir string, seed, size int64) (bool, error) {
	stamp := fmt.Sprintf("datagen v%d segments seed=%d size=%d\n", Version, seed, size)
	return ensure(dir, dir+".stamp", stamp, func() error { return GenSegments(dir, seed, size) })
}
