//go:build !linux

package restore

// Portable fallbacks for sys_linux.go: the package builds and its tests run on a
// developer's machine, with the same results but less speed. The worker runs on Linux.
// Restores also need the *at system calls of beneath_unix.go: a unix (macOS, BSD).

import (
	stderrors "errors"
	iofs "io/fs"
	"os"
	"path/filepath"

	"github.com/pkg/errors"
)

// openat2Beneath returns errors.ErrUnsupported: openat2 is Linux's; openBeneath walks.
func openat2Beneath(int, string, int) (int, error) { return -1, stderrors.ErrUnsupported }

// allocate returns errors.ErrUnsupported: without fallocate, zeros are written.
func allocate(*os.File, int64, int64) error { return stderrors.ErrUnsupported }

// startWriteback does nothing: it is a hint, and the final sync makes a restore durable.
func startWriteback(*os.File, int64, int64) {}

// syncFilesystem flushes every file and directory below dir, which is what a restore
// wrote; without syncfs the filesystem cannot be flushed at once.
func syncFilesystem(dir *os.File) error {
	err := filepath.WalkDir(dir.Name(), func(p string, d iofs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() && !d.IsDir() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close() //nolint:errcheck
		return f.Sync()
	})
	return errors.Wrapf(err, "syncing %s", dir.Name())
}
