//go:build unix

package filestream

import (
	"archive/tar"
	"bytes"
	stderrors "errors"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/pkg/errors"
	"golang.org/x/sys/unix"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
)

const (
	// dirFlags open a directory of the target; a symlink in its place fails (ELOOP).
	dirFlags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	// tempFlags create the file written beside its place; nothing existing is opened.
	tempFlags = unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_NOFOLLOW | unix.O_CLOEXEC
	// tempPrefix starts the names of what is written beside its place before the rename.
	tempPrefix = ".snapmove-receive-"
	// holeBlock is the size of the all-zero blocks written as holes.
	holeBlock = 64 << 10
)

// receiver writes one stream into the target directory fd.
type receiver struct {
	root int
	res  Result
	dirs []*tar.Header // their attributes are set once everything is written
}

// Receive reads a stream written by Send from r and writes its entries into the existing
// directory target. Every entry is reached by name from an open directory of the target,
// never through a path or a symlink: a symlink or file where the stream has a directory
// is replaced by the directory; one in a directory's place along a path fails the entry.
// A file or symlink is written beside its place and renamed into it, so a failure leaves
// what was there. Directories get their modes and times once all is written. It returns
// what it wrote, and an error when the stream is refused, cut short, or cannot be written.
func Receive(r io.Reader, target string) (Result, error) {
	root, err := unix.Open(target, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return Result{}, errors.Wrapf(err, "opening %s", target)
	}
	defer unix.Close(root)
	rc := &receiver{root: root}
	tr := tar.NewReader(r)
	entries := 0
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return rc.res, errors.New("the stream ended before its end marker: the sender stopped")
		}
		if err != nil {
			return rc.res, errors.Wrap(err, "reading the stream")
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			if n, ok := hdr.PAXRecords[endRecord]; ok {
				if n != strconv.Itoa(entries) {
					return rc.res, errors.Errorf("the stream ended after %d entries, its sender counted %s", entries, n)
				}
				return rc.res, rc.finishDirs()
			}
			continue
		}
		entries++
		parts, err := splitName(hdr.Name)
		if err != nil {
			return rc.res, err
		}
		if err := rc.entry(hdr, parts, tr); err != nil {
			return rc.res, errors.Wrapf(err, "writing %s", hdr.Name)
		}
	}
}

// splitName is the components of an entry's name, refused when it could leave the target.
func splitName(name string) ([]string, error) {
	trimmed := strings.TrimSuffix(name, "/")
	if trimmed == "" || strings.HasPrefix(trimmed, "/") {
		return nil, errors.Errorf("entry %q: not a relative name", name)
	}
	parts := strings.Split(trimmed, "/")
	for _, p := range parts {
		if p == "" || p == "." || p == ".." {
			return nil, errors.Errorf("entry %q: a name may not have empty, . or .. components", name)
		}
	}
	return parts, nil
}

func (rc *receiver) entry(hdr *tar.Header, parts []string, body io.Reader) error {
	parent, err := rc.openDir(parts[:len(parts)-1])
	if err != nil {
		return err
	}
	defer unix.Close(parent)
	name := parts[len(parts)-1]
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := ensureDir(parent, name); err != nil {
			return err
		}
		rc.dirs = append(rc.dirs, hdr)
		rc.res.Dirs++
	case tar.TypeReg:
		n, err := writeFile(parent, name, hdr, body)
		if err != nil {
			return err
		}
		rc.res.Files++
		rc.res.Bytes += n
	case tar.TypeSymlink:
		if err := writeSymlink(parent, name, hdr); err != nil {
			return err
		}
		rc.res.Symlinks++
	default:
		return errors.Errorf("entry type %q is not received", hdr.Typeflag)
	}
	return nil
}

// openDir opens the directory of the target at parts, without following a symlink.
func (rc *receiver) openDir(parts []string) (int, error) {
	fd, err := unix.Dup(rc.root)
	if err != nil {
		return -1, errors.Wrap(err, "duplicating the target's descriptor")
	}
	for i, p := range parts {
		next, err := openat(fd, p, dirFlags, 0)
		unix.Close(fd)
		if err != nil {
			if stderrors.Is(err, unix.ELOOP) || stderrors.Is(err, unix.ENOTDIR) {
				return -1, errors.Errorf("%s is not a directory (a symlink is not followed)", strings.Join(parts[:i+1], "/"))
			}
			return -1, errors.Wrapf(err, "opening %s", strings.Join(parts[:i+1], "/"))
		}
		fd = next
	}
	return fd, nil
}

// ensureDir makes directory name in parent, replacing a file or symlink of that name.
func ensureDir(parent int, name string) error {
	var st unix.Stat_t
	err := unix.Fstatat(parent, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	switch {
	case err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR:
		return nil
	case err == nil:
		if err := unix.Unlinkat(parent, name, 0); err != nil {
			return errors.Wrap(err, "removing what is in the directory's place")
		}
	case !stderrors.Is(err, unix.ENOENT):
		return errors.Wrap(err, "looking at what is there")
	}
	return errors.Wrap(unix.Mkdirat(parent, name, 0o700), "making the directory")
}

// writeFile writes a file beside name in parent, all-zero blocks as holes, and renames it
// into place once its content and attributes are set. It returns the bytes it read.
func writeFile(parent int, name string, hdr *tar.Header, body io.Reader) (n int64, err error) {
	tmp := tempName()
	fd, err := openat(parent, tmp, tempFlags, 0o600)
	if err != nil {
		return 0, errors.Wrap(err, "creating the file beside its place")
	}
	f := os.NewFile(uintptr(fd), tmp) //nolint:gosec
	defer func() {
		if f != nil {
			_ = f.Close()
		}
		if err != nil {
			_ = unix.Unlinkat(parent, tmp, 0)
		}
	}()
	if n, err = copySparse(f, body); err != nil {
		return n, err
	}
	if n != hdr.Size {
		return n, errors.Errorf("the stream held %d of its %d bytes", n, hdr.Size)
	}
	if err := setOwner(func(uid, gid int) error { return f.Chown(uid, gid) }, hdr); err != nil {
		return n, err
	}
	if err := f.Chmod(os.FileMode(hdr.Mode & 0o777)); err != nil {
		return n, errors.Wrap(err, "setting its mode")
	}
	if hdr.Mode&0o7000 != 0 { // after the owner, which clears set-id bits
		if err := unix.Fchmod(fd, uint32(hdr.Mode&0o7777)); err != nil {
			return n, errors.Wrap(err, "setting its mode")
		}
	}
	if err := f.Sync(); err != nil {
		return n, errors.Wrap(err, "syncing it")
	}
	err = f.Close()
	f = nil
	if err != nil {
		return n, errors.Wrap(err, "closing it")
	}
	if err := setTimes(parent, tmp, hdr); err != nil {
		return n, err
	}
	return n, errors.Wrap(unix.Renameat(parent, tmp, parent, name), "renaming it into place")
}

// copySparse copies body into f, skipping all-zero blocks, and sizes f to what it read.
func copySparse(f *os.File, body io.Reader) (int64, error) {
	buf := make([]byte, holeBlock)
	zero := make([]byte, holeBlock)
	var off int64
	for {
		m, err := io.ReadFull(body, buf)
		if m > 0 {
			if m == holeBlock && bytes.Equal(buf, zero) {
				off += int64(m)
			} else {
				if _, werr := f.WriteAt(buf[:m], off); werr != nil {
					return off, errors.Wrap(werr, "writing it")
				}
				off += int64(m)
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return off, errors.Wrap(err, "reading the stream")
		}
	}
	return off, errors.Wrap(f.Truncate(off), "sizing it")
}

// writeSymlink makes a symlink beside name in parent and renames it into place.
func writeSymlink(parent int, name string, hdr *tar.Header) error {
	tmp := tempName()
	if err := unix.Symlinkat(hdr.Linkname, parent, tmp); err != nil {
		return errors.Wrap(err, "making the symlink beside its place")
	}
	err := setOwner(func(uid, gid int) error { return unix.Fchownat(parent, tmp, uid, gid, unix.AT_SYMLINK_NOFOLLOW) }, hdr)
	if err == nil {
		err = setTimes(parent, tmp, hdr)
	}
	if err == nil {
		err = errors.Wrap(unix.Renameat(parent, tmp, parent, name), "renaming it into place")
	}
	if err != nil {
		_ = unix.Unlinkat(parent, tmp, 0)
	}
	return err
}

// finishDirs sets the owners, modes and times of the directories received, children
// first (writing into a directory changes its time).
func (rc *receiver) finishDirs() error {
	for i := len(rc.dirs) - 1; i >= 0; i-- {
		hdr := rc.dirs[i]
		parts, _ := splitName(hdr.Name)
		fd, err := rc.openDir(parts)
		if err != nil {
			return errors.Wrapf(err, "setting the attributes of %s", hdr.Name)
		}
		err = setOwner(func(uid, gid int) error { return unix.Fchown(fd, uid, gid) }, hdr)
		if err == nil {
			err = errors.Wrap(unix.Fchmod(fd, uint32(hdr.Mode&0o7777)), "setting its mode")
		}
		if err == nil {
			err = setTimes(fd, ".", hdr)
		}
		unix.Close(fd)
		if err != nil {
			return errors.Wrapf(err, "setting the attributes of %s", hdr.Name)
		}
	}
	return nil
}

// setOwner gives an entry the stream's owner; a process that may not (not root) keeps
// its own, as a local restore does.
func setOwner(chown func(uid, gid int) error, hdr *tar.Header) error {
	err := chown(hdr.Uid, hdr.Gid)
	if stderrors.Is(err, unix.EPERM) && os.Geteuid() != 0 {
		return nil
	}
	return errors.Wrap(err, "setting its owner")
}

// setTimes sets the access and modification times of name in dir to the stream's
// modification time, without following a symlink.
func setTimes(dir int, name string, hdr *tar.Header) error {
	ts := unix.NsecToTimespec(hdr.ModTime.UnixNano())
	return errors.Wrap(unix.UtimesNanoAt(dir, name, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW), "setting its times")
}

func tempName() string { return tempPrefix + utilrand.String(10) }

// openat retries on EINTR.
func openat(dir int, name string, flags int, mode uint32) (int, error) {
	for {
		fd, err := unix.Openat(dir, name, flags, mode)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// Interruptible is f (a pipe, such as a pod's stdin) opened again so that closing it
// interrupts a read blocked on it: the stream of a stopped receiver then fails, and the
// file it was writing is removed.
func Interruptible(f *os.File) *os.File {
	raw, err := f.SyscallConn()
	if err != nil {
		return f
	}
	nonblocking := true
	ctlErr := raw.Control(func(fd uintptr) {
		flags, err := unix.FcntlInt(fd, unix.F_GETFL, 0)
		nonblocking = err != nil || flags&unix.O_NONBLOCK != 0
	})
	if ctlErr != nil || nonblocking {
		return f // already one that Close interrupts (or not one we can make so)
	}
	fd := int(f.Fd())
	if err := unix.SetNonblock(fd, true); err != nil {
		return f
	}
	return os.NewFile(uintptr(fd), f.Name()) //nolint:gosec
}
