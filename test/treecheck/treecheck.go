package treecheck

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Type is an entry's file type.
type Type string

// Entry types.
const (
	TypeFile       Type = "file"
	TypeDir        Type = "dir"
	TypeSymlink    Type = "symlink"
	TypeFIFO       Type = "fifo"
	TypeSocket     Type = "socket"
	TypeDevice     Type = "device"
	TypeCharDevice Type = "chardevice"
)

// special reports whether kopia skips entries of type t.
func (t Type) special() bool {
	return t != TypeFile && t != TypeDir && t != TypeSymlink
}

// modeBits are the mode bits kopia stores (kopia's fs.ModBits).
const modeBits = os.ModePerm | os.ModeSetuid | os.ModeSetgid | os.ModeSticky

// Entry is what Manifest records about one entry.
type Entry struct {
	Type Type
	// Mode holds the permission bits and os.ModeSetuid, os.ModeSetgid, os.ModeSticky.
	Mode     os.FileMode
	UID, GID uint32
	Mtime    int64 // nanoseconds since the Unix epoch
	Size     int64
	SHA256   string // hex, regular files only
	Target   string // symlinks only
	Blocks   int64  // st_blocks: allocated 512-byte units
	Nlink    uint64
	Dev, Ino uint64 // inode identity, for hard-link groups
}

// Tree maps slash-separated paths relative to the root ("." is the root) to entries.
type Tree map[string]Entry

// Manifest records root and everything below it, without following symlinks. File
// contents are hashed concurrently. FIFOs and other special files are recorded, not
// opened.
func Manifest(root string) (Tree, error) {
	t := Tree{}
	var files []string
	err := filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		e, err := entryOf(p)
		if err != nil {
			return err
		}
		t[rel] = e
		if e.Type == TypeFile {
			files = append(files, rel)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("recording tree %s: %w", root, err)
	}
	sums, err := hashAll(root, files)
	if err != nil {
		return nil, err
	}
	for i, rel := range files {
		e := t[rel]
		e.SHA256 = sums[i]
		t[rel] = e
	}
	return t, nil
}

func entryOf(p string) (Entry, error) {
	fi, err := os.Lstat(p)
	if err != nil {
		return Entry{}, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return Entry{}, fmt.Errorf("reading %s: no stat data", p)
	}
	e := Entry{
		Mode:   fi.Mode() & modeBits,
		UID:    st.Uid,
		GID:    st.Gid,
		Mtime:  fi.ModTime().UnixNano(),
		Size:   fi.Size(),
		Blocks: st.Blocks,
		Nlink:  uint64(st.Nlink), //nolint:unconvert // uint32 on some platforms
		Dev:    uint64(st.Dev),   //nolint:unconvert
		Ino:    st.Ino,
	}
	switch m := fi.Mode(); {
	case m.IsRegular():
		e.Type = TypeFile
	case m.IsDir():
		e.Type = TypeDir
	case m&os.ModeSymlink != 0:
		e.Type = TypeSymlink
		if e.Target, err = os.Readlink(p); err != nil {
			return Entry{}, err
		}
	case m&os.ModeNamedPipe != 0:
		e.Type = TypeFIFO
	case m&os.ModeSocket != 0:
		e.Type = TypeSocket
	case m&os.ModeCharDevice != 0:
		e.Type = TypeCharDevice
	default:
		e.Type = TypeDevice
	}
	return e, nil
}

func hashAll(root string, files []string) ([]string, error) {
	sums := make([]string, len(files))
	errs := make([]error, len(files))
	next := make(chan int)
	var wg sync.WaitGroup
	for range runtime.NumCPU() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1<<20)
			for i := range next {
				sums[i], errs[i] = hashFile(filepath.Join(root, filepath.FromSlash(files[i])), buf)
			}
		}()
	}
	for i := range files {
		next <- i
	}
	close(next)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return sums, nil
}

func hashFile(p string, buf []byte) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", fmt.Errorf("hashing %s: %w", p, err)
	}
	defer f.Close() //nolint:errcheck // read only
	h := sha256.New()
	if _, err := io.CopyBuffer(h, f, buf); err != nil {
		return "", fmt.Errorf("hashing %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Options relax or tighten Compare. The zero value checks what kopia preserves; see the
// package documentation for why each check is off by default.
type Options struct {
	// CheckHardLinks compares link counts and which paths share an inode.
	CheckHardLinks bool
	// CheckSpecial expects FIFOs, sockets and device nodes in got; by default they are
	// ignored on both sides.
	CheckSpecial bool
	// CheckAllocation requires files with holes in want to keep them: got may allocate
	// at most max(1 MiB, 1% of the size) more than want.
	CheckAllocation bool
	// ExactSymlinkMtime compares symlink mtimes to the nanosecond instead of within 1 µs.
	ExactSymlinkMtime bool
	// IgnoreOwner skips uid and gid, for restores by a non-root process (kopia ignores
	// the permission error of chown).
	IgnoreOwner bool
	// IgnoreDirMtime skips directory mtimes, for trees changed after the restore.
	IgnoreDirMtime bool
	// IgnorePaths skips these paths and everything below them (e.g. "lost+found").
	IgnorePaths []string
}

// maxDifferences caps Compare's list; one more line says how many were left out.
const maxDifferences = 200

// Compare lists how got differs from want, one human-readable line per difference,
// sorted by path; nil when they match.
func Compare(want, got Tree, opts Options) []string {
	paths := make([]string, 0, len(want))
	for p := range want {
		paths = append(paths, p)
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)

	var diffs []string
	add := func(p, format string, args ...any) {
		diffs = append(diffs, fmt.Sprintf("%q: ", p)+fmt.Sprintf(format, args...))
	}
	for _, p := range paths {
		if ignored(p, opts.IgnorePaths) {
			continue
		}
		w, inWant := want[p]
		g, inGot := got[p]
		if !opts.CheckSpecial && (!inWant || w.Type.special()) && (!inGot || g.Type.special()) {
			continue
		}
		switch {
		case !inGot:
			add(p, "missing (want %s)", w.Type)
			continue
		case !inWant:
			add(p, "unexpected %s", g.Type)
			continue
		case w.Type != g.Type:
			add(p, "type %s, want %s", g.Type, w.Type)
			continue
		}
		compareEntry(p, w, g, opts, add)
	}
	if opts.CheckHardLinks {
		diffs = append(diffs, compareLinkGroups(want, got, opts)...)
	}
	if len(diffs) > maxDifferences {
		n := len(diffs) - maxDifferences
		diffs = append(diffs[:maxDifferences], fmt.Sprintf("... and %d more differences", n))
	}
	return diffs
}

func compareEntry(p string, w, g Entry, opts Options, add func(p, format string, args ...any)) {
	if w.Type != TypeSymlink && w.Mode != g.Mode {
		add(p, "mode %s, want %s", formatMode(g.Mode), formatMode(w.Mode))
	}
	if !opts.IgnoreOwner && (w.UID != g.UID || w.GID != g.GID) {
		add(p, "owner %d:%d, want %d:%d", g.UID, g.GID, w.UID, w.GID)
	}
	if w.Mtime != g.Mtime {
		d := time.Duration(g.Mtime - w.Mtime).Abs()
		switch {
		case w.Type == TypeDir && opts.IgnoreDirMtime:
		case w.Type == TypeSymlink && !opts.ExactSymlinkMtime && d < time.Microsecond:
		default:
			add(p, "mtime %s, want %s", formatNanos(g.Mtime), formatNanos(w.Mtime))
		}
	}
	switch w.Type {
	case TypeFile:
		if w.Size != g.Size {
			add(p, "size %d, want %d", g.Size, w.Size)
		} else if w.SHA256 != g.SHA256 {
			add(p, "content differs (sha256 %.12s…, want %.12s…)", g.SHA256, w.SHA256)
		}
		if opts.CheckAllocation && w.Blocks*512 < w.Size {
			slack := max(1<<20, w.Size/100)
			if g.Blocks*512 > w.Blocks*512+slack {
				add(p, "allocates %d bytes, want at most %d (holes were filled)", g.Blocks*512, w.Blocks*512+slack)
			}
		}
		if opts.CheckHardLinks && w.Nlink != g.Nlink {
			add(p, "link count %d, want %d", g.Nlink, w.Nlink)
		}
	case TypeSymlink:
		if w.Target != g.Target {
			add(p, "symlink target %q, want %q", g.Target, w.Target)
		}
	}
}

// compareLinkGroups checks that every path shares its inode with the same other paths.
func compareLinkGroups(want, got Tree, opts Options) []string {
	wg, gg := linkGroups(want), linkGroups(got)
	var diffs []string
	for p, w := range want {
		if w.Type != TypeFile || w.Nlink < 2 || ignored(p, opts.IgnorePaths) {
			continue
		}
		g, ok := got[p]
		if !ok || g.Type != TypeFile {
			continue // reported already
		}
		ws, gs := wg[inode{w.Dev, w.Ino}], gg[inode{g.Dev, g.Ino}]
		if strings.Join(ws, "\x00") != strings.Join(gs, "\x00") {
			diffs = append(diffs, fmt.Sprintf("%q: shares its inode with %q, want %q", p, gs, ws))
		}
	}
	sort.Strings(diffs)
	return diffs
}

type inode struct{ dev, ino uint64 }

func linkGroups(t Tree) map[inode][]string {
	groups := map[inode][]string{}
	for p, e := range t {
		if e.Type == TypeFile {
			k := inode{e.Dev, e.Ino}
			groups[k] = append(groups[k], p)
		}
	}
	for _, g := range groups {
		sort.Strings(g)
	}
	return groups
}

func ignored(p string, prefixes []string) bool {
	for _, x := range prefixes {
		x = strings.TrimSuffix(x, "/")
		if p == x || strings.HasPrefix(p, x+"/") {
			return true
		}
	}
	return false
}

// formatMode writes m as chmod's octal: 4000 setuid, 2000 setgid, 1000 sticky.
func formatMode(m os.FileMode) string {
	n := uint32(m.Perm())
	if m&os.ModeSetuid != 0 {
		n |= 0o4000
	}
	if m&os.ModeSetgid != 0 {
		n |= 0o2000
	}
	if m&os.ModeSticky != 0 {
		n |= 0o1000
	}
	return fmt.Sprintf("%04o", n)
}

func formatNanos(ns int64) string {
	return time.Unix(0, ns).UTC().Format(time.RFC3339Nano)
}
