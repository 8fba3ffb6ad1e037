//go:build linux

package kopia

// Tests that need test/datagen.GenTricky, which builds only on Linux.

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/mover/kopia/kopiatest"
	"github.com/snapmove/snapmove/test/datagen"
	"github.com/snapmove/snapmove/test/treecheck"
)

// TestBackupKeepsEverything: the awkward tree of test/datagen (including a directory with a
// CACHEDIR.TAG and a .kopiaignore that lists files) comes back complete. Velero's uploader
// would leave those out (kopia's default file-ignore policy).
func TestBackupKeepsEverything(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	require.NoError(t, datagen.GenTricky(src))
	want, err := treecheck.Manifest(src)
	require.NoError(t, err)
	r := openRepo(t, kopiatest.Location(t), Options{Create: true})

	res, err := r.Backup(ctx, kopiatest.BackupRequest(src))
	require.NoError(t, err)
	dst := t.TempDir()
	_, err = r.Restore(ctx, datapath.RestoreRequest{SnapshotID: res.SnapshotID, Path: dst, WriteSparse: true})
	require.NoError(t, err)
	got, err := treecheck.Manifest(dst)
	require.NoError(t, err)
	require.Empty(t, treecheck.Compare(want, got, treecheck.Options{CheckAllocation: true, ExactSymlinkMtime: true}))
}
