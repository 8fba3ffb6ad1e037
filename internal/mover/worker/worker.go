package worker

import (
	"context"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pkg/errors"
	"github.com/sirupsen/logrus"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/mover/expose"
	"github.com/snapmove/snapmove/internal/naming"
)

// Opener opens the repository of sourceNamespace on bsl (connect.Connector). forWrite is
// false for restores (nothing is created or written). It blocks while it opens; a
// failure that may pass is a *datapath.TransientError.
type Opener interface {
	Open(ctx context.Context, bsl *velerov1.BackupStorageLocation, sourceNamespace string, forWrite bool) (datapath.Repository, error)
}

// Config is the worker's command line.
type Config struct {
	Namespace string // Velero's
	Name      string // the DataUpload's or DataDownload's
	Path      string // the volume (mount point or device)
	Block     bool
	// WriteSparseDefault says whether filesystem restores keep holes (zero runs become
	// holes). A DataDownload's dataMoverConfig.WriteSparseFiles can only turn it on:
	// Velero writes that key into every DataDownload, "false" unless the user passed
	// `velero restore create --write-sparse-files` (pkg/util/uploader StoreRestoreConfig),
	// so "false" there means "not asked", not "fill the holes". The mover's settings
	// (writeSparseFiles: false) are the way to get fully allocated files.
	WriteSparseDefault bool
	// TerminationLog is where the result goes (the kubelet reads /dev/termination-log).
	TerminationLog string
	// PollInterval paces the wait for InProgress and the watch for cancel.
	PollInterval time.Duration
	// ProgressInterval bounds how often the progress report is patched.
	ProgressInterval time.Duration
	// Verify is what a backup reads back after saving its snapshot (the zero value:
	// the data path's default, metadata). The controller resolves it from the mover
	// settings and the DataUpload's annotation.
	Verify datapath.VerifyMode
	// Compression and CheckpointInterval go to the backup as they are (see
	// datapath.BackupRequest); the controller resolves them from the mover settings and
	// the DataUpload's annotations.
	Compression        string
	CheckpointInterval time.Duration
	// BlockSource tells a block backup what changed (the command dials the CSI
	// SnapshotMetadata service the controller named); the zero value reads everything.
	BlockSource datapath.BlockSource
}

// maxFallback bounds the reason a block backup gives for reading more than it could,
// so that the result fits the termination message (expose.MaxMessage) whole.
const maxFallback = 1500

// Defaults.
const (
	DefaultTerminationLog   = "/dev/termination-log"
	DefaultPollInterval     = 2 * time.Second
	DefaultProgressInterval = 10 * time.Second
)

// Keys of dataMoverConfig Velero writes (pkg/uploader/util) and a label it sets.
const (
	configParallelUpload   = "ParallelFilesUpload"
	configParallelDownload = "ParallelFilesDownload"
	configWriteSparse      = "WriteSparseFiles"
	asyncOperationIDLabel  = "velero.io/async-operation-id"
)

// Worker moves one volume's bytes.
type Worker struct {
	// Client talks to the API server directly (no cache).
	Client client.Client
	Opener Opener
	Log    logrus.FieldLogger
	Config Config
	// DescribeVerification puts a backup's verification into the one line its result
	// carries (the printer's, catalog.DescribeVerification, wired by the command); nil
	// leaves the line empty.
	DescribeVerification func(datapath.VerifyResult) string
}

// errCanceled is the cause of a canceled movement.
var errCanceled = errors.New("data movement canceled")

// Backup runs the backup of DataUpload Config.Name and writes the termination message.
// A failure that may pass (the store, after the data path's retries) is a
// *datapath.TransientError, whose ExitCode the process exits with.
func (w *Worker) Backup(ctx context.Context) error {
	res, err := w.backup(ctx)
	return w.finish(res, err)
}

// Restore runs the restore of DataDownload Config.Name and writes the termination message.
// Its errors are classified as Backup's.
func (w *Worker) Restore(ctx context.Context) error {
	res, err := w.restore(ctx)
	return w.finish(res, err)
}

func (w *Worker) backup(ctx context.Context) (expose.Result, error) {
	du := &velerov2alpha1.DataUpload{}
	if err := w.waitInProgress(ctx, du); err != nil {
		return expose.Result{}, err
	}
	log := w.Log.WithField("dataUpload", du.Name)
	repo, err := w.open(ctx, du.Spec.BackupStorageLocation, du.Spec.SourceNamespace, true)
	if err != nil {
		return expose.Result{}, err
	}
	defer w.close(repo, log)

	moveCtx, stop := w.watch(ctx, du)
	defer stop()
	rep := w.reporter(moveCtx)
	// Velero tags its snapshots with the operation ID; the backup's name and UID make a
	// snapshot findable by backup on the day only the bucket is left (snapmove list).
	tags := map[string]string{}
	for _, l := range []string{asyncOperationIDLabel, velerov1.BackupNameLabel, velerov1.BackupUIDLabel} {
		if v := du.Labels[l]; v != "" {
			tags[l] = v
		}
	}
	log.WithField("pvc", types.NamespacedName{Namespace: du.Spec.SourceNamespace, Name: du.Spec.SourcePVC}.String()).Info("backing up")
	res, err := repo.Backup(moveCtx, datapath.BackupRequest{
		SourceNamespace: du.Spec.SourceNamespace, SourcePVC: du.Spec.SourcePVC,
		Path: w.Config.Path, Block: w.Config.Block, Tags: tags,
		Parallel:   parallel(du.Spec.DataMoverConfig, configParallelUpload),
		OnProgress: rep.update, ProgressInterval: w.interval(),
		Verify: w.Config.Verify, Compression: w.Config.Compression, CheckpointInterval: w.Config.CheckpointInterval,
		BlockSource: w.Config.BlockSource,
	})
	rep.stop()
	if err != nil {
		return expose.Result{}, w.moveError(moveCtx, repo, err, "backing up %s", w.Config.Path)
	}
	rep.flush(ctx, datapath.Progress{TotalBytes: res.TotalBytes, BytesDone: res.TotalBytes})
	var verification string
	if w.DescribeVerification != nil {
		verification = w.DescribeVerification(res.Verification)
	}
	log.WithField("snapshotID", res.SnapshotID).Infof("backed up %d bytes (%d incremental); %s", res.TotalBytes, res.IncrementalBytes, verification)
	out := expose.Result{
		SnapshotID: res.SnapshotID, TotalBytes: res.TotalBytes, IncrementalBytes: res.IncrementalBytes, Empty: res.Empty,
		Verification: verification,
	}
	if res.Block != nil {
		b := *res.Block
		if len(b.Fallback) > maxFallback {
			b.Fallback = b.Fallback[:maxFallback-3] + "..."
		}
		out.Block = &b
		log.Info(b.String())
	}
	return out, nil
}

func (w *Worker) restore(ctx context.Context) (expose.Result, error) {
	dd := &velerov2alpha1.DataDownload{}
	if err := w.waitInProgress(ctx, dd); err != nil {
		return expose.Result{}, err
	}
	log := w.Log.WithField("dataDownload", dd.Name)
	if dd.Spec.SnapshotID == "" {
		// Never an empty volume in place of data: a backed-up empty volume has a snapshot
		// of its own, so a missing ID means the upload never completed (Velero keeps the
		// DataUploads of a PartiallyFailed backup, Failed and Canceled ones included).
		return expose.Result{}, errors.Errorf("DataDownload %s has no snapshot ID: the backup holds no data for this volume (its upload did not complete); refusing to restore an empty volume", dd.Name)
	}
	sparse := w.Config.WriteSparseDefault
	if v, ok := dd.Spec.DataMoverConfig[configWriteSparse]; ok {
		if b, err := strconv.ParseBool(v); err == nil && b {
			sparse = true
		}
	}
	repo, err := w.open(ctx, dd.Spec.BackupStorageLocation, dd.Spec.SourceNamespace, false)
	if err != nil {
		return expose.Result{}, err
	}
	defer w.close(repo, log)

	moveCtx, stop := w.watch(ctx, dd)
	defer stop()
	rep := w.reporter(moveCtx)
	log.WithField("snapshotID", dd.Spec.SnapshotID).Info("restoring")
	res, err := repo.Restore(moveCtx, datapath.RestoreRequest{
		SnapshotID: dd.Spec.SnapshotID, Path: w.Config.Path, Block: w.Config.Block,
		Parallel:    parallel(dd.Spec.DataMoverConfig, configParallelDownload),
		WriteSparse: sparse && !w.Config.Block,
		OnProgress:  rep.update, ProgressInterval: w.interval(),
	})
	rep.stop()
	if err != nil {
		return expose.Result{}, w.moveError(moveCtx, repo, err, "restoring snapshot %s to %s", dd.Spec.SnapshotID, w.Config.Path)
	}
	rep.flush(ctx, datapath.Progress{TotalBytes: res.TotalBytes, BytesDone: res.TotalBytes})
	log.Infof("restored %d bytes", res.TotalBytes)
	return expose.Result{TotalBytes: res.TotalBytes}, nil
}

func (w *Worker) open(ctx context.Context, bslName, sourceNamespace string, forWrite bool) (datapath.Repository, error) {
	bsl := &velerov1.BackupStorageLocation{}
	if err := w.Client.Get(ctx, client.ObjectKey{Namespace: w.Config.Namespace, Name: bslName}, bsl); err != nil {
		return nil, errors.Wrapf(err, "getting BackupStorageLocation %s/%s", w.Config.Namespace, bslName)
	}
	repo, err := w.Opener.Open(ctx, bsl, sourceNamespace, forWrite)
	if err != nil {
		return nil, errors.Wrapf(err, "opening the kopia repository for namespace %s on BackupStorageLocation %s", sourceNamespace, bslName)
	}
	releaseKeyDerivationMemory()
	return repo, nil
}

func (w *Worker) close(repo datapath.Repository, log logrus.FieldLogger) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := repo.Close(ctx); err != nil {
		log.WithError(err).Warn("closing the repository")
	}
}

// moveError names a cancellation as such rather than as the error it caused, and marks
// an error that may pass (repo.IsTransient) as a *datapath.TransientError: the worker
// then exits with datapath.ExitTransient and the controller retries the movement. A move
// whose context ended (canceled, or the pod told to stop) is never transient.
func (w *Worker) moveError(moveCtx context.Context, repo datapath.Repository, err error, format string, args ...any) error {
	if cause := context.Cause(moveCtx); cause != nil && errors.Is(cause, errCanceled) {
		return cause
	}
	wrapped := errors.Wrapf(err, format, args...)
	if moveCtx.Err() == nil && repo.IsTransient(err) {
		return datapath.Transient(wrapped)
	}
	return wrapped
}

// waitInProgress polls obj (a DataUpload or DataDownload named Config.Name) until the
// controller sets it InProgress. A canceled or ended object is an error.
func (w *Worker) waitInProgress(ctx context.Context, obj client.Object) error {
	key := client.ObjectKey{Namespace: w.Config.Namespace, Name: w.Config.Name}
	for {
		err := w.Client.Get(ctx, key, obj)
		if apierrors.IsNotFound(err) {
			return errors.Errorf("%s %s does not exist", kind(obj), key)
		}
		if err != nil {
			w.Log.WithError(err).Warnf("getting %s %s; retrying", kind(obj), key)
		} else {
			phase, cancel := state(obj)
			switch {
			case cancel || phase == string(velerov2alpha1.DataUploadPhaseCanceling) ||
				phase == string(velerov2alpha1.DataUploadPhaseCanceled):
				return errors.Wrapf(errCanceled, "%s %s was canceled before the data movement started", kind(obj), key)
			case naming.MovementEnded(phase):
				return errors.Errorf("%s %s ended (%s) before the data movement started", kind(obj), key, phase)
			case phase == string(velerov2alpha1.DataUploadPhaseInProgress):
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return errors.Wrapf(ctx.Err(), "waiting for %s %s to be InProgress", kind(obj), key)
		case <-time.After(w.pollInterval()):
		}
	}
}

// watch returns a context canceled when obj is canceled, ends, or disappears.
func (w *Worker) watch(ctx context.Context, obj client.Object) (context.Context, func()) {
	moveCtx, cancel := context.WithCancelCause(ctx)
	key := client.ObjectKeyFromObject(obj)
	done := make(chan struct{})
	go func() {
		fresh := obj.DeepCopyObject().(client.Object)
		for {
			select {
			case <-moveCtx.Done():
				return
			case <-done:
				return
			case <-time.After(w.pollInterval()):
			}
			err := w.Client.Get(moveCtx, key, fresh)
			if apierrors.IsNotFound(err) {
				cancel(errors.Wrapf(errCanceled, "%s %s was deleted", kind(obj), key))
				return
			}
			if err != nil {
				continue // transient; the controller deletes the pod if it matters
			}
			if phase, c := state(fresh); c || phase != string(velerov2alpha1.DataUploadPhaseInProgress) {
				w.Log.WithField("phase", phase).Info("canceled by the controller")
				cancel(errors.Wrapf(errCanceled, "%s %s was canceled (phase %s)", kind(obj), key, phase))
				return
			}
		}
	}()
	return moveCtx, func() { close(done); cancel(nil) }
}

// reporter writes the latest progress into the worker's report, at most every interval,
// off the mover's goroutines. The report is the ConfigMap expose.ProgressReport named after
// the movement, which the controller created and copies onto the movement's
// status.progress: the worker may not write its movement (expose.WorkerIdentity).
type reporter struct {
	w      *Worker
	mu     sync.Mutex
	latest *datapath.Progress
	kick   chan struct{}
	done   chan struct{}
	wg     sync.WaitGroup
}

func (w *Worker) reporter(ctx context.Context) *reporter {
	r := &reporter{w: w, kick: make(chan struct{}, 1), done: make(chan struct{})}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		var last time.Time
		for {
			select {
			case <-ctx.Done():
				return
			case <-r.done:
				return
			case <-r.kick:
			}
			if wait := w.interval() - time.Since(last); wait > 0 {
				select {
				case <-ctx.Done():
					return
				case <-r.done:
					return
				case <-time.After(wait):
				}
			}
			r.mu.Lock()
			p := r.latest
			r.latest = nil
			r.mu.Unlock()
			if p != nil {
				r.patch(ctx, *p)
				last = time.Now()
			}
		}
	}()
	return r
}

func (r *reporter) update(p datapath.Progress) {
	r.mu.Lock()
	r.latest = &p
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

func (r *reporter) stop() {
	close(r.done)
	r.wg.Wait()
}

// flush writes p now (the final value).
func (r *reporter) flush(ctx context.Context, p datapath.Progress) { r.patch(ctx, p) }

func (r *reporter) patch(ctx context.Context, p datapath.Progress) {
	body := expose.ReportPatch(expose.Progress{BytesDone: p.BytesDone, TotalBytes: p.TotalBytes})
	target := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: r.w.Config.Namespace, Name: r.w.Config.Name}}
	if err := r.w.Client.Patch(ctx, target, client.RawPatch(types.MergePatchType, body)); err != nil {
		r.w.Log.WithError(err).Warn("reporting progress")
	}
}

// finish writes the termination message: the JSON result, or the error text.
func (w *Worker) finish(res expose.Result, err error) error {
	var msg string
	if err != nil {
		msg = err.Error()
		w.Log.WithError(err).Error("data movement failed")
	} else {
		b, mErr := json.Marshal(res)
		if mErr != nil {
			return errors.Wrap(mErr, "encoding the result")
		}
		msg = string(b)
	}
	if len(msg) > expose.MaxMessage {
		msg = msg[:expose.MaxMessage-3] + "..."
	}
	path := w.Config.TerminationLog
	if path == "" {
		path = DefaultTerminationLog
	}
	if wErr := os.WriteFile(path, []byte(msg), 0o644); wErr != nil {
		w.Log.WithError(wErr).Errorf("writing the termination message to %s", path)
		if err == nil {
			return errors.Wrapf(wErr, "writing the result to %s", path)
		}
	}
	return err
}

func (w *Worker) pollInterval() time.Duration {
	if w.Config.PollInterval > 0 {
		return w.Config.PollInterval
	}
	return DefaultPollInterval
}

func (w *Worker) interval() time.Duration {
	if w.Config.ProgressInterval > 0 {
		return w.Config.ProgressInterval
	}
	return DefaultProgressInterval
}

func kind(obj client.Object) string {
	if _, ok := obj.(*velerov2alpha1.DataUpload); ok {
		return "DataUpload"
	}
	return "DataDownload"
}

// state is obj's phase (Velero's names, the same for both kinds) and spec.cancel.
func state(obj client.Object) (phase string, cancel bool) {
	switch o := obj.(type) {
	case *velerov2alpha1.DataUpload:
		return string(o.Status.Phase), o.Spec.Cancel
	case *velerov2alpha1.DataDownload:
		return string(o.Status.Phase), o.Spec.Cancel
	}
	return "", false
}

func parallel(cfg map[string]string, k string) int {
	n, err := strconv.Atoi(strings.TrimSpace(cfg[k]))
	if err != nil || n < 0 {
		return 0
	}
	return n
}
