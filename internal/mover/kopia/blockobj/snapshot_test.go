package blockobj

import (
	"context"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/kopia/kopia/fs"
	"github.com/kopia/kopia/repo"
	"github.com/kopia/kopia/repo/manifest"
	"github.com/kopia/kopia/repo/object"
	"github.com/kopia/kopia/snapshot"
	"github.com/kopia/kopia/snapshot/snapshotfs"
	"github.com/stretchr/testify/require"

	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/mover/kopia/restore"
	"github.com/snapmove/snapmove/internal/mover/kopia/store"
)

// saveBlockSnapshot saves id as a block volume snapshot in today's layout (a directory
// holding one file of the device's size, source .../kopia/app/data, Velero's tags) and
// returns the snapshot's ID.
func saveBlockSnapshot(ctx context.Context, t *testing.T, w repo.RepositoryWriter, id object.ID, size int64) string {
	t.Helper()
	now := time.Now()
	file := &snapshot.DirEntry{
		Name: "data", Type: snapshot.EntryTypeFile, Permissions: 0o644,
		FileSize: size, ModTime: fs.UTCTimestampFromTime(now), ObjectID: id,
	}
	summary := fs.DirectorySummary{TotalFileSize: size, TotalFileCount: 1, TotalDirCount: 1, MaxModTime: fs.UTCTimestampFromTime(now)}
	dirID, err := snapshotfs.WriteDirManifest(ctx, w, ".", &snapshot.DirManifest{
		StreamType: "kopia:directory",
		Entries:    []*snapshot.DirEntry{file},
		Summary:    &summary,
	}, "")
	require.NoError(t, err)
	man := &snapshot.Manifest{
		Source: snapshot.SourceInfo{Host: store.Host, UserName: store.User, Path: store.SourcePath("app", "data")},
		RootEntry: &snapshot.DirEntry{
			Name: "data", Type: snapshot.EntryTypeDirectory, Permissions: 0o755,
			ModTime: fs.UTCTimestampFromTime(now), ObjectID: dirID, DirSummary: &summary,
		},
		Description: store.Description,
		StartTime:   fs.UTCTimestampFromTime(now),
		EndTime:     fs.UTCTimestampFromTime(now),
		Stats:       snapshot.Stats{TotalFileSize: size, TotalFileCount: 1},
		Tags:        map[string]string{store.TagRequester: store.Requester, store.TagUploader: store.Uploader},
	}
	mid, err := snapshot.SaveSnapshot(ctx, w, man)
	require.NoError(t, err)
	return string(mid)
}

// TestSnapshotRestore puts a full and an incremental object into block volume snapshots
// and reads them back through kopia's snapshot filesystem and through package restore.
func TestSnapshotRestore(t *testing.T) {
	ctx, r, w := openWriter(t)
	rng := rand.New(rand.NewPCG(7, 8))
	img, allocated := sparseImage(rng)
	full, err := Write(ctx, w, Request{Device: newDevice(img), Size: imageSize, Kind: Allocated, Ranges: allocated}, Options{})
	require.NoError(t, err)

	img2 := slices.Clone(img)
	fill(rng, img2, 9*mib-3, 6) // across blocks 8 and 9
	incr, err := Write(ctx, w, Request{
		Device: newDevice(img2), Size: imageSize, Kind: ChangedSinceParent, Parent: full.ObjectID,
		Ranges: []Range{{9*mib - 3, 6}},
	}, Options{})
	require.NoError(t, err)
	require.Equal(t, 2, incr.BlocksWritten)

	snaps := map[string][]byte{
		saveBlockSnapshot(ctx, t, w, full.ObjectID, imageSize): img,
		saveBlockSnapshot(ctx, t, w, incr.ObjectID, imageSize): img2,
	}
	require.NoError(t, w.Flush(ctx))

	for id, want := range snaps {
		man, err := snapshot.LoadSnapshot(ctx, r.Direct(), manifest.ID(id))
		require.NoError(t, err)
		root, err := snapshotfs.SnapshotRoot(r.Direct(), man)
		require.NoError(t, err)
		child, err := root.(fs.Directory).Child(ctx, "data")
		require.NoError(t, err)
		require.Equal(t, int64(imageSize), child.Size())
		f, err := child.(fs.File).Open(ctx)
		require.NoError(t, err)
		got, err := io.ReadAll(f)
		require.NoError(t, err)
		require.NoError(t, f.Close())
		requireSame(t, want, got, "kopia's snapshot filesystem")

		dst := filepath.Join(t.TempDir(), "device")
		require.NoError(t, os.WriteFile(dst, nil, 0o600))
		_, err = restore.Restore(ctx, r, datapath.RestoreRequest{SnapshotID: id, Path: dst, Block: true, Parallel: 2})
		require.NoError(t, err)
		got, err = os.ReadFile(dst)
		require.NoError(t, err)
		requireSame(t, want, got, "package restore")
	}
}
