package kopia

import (
	"context"
	cryptorand "crypto/rand"
	"errors"
	"fmt"
	"math/rand"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kopia/kopia/repo/blob"
	"github.com/kopia/kopia/repo/manifest"
	"github.com/kopia/kopia/repo/object"
	"github.com/kopia/kopia/snapshot"
	"github.com/stretchr/testify/require"

	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/mover/kopia/inspect"
	"github.com/snapmove/snapmove/internal/mover/kopia/kopiatest"
	"github.com/snapmove/snapmove/internal/mover/kopia/store"
	"github.com/snapmove/snapmove/internal/mover/kopia/tree"
)

var (
	verifyMetadata = datapath.VerifyMode{Level: datapath.VerifyMetadata}
	verifyFull     = datapath.VerifyMode{Level: datapath.VerifyFull}
	verifyNone     = datapath.VerifyMode{Level: datapath.VerifyNone}
)

func verifySample(pct int) datapath.VerifyMode {
	return datapath.VerifyMode{Level: datapath.VerifySample, Percent: pct}
}

// countTree counts what a backup of root holds, as VerifyResult.Checked counts it.
func countTree(t *testing.T, root string) datapath.TreeCounts {
	var c datapath.TreeCounts
	require.NoError(t, filepath.Walk(root, func(_ string, st os.FileInfo, err error) error {
		require.NoError(t, err)
		switch {
		case st.IsDir():
			c.Dirs++
		case st.Mode()&os.ModeSymlink != 0:
			c.Symlinks++
		case st.Mode().IsRegular():
			c.Files++
			c.Bytes += st.Size()
		}
		return nil
	}))
	return c
}

func TestBackupVerifies(t *testing.T) {
	ctx := context.Background()
	src := buildTree(t, t.TempDir())
	want := countTree(t, src.root)

	for _, tc := range []struct {
		name      string
		mode      datapath.VerifyMode
		wantLevel datapath.VerifyLevel
		wantRead  func(t *testing.T, res datapath.VerifyResult)
		summary   string
	}{
		{name: "zero mode is metadata", wantLevel: datapath.VerifyMetadata, summary: "verified (metadata): 9 files, 10 directories, 4 symlinks, 37.9 MB in ",
			wantRead: func(t *testing.T, res datapath.VerifyResult) { require.Zero(t, res.FilesRead) }},
		{name: "metadata", mode: verifyMetadata, wantLevel: datapath.VerifyMetadata,
			wantRead: func(t *testing.T, res datapath.VerifyResult) { require.Zero(t, res.FilesRead) }},
		{name: "full", mode: verifyFull, wantLevel: datapath.VerifyFull, summary: "; content of 9 files (37.9 MB) read back in ",
			wantRead: func(t *testing.T, res datapath.VerifyResult) {
				require.Equal(t, want.Files, res.FilesRead)
				require.Equal(t, want.Bytes, res.BytesRead)
			}},
		{name: "sample", mode: verifySample(30), wantLevel: datapath.VerifySample, summary: "verified (sample:30): ",
			wantRead: func(t *testing.T, res datapath.VerifyResult) {
				require.Positive(t, res.FilesRead)
				require.Less(t, res.FilesRead, want.Files)
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := openRepo(t, kopiatest.Location(t), Options{Create: true}) // no parent
			req := kopiatest.BackupRequest(src.root)
			req.Verify = tc.mode
			res, err := r.Backup(ctx, req)
			require.NoError(t, err)
			v := res.Verification
			require.Equal(t, tc.wantLevel, v.Mode.Level)
			require.Equal(t, want, v.Checked, "every entry is read back")
			require.Zero(t, v.Shared)
			tc.wantRead(t, v)
		})
	}

	t.Run("none", func(t *testing.T) {
		r := openRepo(t, kopiatest.Location(t), Options{Create: true})
		req := kopiatest.BackupRequest(src.root)
		req.Verify = verifyNone
		res, err := r.Backup(ctx, req)
		require.NoError(t, err)
		require.Equal(t, datapath.VerifyResult{Mode: verifyNone}, res.Verification)
	})
}

func TestVerifyBlockVolume(t *testing.T) {
	ctx := context.Background()
	dev := filepath.Join(t.TempDir(), "disk.img")
	data := make([]byte, 5<<20)
	rand.New(rand.NewSource(3)).Read(data)
	require.NoError(t, os.WriteFile(dev, data, 0o600))
	r := openRepo(t, kopiatest.Location(t), Options{Create: true})
	req := kopiatest.BackupRequest(dev)
	req.Block, req.Verify = true, verifyFull
	res, err := r.Backup(ctx, req)
	require.NoError(t, err)
	require.Equal(t, datapath.TreeCounts{Files: 1, Dirs: 1, Bytes: 5 << 20}, res.Verification.Checked)
	require.Equal(t, int64(5<<20), res.Verification.BytesRead)
}

func TestVerifyIncrementalAndParts(t *testing.T) {
	ctx := context.Background()
	src := buildTree(t, t.TempDir())
	r := openRepo(t, kopiatest.Location(t), Options{Create: true})
	_, err := r.Backup(ctx, kopiatest.BackupRequest(src.root))
	require.NoError(t, err)

	// the second backup takes every file from its parent: the counts still add up
	require.NoError(t, os.WriteFile(filepath.Join(src.root, "new.txt"), []byte("new"), 0o644))
	t.Cleanup(inspect.SetPartBytes(1 << 20)) // the 12 MB file is read in parts
	req := kopiatest.BackupRequest(src.root)
	req.Verify, req.Parallel = verifyFull, 4
	res, err := r.Backup(ctx, req)
	require.NoError(t, err)
	want := countTree(t, src.root)
	require.Equal(t, want, res.Verification.Checked)
	require.Equal(t, want.Bytes, res.Verification.BytesRead)
	require.Less(t, res.IncrementalBytes, res.TotalBytes)
}

func TestVerifySampleIsReproducible(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	for i := range 40 {
		require.NoError(t, os.WriteFile(filepath.Join(src, "f"+strings.Repeat("x", i)), []byte(strings.Repeat("y", i+1)), 0o644))
	}
	r := openRepo(t, kopiatest.Location(t), Options{Create: true})
	res, err := r.Backup(ctx, kopiatest.BackupRequest(src))
	require.NoError(t, err)

	first, err := r.VerifySnapshot(ctx, res.SnapshotID, verifySample(30), nil)
	require.NoError(t, err)
	require.Greater(t, first.FilesRead, int64(1))
	require.Less(t, first.FilesRead, int64(30))
	for range 3 {
		again, err := r.VerifySnapshot(ctx, res.SnapshotID, verifySample(30), nil)
		require.NoError(t, err)
		require.Equal(t, first.FilesRead, again.FilesRead)
		require.Equal(t, first.BytesRead, again.BytesRead)
	}

	// a sample too small to pick any file still reads one
	one, err := r.VerifySnapshot(ctx, res.SnapshotID, verifySample(1), nil)
	require.NoError(t, err)
	require.Positive(t, one.FilesRead)
	require.LessOrEqual(t, one.FilesRead, int64(3))

	_, err = r.VerifySnapshot(ctx, res.SnapshotID, verifySample(0), nil)
	require.ErrorContains(t, err, "want 1 to 100")
	_, err = r.VerifySnapshot(ctx, "", verifyMetadata, nil)
	require.ErrorContains(t, err, "empty snapshot ID")
	_, err = r.VerifySnapshot(ctx, "kdoesnotexist", verifyMetadata, nil)
	require.ErrorContains(t, err, "loading snapshot kdoesnotexist")
}

func TestVerifyCountMismatch(t *testing.T) {
	ctx := context.Background()
	src := buildTree(t, t.TempDir())
	r := openRepo(t, kopiatest.Location(t), Options{Create: true})
	res, err := r.Backup(ctx, kopiatest.BackupRequest(src.root))
	require.NoError(t, err)

	want := countTree(t, src.root)
	got, err := r.VerifySnapshot(ctx, res.SnapshotID, verifyMetadata, &want)
	require.NoError(t, err)
	require.Equal(t, want, got.Checked)

	reported := want
	reported.Files++
	reported.Bytes -= 10
	_, err = r.VerifySnapshot(ctx, res.SnapshotID, verifyMetadata, &reported)
	var ve *datapath.VerificationError
	require.ErrorAs(t, err, &ve)
	require.Equal(t, []string{
		".: the upload reported 10 files, the repository holds 9",
		fmt.Sprintf(".: the upload reported %d bytes of files, the repository holds %d", want.Bytes-10, want.Bytes),
	}, ve.Problems)
	require.Equal(t, "snapshot "+res.SnapshotID+" failed verification (metadata): "+strings.Join(ve.Problems, "; "), err.Error())
}

// fileContent is where file rel's (single) content is stored.
func fileContent(t *testing.T, r *Repository, snapshotID, rel string) (blobPath string, offset, length int64) {
	ctx := context.Background()
	man, err := snapshot.LoadSnapshot(ctx, r.st.Direct(), manifest.ID(snapshotID))
	require.NoError(t, err)
	entries, err := tree.ReadDir(ctx, r.st.Direct(), man.RootEntry.ObjectID)
	require.NoError(t, err)
	var oid object.ID
	for _, e := range entries {
		if e.Name == rel {
			oid = e.ObjectID
		}
	}
	cid, _, ok := oid.ContentID()
	require.True(t, ok, "%s is one content", rel)
	info, err := r.st.Direct().ContentInfo(ctx, cid)
	require.NoError(t, err)

	// the filesystem storage shards blob IDs into directories: p0a1b2c... is p0a/1b2/c....f
	dir := repoDir(r.st.Location())
	require.NoError(t, filepath.Walk(dir, func(p string, st os.FileInfo, err error) error {
		require.NoError(t, err)
		rel, err := filepath.Rel(dir, p)
		require.NoError(t, err)
		if !st.IsDir() && strings.ReplaceAll(strings.TrimSuffix(rel, ".f"), string(filepath.Separator), "") == string(info.PackBlobID) {
			blobPath = p
		}
		return nil
	}))
	require.NotEmpty(t, blobPath, "pack blob %s", info.PackBlobID)
	return blobPath, int64(info.PackOffset), int64(info.PackedLength)
}

func flipByte(t *testing.T, path string, off int64) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close() //nolint:errcheck
	b := make([]byte, 1)
	_, err = f.ReadAt(b, off)
	require.NoError(t, err)
	b[0] ^= 0xff
	_, err = f.WriteAt(b, off)
	require.NoError(t, err)
}

// corruptTree backs up three files of random data and flips a byte in the stored
// content of each file named in corrupt.
func corruptTree(t *testing.T, corrupt ...string) (*Repository, string, string) {
	ctx := context.Background()
	src := t.TempDir()
	rng := rand.New(rand.NewSource(9))
	for _, name := range []string{"a.bin", "b.bin", "c.bin"} {
		data := make([]byte, 1<<20)
		rng.Read(data)
		require.NoError(t, os.WriteFile(filepath.Join(src, name), data, 0o644))
	}
	r := openRepo(t, kopiatest.Location(t), Options{Create: true})
	res, err := r.Backup(ctx, kopiatest.BackupRequest(src))
	require.NoError(t, err, "metadata verification reads no file data")
	for _, name := range corrupt {
		blobPath, off, n := fileContent(t, r, res.SnapshotID, name)
		flipByte(t, blobPath, off+n/2)
	}
	return r, src, res.SnapshotID
}

func TestVerifyFindsCorruptContent(t *testing.T) {
	ctx := context.Background()
	r, _, id := corruptTree(t, "b.bin")
	// as a CLI would: read-only, no cache
	ro := openRepo(t, r.st.Location(), Options{ReadOnly: true, CacheLimitMB: -1})

	_, err := ro.VerifySnapshot(ctx, id, verifyMetadata, nil)
	require.NoError(t, err, "the metadata level reads no file data")

	_, err = ro.VerifySnapshot(ctx, id, verifyFull, nil)
	var ve *datapath.VerificationError
	require.ErrorAs(t, err, &ve)
	require.Len(t, ve.Problems, 1)
	require.True(t, strings.HasPrefix(ve.Problems[0], "b.bin: reading bytes 0-1048576: "), ve.Problems[0])
	require.Contains(t, err.Error(), "snapshot "+id+" failed verification (full): b.bin: reading bytes 0-1048576")

	// every file is corrupt: any sample names the file it read
	r, _, id = corruptTree(t, "a.bin", "b.bin", "c.bin")
	ro = openRepo(t, r.st.Location(), Options{ReadOnly: true, CacheLimitMB: -1})
	res, err := ro.VerifySnapshot(ctx, id, verifySample(1), nil)
	require.ErrorAs(t, err, &ve)
	require.Positive(t, res.FilesRead)
	require.Len(t, ve.Problems, int(res.FilesRead), "each file read is named")
	require.Regexp(t, `^[abc]\.bin: reading bytes 0-1048576: `, ve.Problems[0])
	_, err = ro.VerifySnapshot(ctx, id, verifyFull, nil)
	require.ErrorAs(t, err, &ve)
	require.Len(t, ve.Problems, 3)
}

func TestVerifyFindsMissingPack(t *testing.T) {
	ctx := context.Background()
	r, _, id := corruptTree(t)
	blobPath, _, _ := fileContent(t, r, id, "a.bin")
	require.NoError(t, os.Remove(blobPath))
	ro := openRepo(t, r.st.Location(), Options{ReadOnly: true, CacheLimitMB: -1})
	_, err := ro.VerifySnapshot(ctx, id, verifyMetadata, nil)
	var ve *datapath.VerificationError
	require.ErrorAs(t, err, &ve)
	require.Len(t, ve.Problems, 1)
	require.Regexp(t, `^[abc]\.bin: its content is in pack blob p[0-9a-f]+-s[0-9a-f]+, which is missing$`, ve.Problems[0])
}

// A backup whose verification fails saves no snapshot: here the files come unchanged
// from a parent whose stored content was damaged after it was written (verified then
// with metadata only, so the full verification asked now reads them again).
func TestBackupDoesNotSaveSnapshotThatFailsVerification(t *testing.T) {
	ctx := context.Background()
	r, src, parent := corruptTree(t, "c.bin")

	req := kopiatest.BackupRequest(src)
	req.Verify = verifyFull
	res, err := r.Backup(ctx, req)
	require.Error(t, err)
	require.Equal(t, datapath.BackupResult{}, res)
	var ve *datapath.VerificationError
	require.ErrorAs(t, err, &ve)
	require.Empty(t, ve.SnapshotID)
	require.Regexp(t, `^backing up PVC app/data to repository at .*: the new snapshot failed verification \(full\) and was not saved: c.bin: reading bytes 0-1048576: `, err.Error())

	mans, err := snapshot.ListSnapshots(ctx, r.st.Direct(), snapshot.SourceInfo{UserName: store.User, Host: store.Host, Path: store.SourcePath("app", "data")})
	require.NoError(t, err)
	require.Len(t, mans, 1)
	require.Equal(t, manifest.ID(parent), mans[0].ID, "only the parent is left")
}

// cancelOnRead cancels the context on the first read of a pack blob: in a backup into a
// new repository only the verification reads packs.
type cancelOnRead struct {
	blob.Storage
	cancel context.CancelFunc
}

func (c cancelOnRead) GetBlob(ctx context.Context, id blob.ID, offset, length int64, out blob.OutputBuffer) error {
	if strings.HasPrefix(string(id), "p") {
		c.cancel()
	}
	return c.Storage.GetBlob(ctx, id, offset, length, out)
}

func TestBackupSavesNothingWhenVerificationIsCanceled(t *testing.T) {
	src := buildTree(t, t.TempDir())
	r := openRepo(t, kopiatest.Location(t), Options{Create: true})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(store.SetStorageWrapper(func(st blob.Storage) blob.Storage { return cancelOnRead{Storage: st, cancel: cancel} }))
	req := kopiatest.BackupRequest(src.root)
	req.Verify = verifyFull
	_, err := r.Backup(ctx, req)
	require.ErrorIs(t, err, context.Canceled)
	require.Contains(t, err.Error(), "verifying the new snapshot")

	mans, err := snapshot.ListSnapshots(context.Background(), r.st.Direct(), snapshot.SourceInfo{UserName: store.User, Host: store.Host, Path: store.SourcePath("app", "data")})
	require.NoError(t, err)
	require.Empty(t, mans)
}

// flakyStorage fails reads of pack blobs (GetBlob, GetMetadata) as a store that is
// away does: the next fails reads, or every one while fails is negative.
type flakyStorage struct {
	blob.Storage
	fails *atomic.Int64
}

func (f flakyStorage) fail(id blob.ID) error {
	if !strings.HasPrefix(string(id), "p") {
		return nil
	}
	if n := f.fails.Load(); n < 0 || n > 0 && f.fails.CompareAndSwap(n, n-1) {
		return &url.Error{Op: "Get", URL: "http://minio:9000/bkt/" + string(id), Err: &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}}
	}
	return nil
}

func (f flakyStorage) GetBlob(ctx context.Context, id blob.ID, offset, length int64, out blob.OutputBuffer) error {
	if err := f.fail(id); err != nil {
		return err
	}
	return f.Storage.GetBlob(ctx, id, offset, length, out)
}

func (f flakyStorage) GetMetadata(ctx context.Context, id blob.ID) (blob.Metadata, error) {
	if err := f.fail(id); err != nil {
		return blob.Metadata{}, err
	}
	return f.Storage.GetMetadata(ctx, id)
}

// flakyStore makes the connections opened during the test read pack blobs through a
// flakyStorage, and returns its counter of failures to come.
func flakyStore(t *testing.T) *atomic.Int64 {
	fails := &atomic.Int64{}
	t.Cleanup(store.SetStorageWrapper(func(st blob.Storage) blob.Storage { return flakyStorage{Storage: st, fails: fails} }))
	t.Cleanup(inspect.SetRetryDelay(time.Millisecond))
	return fails
}

// A store that fails reads for a while is not a corrupt snapshot: a read that fails for a
// reason that may pass is tried again, and when the store stays away the verification
// ends with a transient error, not a failed verification.
func TestVerifyStoreAway(t *testing.T) {
	ctx := context.Background()
	r, _, id := corruptTree(t)
	fails := flakyStore(t)
	ro := openRepo(t, r.st.Location(), Options{ReadOnly: true, CacheLimitMB: -1})
	for _, tc := range []struct {
		name    string
		mode    datapath.VerifyMode
		fails   int64
		wantErr string // empty: verified
	}{
		{name: "blink while reading", mode: verifyFull, fails: 3},
		{name: "blink while checking packs", mode: verifyMetadata, fails: 2},
		{name: "away while reading", mode: verifyFull, fails: -1, wantErr: ": reading bytes 0-1048576: the store failed 4 attempts: "},
		{name: "away while checking packs", mode: verifyMetadata, fails: -1, wantErr: ": reading the metadata of pack blob p"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fails.Store(tc.fails)
			res, err := ro.VerifySnapshot(ctx, id, tc.mode, nil)
			fails.Store(0)
			if tc.wantErr == "" {
				require.NoError(t, err)
				require.Equal(t, int64(3), res.Checked.Files)
				return
			}
			require.ErrorContains(t, err, tc.wantErr)
			require.True(t, store.IsTransient(err), "transient: %v", err)
			var ve *datapath.VerificationError
			require.False(t, errors.As(err, &ve), "not a failed verification: %v", err)
		})
	}
}

// A backup whose verification the store cut short ends transient, and saves no
// snapshot; it did not fail verification.
func TestBackupWhenStoreAwayDuringVerification(t *testing.T) {
	ctx := context.Background()
	src := buildTree(t, t.TempDir())
	fails := flakyStore(t)
	r := openRepo(t, kopiatest.Location(t), Options{Create: true})
	req := kopiatest.BackupRequest(src.root)
	req.Verify = verifyFull
	// In a new repository only the verification reads packs.
	fails.Store(-1)
	_, err := r.Backup(ctx, req)
	fails.Store(0)
	require.True(t, store.IsTransient(err), "transient: %v", err)
	var ve *datapath.VerificationError
	require.False(t, errors.As(err, &ve), "not a failed verification: %v", err)
	require.NotContains(t, err.Error(), "failed verification")
	require.Regexp(t, `^backing up PVC app/data to repository at .*: verifying the new snapshot: .*the store failed 4 attempts`, err.Error())

	mans, err := snapshot.ListSnapshots(ctx, r.st.Direct(), snapshot.SourceInfo{UserName: store.User, Host: store.Host, Path: store.SourcePath("app", "data")})
	require.NoError(t, err)
	require.Empty(t, mans)
}

// missingNewPacks says that every pack blob not in old is missing (GetMetadata), as a
// store that lost what was just written would.
type missingNewPacks struct {
	blob.Storage
	old map[blob.ID]bool
}

func (m missingNewPacks) GetMetadata(ctx context.Context, id blob.ID) (blob.Metadata, error) {
	if strings.HasPrefix(string(id), "p") && !m.old[id] {
		return blob.Metadata{}, blob.ErrBlobNotFound
	}
	return m.Storage.GetMetadata(ctx, id)
}

// TestVerifySharesWhatVerifiedParentHolds (issue #25): a backup's verification does not
// read back again what it shares with a parent verified to the same mode or more (a
// no-op backup checks nothing but its root), still checks everything new (a lost pack
// of a new file fails it), and reads everything when the parent was verified to less.
func TestVerifySharesWhatVerifiedParentHolds(t *testing.T) {
	ctx := context.Background()
	src := buildTree(t, t.TempDir())
	want := countTree(t, src.root)
	loc := kopiatest.Location(t)
	r := openRepo(t, loc, Options{Create: true})
	backup := func(mode datapath.VerifyMode) (datapath.BackupResult, error) {
		req := kopiatest.BackupRequest(src.root)
		req.Verify = mode
		return r.Backup(ctx, req)
	}

	first, err := backup(verifyMetadata)
	require.NoError(t, err)
	require.Zero(t, first.Verification.Shared)

	noop, err := backup(verifyMetadata)
	require.NoError(t, err)
	require.Equal(t, want, noop.Verification.Checked)
	require.Equal(t, want, noop.Verification.Shared, "the whole tree is the verified parent's")

	full, err := backup(verifyFull)
	require.NoError(t, err)
	require.Zero(t, full.Verification.Shared, "a parent verified with metadata only covers no full verification")
	require.Equal(t, want.Files, full.Verification.FilesRead)

	sample, err := backup(verifySample(50))
	require.NoError(t, err)
	require.Equal(t, want, sample.Verification.Shared, "a full verification covers a sample")
	require.Zero(t, sample.Verification.FilesRead)

	// A new file in a new directory: the rest is shared, the new content checked.
	require.NoError(t, os.MkdirAll(filepath.Join(src.root, "a", "b", "new"), 0o755))
	require.NoError(t, writeRandomFile(filepath.Join(src.root, "a", "b", "new", "n.bin"), 64<<10))
	want2 := countTree(t, src.root)
	old := map[blob.ID]bool{}
	require.NoError(t, r.st.Direct().BlobReader().ListBlobs(ctx, "p", func(bm blob.Metadata) error { old[bm.BlobID] = true; return nil }))

	changed, err := backup(verifyMetadata)
	require.NoError(t, err)
	v := changed.Verification
	require.Equal(t, want2, v.Checked)
	require.Equal(t, want2.Files-1, v.Shared.Files, "all files but the new one are the parent's")
	require.Less(t, v.Shared.Dirs, want2.Dirs, "the directories on the new file's path are listed")

	require.NoError(t, writeRandomFile(filepath.Join(src.root, "a", "b", "new", "n2.bin"), 64<<10))
	t.Cleanup(store.SetStorageWrapper(func(st blob.Storage) blob.Storage { return missingNewPacks{Storage: st, old: old} }))
	r2 := openRepo(t, loc, Options{})
	req := kopiatest.BackupRequest(src.root)
	_, err = r2.Backup(ctx, req)
	var ve *datapath.VerificationError
	require.ErrorAs(t, err, &ve, "a lost pack of new content is found")
	require.Len(t, ve.Problems, 1, ve.Problems)
	require.Regexp(t, `^a/b/new/n2?\.bin: its content is in pack blob p[0-9a-f-s]+, which is missing$`, ve.Problems[0])
}

func writeRandomFile(path string, n int) error {
	b := make([]byte, n)
	_, _ = cryptorand.Read(b)
	return os.WriteFile(path, b, 0o600)
}

func TestCovers(t *testing.T) {
	for _, tc := range []struct {
		verified string
		mode     datapath.VerifyMode
		want     bool
	}{
		{"metadata", verifyMetadata, true},
		{"metadata", datapath.VerifyMode{}, true},
		{"metadata", verifySample(1), false},
		{"sample:10", verifySample(10), true},
		{"sample:10", verifySample(20), false},
		{"sample:20", verifyMetadata, true},
		{"sample:x", verifyMetadata, false},
		{"full", verifySample(100), true},
		{"full", verifyFull, true},
		{"sample:100", verifyFull, false},
		{"", verifyMetadata, false},
		{"none", verifyMetadata, false},
		{"bogus", verifyMetadata, false},
	} {
		require.Equal(t, tc.want, inspect.Covers(tc.verified, tc.mode), "%q covers %s", tc.verified, tc.mode)
	}
}
