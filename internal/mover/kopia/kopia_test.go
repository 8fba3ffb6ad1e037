package kopia

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"maps"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kopia/kopia/repo"
	"github.com/kopia/kopia/repo/encryption"
	"github.com/kopia/kopia/repo/format"
	"github.com/kopia/kopia/repo/hashing"
	"github.com/kopia/kopia/repo/maintenance"
	"github.com/kopia/kopia/repo/manifest"
	"github.com/kopia/kopia/repo/splitter"
	"github.com/kopia/kopia/snapshot"
	"github.com/kopia/kopia/snapshot/policy"
	kopiarestore "github.com/kopia/kopia/snapshot/restore"
	"github.com/kopia/kopia/snapshot/snapshotfs"
	"github.com/kopia/kopia/snapshot/upload"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/mover/kopia/kopiatest"
	"github.com/snapmove/snapmove/internal/mover/kopia/restore"
	"github.com/snapmove/snapmove/internal/mover/kopia/store"
	"github.com/snapmove/snapmove/internal/mover/repository"
)

func openRepo(t *testing.T, loc repository.Location, opts Options) *Repository {
	t.Helper()
	r, err := Open(context.Background(), loc, kopiatest.Password, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Close(context.Background()) })
	return r
}

func repoDir(loc repository.Location) string { return filepath.Join(loc.Path, loc.Prefix) }

func TestOpenCreatesVeleroCompatibleRepository(t *testing.T) {
	ctx := context.Background()
	loc := kopiatest.Location(t)

	r := openRepo(t, loc, Options{Create: true})

	// kopia's defaults, as Velero creates repositories, but for the faster hash
	f := r.st.Direct().ContentReader().ContentFormat()
	require.Equal(t, DefaultHash, f.GetHashFunction())
	require.Equal(t, "BLAKE3-256-128", f.GetHashFunction())
	require.Equal(t, encryption.DefaultAlgorithm, f.GetEncryptionAlgorithm())
	require.Equal(t, "AES256-GCM-HMAC-SHA256", f.GetEncryptionAlgorithm())
	require.Equal(t, splitter.DefaultAlgorithm, r.st.Direct().ObjectFormat().Splitter)
	require.Equal(t, "DYNAMIC-4M-BUZHASH", r.st.Direct().ObjectFormat().Splitter)
	require.Equal(t, format.FormatVersion3, f.GetCachedMutableParameters().Version)
	require.Equal(t, "", f.GetECCAlgorithm())

	// Velero's init: maintenance owner and the udmrepo blob
	params, err := maintenance.GetParams(ctx, r.st.Direct())
	require.NoError(t, err)
	require.Equal(t, "default@default", params.Owner)
	require.Equal(t, time.Hour, params.QuickCycle.Interval)
	require.Equal(t, 24*time.Hour, params.FullCycle.Interval)
	require.Equal(t, udmRepoUniqueID(t, loc), formatUniqueID(t, loc))
	require.NoError(t, r.Close(ctx))

	// reopen without Create; the temporary config is gone after Close
	r2 := openRepo(t, loc, Options{})
	require.NoError(t, r2.Close(ctx))

	// read-only opens too
	openRepo(t, loc, Options{ReadOnly: true})
}

func formatUniqueID(t *testing.T, loc repository.Location) []byte {
	b, err := os.ReadFile(filepath.Join(repoDir(loc), format.KopiaRepositoryBlobID+".f"))
	require.NoError(t, err)
	f, err := format.ParseKopiaRepositoryJSON(b)
	require.NoError(t, err)
	return f.UniqueID
}

func udmRepoUniqueID(t *testing.T, loc repository.Location) []byte {
	b, err := os.ReadFile(filepath.Join(repoDir(loc), udmRepoBlob+".f"))
	require.NoError(t, err)
	var raw map[string]string
	require.NoError(t, json.Unmarshal(b, &raw))
	require.Contains(t, raw, "uniqueID") // base64 in JSON, as Velero writes it
	var md udmRepoMetadata
	require.NoError(t, json.Unmarshal(b, &md))
	return md.UniqueID
}

// udmRepoBlob and udmRepoMetadata are what Velero's init writes (velero kopialib/repo_init.go).
const udmRepoBlob = "udmrepo.Repository"

type udmRepoMetadata struct {
	UniqueID []byte `json:"uniqueID"`
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	created := kopiatest.Location(t)
	openRepo(t, created, Options{Create: true}).Close(ctx) //nolint:errcheck

	foreign := kopiatest.Location(t)
	require.NoError(t, os.MkdirAll(repoDir(foreign), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(repoDir(foreign), "something.f"), []byte("x"), 0o600))

	missingBase := kopiatest.Location(t)
	missingBase.Path = filepath.Join(missingBase.Path, "nope")

	tests := []struct {
		name     string
		loc      repository.Location
		password string
		opts     Options
		wantIs   error
		wantMsg  string
	}{
		{"wrong password", created, "other", Options{}, ErrWrongPassword, "repository at " + created.String() + " rejected the password"},
		{"wrong password with create", created, "other", Options{Create: true}, ErrWrongPassword, created.String()},
		{"missing repository", kopiatest.Location(t), kopiatest.Password, Options{}, ErrNotInitialized, "no kopia repository at filesystem:"},
		{"read-only never creates", kopiatest.Location(t), kopiatest.Password, Options{Create: true, ReadOnly: true}, ErrNotInitialized, "no kopia repository"},
		{"missing base directory", missingBase, kopiatest.Password, Options{Create: true}, ErrBucketNotFound, "does not exist"},
		{"foreign data", foreign, kopiatest.Password, Options{Create: true}, nil, "holds data but no kopia repository"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Open(ctx, tc.loc, tc.password, tc.opts)
			require.Error(t, err)
			require.Nil(t, r)
			if tc.wantIs != nil {
				require.ErrorIs(t, err, tc.wantIs)
			}
			require.ErrorContains(t, err, tc.wantMsg)
		})
	}
	require.NoDirExists(t, repoDir(missingBase))
}

func TestOpenWritesMissingUdmRepoBlob(t *testing.T) {
	ctx := context.Background()
	loc := kopiatest.Location(t)
	require.NoError(t, openRepo(t, loc, Options{Create: true}).Close(ctx))
	require.NoError(t, os.Remove(filepath.Join(repoDir(loc), udmRepoBlob+".f")))

	// read-only clients leave it alone (Velero: NotInitialized is usable for reading)
	require.NoError(t, openRepo(t, loc, Options{ReadOnly: true}).Close(ctx))
	require.NoFileExists(t, filepath.Join(repoDir(loc), udmRepoBlob+".f"))

	require.NoError(t, openRepo(t, loc, Options{}).Close(ctx))
	require.Equal(t, formatUniqueID(t, loc), udmRepoUniqueID(t, loc))

	// a blob that does not match is refused, as Velero's "Corrupted"
	require.NoError(t, os.WriteFile(filepath.Join(repoDir(loc), udmRepoBlob+".f"), []byte(`{"uniqueID":"AAAA"}`), 0o600))
	_, err := Open(ctx, loc, kopiatest.Password, Options{})
	require.ErrorContains(t, err, "unique ID")
}

// tree builds a source tree covering what a restore must reproduce.
type fixture struct {
	root    string
	sparse  string
	bigFile string
}

func buildTree(t *testing.T, root string) fixture {
	rng := rand.New(rand.NewSource(1))
	random := func(n int) []byte {
		b := make([]byte, n)
		rng.Read(b)
		return b
	}
	mtime := time.Date(2021, 3, 4, 5, 6, 7, 123456789, time.UTC)
	write := func(rel string, data []byte, mode os.FileMode) string {
		p := filepath.Join(root, rel)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, data, 0o600))
		require.NoError(t, os.Chmod(p, mode))
		return p
	}

	write("top.txt", []byte("hello\n"), 0o644)
	write("a/b/c/deep.bin", random(100<<10), 0o600)
	write("a/b/exec.sh", []byte("#!/bin/sh\necho hi\n"), 0o755|os.ModeSetuid)
	write("a/empty-file", nil, 0o640)
	write("with space/ünïcødé名前.txt", []byte("unicode"), 0o644)
	write("odd/new\nline", []byte("newline in name"), 0o644)
	write("odd/-leading-dash", []byte("dash"), 0o400)
	big := write("big/multi-chunk.bin", append(random(9<<20), make([]byte, 3<<20)...), 0o644)

	// a sparse file: data at the start, in the middle and at the end, holes between
	sparse := filepath.Join(root, "sparse.img")
	f, err := os.Create(sparse)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(24<<20))
	for _, off := range []int64{0, 10 << 20, (24 << 20) - 8192} {
		_, err := f.WriteAt(random(8192), off)
		require.NoError(t, err)
	}
	require.NoError(t, f.Close())

	require.NoError(t, os.MkdirAll(filepath.Join(root, "empty-dir/nested-empty"), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(root, "setgid-dir"), 0o755))
	require.NoError(t, os.Chmod(filepath.Join(root, "setgid-dir"), 0o2775|os.ModeSetgid|os.ModeSticky))
	require.NoError(t, os.Symlink("../top.txt", filepath.Join(root, "a/link-relative")))
	require.NoError(t, os.Symlink("/etc/hostname", filepath.Join(root, "a/link-absolute")))
	require.NoError(t, os.Symlink("does-not-exist", filepath.Join(root, "dangling")))
	require.NoError(t, os.Symlink("a/b", filepath.Join(root, "dir-link")))

	// owners and times, deepest first so directory mtimes stick
	var paths []string
	require.NoError(t, filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		paths = append(paths, p)
		return err
	}))
	sort.Slice(paths, func(i, j int) bool { return len(paths[i]) > len(paths[j]) })
	for i, p := range paths {
		before, err := os.Lstat(p)
		require.NoError(t, err)
		require.NoError(t, os.Lchown(p, 1000+i%3, 2000+i%5))
		if before.Mode()&os.ModeSymlink == 0 && before.Mode()&(os.ModeSetuid|os.ModeSetgid) != 0 {
			require.NoError(t, os.Chmod(p, before.Mode())) // chown cleared setuid/setgid
		}
		ts := mtime.Add(time.Duration(i) * time.Hour)
		require.NoError(t, lutimes(p, ts))
	}
	return fixture{root: root, sparse: sparse, bigFile: big}
}

func lutimes(p string, ts time.Time) error {
	spec := unix.NsecToTimespec(ts.UnixNano())
	return unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{spec, spec}, unix.AT_SYMLINK_NOFOLLOW)
}

// entryInfo is what a restore must preserve of one entry.
type entryInfo struct {
	Mode     os.FileMode
	UID, GID uint32
	ModTime  time.Time
	Size     int64
	Digest   [32]byte
	Link     string
}

func describeTree(t *testing.T, root string) map[string]entryInfo {
	out := map[string]entryInfo{}
	require.NoError(t, filepath.Walk(root, func(p string, st os.FileInfo, err error) error {
		require.NoError(t, err)
		rel, err := filepath.Rel(root, p)
		require.NoError(t, err)
		sys := st.Sys().(*syscall.Stat_t)
		info := entryInfo{Mode: st.Mode(), UID: sys.Uid, GID: sys.Gid, ModTime: st.ModTime().UTC()}
		switch {
		case st.Mode()&os.ModeSymlink != 0:
			info.Link, err = os.Readlink(p)
			require.NoError(t, err)
		case st.Mode().IsRegular():
			b, err := os.ReadFile(p)
			require.NoError(t, err)
			info.Size, info.Digest = st.Size(), sha256.Sum256(b)
		}
		out[rel] = info
		return nil
	}))
	return out
}

func requireSameTree(t *testing.T, want, got map[string]entryInfo) {
	t.Helper()
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("missing %q", k)
			continue
		}
		if w != g {
			t.Errorf("%q differs:\nwant %+v\n got %+v", k, w, g)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("extra %q", k)
		}
	}
}

func allocatedBytes(t *testing.T, p string) int64 {
	st, err := os.Stat(p)
	require.NoError(t, err)
	return st.Sys().(*syscall.Stat_t).Blocks * 512
}

func TestBackupRestoreRoundTrip(t *testing.T) {
	ctx := context.Background()
	src := buildTree(t, t.TempDir())
	r := openRepo(t, kopiatest.Location(t), Options{Create: true})

	var reports []datapath.Progress
	req := kopiatest.BackupRequest(src.root)
	req.Tags = map[string]string{"velero.io/async-operation-id": "du-1.2"}
	req.OnProgress = func(p datapath.Progress) { reports = append(reports, p) }
	req.ProgressInterval = time.Millisecond
	res, err := r.Backup(ctx, req)
	require.NoError(t, err)
	require.NotEmpty(t, res.SnapshotID)
	require.False(t, res.Empty)
	require.Equal(t, res.TotalBytes, res.IncrementalBytes)
	require.NotEmpty(t, reports)
	require.Equal(t, datapath.Progress{TotalBytes: res.TotalBytes, BytesDone: res.TotalBytes}, reports[len(reports)-1])

	// the manifest is what Velero's uploader writes
	man, err := snapshot.LoadSnapshot(ctx, r.st.Direct(), manifest.ID(res.SnapshotID))
	require.NoError(t, err)
	require.Equal(t, snapshot.SourceInfo{UserName: "default", Host: "default", Path: "snapshot-data-upload-download/kopia/app/data"}, man.Source)
	require.Equal(t, map[string]string{
		"snapshot-requester":           "snapshot-data-upload-download",
		"snapshot-uploader":            "kopia",
		"velero.io/async-operation-id": "du-1.2",
		"snapmove.io/verified":         "metadata", // ours: verified before it was saved
	}, man.Tags)
	require.Equal(t, "Kopia Uploader", man.Description)
	require.Equal(t, []string{store.Pin}, man.Pins)

	want := describeTree(t, src.root)
	cacheDir := t.TempDir()
	noCache := openRepo(t, r.st.Location(), Options{CacheLimitMB: -1, ReadOnly: true})
	withCacheDir := openRepo(t, r.st.Location(), Options{CacheDir: cacheDir})
	for _, tc := range []struct {
		name        string
		repo        *Repository
		writeSparse bool
		parallel    int
		split       bool
	}{
		{name: "sparse", repo: r, writeSparse: true},
		{name: "allocated", repo: r, writeSparse: false, parallel: 1},
		{name: "ranges in parallel", repo: r, writeSparse: true, parallel: 4, split: true},
		{name: "read-only without cache", repo: noCache, writeSparse: true},
		{name: "cache in CacheDir", repo: withCacheDir, split: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.split {
				t.Cleanup(restore.SetSplit(4<<20, 1<<20))
			}
			dst := t.TempDir()
			var last datapath.Progress
			rres, err := tc.repo.Restore(ctx, datapath.RestoreRequest{SnapshotID: res.SnapshotID, Path: dst, WriteSparse: tc.writeSparse,
				Parallel: tc.parallel, OnProgress: func(p datapath.Progress) { last = p }, ProgressInterval: time.Millisecond})
			require.NoError(t, err)
			require.Equal(t, res.TotalBytes, rres.TotalBytes)
			require.Equal(t, datapath.Progress{TotalBytes: res.TotalBytes, BytesDone: res.TotalBytes}, last)
			requireSameTree(t, want, describeTree(t, dst))

			sparse := filepath.Join(dst, "sparse.img")
			if tc.writeSparse {
				require.Less(t, allocatedBytes(t, sparse), int64(1<<20), "holes stay holes")
			} else {
				require.GreaterOrEqual(t, allocatedBytes(t, sparse), int64(24<<20), "zeros are allocated")
			}
		})
	}
	entries, err := os.ReadDir(cacheDir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "one cache subdirectory per location")
	require.True(t, strings.HasPrefix(entries[0].Name(), "kopia-"))
}

func TestRestoreReplacesEntriesInTheWay(t *testing.T) {
	ctx := context.Background()
	src := buildTree(t, t.TempDir())
	r := openRepo(t, kopiatest.Location(t), Options{Create: true})
	res, err := r.Backup(ctx, kopiatest.BackupRequest(src.root))
	require.NoError(t, err)

	dst := t.TempDir()
	outside := filepath.Join(t.TempDir(), "outside")
	require.NoError(t, os.WriteFile(outside, []byte("keep"), 0o600))
	require.NoError(t, os.Symlink(outside, filepath.Join(dst, "top.txt")))        // symlink where a file goes
	require.NoError(t, os.WriteFile(filepath.Join(dst, "a"), []byte("x"), 0o600)) // file where a dir goes
	require.NoError(t, os.MkdirAll(filepath.Join(dst, "dangling/sub"), 0o700))    // dir where a symlink goes
	require.NoError(t, os.WriteFile(filepath.Join(dst, "extra"), []byte("x"), 0o600))

	_, err = r.Restore(ctx, datapath.RestoreRequest{SnapshotID: res.SnapshotID, Path: dst})
	require.NoError(t, err)
	got := describeTree(t, dst)
	require.Contains(t, got, "extra")
	delete(got, "extra")
	requireSameTree(t, describeTree(t, src.root), got)
	b, err := os.ReadFile(outside)
	require.NoError(t, err)
	require.Equal(t, "keep", string(b), "restore must not write through a symlink")
}

func TestSnapshotRestoresWithKopiasRestore(t *testing.T) {
	// What stock Velero does with our snapshot: kopia's restore package.
	ctx := context.Background()
	src := buildTree(t, t.TempDir())
	r := openRepo(t, kopiatest.Location(t), Options{Create: true})
	res, err := r.Backup(ctx, kopiatest.BackupRequest(src.root))
	require.NoError(t, err)

	dst := t.TempDir()
	root, err := snapshotfs.FilesystemEntryFromIDWithPath(ctx, r.st.Direct(), res.SnapshotID, false)
	require.NoError(t, err)
	out := &kopiarestore.FilesystemOutput{TargetPath: dst, OverwriteDirectories: true, OverwriteFiles: true, OverwriteSymlinks: true}
	require.NoError(t, out.Init(ctx))
	_, err = kopiarestore.Entry(ctx, r.st.Direct(), out, root, kopiarestore.Options{Parallel: 2, RestoreDirEntryAtDepth: 1 << 30})
	require.NoError(t, err)
	// kopia restores a directory with the newest mtime found below it, and symlink
	// mtimes with microseconds only; everything else must match.
	normalize := func(tree map[string]entryInfo) map[string]entryInfo {
		for k, v := range tree {
			switch {
			case v.Mode.IsDir():
				v.ModTime = time.Time{}
			case v.Mode&os.ModeSymlink != 0:
				v.ModTime = v.ModTime.Round(time.Microsecond)
			}
			tree[k] = v
		}
		return tree
	}
	requireSameTree(t, normalize(describeTree(t, src.root)), normalize(describeTree(t, dst)))
}

func TestBlockRoundTrip(t *testing.T) {
	ctx := context.Background()
	t.Cleanup(restore.SetSplit(4<<20, 1<<20))

	dir := t.TempDir()
	device := filepath.Join(dir, "device")
	data := make([]byte, 16<<20)
	rand.New(rand.NewSource(2)).Read(data[:6<<20])
	copy(data[12<<20:], data[:1<<20])
	require.NoError(t, os.WriteFile(device, data, 0o600))

	r := openRepo(t, kopiatest.Location(t), Options{Create: true})
	req := kopiatest.BackupRequest(device)
	req.Block = true
	var last datapath.Progress
	req.OnProgress = func(p datapath.Progress) { last = p }
	res, err := r.Backup(ctx, req)
	require.NoError(t, err)
	require.Equal(t, int64(len(data)), res.TotalBytes)
	require.Equal(t, datapath.Progress{TotalBytes: int64(len(data)), BytesDone: int64(len(data))}, last)

	target := filepath.Join(dir, "target")
	require.NoError(t, os.WriteFile(target, bytes.Repeat([]byte{0xff}, 20<<20), 0o600))
	rres, err := r.Restore(ctx, datapath.RestoreRequest{SnapshotID: res.SnapshotID, Path: target, Block: true, Parallel: 3})
	require.NoError(t, err)
	require.Equal(t, int64(len(data)), rres.TotalBytes)
	got, err := os.ReadFile(target)
	require.NoError(t, err)
	require.True(t, bytes.Equal(data, got), "device content differs")

	// a block snapshot is not a tree, and a tree is not a block snapshot
	_, err = r.Restore(ctx, datapath.RestoreRequest{SnapshotID: res.SnapshotID, Path: t.TempDir()})
	require.NoError(t, err) // a directory with one file: restorable as a tree too
	tree, err := r.Backup(ctx, datapath.BackupRequest{SourceNamespace: "app", SourcePVC: "fs", Path: dir})
	require.NoError(t, err)
	_, err = r.Restore(ctx, datapath.RestoreRequest{SnapshotID: tree.SnapshotID, Path: target, Block: true})
	require.ErrorContains(t, err, "not a block volume snapshot")
}

func TestIncrementalBackupUsesParent(t *testing.T) {
	ctx := context.Background()
	src := buildTree(t, t.TempDir())
	r := openRepo(t, kopiatest.Location(t), Options{Create: true})

	first, err := r.Backup(ctx, kopiatest.BackupRequest(src.root))
	require.NoError(t, err)

	// a later client (a new process) finds the parent in the repository
	r2 := openRepo(t, r.st.Location(), Options{})
	noop, err := r2.Backup(ctx, kopiatest.BackupRequest(src.root))
	require.NoError(t, err)
	require.NotEqual(t, first.SnapshotID, noop.SnapshotID)
	// kopia counts symlink target lengths in the total when it reuses them (40 bytes here)
	require.InDelta(t, first.TotalBytes, noop.TotalBytes, 40)
	require.Zero(t, noop.IncrementalBytes, "nothing changed: nothing is read")

	changed := filepath.Join(src.root, "top.txt")
	require.NoError(t, os.WriteFile(changed, []byte("changed content\n"), 0o644))
	incr, err := r2.Backup(ctx, kopiatest.BackupRequest(src.root))
	require.NoError(t, err)
	require.Equal(t, int64(len("changed content\n")), incr.IncrementalBytes)

	// a snapshot of another PVC is not a parent
	other, err := r2.Backup(ctx, datapath.BackupRequest{SourceNamespace: "app", SourcePVC: "other", Path: src.root})
	require.NoError(t, err)
	require.Equal(t, other.TotalBytes, other.IncrementalBytes)
}

func TestDeleteSnapshot(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(src, "f"), []byte("data"), 0o600))
	r := openRepo(t, kopiatest.Location(t), Options{Create: true})
	a, err := r.Backup(ctx, kopiatest.BackupRequest(src))
	require.NoError(t, err)
	b, err := r.Backup(ctx, kopiatest.BackupRequest(src))
	require.NoError(t, err)

	require.NoError(t, r.DeleteSnapshot(ctx, a.SnapshotID))
	require.NoError(t, r.DeleteSnapshot(ctx, a.SnapshotID), "idempotent")
	require.NoError(t, r.DeleteSnapshot(ctx, "0123456789abcdef0123456789abcdef"), "unknown ID")

	// another process sees only b
	r2 := openRepo(t, r.st.Location(), Options{ReadOnly: true})
	ids := listSnapshotIDs(t, r2)
	require.Equal(t, []string{b.SnapshotID}, ids)
	require.Error(t, r2.DeleteSnapshot(ctx, b.SnapshotID), "read-only")
}

// A delete request names a backup and a PVC; the repository forgets a snapshot only
// when it is of that PVC and its tags name that backup (issue #21 item 5). The
// repository holds snapshots of two backups of app/data and one of app/other.
func TestForgetSnapshotChecksOwner(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(src, "f"), []byte("data"), 0o600))
	r := openRepo(t, kopiatest.Location(t), Options{Create: true})
	backupOf := func(pvc, backup, uid string) string {
		req := kopiatest.BackupRequest(src)
		req.SourcePVC = pvc
		req.Tags = map[string]string{store.TagBackupName: backup, store.TagBackupUID: uid}
		res, err := r.Backup(ctx, req)
		require.NoError(t, err)
		return res.SnapshotID
	}
	b1 := backupOf("data", "b1", "uid-1")
	b2 := backupOf("data", "b2", "uid-2")
	other := backupOf("other", "b1", "uid-1")
	owner := func(pvc, backup, uid string) datapath.SnapshotOwner {
		return datapath.SnapshotOwner{Namespace: "app", PVC: pvc, Backup: backup, BackupUID: uid}
	}

	tests := []struct {
		name    string
		id      string
		owner   datapath.SnapshotOwner
		wantErr string
	}{
		{name: "another backup's snapshot", id: b2, owner: owner("data", "b1", ""), wantErr: `its tag velero.io/backup-name is "b2"`},
		{name: "another backup's snapshot with a UID", id: b2, owner: owner("data", "b2", "uid-1"), wantErr: `its tag velero.io/backup-uid is "uid-2", not uid-1`},
		{name: "another PVC's snapshot", id: other, owner: owner("data", "b1", ""), wantErr: "it is a snapshot of default@default:snapshot-data-upload-download/kopia/app/other"},
		{name: "another namespace", id: b1, owner: datapath.SnapshotOwner{Namespace: "tenant", PVC: "data", Backup: "b1"}, wantErr: "not of default@default:snapshot-data-upload-download/kopia/tenant/data"},
		{name: "no backup named", id: b1, owner: owner("data", "", ""), wantErr: "the request names no namespace, PVC or backup"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := r.ForgetSnapshot(ctx, tc.id, tc.owner)
			require.ErrorContains(t, err, "refusing to delete snapshot "+tc.id)
			require.ErrorContains(t, err, tc.wantErr)
			var p *datapath.PermanentError
			require.ErrorAs(t, err, &p, "a refusal is final")
		})
	}
	require.ElementsMatch(t, []string{b1, b2}, listSnapshotIDs(t, r), "nothing refused was deleted")

	require.NoError(t, r.ForgetSnapshot(ctx, b1, owner("data", "b1", "uid-1")))
	require.NoError(t, r.ForgetSnapshot(ctx, b1, owner("data", "b1", "uid-1")), "idempotent")
	require.Equal(t, []string{b2}, listSnapshotIDs(t, r), "only b1's snapshot is gone")
	require.NoError(t, r.ForgetSnapshot(ctx, other, owner("other", "b1", "")), "without a UID the name decides")
}

// What a backup wrote of a volume besides its snapshot, such as the checkpoints of a
// canceled upload, is forgotten by the backup's name and UID, and nothing else is
// (issue #21 item 4): not another backup's, not an earlier backup of the same name's,
// not another PVC's.
func TestForgetBackupSnapshots(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(src, "f"), []byte("data"), 0o600))
	r := openRepo(t, kopiatest.Location(t), Options{Create: true})
	tags := func(backup, uid string) map[string]string {
		return map[string]string{store.TagBackupName: backup, store.TagBackupUID: uid}
	}
	backupOf := func(pvc string, tags map[string]string) string {
		req := kopiatest.BackupRequest(src)
		req.SourcePVC, req.Tags = pvc, tags
		res, err := r.Backup(ctx, req)
		require.NoError(t, err)
		return res.SnapshotID
	}
	// checkpoint saves a checkpoint of snapshot id's source and tree with tags, as an
	// interrupted upload does (a complete backup deletes the source's checkpoints, so
	// they are made after all backups).
	checkpoint := func(id string, tags map[string]string) string {
		man, err := snapshot.LoadSnapshot(ctx, r.st.Direct(), manifest.ID(id))
		require.NoError(t, err)
		var cid manifest.ID
		require.NoError(t, repo.WriteSession(ctx, r.st.Direct(), repo.WriteSessionOptions{Purpose: "test"}, func(ctx context.Context, w repo.RepositoryWriter) error {
			cp := *man
			cp.ID, cp.IncompleteReason = "", upload.IncompleteReasonCheckpoint
			cp.Tags = map[string]string{store.TagRequester: store.Requester, store.TagUploader: store.Uploader}
			maps.Copy(cp.Tags, tags)
			cid, err = snapshot.SaveSnapshot(ctx, w, &cp)
			return err
		}))
		return string(cid)
	}
	older := backupOf("data", tags("b1", "uid-0")) // an earlier backup named b1, deleted and made again
	b2 := backupOf("data", tags("b2", "uid-2"))
	b1 := backupOf("data", tags("b1", "uid-1"))
	other := backupOf("other", tags("b1", "uid-1"))
	b1cp := checkpoint(b1, tags("b1", "uid-1"))
	b1cp2 := checkpoint(b1, tags("b1", "uid-1"))
	b2cp := checkpoint(b2, tags("b2", "uid-2"))
	olderCp := checkpoint(older, tags("b1", "uid-0"))

	owner := datapath.SnapshotOwner{Namespace: "app", PVC: "data", Backup: "b1"}
	got, err := r.ForgetBackupSnapshots(ctx, owner)
	require.NoError(t, err)
	require.Empty(t, got, "without the backup's UID nothing is forgotten by tag")

	owner.BackupUID = "uid-1"
	got, err = r.ForgetBackupSnapshots(ctx, owner)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{b1, b1cp, b1cp2}, got)
	require.ElementsMatch(t, []string{older, b2, b2cp, olderCp}, listSnapshotIDs(t, r))
	got, err = r.ForgetBackupSnapshots(ctx, owner)
	require.NoError(t, err)
	require.Empty(t, got, "idempotent")

	ro := openRepo(t, r.st.Location(), Options{ReadOnly: true})
	mans, err := snapshot.ListSnapshots(ctx, ro.st.Direct(), snapshot.SourceInfo{UserName: "default", Host: "default", Path: store.SourcePath("app", "other")})
	require.NoError(t, err)
	require.Len(t, mans, 1, "another PVC's snapshot of the same backup stays")
	require.Equal(t, other, string(mans[0].ID))
}

func listSnapshotIDs(t *testing.T, r *Repository) []string {
	mans, err := snapshot.ListSnapshots(context.Background(), r.st.Direct(), snapshot.SourceInfo{UserName: "default", Host: "default", Path: store.SourcePath("app", "data")})
	require.NoError(t, err)
	var ids []string
	for _, m := range mans {
		ids = append(ids, string(m.ID))
	}
	return ids
}

func TestBackupEmptyAndCanceled(t *testing.T) {
	ctx := context.Background()
	r := openRepo(t, kopiatest.Location(t), Options{Create: true})

	empty := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(empty, "lost+found"), 0o700))
	res, err := r.Backup(ctx, kopiatest.BackupRequest(empty))
	require.NoError(t, err)
	require.True(t, res.Empty)
	require.NotEmpty(t, res.SnapshotID)
	dst := t.TempDir()
	_, err = r.Restore(ctx, datapath.RestoreRequest{SnapshotID: res.SnapshotID, Path: dst})
	require.NoError(t, err)
	require.DirExists(t, filepath.Join(dst, "lost+found"))

	src := buildTree(t, t.TempDir())
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	_, err = r.Backup(canceled, datapath.BackupRequest{SourceNamespace: "app", SourcePVC: "canceled", Path: src.root})
	require.ErrorIs(t, err, context.Canceled)
	mans, err := snapshot.ListSnapshots(ctx, r.st.Direct(), snapshot.SourceInfo{UserName: "default", Host: "default", Path: store.SourcePath("app", "canceled")})
	require.NoError(t, err)
	require.Empty(t, mans)

	_, err = r.Restore(canceled, datapath.RestoreRequest{SnapshotID: res.SnapshotID, Path: t.TempDir()})
	require.ErrorIs(t, err, context.Canceled)

	_, err = r.Restore(ctx, datapath.RestoreRequest{SnapshotID: "0123456789abcdef0123456789abcdef", Path: t.TempDir()})
	require.ErrorContains(t, err, "loading snapshot")
}

func TestBackupRequestValidation(t *testing.T) {
	ctx := context.Background()
	r := openRepo(t, kopiatest.Location(t), Options{Create: true})
	_, err := r.Backup(ctx, datapath.BackupRequest{SourceNamespace: "app", SourcePVC: "data"})
	require.ErrorContains(t, err, "required")
	_, err = r.Backup(ctx, kopiatest.BackupRequest(filepath.Join(t.TempDir(), "missing")))
	require.ErrorContains(t, err, "resolving")
	req := kopiatest.BackupRequest(t.TempDir())
	req.Block = true
	_, err = r.Backup(ctx, req)
	require.ErrorContains(t, err, "not a block device")
	f := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(f, nil, 0o600))
	_, err = r.Backup(ctx, kopiatest.BackupRequest(f))
	require.ErrorContains(t, err, "not a directory")
}

// A repository made with Velero's hash (what a repository that Velero created first has)
// and one made with snapmove's are both opened, backed up to and restored from.
func TestRepositoryHashes(t *testing.T) {
	for _, hash := range []string{hashing.DefaultAlgorithm, DefaultHash} {
		t.Run(hash, func(t *testing.T) {
			loc := kopiatest.Location(t)
			r := openRepo(t, loc, Options{Create: true, Hash: hash})
			require.Equal(t, hash, r.st.Direct().ContentReader().ContentFormat().GetHashFunction())
			src := t.TempDir()
			require.NoError(t, os.WriteFile(filepath.Join(src, "f"), []byte("hash "+hash), 0o644))
			res, err := r.Backup(context.Background(), datapath.BackupRequest{SourceNamespace: "app", SourcePVC: "data", Path: src})
			require.NoError(t, err)
			dst := t.TempDir()
			_, err = r.Restore(context.Background(), datapath.RestoreRequest{SnapshotID: res.SnapshotID, Path: dst})
			require.NoError(t, err)
			b, err := os.ReadFile(filepath.Join(dst, "f"))
			require.NoError(t, err)
			require.Equal(t, "hash "+hash, string(b))
		})
	}
}

// TestBackupWritesPolicyOnce: a backup whose source policy is already what it would set
// writes no policy manifest; a changed setting replaces it.
func TestBackupWritesPolicyOnce(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(src, "f"), []byte("data"), 0o600))
	r := openRepo(t, kopiatest.Location(t), Options{Create: true})
	si := snapshot.SourceInfo{UserName: "default", Host: "default", Path: store.SourcePath("app", "data")}
	policyID := func() manifest.ID {
		md, err := r.st.Direct().FindManifests(ctx, policy.LabelsForSource(si))
		require.NoError(t, err)
		require.Len(t, md, 1)
		return md[0].ID
	}

	_, err := r.Backup(ctx, kopiatest.BackupRequest(src))
	require.NoError(t, err)
	first := policyID()
	_, err = r.Backup(ctx, kopiatest.BackupRequest(src))
	require.NoError(t, err)
	require.Equal(t, first, policyID(), "an unchanged policy is not written again")

	req := kopiatest.BackupRequest(src)
	req.Compression = "zstd"
	_, err = r.Backup(ctx, req)
	require.NoError(t, err)
	require.NotEqual(t, first, policyID(), "a changed setting replaces the policy")
	pol, err := policy.GetDefinedPolicy(ctx, r.st.Direct(), si)
	require.NoError(t, err)
	require.Equal(t, "zstd", string(pol.CompressionPolicy.CompressorName))
}
