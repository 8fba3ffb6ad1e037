package datagen

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
)

// EnsurePG leaves dir alone when dir+".stamp" says it holds GenPG(dir, seed, scale) of
// this Version, and otherwise regenerates it and writes the stamp. It reports whether dir
// was reused. Callers must not change an ensured tree (mutate a copy).
func EnsurePG(dir string, seed int64, scale float64) (bool, error) {
	stamp := fmt.Sprintf("datagen v%d pg seed=%d scale=%g\n", Version, seed, scale)
	return ensure(dir, dir+".stamp", stamp, func() error { return GenPG(dir, seed, scale) })
}

// EnsureLarge is EnsurePG for GenLarge(path, seed, size). The stamp is named after the
// directory holding path (DIR/disk.img → DIR.stamp), so that directory holds only the
// file and can be backed up as the "large" tree.
func EnsureLarge(path string, seed, size int64) (bool, error) {
	stamp := fmt.Sprintf("datagen v%d large %s seed=%d size=%d\n", Version, filepath.Base(path), seed, size)
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, fmt.Errorf("creating %s: %w", dir, err)
	}
	return ensure(path, dir+".stamp", stamp, func() error { return GenLarge(path, seed, size) })
}

func ensure(path, stampPath, stamp string, gen func() error) (bool, error) {
	if b, err := os.ReadFile(stampPath); err == nil && bytes.Equal(b, []byte(stamp)) {
		if _, err := os.Lstat(path); err == nil {
			return true, nil
		}
	}
	if err := os.Remove(stampPath); err != nil && !os.IsNotExist(err) {
		return false, fmt.Errorf("removing %s: %w", stampPath, err)
	}
	if err := os.RemoveAll(path); err != nil {
		return false, fmt.Errorf("removing %s: %w", path, err)
	}
	if err := gen(); err != nil {
		return false, err
	}
	if err := os.WriteFile(stampPath, []byte(stamp), 0o644); err != nil {
		return false, fmt.Errorf("writing %s: %w", stampPath, err)
	}
	return false, nil
}
