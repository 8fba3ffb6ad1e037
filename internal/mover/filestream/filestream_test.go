//go:build unix

package filestream

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// tarOf builds a stream by hand, as a hostile sender could; with end, it carries the
// end marker for all its entries.
func tarOf(t *testing.T, end bool, hdrs ...*tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hdrs {
		body := bytes.Repeat([]byte("x"), int(h.Size))
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		require.NoError(t, tw.WriteHeader(h))
		_, err := tw.Write(body)
		require.NoError(t, err)
	}
	if end {
		require.NoError(t, tw.WriteHeader(&tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "end", Format: tar.FormatPAX,
			PAXRecords: map[string]string{endRecord: strconv.Itoa(len(hdrs))}}))
	}
	require.NoError(t, tw.Close())
	return buf.Bytes()
}

func file(name string, size int64) *tar.Header {
	return &tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, ModTime: time.Unix(1700000000, 0)}
}

func TestReceiveRefuses(t *testing.T) {
	for _, tc := range []struct {
		name    string
		setup   func(t *testing.T, target, outside string)
		stream  func(t *testing.T) []byte
		wantErr string
		// outside must stay empty; keep lists files of target that must keep "original".
		keep []string
	}{{
		name:    "parent components",
		stream:  func(t *testing.T) []byte { return tarOf(t, true, file("../escaped", 3)) },
		wantErr: `entry "../escaped": a name may not have empty, . or .. components`,
	}, {
		name:    "parent components inside",
		stream:  func(t *testing.T) []byte { return tarOf(t, true, file("a/../../escaped", 3)) },
		wantErr: "a name may not have",
	}, {
		name:    "absolute name",
		stream:  func(t *testing.T) []byte { return tarOf(t, true, file("/etc/escaped", 3)) },
		wantErr: `entry "/etc/escaped": not a relative name`,
	}, {
		name: "symlink in the target along the path",
		setup: func(t *testing.T, target, outside string) {
			require.NoError(t, os.Symlink(outside, filepath.Join(target, "link")))
		},
		stream:  func(t *testing.T) []byte { return tarOf(t, true, file("link/escaped", 3)) },
		wantErr: "link is not a directory (a symlink is not followed)",
	}, {
		name: "symlink sent, then a file through it",
		stream: func(t *testing.T) []byte {
			return tarOf(t, true, &tar.Header{Typeflag: tar.TypeSymlink, Name: "link", Linkname: "/outside"}, file("link/escaped", 3))
		},
		wantErr: "link is not a directory (a symlink is not followed)",
	}, {
		name: "hard link",
		stream: func(t *testing.T) []byte {
			return tarOf(t, true, &tar.Header{Typeflag: tar.TypeLink, Name: "h", Linkname: "/etc/passwd"})
		},
		wantErr: "is not received",
	}, {
		name: "stream cut mid-file keeps the original",
		setup: func(t *testing.T, target, _ string) {
			require.NoError(t, os.WriteFile(filepath.Join(target, "f"), []byte("original"), 0o600))
		},
		stream: func(t *testing.T) []byte {
			b := tarOf(t, true, file("f", 4<<10))
			return b[:512+1000] // header, then part of the body
		},
		wantErr: "the stream held",
		keep:    []string{"f"},
	}, {
		name: "stream cut between entries",
		setup: func(t *testing.T, target, _ string) {
			require.NoError(t, os.WriteFile(filepath.Join(target, "f"), []byte("original"), 0o600))
		},
		stream:  func(t *testing.T) []byte { return tarOf(t, false, file("g", 3)) },
		wantErr: "the stream ended before its end marker",
		keep:    []string{"f"},
	}, {
		name: "end marker with another count",
		stream: func(t *testing.T) []byte {
			b := tarOf(t, true, file("g", 3))
			return append(tarOf(t, false, file("h", 1))[:1024], b...)
		},
		wantErr: "the stream ended after 2 entries, its sender counted 1",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			target, outside := t.TempDir(), t.TempDir()
			if tc.setup != nil {
				tc.setup(t, target, outside)
			}
			_, err := Receive(bytes.NewReader(tc.stream(t)), target)
			require.ErrorContains(t, err, tc.wantErr)
			left, err := os.ReadDir(outside)
			require.NoError(t, err)
			require.Empty(t, left, "written outside the target")
			for _, k := range tc.keep {
				got, err := os.ReadFile(filepath.Join(target, k))
				require.NoError(t, err)
				require.Equal(t, "original", string(got))
			}
			all, err := os.ReadDir(target)
			require.NoError(t, err)
			for _, e := range all {
				require.NotContains(t, e.Name(), tempPrefix, "a temporary file was left")
			}
		})
	}
}

// TestSendReceive sends a tree and receives it over a target that holds a file, a
// symlink and a directory in the way: the result is the tree, with modes and times, and
// what the stream does not name is untouched.
func TestSendReceive(t *testing.T) {
	src, target, outside := t.TempDir(), t.TempDir(), t.TempDir()
	mtime := time.Unix(1600000000, 123456789)
	require.NoError(t, os.MkdirAll(filepath.Join(src, "d", "sub"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(src, "d", "f"), []byte("new content"), 0o640))
	sparse := make([]byte, 3*holeBlock+10)
	copy(sparse[holeBlock:], "data in the middle")
	require.NoError(t, os.WriteFile(filepath.Join(src, "d", "sub", "sparse"), sparse, 0o600))
	require.NoError(t, os.Symlink("f", filepath.Join(src, "d", "ln")))
	require.NoError(t, os.WriteFile(filepath.Join(src, "was-a-link"), []byte("now a file"), 0o600))
	require.NoError(t, os.Mkdir(filepath.Join(src, "was-a-file"), 0o750))
	for _, p := range []string{"d/f", "d/sub/sparse", "was-a-link", "d/sub", "d", "was-a-file"} {
		require.NoError(t, os.Chtimes(filepath.Join(src, p), mtime, mtime))
	}

	require.NoError(t, os.Mkdir(filepath.Join(target, "d"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(target, "d", "f"), []byte("old"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(target, "keep"), []byte("mine"), 0o600))
	require.NoError(t, os.Symlink(filepath.Join(outside, "x"), filepath.Join(target, "was-a-link")))
	require.NoError(t, os.WriteFile(filepath.Join(target, "was-a-file"), []byte("old"), 0o600))

	var stream bytes.Buffer
	require.NoError(t, Send(context.Background(), src, &stream, nil))
	res, err := Receive(&stream, target)
	require.NoError(t, err)
	require.Equal(t, Result{Files: 3, Dirs: 3, Symlinks: 1, Bytes: int64(len("new content") + len(sparse) + len("now a file"))}, res)

	got, err := os.ReadFile(filepath.Join(target, "d", "f"))
	require.NoError(t, err)
	require.Equal(t, "new content", string(got))
	got, err = os.ReadFile(filepath.Join(target, "d", "sub", "sparse"))
	require.NoError(t, err)
	require.Equal(t, sparse, got)
	link, err := os.Readlink(filepath.Join(target, "d", "ln"))
	require.NoError(t, err)
	require.Equal(t, "f", link)
	got, err = os.ReadFile(filepath.Join(target, "was-a-link"))
	require.NoError(t, err)
	require.Equal(t, "now a file", string(got))
	st, err := os.Lstat(filepath.Join(target, "was-a-file"))
	require.NoError(t, err)
	require.True(t, st.IsDir())
	require.Equal(t, os.FileMode(0o750), st.Mode().Perm())
	for _, p := range []string{"d/f", "d/sub/sparse", "d/sub", "d", "was-a-file"} {
		st, err := os.Lstat(filepath.Join(target, p))
		require.NoError(t, err)
		require.True(t, mtime.Equal(st.ModTime()), "%s: mtime %s", p, st.ModTime())
	}
	st, err = os.Stat(filepath.Join(target, "d", "f"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o640), st.Mode().Perm())
	got, err = os.ReadFile(filepath.Join(target, "keep"))
	require.NoError(t, err)
	require.Equal(t, "mine", string(got))
	left, err := os.ReadDir(outside)
	require.NoError(t, err)
	require.Empty(t, left)
}

func TestSendRefusesSpecialFiles(t *testing.T) {
	src := t.TempDir()
	require.NoError(t, unix.Mkfifo(filepath.Join(src, "fifo"), 0o600))
	err := Send(context.Background(), src, io.Discard, nil)
	require.ErrorContains(t, err, "fifo: cannot send a")
}

func TestThrottle(t *testing.T) {
	var buf bytes.Buffer
	w := Throttle(&buf, 64<<10)
	start := time.Now()
	_, err := w.Write(make([]byte, 32<<10))
	require.NoError(t, err)
	require.GreaterOrEqual(t, time.Since(start), 450*time.Millisecond)
	require.Equal(t, 32<<10, buf.Len())
	require.Equal(t, io.Writer(&buf), Throttle(&buf, 0))
}

// TestSendOwners sends the owners the snapshot has, not those of the files on disk (a
// CLI that is not root restores them as its own).
func TestSendOwners(t *testing.T) {
	src := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(src, "d"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(src, "d", "f"), []byte("x"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(src, "g"), []byte("y"), 0o644))
	owners := map[string][2]int{"d": {999, 998}, "d/f": {70, 71}}
	var stream bytes.Buffer
	require.NoError(t, Send(context.Background(), src, &stream, func(rel string) (int, int, bool) {
		o, ok := owners[rel]
		return o[0], o[1], ok
	}))
	got := map[string][2]int{}
	tr := tar.NewReader(&stream)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		if hdr.Typeflag != tar.TypeXGlobalHeader {
			got[hdr.Name] = [2]int{hdr.Uid, hdr.Gid}
		}
	}
	require.Equal(t, map[string][2]int{"d/": {999, 998}, "d/f": {70, 71}, "g": {os.Getuid(), os.Getgid()}}, got)
}
