package kopia

import (
	"bytes"
	"context"
	"math/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/pkg/errors"
	"github.com/stretchr/testify/require"

	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/mover/kopia/kopiatest"
)

const (
	mib = 1 << 20
	// cbtGranule is the fake metadata service's block, the test CSI driver's.
	cbtGranule = 64 << 10
)

// fakeChanges is a SnapshotMetadata service over images kept by change ID: it compares
// 64 KiB granules, as the test CSI driver does.
type fakeChanges struct {
	images  map[string][]byte // by change ID
	current string
	// deltaErr and allocErr fail the calls; calls counts them.
	deltaErr, allocErr error
	calls              []string
}

func (f *fakeChanges) Allocated(ctx context.Context) ([]datapath.ByteRange, error) {
	f.calls = append(f.calls, "allocated")
	if f.allocErr != nil {
		return nil, f.allocErr
	}
	return granules(f.images[f.current], nil), nil
}

func (f *fakeChanges) Delta(ctx context.Context, base string) ([]datapath.ByteRange, error) {
	f.calls = append(f.calls, "delta "+base)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if f.deltaErr != nil {
		return nil, f.deltaErr
	}
	old, ok := f.images[base]
	if !ok {
		return nil, errors.Errorf("rpc error: code = NotFound desc = base snapshot %s not found", base)
	}
	return granules(f.images[f.current], old), nil
}

// granules lists the 64 KiB granules of img that are not zero (base nil) or differ from
// base.
func granules(img, base []byte) []datapath.ByteRange {
	var out []datapath.ByteRange
	zero := make([]byte, cbtGranule)
	for off := 0; off < len(img); off += cbtGranule {
		end := min(off+cbtGranule, len(img))
		g := img[off:end]
		var changed bool
		if base == nil {
			changed = !bytes.Equal(g, zero[:len(g)])
		} else {
			changed = end > len(base) || !bytes.Equal(g, base[off:end])
		}
		if changed {
			out = append(out, datapath.ByteRange{Offset: int64(off), Length: int64(len(g))})
		}
	}
	return out
}

// blockImage is a 16 MiB + 100 KiB device with data in its blocks 0-2 and 10.
func blockImage(rng *rand.Rand) []byte {
	img := make([]byte, 16*mib+100<<10)
	rng.Read(img[:3*mib])
	rng.Read(img[10*mib : 11*mib])
	return img
}

type blockVolume struct {
	t      *testing.T
	r      *Repository
	path   string
	fake   *fakeChanges
	volume string
}

func newBlockVolume(t *testing.T) *blockVolume {
	return &blockVolume{
		t:      t,
		r:      openRepo(t, kopiatest.Location(t), Options{Create: true}),
		path:   filepath.Join(t.TempDir(), "device"),
		fake:   &fakeChanges{images: map[string][]byte{}},
		volume: "vol-1",
	}
}

// backup writes img to the device and backs it up as snapshot changeID of the volume.
func (v *blockVolume) backup(ctx context.Context, img []byte, changeID string, src func(*datapath.BlockSource)) (datapath.BackupResult, error) {
	v.t.Helper()
	require.NoError(v.t, os.WriteFile(v.path, img, 0o600))
	v.fake.images[changeID] = bytes.Clone(img)
	v.fake.current = changeID
	req := kopiatest.BackupRequest(v.path)
	req.Block = true
	req.BlockSource = datapath.BlockSource{ChangeID: changeID, VolumeID: v.volume, Changes: v.fake}
	if src != nil {
		src(&req.BlockSource)
	}
	return v.r.Backup(ctx, req)
}

// requireRestores restores snapshot id onto a larger device filled with 0xff and
// checks that its first len(want) bytes are want.
func (v *blockVolume) requireRestores(id string, want []byte) {
	v.t.Helper()
	target := filepath.Join(v.t.TempDir(), "target")
	require.NoError(v.t, os.WriteFile(target, bytes.Repeat([]byte{0xff}, len(want)+mib), 0o600))
	_, err := v.r.Restore(context.Background(), datapath.RestoreRequest{SnapshotID: id, Path: target, Block: true, Parallel: 2})
	require.NoError(v.t, err)
	got, err := os.ReadFile(target)
	require.NoError(v.t, err)
	require.True(v.t, bytes.Equal(want, got[:len(want)]), "snapshot %s restores other bytes", id)
}

// TestBlockBackupReadsOnlyWhatChanged: the first backup of a block volume reads its
// allocated blocks, the next ones the blocks changed since their parent (a granule
// changed in a block reads the whole 1 MiB block), a no-op reads nothing, and each
// restores byte-identical.
func TestBlockBackupReadsOnlyWhatChanged(t *testing.T) {
	ctx := context.Background()
	v := newBlockVolume(t)
	rng := rand.New(rand.NewSource(3))
	img1 := blockImage(rng)

	first, err := v.backup(ctx, img1, "snap-1", nil)
	require.NoError(t, err)
	require.Equal(t, &datapath.BlockRead{
		Method: datapath.BlockReadAllocated, Fallback: "no earlier backup of the volume",
		BytesRead: 4 * mib, DeviceBytes: int64(len(img1)), BlocksRead: 4, BlocksZero: 13,
	}, first.Block)
	require.Equal(t, int64(len(img1)), first.TotalBytes)
	require.Equal(t, int64(4*mib), first.IncrementalBytes)
	require.Equal(t, []string{"allocated"}, v.fake.calls)

	img2 := bytes.Clone(img1)
	rng.Read(img2[mib+5 : mib+9])                       // block 1
	rng.Read(img2[16*mib+3 : 16*mib+7])                 // the short last block
	copy(img2[10*mib:], img1[10*mib:10*mib+cbtGranule]) // the same bytes: no change
	second, err := v.backup(ctx, img2, "snap-2", nil)
	require.NoError(t, err)
	require.Equal(t, &datapath.BlockRead{
		Method: datapath.BlockReadChanged, Parent: first.SnapshotID,
		BytesRead: mib + 100<<10, DeviceBytes: int64(len(img2)), BlocksRead: 2, BlocksReused: 15,
	}, second.Block)
	require.Equal(t, second.Block.BytesRead, second.IncrementalBytes)
	require.Equal(t, "delta snap-1", v.fake.calls[1])

	noop, err := v.backup(ctx, img2, "snap-3", nil)
	require.NoError(t, err)
	require.Equal(t, datapath.BlockReadChanged, noop.Block.Method)
	require.Zero(t, noop.Block.BytesRead)
	require.Zero(t, noop.IncrementalBytes)
	require.Equal(t, 17, noop.Block.BlocksReused)

	v.requireRestores(first.SnapshotID, img1)
	v.requireRestores(second.SnapshotID, img2)
	v.requireRestores(noop.SnapshotID, img2)
}

// TestBlockBackupFallbacks: whatever piece is missing, a block backup reads more, never
// less, says why, and restores byte-identical.
func TestBlockBackupFallbacks(t *testing.T) {
	boom := errors.New("rpc error: code = Unavailable desc = connection refused")
	tests := []struct {
		name string
		// parentChangeID is the change ID the parent backup records.
		parentChangeID string
		src            func(*datapath.BlockSource)
		deltaErr       error
		allocErr       error
		want           datapath.BlockReadMethod
		wantFallback   string
		wantCalls      []string
	}{{
		name: "delta", parentChangeID: "snap-1",
		want: datapath.BlockReadChanged, wantCalls: []string{"delta snap-1"},
	}, {
		name: "no metadata service", parentChangeID: "snap-1",
		src: func(s *datapath.BlockSource) {
			s.Changes, s.NoChanges = nil, `no SnapshotMetadataService serves driver "x"`
		},
		want: datapath.BlockReadAll, wantFallback: `no SnapshotMetadataService serves driver "x"`,
	}, {
		name: "parent taken without change tracking", parentChangeID: "",
		want: datapath.BlockReadAllocated, wantFallback: "has no cbt-change-id tag", wantCalls: []string{"allocated"},
	}, {
		name: "another volume behind the PVC", parentChangeID: "snap-1",
		src:  func(s *datapath.BlockSource) { s.VolumeID = "vol-2" },
		want: datapath.BlockReadAllocated, wantFallback: `was taken of volume "vol-1", this one of "vol-2"`, wantCalls: []string{"allocated"},
	}, {
		name: "volume handle unknown", parentChangeID: "snap-1",
		src:  func(s *datapath.BlockSource) { s.VolumeID = "" },
		want: datapath.BlockReadAllocated, wantFallback: "volume handle of the snapshot is unknown", wantCalls: []string{"allocated"},
	}, {
		name: "base snapshot gone", parentChangeID: "snap-gone",
		want: datapath.BlockReadAllocated, wantFallback: "code = NotFound", wantCalls: []string{"delta snap-gone", "allocated"},
	}, {
		name: "delta fails mid-stream", parentChangeID: "snap-1", deltaErr: boom,
		want: datapath.BlockReadAllocated, wantFallback: "could not be had: rpc error: code = Unavailable", wantCalls: []string{"delta snap-1", "allocated"},
	}, {
		name: "both fail", parentChangeID: "snap-1", deltaErr: boom, allocErr: boom,
		want: datapath.BlockReadAll, wantFallback: "the allocated ranges could not be had", wantCalls: []string{"delta snap-1", "allocated"},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			v := newBlockVolume(t)
			rng := rand.New(rand.NewSource(5))
			img1 := blockImage(rng)
			parent, err := v.backup(ctx, img1, "snap-1", func(s *datapath.BlockSource) { s.ChangeID = tc.parentChangeID })
			require.NoError(t, err)
			if tc.parentChangeID == "snap-gone" {
				delete(v.fake.images, "snap-gone")
			}
			v.fake.calls, v.fake.deltaErr, v.fake.allocErr = nil, tc.deltaErr, tc.allocErr

			img2 := bytes.Clone(img1)
			rng.Read(img2[2*mib : 2*mib+10])
			res, err := v.backup(ctx, img2, "snap-2", tc.src)
			require.NoError(t, err)
			require.Equal(t, tc.want, res.Block.Method)
			require.Contains(t, res.Block.Fallback, tc.wantFallback)
			if tc.wantFallback == "" {
				require.Empty(t, res.Block.Fallback)
			}
			require.Equal(t, tc.wantCalls, v.fake.calls)
			wantRead := map[datapath.BlockReadMethod]int64{
				datapath.BlockReadChanged: mib, datapath.BlockReadAllocated: 4 * mib, datapath.BlockReadAll: int64(len(img2)),
			}[tc.want]
			require.Equal(t, wantRead, res.Block.BytesRead)
			v.requireRestores(parent.SnapshotID, img1)
			v.requireRestores(res.SnapshotID, img2)
		})
	}
}

// A backup canceled while it asks what changed fails, and saves nothing.
func TestBlockBackupCanceledAskingForChanges(t *testing.T) {
	v := newBlockVolume(t)
	img := blockImage(rand.New(rand.NewSource(9)))
	_, err := v.backup(context.Background(), img, "snap-1", nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = v.backup(ctx, img, "snap-2", nil)
	require.ErrorIs(t, err, context.Canceled)
}
