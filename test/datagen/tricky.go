//go:build linux

package datagen

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

// Owner IDs GenTricky gives some entries; no user or group of that ID needs to exist.
const (
	TrickyUID = 1001
	TrickyGID = 1002
)

// trickyEntry is one entry of the tricky tree.
type trickyEntry struct {
	path     string
	kind     byte // 'f' file, 'd' dir, 'l' symlink, 'h' hard link to target, 'p' FIFO, 's' sparse file
	mode     os.FileMode
	uid, gid int // -1: leave as created (root's)
	content  string
	target   string // symlink text, or the hard link's existing path
	mtime    time.Time
}

// trickyEntries lists the tree; parents come before children. Comments say why each is
// there; see package treecheck for what kopia preserves.
func trickyEntries() []trickyEntry {
	long := "long-" + strings.Repeat("n", 250)    // 255 bytes, NAME_MAX
	longUnicode := strings.Repeat("é", 127) + "x" // 255 bytes, 128 runes
	deep := "deep/d1/d2/d3/d4/d5/d6/d7/d8"        // 8 levels below deep/
	es := []trickyEntry{
		{path: "regular.txt", kind: 'f', mode: 0o644, content: "hello, snapmove\n"},
		{path: "exec.sh", kind: 'f', mode: 0o755, content: "#!/bin/sh\necho hi\n"},
		{path: "private", kind: 'f', mode: 0o600, content: "secret\n"},
		{path: "readonly", kind: 'f', mode: 0o444, content: "read only\n"},
		{path: "mode-0000", kind: 'f', mode: 0, content: "no permissions at all\n"}, // kopia omits mode 0 in JSON
		{path: "setuid-bin", kind: 'f', mode: 0o755 | os.ModeSetuid, content: "setuid\n"},
		{path: "setgid-file", kind: 'f', mode: 0o755 | os.ModeSetgid, content: "setgid\n"},
		{path: "sticky-file", kind: 'f', mode: 0o644 | os.ModeSticky, content: "sticky\n"},
		{path: "empty-file", kind: 'f', mode: 0o644},
		{path: "zeros-written", kind: 'f', mode: 0o644, content: strings.Repeat("\x00", 256<<10)}, // allocated zeros, not a hole
		{path: "owned-file", kind: 'f', mode: 0o640, uid: TrickyUID, gid: TrickyGID, content: "owned by 1001:1002\n"},
		{path: "mtime-1969", kind: 'f', mode: 0o644, content: "before the epoch\n", mtime: time.Unix(-31536000, 987654321)},
		{path: "name with spaces.txt", kind: 'f', mode: 0o644, content: "spaces\n"},
		{path: "ünïcödé-日本語-🙂.txt", kind: 'f', mode: 0o644, content: "unicode\n"},
		{path: "-leading-dash", kind: 'f', mode: 0o644, content: "dash\n"},
		{path: "new\nline", kind: 'f', mode: 0o644, content: "newline in the name\n"},
		{path: "tab\there", kind: 'f', mode: 0o644, content: "tab in the name\n"},
		{path: `quote'"back\slash`, kind: 'f', mode: 0o644, content: "quotes and a backslash\n"},
		{path: "*?[glob]", kind: 'f', mode: 0o644, content: "glob characters\n"},
		{path: ".hidden", kind: 'f', mode: 0o644, content: "dot file\n"},
		{path: "...", kind: 'f', mode: 0o644, content: "three dots\n"},
		{path: long, kind: 'f', mode: 0o644, content: "255-byte name\n"},
		{path: longUnicode, kind: 'f', mode: 0o644, content: "255-byte unicode name\n"},
		// The kopia CLI's ignorefs skips what .kopiaignore matches and directories with a
		// CACHEDIR.TAG; Velero's and snapmove's library uploads must not.
		{path: ".kopiaignore", kind: 'f', mode: 0o644, content: "*.ignored\n"},
		{path: "kept.ignored", kind: 'f', mode: 0o644, content: "matched by .kopiaignore\n"},
		{path: "cachedir", kind: 'd', mode: 0o755},
		{path: "cachedir/CACHEDIR.TAG", kind: 'f', mode: 0o644, content: "Signature: 8a477f597d28d172789f06886806bc55\n# a cache directory\n"},
		{path: "cachedir/data", kind: 'f', mode: 0o644, content: "inside a tagged cache directory\n"},
		// Holes: data extents at 0 and 4 MiB, a trailing hole; and a file that is only a hole.
		{path: "sparse.img", kind: 's', mode: 0o644},
		{path: "all-hole.img", kind: 's', mode: 0o644},
		// Hard links: kopia stores each path as its own file.
		{path: "hardlink-a", kind: 'f', mode: 0o644, content: "one inode, three names\n"},
		{path: "hardlink-b", kind: 'h', target: "hardlink-a"},
		// Symlinks: the link text is stored, never followed.
		{path: "link-rel", kind: 'l', target: "regular.txt"},
		{path: "link-abs", kind: 'l', target: "/etc/hostname"},
		{path: "link-dangling", kind: 'l', target: "does/not/exist"},
		{path: "link-dir", kind: 'l', target: "deep/d1"},
		{path: "link-up", kind: 'l', target: "../outside-the-tree"},
		{path: "link-owned", kind: 'l', target: "regular.txt", uid: TrickyUID, gid: TrickyGID},
		// A FIFO: kopia skips unknown entry types (policy ignoreUnknownTypes, default true).
		{path: "fifo", kind: 'p', mode: 0o644},
		{path: "empty-dir", kind: 'd', mode: 0o755},
		{path: "sticky-dir", kind: 'd', mode: 0o777 | os.ModeSticky},
		{path: "sticky-dir/file", kind: 'f', mode: 0o666, uid: TrickyUID, gid: TrickyGID, content: "in /tmp-like dir\n"},
		{path: "setgid-dir", kind: 'd', mode: 0o775 | os.ModeSetgid, gid: TrickyGID},
		{path: "setgid-dir/file", kind: 'f', mode: 0o664, gid: TrickyGID, content: "group inherited\n"},
		{path: "readonly-dir", kind: 'd', mode: 0o555},
		{path: "readonly-dir/file", kind: 'f', mode: 0o444, content: "in a read-only dir\n"},
		{path: "owned-dir", kind: 'd', mode: 0o750, uid: TrickyUID, gid: TrickyGID},
		{path: "owned-dir/file", kind: 'f', mode: 0o600, uid: TrickyUID, gid: TrickyGID, content: "owned\n"},
		{path: "deep", kind: 'd', mode: 0o755},
	}
	p := "deep"
	for i := 1; i <= 8; i++ {
		p += fmt.Sprintf("/d%d", i)
		es = append(es, trickyEntry{path: p, kind: 'd', mode: 0o755})
	}
	es = append(es,
		trickyEntry{path: deep + "/leaf.txt", kind: 'f', mode: 0o644, content: "8 levels down\n"},
		trickyEntry{path: deep + "/empty", kind: 'd', mode: 0o700},
		trickyEntry{path: "deep/d1/hardlink-c", kind: 'h', target: "hardlink-a"},
	)
	// Past mtimes with nanoseconds, different for every entry.
	for i := range es {
		if es[i].mtime.IsZero() {
			es[i].mtime = time.Unix(1_000_000_000+int64(i)*10_800, 1+int64(i)*123_456_789%999_999_999)
		}
		if es[i].uid == 0 {
			es[i].uid = -1
		}
		if es[i].gid == 0 {
			es[i].gid = -1
		}
	}
	return es
}

// GenTricky writes a small tree of awkward cases into dir (created; must not exist or be
// empty): files with modes 0000/0444/0600/0755 and setuid, setgid and sticky bits;
// directories 01777, 02775 and 0555; owners 1001:1002 (on files, a directory and a
// symlink; needs root); nanosecond mtimes in the past (one before 1970); empty files and
// directories; directories nested 8 deep; holes (sparse.img, all-hole.img); three names
// of one inode; relative, absolute, dangling, directory and out-of-tree symlinks; names
// with spaces, a newline, a tab, quotes, a backslash, a leading dash, unicode and 255
// bytes; a .kopiaignore and a CACHEDIR.TAG directory; and a FIFO, which kopia skips.
//
// Names are valid UTF-8: kopia stores names in JSON, where invalid UTF-8 becomes U+FFFD,
// so such names cannot survive any kopia backup. No device nodes or sockets are made.
// dir's own mode is 0755 and its mtime is set like every entry's.
func GenTricky(dir string) error {
	if err := requireEmptyDir(dir); err != nil {
		return err
	}
	es := trickyEntries()
	for _, e := range es {
		p := filepath.Join(dir, e.path)
		var err error
		switch e.kind {
		case 'f':
			err = os.WriteFile(p, []byte(e.content), 0o600)
		case 'd':
			err = os.Mkdir(p, 0o700)
		case 'l':
			err = os.Symlink(e.target, p)
		case 'h':
			err = os.Link(filepath.Join(dir, e.target), p)
		case 'p':
			err = syscall.Mkfifo(p, 0o600)
		case 's':
			err = writeSparse(p, e.path == "sparse.img")
		}
		if err != nil {
			return fmt.Errorf("creating %s: %w", p, err)
		}
	}
	// Owners first (chown clears setuid/setgid), then modes, then times: files and
	// symlinks, then directories deepest first (creating entries changes a directory's
	// mtime, setting attributes of entries does not).
	sort.SliceStable(es, func(i, j int) bool {
		di, dj := es[i].kind == 'd', es[j].kind == 'd'
		if di != dj {
			return !di
		}
		return di && strings.Count(es[i].path, "/") > strings.Count(es[j].path, "/")
	})
	es = append(es, trickyEntry{path: ".", kind: 'd', mode: 0o755, uid: -1, gid: -1, mtime: time.Unix(999_999_999, 999_999_999)})
	for _, e := range es {
		if e.kind == 'h' {
			continue // shares the inode of its target
		}
		p := filepath.Join(dir, e.path)
		if e.uid >= 0 || e.gid >= 0 {
			if err := os.Lchown(p, e.uid, e.gid); err != nil {
				return fmt.Errorf("changing owner of %s (GenTricky needs root): %w", p, err)
			}
		}
		if e.kind != 'l' {
			if err := os.Chmod(p, e.mode); err != nil {
				return fmt.Errorf("changing mode of %s: %w", p, err)
			}
		}
		if err := lutimesNano(p, e.mtime); err != nil {
			return fmt.Errorf("changing mtime of %s: %w", p, err)
		}
	}
	return nil
}

// writeSparse creates a 16 MiB + 12,345-byte file: with data, 64 KiB of text at 0 and
// 128 KiB at 4 MiB, holes elsewhere (including the tail); without, only a hole.
func writeSparse(p string, withData bool) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if err := f.Truncate(16<<20 + 12345); err != nil {
		_ = f.Close()
		return err
	}
	if withData {
		for _, ext := range []struct{ off, n int64 }{{0, 64 << 10}, {4 << 20, 128 << 10}} {
			line := fmt.Sprintf("extent at %d\n", ext.off)
			b := []byte(strings.Repeat(line, int(ext.n)/len(line)+1))[:ext.n]
			if _, err := f.WriteAt(b, ext.off); err != nil {
				_ = f.Close()
				return err
			}
		}
	}
	return f.Close()
}

// Linux's utimensat arguments (unexported in package syscall).
const (
	atFDCWD           = -100
	atSymlinkNofollow = 0x100
)

// lutimesNano sets atime and mtime of p to t without following a symlink
// (utimensat(AT_FDCWD, p, t, AT_SYMLINK_NOFOLLOW); the syscall package has no wrapper).
func lutimesNano(p string, t time.Time) error {
	b, err := syscall.BytePtrFromString(p)
	if err != nil {
		return err
	}
	ts := [2]syscall.Timespec{syscall.NsecToTimespec(t.UnixNano()), syscall.NsecToTimespec(t.UnixNano())}
	fd := atFDCWD
	_, _, errno := syscall.Syscall6(syscall.SYS_UTIMENSAT, uintptr(fd), uintptr(unsafe.Pointer(b)),
		uintptr(unsafe.Pointer(&ts[0])), atSymlinkNofollow, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}
