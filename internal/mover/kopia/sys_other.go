//go:build !linux

package kopia

// Portable fallbacks for sys_linux.go: the package builds and its tests run on a
// developer's machine, with the same results but less speed. The worker runs on Linux.

import (
	stderrors "errors"
	iofs "io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/pkg/errors"
)

// openForWrite creates or truncates a regular file without following a symlink in the
// way (which is replaced). Without O_NOFOLLOW the check and the open are two steps.
func openForWrite(p string) (*os.File, error) {
	if st, err := os.Lstat(p); err == nil && st.Mode()&os.ModeSymlink != 0 {
		if err := os.Remove(p); err != nil {
			return nil, errors.Wrapf(err, "replacing symlink %s", p)
		}
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	return f, errors.Wrapf(err, "creating %s", p)
}

// allocate returns errors.ErrUnsupported: without fallocate, zeros are written.
func allocate(*os.File, int64, int64) error { return stderrors.ErrUnsupported }

// startWriteback does nothing: it is a hint, and the final sync makes a restore durable.
func startWriteback(*os.File, int64, int64) {}

// syncFilesystem flushes every file and directory below dir, which is what a restore
// wrote; without syncfs the filesystem cannot be flushed at once.
func syncFilesystem(dir string) error {
	err := filepath.WalkDir(dir, func(p string, d iofs.DirEntry, err error) error {
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
	return errors.Wrapf(err, "syncing %s", dir)
}

// setModTime sets the access and modification times of p to mtime without following a
// symlink; a symlink keeps its own times (changing them needs lutimes).
func setModTime(p string, mtime time.Time) error {
	if st, err := os.Lstat(p); err == nil && st.Mode()&os.ModeSymlink != 0 {
		return nil
	}
	err := os.Chtimes(p, mtime, mtime)
	return errors.Wrapf(ignorePermission(err), "changing modification time of %s", p)
}

// isBlockDevice reports whether st is a block device (not a character device).
func isBlockDevice(st os.FileInfo) bool {
	m := st.Mode()
	return m&os.ModeDevice != 0 && m&os.ModeCharDevice == 0
}
