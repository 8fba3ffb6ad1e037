package restore

import (
	"bytes"
	"context"
	"math/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/kopia/kopia/repo/manifest"
	"github.com/kopia/kopia/snapshot"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/mover/kopia/backup"
	"github.com/snapmove/snapmove/internal/mover/kopia/kopiatest"
	"github.com/snapmove/snapmove/internal/mover/kopia/store"
	"github.com/snapmove/snapmove/internal/mover/kopia/tree"
)

func TestRestoreReadsWithinBudget(t *testing.T) {
	ctx := context.Background()
	oldSplit, oldRange, oldBudget := splitThreshold, rangeBytes, readBudget
	t.Cleanup(func() { splitThreshold, rangeBytes, readBudget = oldSplit, oldRange, oldBudget })
	splitThreshold, rangeBytes = 4<<20, 1<<20

	dir := t.TempDir()
	device := filepath.Join(dir, "device")
	data := make([]byte, 48<<20)
	rand.New(rand.NewSource(3)).Read(data)
	require.NoError(t, os.WriteFile(device, data, 0o600))
	r := openStore(t)
	req := kopiatest.BackupRequest(device)
	req.Block = true
	res, err := backup.Backup(ctx, r, req)
	require.NoError(t, err)
	man, err := snapshot.LoadSnapshot(ctx, r.Direct(), manifest.ID(res.SnapshotID))
	require.NoError(t, err)
	file, err := tree.BlockFile(ctx, r.Direct(), man.RootEntry)
	require.NoError(t, err)
	chunks, err := newRestorer(r.Direct(), datapath.RestoreRequest{}, 0, logrus.New()).chunks(ctx, file.ObjectID, file.FileSize)
	require.NoError(t, err)
	require.Greater(t, len(chunks), 4)
	var maxCost int64 // of one read
	for _, c := range chunks {
		maxCost = max(maxCost, readCost(c.Length))
	}

	for _, tc := range []struct {
		name           string
		budget         int64
		parallel       int
		wantConcurrent bool // more than one read at once
	}{
		{name: "the default budget admits several reads", budget: oldBudget, parallel: 16, wantConcurrent: true},
		{name: "a budget of one read serializes them", budget: decryptBufferBytes, parallel: 16},
		{name: "one writer", budget: oldBudget, parallel: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			readBudget = tc.budget
			target := filepath.Join(t.TempDir(), "target")
			require.NoError(t, os.WriteFile(target, nil, 0o600))
			rreq := datapath.RestoreRequest{SnapshotID: res.SnapshotID, Path: target, Block: true, Parallel: tc.parallel}
			rs := newRestorer(r.Direct(), rreq, int64(len(data)), logrus.New())
			require.NoError(t, rs.restoreBlock(ctx, man.RootEntry, target))

			got, err := os.ReadFile(target)
			require.NoError(t, err)
			require.True(t, bytes.Equal(data, got), "restored data differs")
			require.LessOrEqual(t, rs.peakInFlight.Load(), tc.budget)
			require.Zero(t, rs.inFlight.Load())
			if tc.wantConcurrent {
				require.Greater(t, rs.peakInFlight.Load(), maxCost, "no two reads at once")
			} else {
				require.LessOrEqual(t, rs.peakInFlight.Load(), maxCost, "two reads at once")
			}
		})
	}
}

func TestReadCost(t *testing.T) {
	for _, tc := range []struct {
		n, want int64
	}{
		{n: 0, want: 8 << 20},
		{n: 4 << 20, want: 20 << 20},
		{n: 8 << 20, want: 32 << 20},
		{n: 1 << 30, want: readBudget}, // capped: any chunk can be read
	} {
		require.Equal(t, tc.want, readCost(tc.n), "readCost(%d)", tc.n)
	}
}

// openStore creates a repository in a temporary directory.
func openStore(t *testing.T) *store.Repository {
	t.Helper()
	r, err := store.Open(context.Background(), kopiatest.Location(t), kopiatest.Password, store.Options{Create: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Close(context.Background()) })
	return r
}
