package restore

// The Linux system calls of the data path. sys_other.go has portable fallbacks, so the
// package builds (and its tests run, more slowly) on a developer's machine; the worker
// runs on Linux only.

import (
	stderrors "errors"
	"os"

	"github.com/pkg/errors"
	"golang.org/x/sys/unix"
)

// openat2Beneath opens rel below dirfd with flags, resolving it beneath dirfd without
// following symlinks (openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS): a symlink or ".."
// anywhere in rel fails. It returns errors.ErrUnsupported where openat2 is missing:
// kernels before 5.6 (ENOSYS) and seccomp profiles older than it (EPERM).
func openat2Beneath(dirfd int, rel string, flags int) (fd int, err error) {
	how := &unix.OpenHow{Flags: uint64(flags), Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS} //nolint:gosec
	err = ignoringEINTR(func() error {
		fd, err = unix.Openat2(dirfd, rel, how)
		return err
	})
	if err == unix.ENOSYS || err == unix.EPERM {
		return -1, stderrors.ErrUnsupported
	}
	return fd, err
}

// allocate allocates [off, off+n) of f without writing it (fallocate). It returns
// errors.ErrUnsupported when the filesystem cannot.
func allocate(f *os.File, off, n int64) error {
	err := unix.Fallocate(int(f.Fd()), 0, off, n)
	if stderrors.Is(err, unix.EOPNOTSUPP) || stderrors.Is(err, unix.ENOSYS) {
		return stderrors.ErrUnsupported
	}
	return err
}

// startWriteback asks the kernel to start writing f's bytes in [off, off+n) to the
// device now, without waiting for it (sync_file_range SYNC_FILE_RANGE_WRITE). Otherwise
// the page cache keeps a restore as dirty pages (up to vm.dirty_background_ratio of
// memory: all of a 1 GB volume on a 24 GiB node) and the disk idles while chunks are
// decrypted, then the final syncfs writes everything: measured, 1.15 GB in 2,500 files
// onto a new ext4 spent about a third of the restore in that syncfs. A hint only: a
// filesystem without it returns an error, which changes nothing, and the final sync
// still makes the restore durable.
//
// Ranges below minWriteback are left to the kernel's own writeback: on a volume of small
// files the hint was a system call per file for a few KiB each (2 million files of 1 KiB:
// 20% of the restore's CPU) and does not make the disk any busier.
func startWriteback(f *os.File, off, n int64) {
	if n > 0 {
		_ = unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
	}
}

// syncFilesystem flushes the filesystem holding dir (Velero's flushVolume).
func syncFilesystem(dir *os.File) error {
	return errors.Wrapf(unix.Syncfs(int(dir.Fd())), "syncing filesystem of %s", dir.Name())
}
