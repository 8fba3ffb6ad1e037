package backup

import (
	"context"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
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

// An upload kopia ended early is transient only when the store may be the cause: a reported
// error that is, or kopia's own cancel after a checkpoint failed to save (it reports no
// error then: snapshot/upload periodicallyCheckpoint). The e2e TestObjectStoreOutageMidUpload
// met the second: a 30 s outage failed the DataUpload for good.
func TestIncompleteUploadClassification(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	for _, tc := range []struct {
		name      string
		reason    string
		firstErr  error
		transient bool
	}{
		{"store refused a write", upload.IncompleteReasonCanceled, refused, true},
		{"a source file could not be read", upload.IncompleteReasonCanceled, &fs.PathError{Op: "open", Path: "/data/f", Err: syscall.EIO}, false},
		{"a checkpoint failed, nothing reported", upload.IncompleteReasonCanceled, nil, true},
		{"a limit kopia reached", upload.IncompleteReasonLimitReached, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := incomplete(tc.reason, tc.firstErr)
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.reason)
			require.Equal(t, tc.transient, store.IsTransient(err), "%v", err)
		})
	}
}
