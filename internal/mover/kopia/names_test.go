package kopia

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/kopia/kopia/snapshot/restore"
	"github.com/kopia/kopia/snapshot/snapshotfs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/mover/kopia/kopiatest"
)

// nameMarker marks a stored name that is encoded (package tree).
const nameMarker = "\uFFFDsnapmove:"

// Names that are not UTF-8, two of which kopia alone would merge into one, restore byte
// for byte; kopia's own restore (what Velero and the kopia CLI do) writes the readable
// encoded names.
func TestNonUTF8NamesRoundTrip(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	names := []string{"\xff\xfe-not-utf8", "\xff\xfd-not-utf8", "caf\xe9 100%", "100%", nameMarker + "x", "ok.txt"}
	for i, n := range names {
		require.NoError(t, os.WriteFile(filepath.Join(src, n), []byte{byte(i)}, 0o644))
	}
	require.NoError(t, os.MkdirAll(filepath.Join(src, "d\xe9j\xe0", "sub\xff"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(src, "d\xe9j\xe0", "sub\xff", "f\xfe"), []byte("deep"), 0o600))
	require.NoError(t, os.Symlink("d\xe9j\xe0/sub\xff/f\xfe", filepath.Join(src, "link\xff")))

	r := openRepo(t, kopiatest.Location(t), Options{Create: true})
	res, err := r.Backup(ctx, kopiatest.BackupRequest(src))
	require.NoError(t, err)
	dst := t.TempDir()
	_, err = r.Restore(ctx, datapath.RestoreRequest{SnapshotID: res.SnapshotID, Path: dst})
	require.NoError(t, err)
	requireSameTree(t, describeTree(t, src), describeTree(t, dst))

	// An incremental backup finds every entry in its parent: nothing is read again.
	res2, err := r.Backup(ctx, kopiatest.BackupRequest(src))
	require.NoError(t, err)
	assert.Zero(t, res2.IncrementalBytes)

	// Browsing shows the original names.
	_, children, err := r.ReadDir(ctx, res.SnapshotID, "d\xe9j\xe0/sub\xff")
	require.NoError(t, err)
	require.Len(t, children, 1)
	assert.Equal(t, "f\xfe", children[0].Name)

	// kopia's restore: the encoded names, each file its own.
	kdst := t.TempDir()
	root, err := snapshotfs.FilesystemEntryFromIDWithPath(ctx, r.st.Direct(), res.SnapshotID, false)
	require.NoError(t, err)
	out := &restore.FilesystemOutput{TargetPath: kdst, OverwriteDirectories: true, OverwriteFiles: true, OverwriteSymlinks: true}
	require.NoError(t, out.Init(ctx))
	_, err = restore.Entry(ctx, r.st.Direct(), out, root, restore.Options{Parallel: 2, RestoreDirEntryAtDepth: 1 << 30})
	require.NoError(t, err)
	entries, err := os.ReadDir(kdst)
	require.NoError(t, err)
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	want := []string{"100%", "ok.txt", nameMarker + "%FF%FE-not-utf8", nameMarker + "%FF%FD-not-utf8",
		nameMarker + "caf%E9 100%25", nameMarker + "\uFFFDsnapmove:x", nameMarker + "d%E9j%E0", nameMarker + "link%FF"}
	sort.Strings(want)
	assert.Equal(t, want, got)
}
