//go:build unix

package restore

// How a restore touches the target: every entry is made, replaced and changed by name
// relative to an open directory of the target (a targetDir), never through a path, and
// never through a symlink. A walker holds the directory it lists; a file being written
// holds the directory it is in until its attributes are set; the final pass over
// directories opens each one again beneath the target (openBeneath). A symlink in the
// target, restored or found there, is an entry like any other: replaced when the
// snapshot has something else of its name, never followed.

import (
	"crypto/rand"
	"encoding/hex"
	stderrors "errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pkg/errors"
	"golang.org/x/sys/unix"

	"github.com/snapmove/snapmove/internal/mover/kopia/tree"
)

const (
	// dirFlags open a directory of the target; a symlink in its place fails (ELOOP).
	dirFlags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	// fileFlags create a regular file that did not exist: whatever was there is removed
	// first (a symlink is not followed, a FIFO or device is not opened).
	fileFlags = unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_NOFOLLOW | unix.O_CLOEXEC
)

// openat2Missing is set once openat2 turns out to be unavailable; openBeneath then
// walks. Tests set it to exercise the walk.
var openat2Missing atomic.Bool

// targetDir is an open directory of the restore target, shared by its walker and the
// files being written in it, and closed when the last of them releases it.
type targetDir struct {
	f    *os.File
	fd   int
	path string // for messages
	refs atomic.Int32
}

func newTargetDir(fd int, p string) *targetDir {
	d := &targetDir{f: os.NewFile(uintptr(fd), p), fd: fd, path: p} //nolint:gosec
	d.refs.Store(1)
	return d
}

// openTarget opens the restore target itself, following symlinks: the path is the
// caller's, not the snapshot's.
// createTarget makes directory target (and its parents) when missing and opens it.
func createTarget(target string) (*targetDir, error) {
	target, err := filepath.Abs(target)
	if err != nil {
		return nil, errors.Wrapf(err, "resolving %s", target)
	}
	if err := os.MkdirAll(target, 0o700); err != nil {
		return nil, errors.Wrapf(err, "creating %s", target)
	}
	return openTarget(target)
}

func openTarget(p string) (*targetDir, error) {
	var fd int
	err := ignoringEINTR(func() (err error) {
		fd, err = unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return nil, errors.Wrapf(err, "opening %s", p)
	}
	return newTargetDir(fd, p), nil
}

// hold takes a reference for a user that may outlive the current one.
func (d *targetDir) hold() *targetDir {
	d.refs.Add(1)
	return d
}

// release drops a reference; the last one closes the directory.
func (d *targetDir) release() {
	if d.refs.Add(-1) == 0 {
		_ = d.f.Close()
	}
}

func (d *targetDir) join(name string) string { return filepath.Join(d.path, name) }

// mkdir makes directory name (mode 0700; the final pass sets the snapshot's) and opens
// it. An existing directory is kept with its content; a file or symlink in the way is
// replaced.
func (d *targetDir) mkdir(name string) (*targetDir, error) {
	p := d.join(name)
	err := ignoringEINTR(func() error { return unix.Mkdirat(d.fd, name, 0o700) })
	existed := err == unix.EEXIST
	if err != nil && !existed {
		return nil, errors.Wrapf(err, "creating directory %s", p)
	}
	fd, err := openat(d.fd, name, dirFlags, 0)
	if existed && (err == unix.ELOOP || err == unix.ENOTDIR) {
		if err := removeAt(d.fd, name); err != nil {
			return nil, errors.Wrapf(err, "replacing %s with a directory", p)
		}
		if err := ignoringEINTR(func() error { return unix.Mkdirat(d.fd, name, 0o700) }); err != nil {
			return nil, errors.Wrapf(err, "creating directory %s", p)
		}
		fd, err = openat(d.fd, name, dirFlags, 0)
	}
	if err != nil {
		return nil, errors.Wrapf(err, "opening directory %s", p)
	}
	return newTargetDir(fd, p), nil
}

// parentDir opens directory name, a parent of what a file-level restore writes, and
// unlike mkdir changes nothing that exists: an existing directory is opened as it is; a
// missing one is made (mode 0700; the caller sets the snapshot's attributes last, and
// created says so) when create is set, and reported as a nil directory and no error
// otherwise. Anything else in its place, a symlink (even to a directory) or a file, is
// refused rather than replaced: it may be the user's, and a symlink is never followed.
func (d *targetDir) parentDir(name string, create bool) (dir *targetDir, created bool, err error) {
	p := d.join(name)
	fd, err := openat(d.fd, name, dirFlags, 0)
	if err == unix.ENOENT {
		if !create {
			return nil, false, nil
		}
		err = ignoringEINTR(func() error { return unix.Mkdirat(d.fd, name, 0o700) })
		if err != nil && err != unix.EEXIST {
			return nil, false, errors.Wrapf(err, "creating directory %s", p)
		}
		created = err == nil
		fd, err = openat(d.fd, name, dirFlags, 0)
	}
	switch {
	case err == unix.ELOOP || err == unix.ENOTDIR:
		return nil, false, errors.Errorf("refusing to restore beneath %s: it is not a directory (a symlink or a file is in the way)", p)
	case err != nil:
		return nil, false, errors.Wrapf(err, "opening directory %s", p)
	}
	return newTargetDir(fd, p), created, nil
}

// createFile creates regular file name for writing, replacing whatever is in the way.
func (d *targetDir) createFile(name string) (*os.File, error) {
	p := d.join(name)
	fd, err := openat(d.fd, name, fileFlags, 0o600)
	if err == unix.EEXIST {
		if err := removeAt(d.fd, name); err != nil {
			return nil, errors.Wrapf(err, "replacing %s", p)
		}
		fd, err = openat(d.fd, name, fileFlags, 0o600)
	}
	if err != nil {
		return nil, errors.Wrapf(err, "creating %s", p)
	}
	return os.NewFile(uintptr(fd), p), nil //nolint:gosec
}

// tempPrefix starts the names of the files a restore writes beside the ones they replace.
const tempPrefix = ".snapmove-restore-"

// createTemp creates a new regular file in d under a random name (tempPrefix and 16 hex
// digits: short, whatever the length of the name it will replace) and returns it and
// its name.
func (d *targetDir) createTemp() (*os.File, string, error) {
	var err error
	for range 10 {
		var b [8]byte
		_, _ = rand.Read(b[:])
		name := tempPrefix + hex.EncodeToString(b[:])
		var fd int
		fd, err = openat(d.fd, name, fileFlags, 0o600)
		if err == unix.EEXIST {
			continue
		}
		if err != nil {
			break
		}
		return os.NewFile(uintptr(fd), d.join(name)), name, nil //nolint:gosec
	}
	return nil, "", errors.Wrapf(err, "creating a temporary file in %s", d.path)
}

// renameOver renames tmp to name in d: atomically over a file or a symlink (which is
// replaced, not followed); a directory in the way is removed first, with its content.
func (d *targetDir) renameOver(tmp, name string) error {
	rename := func() error {
		return ignoringEINTR(func() error { return unix.Renameat(d.fd, tmp, d.fd, name) })
	}
	err := rename()
	if err == unix.EISDIR || err == unix.ENOTEMPTY || err == unix.EEXIST {
		if err := removeAt(d.fd, name); err != nil {
			return errors.Wrapf(err, "replacing %s", d.join(name))
		}
		err = rename()
	}
	return errors.Wrapf(err, "moving %s into place", d.join(name))
}

// removeTemp removes temporary file tmp of d, if it is there.
func (d *targetDir) removeTemp(tmp string) {
	_ = ignoringEINTR(func() error { return unix.Unlinkat(d.fd, tmp, 0) })
}

// symlink makes symlink name pointing to link, replacing whatever is in the way, and
// sets its owner and modification time.
func (d *targetDir) symlink(name, link string, a *attrs) error {
	p := d.join(name)
	err := ignoringEINTR(func() error { return unix.Symlinkat(link, d.fd, name) })
	if err == unix.EEXIST {
		if err := removeAt(d.fd, name); err != nil {
			return errors.Wrapf(err, "replacing %s with a symlink", p)
		}
		err = ignoringEINTR(func() error { return unix.Symlinkat(link, d.fd, name) })
	}
	if err != nil {
		return errors.Wrapf(err, "creating symlink %s", p)
	}
	err = ignoringEINTR(func() error {
		return unix.Fchownat(d.fd, name, int(a.uid), int(a.gid), unix.AT_SYMLINK_NOFOLLOW)
	})
	if err := ignorePermission(err); err != nil {
		return errors.Wrapf(err, "changing owner of %s", p)
	}
	return setModTimeAt(d.fd, name, a.mtime, p)
}

// setFileAttributes sets owner, mode and modification time of file name, open as f:
// owner first (chown clears setuid/setgid), then mode, on the open file; the time
// relative to d without following a symlink.
func (d *targetDir) setFileAttributes(f *os.File, name string, a *attrs) error {
	if err := setOwnerAndMode(f, a); err != nil {
		return err
	}
	return setModTimeAt(d.fd, name, a.mtime, f.Name())
}

// setDirAttributes sets owner, modification time and mode of directory rel of the
// target, opened beneath root without following symlinks. The time is set before the
// mode, which may take away the search permission it needs.
func setDirAttributes(root *targetDir, rel string, a *attrs) error {
	p := root.join(rel)
	fd, err := openBeneath(root.fd, rel)
	if err != nil {
		return errors.Wrapf(err, "opening directory %s beneath %s without following symlinks", rel, root.path)
	}
	f := os.NewFile(uintptr(fd), p) //nolint:gosec
	defer f.Close()                 //nolint:errcheck
	if err := ignorePermission(f.Chown(int(a.uid), int(a.gid))); err != nil {
		return errors.Wrapf(err, "changing owner of %s", p)
	}
	if err := setModTimeAt(fd, ".", a.mtime, p); err != nil {
		return err
	}
	return errors.Wrapf(ignorePermission(f.Chmod(a.mode)), "changing mode of %s", p)
}

// setOwnerAndMode sets the owner, then the mode (with setuid, setgid and sticky bits),
// of an open file or directory. Permission errors are ignored as Velero's restore
// ignores them (a non-root mover cannot chown).
func setOwnerAndMode(f *os.File, a *attrs) error {
	if err := ignorePermission(f.Chown(int(a.uid), int(a.gid))); err != nil {
		return errors.Wrapf(err, "changing owner of %s", f.Name())
	}
	return errors.Wrapf(ignorePermission(f.Chmod(a.mode)), "changing mode of %s", f.Name())
}

// setModTimeAt sets the access and modification times of name in dirfd to mtime,
// without following a symlink; p names it in errors.
func setModTimeAt(dirfd int, name string, mtime time.Time, p string) error {
	ts := unix.NsecToTimespec(mtime.UnixNano())
	err := ignoringEINTR(func() error {
		return unix.UtimesNanoAt(dirfd, name, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
	})
	return errors.Wrapf(ignorePermission(err), "changing modification time of %s", p)
}

// removeAt removes entry name of dirfd, a directory with its content, without following
// symlinks. A missing entry is not an error.
func removeAt(dirfd int, name string) error {
	err := ignoringEINTR(func() error { return unix.Unlinkat(dirfd, name, 0) })
	if err == nil || err == unix.ENOENT {
		return nil
	}
	if err != unix.EISDIR && err != unix.EPERM { // EPERM: macOS for a directory
		return err
	}
	fd, openErr := openat(dirfd, name, dirFlags, 0)
	if openErr != nil {
		return err // not a directory: the unlink error stands
	}
	sub := os.NewFile(uintptr(fd), name) //nolint:gosec
	names, err := sub.Readdirnames(-1)
	for _, n := range names {
		if err == nil {
			err = removeAt(fd, n)
		}
	}
	_ = sub.Close()
	if err != nil {
		return err
	}
	return ignoringEINTR(func() error { return unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR) })
}

// openBeneath opens directory rel (a relative path of safe names, "." for root itself)
// of root without following a symlink in any component and without leaving root:
// openat2 with RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS where the kernel has it (Linux 5.6),
// otherwise one openat(O_NOFOLLOW|O_DIRECTORY) per component.
func openBeneath(root int, rel string) (int, error) {
	if !openat2Missing.Load() {
		fd, err := openat2Beneath(root, rel, dirFlags)
		if !stderrors.Is(err, stderrors.ErrUnsupported) {
			return fd, err
		}
		openat2Missing.Store(true)
	}
	fd, err := openat(root, ".", dirFlags, 0)
	if err != nil || rel == "." {
		return fd, err
	}
	for _, name := range strings.Split(rel, "/") {
		if !tree.SafeName(name) {
			_ = unix.Close(fd)
			return -1, unix.EINVAL
		}
		next, err := openat(fd, name, dirFlags, 0)
		_ = unix.Close(fd)
		if err != nil {
			return -1, err
		}
		fd = next
	}
	return fd, nil
}

func openat(dirfd int, name string, flags int, mode uint32) (fd int, err error) {
	err = ignoringEINTR(func() error {
		fd, err = unix.Openat(dirfd, name, flags, mode)
		return err
	})
	return fd, err
}

// ignoringEINTR retries a system call interrupted by a signal, as package os does.
func ignoringEINTR(call func() error) error {
	for {
		if err := call(); err != unix.EINTR {
			return err
		}
	}
}
