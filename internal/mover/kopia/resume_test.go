package kopia

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kopia/kopia/repo"
	"github.com/kopia/kopia/repo/compression"
	"github.com/kopia/kopia/repo/manifest"
	"github.com/kopia/kopia/snapshot"
	"github.com/kopia/kopia/snapshot/policy"
	"github.com/kopia/kopia/snapshot/upload"
	"github.com/stretchr/testify/require"

	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/mover/kopia/backup"
	"github.com/snapmove/snapmove/internal/mover/kopia/kopiatest"
	"github.com/snapmove/snapmove/internal/mover/kopia/store"
)

// Every compressor offered is one that kopia registers and does not deprecate (LZ4 is
// deprecated and no longer read by kopia 0.23).
func TestCompressorsAreReadable(t *testing.T) {
	for _, c := range datapath.Compressors {
		if c == datapath.CompressionNone {
			continue
		}
		_, ok := compression.ByName[compression.Name(c)]
		require.True(t, ok, "kopia has no compressor %q", c)
		require.False(t, compression.IsDeprecated[compression.Name(c)], "compressor %q is deprecated", c)
	}
	require.NotContains(t, datapath.Compressors, "lz4")
}

func packBytes(t *testing.T, dir string) int64 {
	var n int64
	require.NoError(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		rel, _ := filepath.Rel(dir, p)
		if err != nil || d.IsDir() || !strings.HasPrefix(rel, "p") { // pack blobs, sharded
			return err
		}
		info, err := d.Info()
		n += info.Size()
		return err
	}))
	return n
}

// A compressed backup stores less, restores byte for byte, and its source policy (what
// `kopia policy show` reads) names the compressor.
func TestCompressedBackupRoundTrip(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	text := bytes.Repeat([]byte("postgres page of a compressible table row\n"), 200_000) // 8.4 MB
	require.NoError(t, os.WriteFile(filepath.Join(src, "table"), text, 0o600))

	plain := openRepo(t, kopiatest.Location(t), Options{Create: true})
	_, err := plain.Backup(ctx, kopiatest.BackupRequest(src))
	require.NoError(t, err)

	r := openRepo(t, kopiatest.Location(t), Options{Create: true})
	req := kopiatest.BackupRequest(src)
	req.Compression = "zstd"
	res, err := r.Backup(ctx, req)
	require.NoError(t, err)
	stored, uncompressed := packBytes(t, repoDir(r.st.Location())), packBytes(t, repoDir(plain.st.Location()))
	t.Logf("stored %d bytes compressed, %d uncompressed", stored, uncompressed)
	require.Less(t, stored, uncompressed/10)

	pol, err := policy.GetDefinedPolicy(ctx, r.st.Direct(), snapshot.SourceInfo{UserName: "default", Host: "default", Path: store.SourcePath("app", "data")})
	require.NoError(t, err)
	require.Equal(t, compression.Name("zstd"), pol.CompressionPolicy.CompressorName)

	dst := filepath.Join(t.TempDir(), "restore")
	_, err = r.Restore(ctx, datapath.RestoreRequest{SnapshotID: res.SnapshotID, Path: dst})
	require.NoError(t, err)
	got, err := os.ReadFile(filepath.Join(dst, "table"))
	require.NoError(t, err)
	require.Equal(t, text, got)

	req.Compression = "lz4"
	_, err = r.Backup(ctx, req)
	require.ErrorContains(t, err, `compression "lz4" is not one of none, zstd`)
}

// The checkpoint of an interrupted upload (an incomplete snapshot newer than the last
// complete one) is a parent of the next backup, so what it holds is not read again; once
// a complete snapshot is saved no checkpoint of the source is left.
func TestBackupResumesFromCheckpointAndRemovesIt(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(src, "a"), bytes.Repeat([]byte("a"), 1<<20), 0o600))
	r := openRepo(t, kopiatest.Location(t), Options{Create: true})
	first, err := r.Backup(ctx, kopiatest.BackupRequest(src))
	require.NoError(t, err)
	si := snapshot.SourceInfo{UserName: "default", Host: "default", Path: store.SourcePath("app", "data")}

	// An interrupted second backup left a checkpoint holding a new file "b" already.
	require.NoError(t, os.WriteFile(filepath.Join(src, "b"), bytes.Repeat([]byte("b"), 2<<20), 0o600))
	cp := openRepo(t, r.st.Location(), Options{})
	_, err = cp.Backup(ctx, kopiatest.BackupRequest(src)) // stands in for the checkpoint's content
	require.NoError(t, err)
	mans, err := snapshot.ListSnapshots(ctx, cp.st.Direct(), si)
	require.NoError(t, err)
	var newest *snapshot.Manifest
	for _, m := range mans {
		if newest == nil || m.StartTime.After(newest.StartTime) {
			newest = m
		}
	}
	require.NoError(t, repo.WriteSession(ctx, cp.st.Direct(), repo.WriteSessionOptions{Purpose: "test"}, func(ctx context.Context, w repo.RepositoryWriter) error {
		checkpoint := *newest
		checkpoint.ID = ""
		checkpoint.IncompleteReason = upload.IncompleteReasonCheckpoint
		if err := w.DeleteManifest(ctx, newest.ID); err != nil { // only the checkpoint is left of it
			return err
		}
		_, err := snapshot.SaveSnapshot(ctx, w, &checkpoint)
		return err
	}))
	complete, checkpoint, err := backup.FindPreviousSnapshot(ctx, cp.st.Direct(), si, map[string]string{store.TagRequester: store.Requester, store.TagUploader: store.Uploader})
	require.NoError(t, err)
	require.Equal(t, first.SnapshotID, string(complete.ID))
	require.NotNil(t, checkpoint, "the checkpoint is newer than the complete snapshot")

	// The resumed backup reads nothing the checkpoint holds unchanged.
	r2 := openRepo(t, r.st.Location(), Options{})
	resumed, err := r2.Backup(ctx, kopiatest.BackupRequest(src))
	require.NoError(t, err)
	require.Zero(t, resumed.IncrementalBytes, "file b came from the checkpoint, a from the parent")
	mans, err = snapshot.ListSnapshots(ctx, r2.st.Direct(), si)
	require.NoError(t, err)
	for _, m := range mans {
		require.Empty(t, m.IncompleteReason, "checkpoint %s left after a complete snapshot", m.ID)
	}
}

// An interrupted upload leaves a checkpoint every CheckpointInterval, all with the
// upload's start time: the resume starts from the one written last, which holds the most
// (picking by start time alone took whichever the listing gave first, often the first
// checkpoint, and re-read nearly the whole volume).
func TestResumeStartsFromTheLastCheckpoint(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(src, "a"), []byte("a"), 0o600))
	r := openRepo(t, kopiatest.Location(t), Options{Create: true})
	first, err := r.Backup(ctx, kopiatest.BackupRequest(src))
	require.NoError(t, err)
	si := snapshot.SourceInfo{UserName: "default", Host: "default", Path: store.SourcePath("app", "data")}
	complete, err := snapshot.LoadSnapshot(ctx, r.st.Direct(), manifest.ID(first.SnapshotID))
	require.NoError(t, err)

	// One interrupted upload, started after the complete one, checkpointed five times.
	start := complete.StartTime.Add(time.Minute)
	var last manifest.ID
	require.NoError(t, repo.WriteSession(ctx, r.st.Direct(), repo.WriteSessionOptions{Purpose: "test"}, func(ctx context.Context, w repo.RepositoryWriter) error {
		for _, i := range []int{3, 1, 5, 2, 4} {
			cp := *complete
			cp.ID = ""
			cp.IncompleteReason = upload.IncompleteReasonCheckpoint
			cp.StartTime, cp.EndTime = start, start.Add(time.Duration(i)*time.Second)
			id, err := snapshot.SaveSnapshot(ctx, w, &cp)
			if err != nil {
				return err
			}
			if i == 5 {
				last = id
			}
		}
		return nil
	}))
	tags := map[string]string{store.TagRequester: store.Requester, store.TagUploader: store.Uploader}
	for range 5 { // the listing's order is the manifests' IDs', which are random
		parent, checkpoint, err := backup.FindPreviousSnapshot(ctx, r.st.Direct(), si, tags)
		require.NoError(t, err)
		require.Equal(t, complete.ID, parent.ID)
		require.NotNil(t, checkpoint)
		require.Equal(t, last, checkpoint.ID)
	}
}
