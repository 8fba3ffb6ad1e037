//go:build unix

package restore

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kopia/kopia/repo/content"
	"github.com/kopia/kopia/repo/object"
	"github.com/pkg/errors"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/semaphore"

	"github.com/snapmove/snapmove/internal/mover/kopia/tree"
)

// chunkReader serves the contents of chunks, and fails every read after failAfter
// reads (never when negative), as a store that goes away mid-file.
type chunkReader struct {
	content.Reader
	data      map[content.ID][]byte
	reads     atomic.Int32
	failAfter int32
}

func (r *chunkReader) GetContent(_ context.Context, id content.ID) ([]byte, error) {
	if n := r.reads.Add(1); r.failAfter >= 0 && n > r.failAfter {
		return nil, errors.New("connection reset by peer")
	}
	return r.data[id], nil
}

// A file-level restore writes each file beside the one it replaces and renames it into
// place: a failure mid-file leaves the original as it was and no temporary file.
func TestFilesReplaceAtomically(t *testing.T) {
	const chunkSize, nChunks = 64 << 10, 4
	want := make([]byte, 0, chunkSize*nChunks)
	cr := &chunkReader{data: map[content.ID][]byte{}}
	var chunks []object.IndirectObjectEntry
	for i := range nChunks {
		data := bytes.Repeat([]byte{byte('a' + i)}, chunkSize)
		id, err := content.ParseID(fmt.Sprintf("%032x", i+1))
		require.NoError(t, err)
		cr.data[id] = data
		chunks = append(chunks, object.IndirectObjectEntry{Start: int64(i * chunkSize), Length: chunkSize, Object: object.DirectObjectID(id)})
		want = append(want, data...)
	}
	restoreInto := func(t *testing.T, dir string, replace bool, failAfter int32) error {
		cr.reads.Store(0)
		cr.failAfter = failAfter
		rs := &restorer{cr: tree.ContentReader{Reader: cr}, parallel: 1, mode: writeSparse, replace: replace,
			total: int64(len(want)), log: logrus.New(), reads: semaphore.NewWeighted(readBudget)}
		top, err := openTarget(dir)
		require.NoError(t, err)
		defer top.release()
		ft := &fileTarget{dir: top.hold(), name: "f", path: filepath.Join(dir, "f"), size: int64(len(want)), mode: writeSparse, replace: replace,
			attrs: &attrs{mode: 0o640, uid: uint32(os.Getuid()), gid: uint32(os.Getgid()), mtime: time.Unix(1e9, 0)}} //nolint:gosec
		return rs.run(context.Background(), func(ctx context.Context, jobs chan<- job) error {
			return rs.enqueue(ctx, jobs, ft, chunks)
		})
	}
	original := []byte("the user's file, as it was\n")
	for _, tc := range []struct {
		name      string
		inTheWay  func(t *testing.T, p string) // what is at the file's place before
		failAfter int32
		wantErr   bool
	}{
		{name: "replaces a file", inTheWay: func(t *testing.T, p string) { require.NoError(t, os.WriteFile(p, original, 0o600)) }, failAfter: -1},
		{name: "creates a file", inTheWay: func(*testing.T, string) {}, failAfter: -1},
		{name: "replaces a symlink, not its target", failAfter: -1, inTheWay: func(t *testing.T, p string) {
			require.NoError(t, os.WriteFile(p+".target", original, 0o600))
			require.NoError(t, os.Symlink("f.target", p))
		}},
		{name: "replaces a directory", failAfter: -1, inTheWay: func(t *testing.T, p string) {
			require.NoError(t, os.MkdirAll(filepath.Join(p, "sub"), 0o755))
			require.NoError(t, os.WriteFile(filepath.Join(p, "sub", "x"), original, 0o600))
		}},
		{name: "fails mid-file", inTheWay: func(t *testing.T, p string) { require.NoError(t, os.WriteFile(p, original, 0o600)) }, failAfter: 2, wantErr: true},
		{name: "fails at once", inTheWay: func(t *testing.T, p string) { require.NoError(t, os.WriteFile(p, original, 0o600)) }, failAfter: 0, wantErr: true},
		{name: "fails mid-file, nothing there", inTheWay: func(*testing.T, string) {}, failAfter: 2, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "f")
			tc.inTheWay(t, p)
			before, _ := os.ReadFile(p)
			_, statErr := os.Lstat(p)
			err := restoreInto(t, dir, true, tc.failAfter)
			if tc.wantErr {
				require.ErrorContains(t, err, "connection reset by peer")
				if statErr != nil {
					require.NoFileExists(t, p, "nothing half written at the file's place")
				} else {
					got, err := os.ReadFile(p)
					require.NoError(t, err)
					require.Equal(t, before, got, "the original is intact")
				}
			} else {
				require.NoError(t, err)
				got, err := os.ReadFile(p)
				require.NoError(t, err)
				require.Equal(t, want, got)
				st, err := os.Lstat(p)
				require.NoError(t, err)
				require.True(t, st.Mode().IsRegular())
				require.Equal(t, os.FileMode(0o640), st.Mode().Perm())
				require.Equal(t, time.Unix(1e9, 0), st.ModTime())
				if target, err := os.ReadFile(p + ".target"); err == nil {
					require.Equal(t, original, target, "a symlink is replaced, never followed")
				}
			}
			names, err := os.ReadDir(dir)
			require.NoError(t, err)
			for _, n := range names {
				require.NotContains(t, n.Name(), tempPrefix, "no temporary file is left")
			}
		})
	}

	// the full restore of a new volume writes in place, as before
	dir := t.TempDir()
	require.NoError(t, restoreInto(t, dir, false, -1))
	got, err := os.ReadFile(filepath.Join(dir, "f"))
	require.NoError(t, err)
	require.Equal(t, want, got)
}
