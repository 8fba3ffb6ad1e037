package backup

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/kopia/kopia/snapshot"
	"github.com/kopia/kopia/snapshot/policy"
	"github.com/kopia/kopia/snapshot/upload"
	"github.com/stretchr/testify/require"

	"github.com/snapmove/snapmove/internal/mover/kopia/kopiatest"
	"github.com/snapmove/snapmove/internal/mover/kopia/store"
)

func TestCheckpointInterval(t *testing.T) {
	require.Equal(t, DefaultCheckpointInterval, checkpointInterval(0))
	require.Equal(t, upload.DefaultCheckpointInterval, checkpointInterval(upload.DefaultCheckpointInterval*2), "kopia refuses more")
	require.Equal(t, 30*1e9, float64(checkpointInterval(30*1e9)))
}

func TestBackupCapsDefaultParallel(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(src, "f"), []byte("data"), 0o600))
	r, err := store.Open(ctx, kopiatest.Location(t), kopiatest.Password, store.Options{Create: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Close(ctx) })

	for _, tc := range []struct {
		name     string
		parallel int
		want     int
	}{
		{name: "default", parallel: 0, want: min(runtime.NumCPU(), defaultMaxBackupParallel)},
		{name: "explicit", parallel: 16, want: 16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := kopiatest.BackupRequest(src)
			req.Parallel = tc.parallel
			_, err := Backup(ctx, r, req)
			require.NoError(t, err)
			pol, err := policy.GetDefinedPolicy(ctx, r.Direct(), snapshot.SourceInfo{UserName: "default", Host: "default", Path: "snapshot-data-upload-download/kopia/app/data"})
			require.NoError(t, err)
			require.Equal(t, tc.want, pol.UploadPolicy.MaxParallelFileReads.OrDefault(0))
		})
	}
}
