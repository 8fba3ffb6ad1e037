//go:build unix

package restore

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestWriteDataModes(t *testing.T) {
	data := make([]byte, 3*sparseBlock+100)
	copy(data[sparseBlock:], bytes.Repeat([]byte{1}, 10))
	data[len(data)-1] = 2
	for _, mode := range []writeMode{writeAll, writeSparse, writeAllocate} {
		p := filepath.Join(t.TempDir(), "f")
		f, err := os.Create(p)
		require.NoError(t, err)
		const off = 1000 // not block aligned
		require.NoError(t, f.Truncate(off+int64(len(data))))
		rs := &restorer{}
		require.NoError(t, rs.writeData(f, off, data, mode))
		require.NoError(t, f.Close())
		got, err := os.ReadFile(p)
		require.NoError(t, err)
		require.Equal(t, data, got[off:])
		require.Equal(t, make([]byte, off), got[:off])
	}
	require.True(t, allZero(make([]byte, 3<<20)))
	require.False(t, allZero(append(make([]byte, 2<<20), 1)))
}

func TestOpenBeneath(t *testing.T) {
	for _, walk := range []bool{false, true} { // openat2 (where the kernel has it), the openat walk
		t.Cleanup(SetOpenat2Missing(walk))
		s := struct{ target, outside string }{t.TempDir(), t.TempDir()}
		require.NoError(t, os.MkdirAll(filepath.Join(s.target, "a", "b"), 0o755))
		require.NoError(t, os.Symlink(s.outside, filepath.Join(s.target, "out")))
		require.NoError(t, os.Symlink("b", filepath.Join(s.target, "a", "in")))
		root, err := openTarget(s.target)
		require.NoError(t, err)
		defer root.release()

		for rel, wantErr := range map[string]bool{
			".": false, "a": false, "a/b": false,
			"out": true, "out/x": true, "a/in": true, "a/in/x": true, "..": true, "a/../..": true, "missing": true,
		} {
			fd, err := openBeneath(root.fd, rel)
			if wantErr {
				require.Error(t, err, rel)
				continue
			}
			require.NoError(t, err, rel)
			f := os.NewFile(uintptr(fd), rel) //nolint:gosec
			got, err := f.Stat()
			require.NoError(t, err)
			require.NoError(t, f.Close())
			want, err := os.Stat(filepath.Join(s.target, rel))
			require.NoError(t, err)
			require.True(t, os.SameFile(want, got), rel)
		}
	}
}
