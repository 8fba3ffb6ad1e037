package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pkg/errors"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	"github.com/vmware-tanzu/velero/pkg/builder"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/mover/expose"
	"github.com/snapmove/snapmove/internal/naming"
	"github.com/snapmove/snapmove/internal/testkit"
)

type fakeRepo struct {
	mu         sync.Mutex
	backup     func(ctx context.Context, req datapath.BackupRequest) (datapath.BackupResult, error)
	restore    func(ctx context.Context, req datapath.RestoreRequest) (datapath.RestoreResult, error)
	backups    []datapath.BackupRequest
	restores   []datapath.RestoreRequest
	closed     bool
	openedBSL  string
	openedNS   string
	forWrite   bool
	openErr    error
	openCalled bool
	// transient is the data path's classification (IsTransient); nil: nothing is.
	transient func(error) bool
}

func (f *fakeRepo) Open(_ context.Context, bsl *velerov1.BackupStorageLocation, ns string, forWrite bool) (datapath.Repository, error) {
	f.openCalled = true
	f.openedBSL, f.openedNS, f.forWrite = bsl.Name, ns, forWrite
	if f.openErr != nil {
		return nil, f.openErr
	}
	return f, nil
}

func (f *fakeRepo) Backup(ctx context.Context, req datapath.BackupRequest) (datapath.BackupResult, error) {
	f.mu.Lock()
	f.backups = append(f.backups, req)
	f.mu.Unlock()
	return f.backup(ctx, req)
}

func (f *fakeRepo) Restore(ctx context.Context, req datapath.RestoreRequest) (datapath.RestoreResult, error) {
	f.mu.Lock()
	f.restores = append(f.restores, req)
	f.mu.Unlock()
	return f.restore(ctx, req)
}

func (f *fakeRepo) IsTransient(err error) bool { return f.transient != nil && f.transient(err) }

func (f *fakeRepo) Close(context.Context) error { f.closed = true; return nil }

func du(phase velerov2alpha1.DataUploadPhase) *velerov2alpha1.DataUpload {
	d := builder.ForDataUpload("velero", "du-1").DataMover(naming.DataMover).BackupStorageLocation("default").
		SourceNamespace("app").SourcePVC("data").Phase(phase).
		DataMoverConfig(map[string]string{"ParallelFilesUpload": "4"}).
		Labels(map[string]string{"velero.io/async-operation-id": "du-abc.def"}).Result()
	return d
}

func dd(phase velerov2alpha1.DataDownloadPhase, snapshotID string, config map[string]string) *velerov2alpha1.DataDownload {
	return builder.ForDataDownload("velero", "dd-1").DataMover(naming.DataMover).BackupStorageLocation("default").
		SourceNamespace("app").SnapshotID(snapshotID).Phase(phase).DataMoverConfig(&config).Result()
}

type env struct {
	c       client.WithWatch
	w       *Worker
	repo    *fakeRepo
	log     string
	patches atomic.Int32
}

// newEnv is a cluster where, as with the worker's Role (expose.WorkerIdentity), the worker
// may patch only its report, the ConfigMap of its movement's name.
func newEnv(t *testing.T, name string, objs ...client.Object) *env {
	e := &env{repo: &fakeRepo{}, log: filepath.Join(t.TempDir(), "termination-log")}
	report := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "velero", Name: name}}
	e.c = fake.NewClientBuilder().WithScheme(testkit.Scheme(t)).
		WithObjects(append(objs, builder.ForBackupStorageLocation("velero", "default").Result(), report)...).Build()
	worker := interceptor.NewClient(e.c, interceptor.Funcs{
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
			if _, ok := obj.(*corev1.ConfigMap); !ok || obj.GetName() != name {
				return apierrors.NewForbidden(schema.GroupResource{Resource: fmt.Sprintf("%T", obj)}, obj.GetName(), errors.New("not the worker's report"))
			}
			e.patches.Add(1)
			return c.Patch(ctx, obj, patch, opts...)
		},
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			return apierrors.NewForbidden(schema.GroupResource{Resource: fmt.Sprintf("%T", obj)}, obj.GetName(), errors.New("the worker updates nothing"))
		},
	})
	log := logrus.New()
	log.SetOutput(os.Stderr)
	e.w = &Worker{Client: worker, Opener: e.repo, Log: log, Config: Config{
		Namespace: "velero", Name: name, Path: expose.SourceMountPath, TerminationLog: e.log,
		PollInterval: 5 * time.Millisecond, ProgressInterval: 20 * time.Millisecond, WriteSparseDefault: true,
	}}
	return e
}

func (e *env) message(t *testing.T) string {
	b, err := os.ReadFile(e.log)
	require.NoError(t, err)
	return string(b)
}

func (e *env) getDU(t *testing.T) *velerov2alpha1.DataUpload {
	d := &velerov2alpha1.DataUpload{}
	require.NoError(t, e.c.Get(context.Background(), client.ObjectKey{Namespace: "velero", Name: "du-1"}, d))
	return d
}

// reported is what the worker's report says.
func (e *env) reported(t *testing.T, name string) expose.Progress {
	cm := &corev1.ConfigMap{}
	require.NoError(t, e.c.Get(context.Background(), client.ObjectKey{Namespace: "velero", Name: name}, cm))
	p, found, err := expose.ParseProgress(cm)
	require.NoError(t, err)
	require.True(t, found, "the worker reported progress")
	return p
}

func TestBackupSucceeds(t *testing.T) {
	e := newEnv(t, "du-1", du(velerov2alpha1.DataUploadPhaseInProgress))
	e.repo.backup = func(ctx context.Context, req datapath.BackupRequest) (datapath.BackupResult, error) {
		req.OnProgress(datapath.Progress{TotalBytes: 1000, BytesDone: 100})
		time.Sleep(50 * time.Millisecond)
		for i := 0; i < 100; i++ { // a burst of updates is throttled
			req.OnProgress(datapath.Progress{TotalBytes: 1000, BytesDone: int64(200 + i)})
		}
		time.Sleep(50 * time.Millisecond)
		return datapath.BackupResult{SnapshotID: "k0123", TotalBytes: 1000, IncrementalBytes: 250, Verification: datapath.VerifyResult{
			Mode: req.Verify, Checked: datapath.TreeCounts{Files: 3, Dirs: 1, Bytes: 1000}, FilesRead: 1, BytesRead: 10,
			Duration: 5 * time.Millisecond,
		}}, nil
	}
	e.w.Config.Verify = datapath.VerifyMode{Level: datapath.VerifySample, Percent: 10}
	// The command wires the printer (catalog.DescribeVerification, tested there with
	// this result); the worker puts its line into the result.
	e.w.DescribeVerification = func(v datapath.VerifyResult) string {
		require.Equal(t, datapath.TreeCounts{Files: 3, Dirs: 1, Bytes: 1000}, v.Checked)
		return "verified (sample:10): 3 files, 1 directory, 1.00 kB; content of 1 file (10 B) read back in 5ms"
	}
	require.NoError(t, e.w.Backup(context.Background()))

	var res expose.Result
	require.NoError(t, json.Unmarshal([]byte(e.message(t)), &res))
	require.Equal(t, expose.Result{SnapshotID: "k0123", TotalBytes: 1000, IncrementalBytes: 250,
		Verification: "verified (sample:10): 3 files, 1 directory, 1.00 kB; content of 1 file (10 B) read back in 5ms"}, res)

	require.True(t, e.repo.forWrite)
	require.Equal(t, "default", e.repo.openedBSL)
	require.Equal(t, "app", e.repo.openedNS)
	require.True(t, e.repo.closed)
	req := e.repo.backups[0]
	require.Equal(t, "app", req.SourceNamespace)
	require.Equal(t, "data", req.SourcePVC)
	require.Equal(t, expose.SourceMountPath, req.Path)
	require.Equal(t, 4, req.Parallel)
	require.Equal(t, map[string]string{"velero.io/async-operation-id": "du-abc.def"}, req.Tags)
	require.Equal(t, datapath.VerifyMode{Level: datapath.VerifySample, Percent: 10}, req.Verify, "the mode reaches the data path")

	require.Equal(t, expose.Progress{TotalBytes: 1000, BytesDone: 1000}, e.reported(t, "du-1"))
	got := e.getDU(t)
	require.Equal(t, du(velerov2alpha1.DataUploadPhaseInProgress).Spec, got.Spec, "the worker never writes its DataUpload")
	require.Equal(t, velerov2alpha1.DataUploadPhaseInProgress, got.Status.Phase, "the worker never changes the phase")
	require.Zero(t, got.Status.Progress, "progress goes to the report, which the controller copies")
	n := e.patches.Load()
	require.GreaterOrEqual(t, n, int32(2))
	require.LessOrEqual(t, n, int32(6), "progress is throttled")
}

func TestBackupWaitsForInProgress(t *testing.T) {
	e := newEnv(t, "du-1", du(velerov2alpha1.DataUploadPhasePrepared))
	started := make(chan struct{})
	e.repo.backup = func(ctx context.Context, req datapath.BackupRequest) (datapath.BackupResult, error) {
		close(started)
		return datapath.BackupResult{SnapshotID: "k1"}, nil
	}
	errc := make(chan error, 1)
	go func() { errc <- e.w.Backup(context.Background()) }()
	time.Sleep(30 * time.Millisecond)
	select {
	case <-started:
		t.Fatal("moved bytes before InProgress")
	default:
	}
	d := e.getDU(t)
	d.Status.Phase = velerov2alpha1.DataUploadPhaseInProgress
	require.NoError(t, e.c.Update(context.Background(), d))
	require.NoError(t, <-errc)
	<-started
}

func TestBackupCanceledWhileMoving(t *testing.T) {
	e := newEnv(t, "du-1", du(velerov2alpha1.DataUploadPhaseInProgress))
	moving := make(chan struct{})
	e.repo.backup = func(ctx context.Context, req datapath.BackupRequest) (datapath.BackupResult, error) {
		close(moving)
		<-ctx.Done()
		return datapath.BackupResult{}, errors.Wrap(ctx.Err(), "uploading")
	}
	errc := make(chan error, 1)
	go func() { errc <- e.w.Backup(context.Background()) }()
	<-moving
	d := e.getDU(t)
	d.Spec.Cancel = true
	require.NoError(t, e.c.Update(context.Background(), d))
	err := <-errc
	require.ErrorIs(t, err, errCanceled)
	require.Equal(t, "DataUpload velero/du-1 was canceled (phase InProgress): data movement canceled", e.message(t))
}

func TestBackupFailures(t *testing.T) {
	tests := []struct {
		name   string
		du     *velerov2alpha1.DataUpload
		open   error
		backup error
		want   string
	}{
		{name: "canceled before start", du: func() *velerov2alpha1.DataUpload {
			d := du(velerov2alpha1.DataUploadPhasePrepared)
			d.Spec.Cancel = true
			return d
		}(), want: "DataUpload velero/du-1 was canceled before the data movement started: data movement canceled"},
		{name: "ended before start", du: du(velerov2alpha1.DataUploadPhaseFailed), want: "DataUpload velero/du-1 ended (Failed) before the data movement started"},
		{name: "missing", want: "DataUpload velero/du-1 does not exist"},
		{name: "repository", du: du(velerov2alpha1.DataUploadPhaseInProgress), open: errors.New("wrong repository password"),
			want: "opening the kopia repository for namespace app on BackupStorageLocation default: wrong repository password"},
		{name: "backup", du: du(velerov2alpha1.DataUploadPhaseInProgress), backup: errors.New("open /data/x: permission denied"),
			want: "backing up /data: open /data/x: permission denied"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var objs []client.Object
			if tc.du != nil {
				objs = append(objs, tc.du)
			}
			e := newEnv(t, "du-1", objs...)
			e.repo.openErr = tc.open
			e.repo.backup = func(context.Context, datapath.BackupRequest) (datapath.BackupResult, error) {
				return datapath.BackupResult{}, tc.backup
			}
			err := e.w.Backup(context.Background())
			require.EqualError(t, err, tc.want)
			require.Equal(t, tc.want, e.message(t))
		})
	}
}

func TestRestore(t *testing.T) {
	tests := []struct {
		name       string
		snapshotID string
		config     map[string]string
		block      bool
		sparseOff  bool // mover settings writeSparseFiles: false
		wantSparse bool
		wantOpen   bool
	}{
		{name: "default sparse", snapshotID: "k1", wantSparse: true, wantOpen: true},
		{name: "Velero's default false keeps holes", snapshotID: "k1", config: map[string]string{"WriteSparseFiles": "false", "ParallelFilesDownload": "8"}, wantSparse: true, wantOpen: true},
		{name: "settings off", snapshotID: "k1", sparseOff: true, config: map[string]string{"WriteSparseFiles": "false"}, wantOpen: true},
		{name: "settings off, user asked for sparse", snapshotID: "k1", sparseOff: true, config: map[string]string{"WriteSparseFiles": "true"}, wantSparse: true, wantOpen: true},
		{name: "block is never sparse", snapshotID: "k1", block: true, config: map[string]string{"WriteSparseFiles": "true"}, wantOpen: true},
		{name: "no snapshot is refused, never restored empty", snapshotID: "", wantOpen: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "dd-1", dd(velerov2alpha1.DataDownloadPhaseInProgress, tc.snapshotID, tc.config))
			e.w.Config.Block = tc.block
			e.w.Config.WriteSparseDefault = !tc.sparseOff
			e.w.Config.Path = expose.VolumePath(expose.Restore, tc.block)
			e.repo.restore = func(ctx context.Context, req datapath.RestoreRequest) (datapath.RestoreResult, error) {
				req.OnProgress(datapath.Progress{TotalBytes: 10, BytesDone: 5})
				return datapath.RestoreResult{TotalBytes: 10}, nil
			}
			err := e.w.Restore(context.Background())
			require.Equal(t, tc.wantOpen, e.repo.openCalled)
			if !tc.wantOpen {
				require.ErrorContains(t, err, "has no snapshot ID: the backup holds no data for this volume")
				require.Contains(t, e.message(t), "refusing to restore an empty volume")
				return
			}
			require.NoError(t, err)
			require.False(t, e.repo.forWrite, "restores open read-only")
			req := e.repo.restores[0]
			require.Equal(t, tc.wantSparse, req.WriteSparse)
			require.Equal(t, "k1", req.SnapshotID)
			require.Equal(t, e.w.Config.Path, req.Path)
			if tc.config["ParallelFilesDownload"] == "8" {
				require.Equal(t, 8, req.Parallel)
			}
			require.Equal(t, `{"totalBytes":10}`, e.message(t))
			require.Equal(t, expose.Progress{TotalBytes: 10, BytesDone: 10}, e.reported(t, "dd-1"))
		})
	}
}

func TestLongMessageIsTruncated(t *testing.T) {
	e := newEnv(t, "du-1", du(velerov2alpha1.DataUploadPhaseInProgress))
	e.repo.backup = func(context.Context, datapath.BackupRequest) (datapath.BackupResult, error) {
		return datapath.BackupResult{}, errors.New(strings.Repeat("x", 10000))
	}
	require.Error(t, e.w.Backup(context.Background()))
	msg := e.message(t)
	require.Len(t, msg, expose.MaxMessage)
	require.True(t, strings.HasSuffix(msg, "..."))
}

// errStoreDown stands for what the data path classifies as transient (kopia.IsTransient:
// the store unreachable, a 5xx or throttling after its own retries).
var errStoreDown = errors.New("dial tcp 10.0.0.1:9000: connect: connection refused")

func isStoreDown(err error) bool { return errors.Is(err, errStoreDown) }

// A failure that may pass is a *datapath.TransientError whose exit code is
// datapath.ExitTransient (what main exits with, and the controller retries on); its
// termination message is the error text, as for any failure. Everything else exits 1.
func TestTransientFailures(t *testing.T) {
	tests := []struct {
		name          string
		restore       bool
		open, move    error
		cancel        bool // the DataUpload is canceled while the move fails
		wantTransient bool
		wantMessage   string
	}{
		{name: "store down during the backup", move: errors.Wrap(errStoreDown, "uploading"), wantTransient: true,
			wantMessage: "backing up /data: uploading: dial tcp 10.0.0.1:9000: connect: connection refused"},
		{name: "store down during the restore", restore: true, move: errStoreDown, wantTransient: true,
			wantMessage: "restoring snapshot k1 to /data: dial tcp 10.0.0.1:9000: connect: connection refused"},
		{name: "store down at open (classified by the data path)", open: datapath.Transient(errors.Wrap(errStoreDown, "storage of repository at s3://b/p/ is unreachable")),
			wantTransient: true, wantMessage: "opening the kopia repository for namespace app on BackupStorageLocation default: storage of repository at s3://b/p/ is unreachable: dial tcp"},
		{name: "wrong password at open", open: datapath.Permanent("", errors.New("wrong repository password")),
			wantMessage: "opening the kopia repository for namespace app on BackupStorageLocation default: wrong repository password"},
		{name: "source unreadable", move: errors.New("open /data/x: input/output error"),
			wantMessage: "backing up /data: open /data/x: input/output error"},
		{name: "canceled while the store was down", move: errStoreDown, cancel: true,
			wantMessage: "DataUpload velero/du-1 was canceled (phase InProgress): data movement canceled"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var e *env
			if tc.restore {
				e = newEnv(t, "dd-1", dd(velerov2alpha1.DataDownloadPhaseInProgress, "k1", nil))
				e.w.Config.Path = expose.VolumePath(expose.Restore, false)
			} else {
				e = newEnv(t, "du-1", du(velerov2alpha1.DataUploadPhaseInProgress))
			}
			e.repo.openErr = tc.open
			e.repo.transient = isStoreDown
			e.repo.backup = func(ctx context.Context, _ datapath.BackupRequest) (datapath.BackupResult, error) {
				if tc.cancel {
					d := e.getDU(t)
					d.Spec.Cancel = true
					require.NoError(t, e.c.Update(context.Background(), d))
					<-ctx.Done()
				}
				return datapath.BackupResult{}, tc.move
			}
			e.repo.restore = func(context.Context, datapath.RestoreRequest) (datapath.RestoreResult, error) {
				return datapath.RestoreResult{}, tc.move
			}
			var err error
			if tc.restore {
				err = e.w.Restore(context.Background())
			} else {
				err = e.w.Backup(context.Background())
			}
			require.Error(t, err)
			require.True(t, strings.HasPrefix(e.message(t), tc.wantMessage), "message %q", e.message(t))
			require.Equal(t, err.Error(), e.message(t), "the message is the error, transient or not")

			var transient *datapath.TransientError
			require.Equal(t, tc.wantTransient, errors.As(err, &transient))
			var coder interface{ ExitCode() int }
			if tc.wantTransient {
				require.True(t, errors.As(err, &coder))
				require.Equal(t, datapath.ExitTransient, coder.ExitCode())
				require.Equal(t, 75, coder.ExitCode(), "EX_TEMPFAIL")
			} else {
				require.False(t, errors.As(err, &coder), "exits 1")
			}
		})
	}
}

// A block backup gets the changed block source the command made, and its result carries
// what was read, with a fallback reason long enough to overflow the termination message
// cut so that the result stays whole JSON.
func TestBlockBackupResult(t *testing.T) {
	e := newEnv(t, "du-1", du(velerov2alpha1.DataUploadPhaseInProgress))
	long := strings.Repeat("the allocated ranges could not be had: rpc error ", 200)
	e.repo.backup = func(ctx context.Context, req datapath.BackupRequest) (datapath.BackupResult, error) {
		return datapath.BackupResult{SnapshotID: "k1", TotalBytes: 64 << 20, IncrementalBytes: 64 << 20, Block: &datapath.BlockRead{
			Method: datapath.BlockReadAll, Fallback: long, BytesRead: 64 << 20, DeviceBytes: 64 << 20, BlocksRead: 64,
		}}, nil
	}
	e.w.Config.Block, e.w.Config.Path = true, expose.SourceDevicePath
	e.w.Config.BlockSource = datapath.BlockSource{ChangeID: "snap-7", VolumeID: "vol-3", NoChanges: "none here"}
	require.NoError(t, e.w.Backup(context.Background()))
	require.Equal(t, e.w.Config.BlockSource, e.repo.backups[0].BlockSource)

	msg := e.message(t)
	require.LessOrEqual(t, len(msg), expose.MaxMessage)
	var res expose.Result
	require.NoError(t, json.Unmarshal([]byte(msg), &res))
	require.Equal(t, datapath.BlockReadAll, res.Block.Method)
	require.Equal(t, int64(64<<20), res.Block.BytesRead)
	require.True(t, strings.HasSuffix(res.Block.Fallback, "..."))
	require.Less(t, len(res.Block.Fallback), len(long))
}
