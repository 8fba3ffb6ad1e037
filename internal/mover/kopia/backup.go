package kopia

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kopia/kopia/fs"
	"github.com/kopia/kopia/fs/localfs"
	"github.com/kopia/kopia/fs/virtualfs"
	"github.com/kopia/kopia/repo"
	"github.com/kopia/kopia/repo/compression"
	"github.com/kopia/kopia/snapshot"
	"github.com/kopia/kopia/snapshot/policy"
	"github.com/kopia/kopia/snapshot/upload"
	"github.com/pkg/errors"
	"github.com/sirupsen/logrus"
	velerokopia "github.com/vmware-tanzu/velero/pkg/kopia"

	"github.com/snapmove/snapmove/internal/mover/datapath"
)

const (
	// DefaultProgressInterval is how often OnProgress is called when the request does
	// not say (Velero's uploader reports every 10 s).
	DefaultProgressInterval = 10 * time.Second

	// parallelUploadAboveSize is what Velero 1.18 sets for repositories that support
	// multi-part backup (all kopia repositories): files above 2 GiB upload in parallel parts.
	parallelUploadAboveSize = 2 << 30

	// maxFailedEntriesReported bounds the failed entries listed in an error (Velero: 10).
	maxFailedEntriesReported = 10

	// defaultMaxBackupParallel caps the default number of files read at once (Velero's
	// is NumCPU). Each file being read holds up to about 20 MiB in kopia's write path
	// (the chunk being split, its encryption buffer, its share of the pending pack);
	// backing up 16 new 128 MiB files peaked at 143–159 MiB RSS reading 2 at once,
	// 185 at 4, 274–324 at 8 and 410 at 16. Four hash 1.5–2 GB/s, more than a volume
	// delivers. An explicit Parallel is taken as asked.
	defaultMaxBackupParallel = 4
)

// Backup snapshots req.Path into the repository. The newest complete snapshot of the same
// source written by Velero's data mover or by us is the parent, so unchanged files are
// not read again. Cancelling ctx aborts the upload and writes no manifest. When some
// entries could not be read the snapshot is still saved: the result carries its ID and
// the error lists the entries.
//
// The saved snapshot is then verified as req.Verify says (VerifySnapshot; the zero mode
// is VerifyMetadata), against the counts the upload reported. A snapshot that fails, or
// whose verification is canceled, is deleted, and the error (a *VerificationError when
// it failed) names the volume, the snapshot and the first problems found.
//
// req.Parallel 0 means NumCPU, at most defaultMaxBackupParallel. req.OnProgress is called
// from the upload at most every req.ProgressInterval (0: DefaultProgressInterval), and
// once more at the end with both fields equal to the snapshot's total file size; calls
// never overlap and none follows the last.
func (r *Repository) Backup(ctx context.Context, req datapath.BackupRequest) (datapath.BackupResult, error) {
	if r.opts.ReadOnly {
		return datapath.BackupResult{}, errors.Errorf("backing up PVC %s/%s: repository at %s is open read-only", req.SourceNamespace, req.SourcePVC, r.loc)
	}
	if req.SourceNamespace == "" || req.SourcePVC == "" || req.Path == "" {
		return datapath.BackupResult{}, errors.New("backing up a volume: namespace, PVC and path are required")
	}
	log := r.log.WithField("pvc", req.SourceNamespace+"/"+req.SourcePVC)
	// A write the store fails after kopia's retries stops the upload (guard.go).
	kctx, stopUpload := stopOnStoreFailure(velerokopia.SetupKopiaLog(ctx, log))
	defer stopUpload(nil)

	source, total, closeSource, err := backupSource(req.Path, req.Block)
	if err != nil {
		return datapath.BackupResult{}, errors.Wrapf(err, "backing up PVC %s/%s", req.SourceNamespace, req.SourcePVC)
	}
	defer closeSource()

	sourceInfo := snapshot.SourceInfo{
		UserName: repoUser,
		Host:     repoHost,
		Path:     path.Clean(snapshotSourcePath(req.SourceNamespace, req.SourcePVC)),
	}
	tags := make(map[string]string, len(req.Tags)+2)
	for k, v := range req.Tags {
		tags[k] = v
	}
	tags[tagRequester] = snapshotRequester
	tags[tagUploader] = snapshotUploader

	parallel := req.Parallel
	if parallel <= 0 {
		parallel = min(runtime.NumCPU(), defaultMaxBackupParallel)
	}
	progress := newUploadProgress(req.OnProgress, req.ProgressInterval, total, log)

	var (
		result  datapath.BackupResult
		man     *snapshot.Manifest
		started = time.Now()
	)
	err = repo.WriteSession(kctx, r.rep, repo.WriteSessionOptions{Purpose: "snapmove backup " + sourceInfo.Path},
		func(ctx context.Context, w repo.RepositoryWriter) error {
			previous, checkpoint, err := findPreviousSnapshot(ctx, w, sourceInfo, tags)
			if err != nil {
				return err
			}
			if previous != nil {
				log.WithField("parentSnapshot", previous.ID).Info("backing up incrementally")
			}
			if checkpoint != nil {
				log.WithField("checkpoint", checkpoint.ID).Info("resuming from the checkpoint of an interrupted backup")
			}
			policyTree, err := setupPolicy(ctx, w, sourceInfo, parallel, req.Compression)
			if err != nil {
				return err
			}

			u := upload.NewUploader(w)
			u.Progress = progress
			u.FailFast = true
			u.CheckpointInterval = checkpointInterval(req.CheckpointInterval)
			u.CheckpointLabels = tags
			stop := context.AfterFunc(ctx, u.Cancel)
			defer stop()

			// Files that a complete parent or the checkpoint of an interrupted upload hold
			// unchanged (same size and mtime) are not read again.
			var previousManifests []*snapshot.Manifest
			for _, m := range []*snapshot.Manifest{previous, checkpoint} {
				if m != nil {
					previousManifests = append(previousManifests, m)
				}
			}
			man, err = u.Upload(ctx, source, policyTree, sourceInfo, previousManifests...)
			if ctx.Err() != nil {
				return errors.Wrap(context.Cause(ctx), "uploading")
			}
			if err != nil {
				return errors.Wrap(err, "uploading")
			}
			if man.IncompleteReason != "" {
				if progress.firstErr != nil { // the cause, typed (a store outage is transient)
					return errors.Wrapf(progress.firstErr, "upload incomplete (%s)", man.IncompleteReason)
				}
				return errors.Errorf("upload incomplete: %s", man.IncompleteReason)
			}
			man.Tags = tags
			man.Description = snapshotDescription
			man.Pins = []string{snapshotPin}
			id, err := snapshot.SaveSnapshot(ctx, w, man)
			if err != nil {
				return errors.Wrap(err, "saving snapshot manifest")
			}
			// A complete snapshot exists: the checkpoints of this and earlier interrupted
			// uploads of the source are not backups and go (Velero applies the retention
			// policy after each save for the same reason).
			if err := deleteCheckpoints(ctx, w, sourceInfo, log); err != nil {
				return err
			}
			result = datapath.BackupResult{
				SnapshotID:       string(id),
				TotalBytes:       man.Stats.TotalFileSize,
				IncrementalBytes: max(0, man.Stats.TotalFileSize-progress.cached.Load()),
				Empty:            man.Stats.TotalFileSize == 0 && (req.Block || man.Stats.TotalFileCount == 0),
			}
			return nil
		})
	if err != nil {
		return datapath.BackupResult{}, errors.Wrapf(err, "backing up PVC %s/%s to repository at %s", req.SourceNamespace, req.SourcePVC, r.loc)
	}
	progress.finish(result.TotalBytes)
	log.WithFields(logrus.Fields{
		"snapshotID":       result.SnapshotID,
		"totalBytes":       result.TotalBytes,
		"incrementalBytes": result.IncrementalBytes,
		"duration":         time.Since(started).Round(time.Millisecond).String(),
	}).Info("backed up volume")

	if failed := failedEntries(man); len(failed) > 0 {
		return result, errors.Errorf("backing up PVC %s/%s: snapshot %s is missing entries that could not be read: %s",
			req.SourceNamespace, req.SourcePVC, result.SnapshotID, strings.Join(failed, "; "))
	}

	verification, err := r.verifySnapshot(ctx, result.SnapshotID, req.Verify, uploadCounts(man), parallel)
	if err != nil {
		return datapath.BackupResult{}, r.unverified(ctx, req, result.SnapshotID, err, log)
	}
	result.Verification = verification
	return result, nil
}

// unverified deletes snapshot id, which failed verification (or whose verification could
// not finish), so that no later backup takes it as its parent and nothing claims it, and
// returns the backup's error.
func (r *Repository) unverified(ctx context.Context, req datapath.BackupRequest, id string, err error, log logrus.FieldLogger) error {
	log = log.WithField("snapshotID", id)
	delErr := r.deleteUnverified(ctx, id)
	if delErr != nil {
		log.WithError(delErr).Error("deleting the snapshot that failed verification")
	}
	var ve *VerificationError
	if errors.As(err, &ve) {
		ve.Deleted = delErr == nil
		log.WithError(err).Error("snapshot failed verification")
	} else if delErr == nil {
		err = errors.Wrapf(err, "snapshot %s was deleted", id)
	}
	if delErr != nil {
		err = errors.Errorf("%v (deleting the snapshot failed too: %v)", err, delErr)
	}
	return errors.Wrapf(err, "backing up PVC %s/%s", req.SourceNamespace, req.SourcePVC)
}

// backupSource returns the kopia entry to upload: the directory itself, or for a block
// volume a static directory holding one streaming file with the device bytes (Velero's
// block_backup.go). total is the device size for block volumes, else 0 (estimated).
func backupSource(p string, block bool) (fs.Entry, int64, func(), error) {
	resolved, err := filepath.EvalSymlinks(p)
	if err != nil {
		return nil, 0, nil, errors.Wrapf(err, "resolving %s", p)
	}
	if !block {
		e, err := localfs.NewEntry(resolved)
		if err != nil {
			return nil, 0, nil, errors.Wrapf(err, "reading %s", resolved)
		}
		dir, ok := e.(fs.Directory)
		if !ok {
			return nil, 0, nil, errors.Errorf("%s is not a directory", p)
		}
		return encodeNames(dir), 0, func() {}, nil
	}

	st, err := os.Stat(resolved)
	if err != nil {
		return nil, 0, nil, errors.Wrapf(err, "reading %s", resolved)
	}
	if !isBlockDevice(st) && !st.Mode().IsRegular() {
		return nil, 0, nil, errors.Errorf("%s is not a block device", p)
	}
	f, err := os.Open(resolved)
	if err != nil {
		return nil, 0, nil, errors.Wrapf(err, "opening %s", resolved)
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		_ = f.Close()
		return nil, 0, nil, errors.Wrapf(err, "sizing %s", resolved)
	}
	name := filepath.Base(resolved)
	dir := virtualfs.NewStaticDirectory(name, []fs.Entry{virtualfs.StreamingFileFromReader(name, f)})
	return dir, size, func() { _ = f.Close() }, nil
}

// findPreviousSnapshot returns the newest complete snapshot of the source whose requester
// and uploader tags match ours (Velero's findPreviousSnapshotManifest), or nil, and the
// newest checkpoint (incomplete snapshot) written after it by an interrupted upload, or
// nil. The checkpoints of one upload share its start time: the newest is the one that
// ended last, and holds the most.
func findPreviousSnapshot(ctx context.Context, rep repo.Repository, si snapshot.SourceInfo, tags map[string]string) (complete, checkpoint *snapshot.Manifest, err error) {
	mans, err := snapshot.ListSnapshots(ctx, rep, si)
	if err != nil {
		return nil, nil, errors.Wrap(err, "listing previous snapshots")
	}
	for _, m := range mans {
		if m.Tags[tagRequester] != tags[tagRequester] || m.Tags[tagUploader] != tags[tagUploader] {
			continue
		}
		switch {
		case m.IncompleteReason == upload.IncompleteReasonCheckpoint:
			if checkpoint == nil || newerCheckpoint(m, checkpoint) {
				checkpoint = m
			}
		case m.IncompleteReason != "":
		case complete == nil || m.StartTime.After(complete.StartTime):
			complete = m
		}
	}
	if checkpoint != nil && complete != nil && !checkpoint.StartTime.After(complete.StartTime) {
		checkpoint = nil // older than the parent: nothing to resume
	}
	return complete, checkpoint, nil
}

// newerCheckpoint reports whether checkpoint a was written after b: by a later upload, or
// later by the same one.
func newerCheckpoint(a, b *snapshot.Manifest) bool {
	if !a.StartTime.Equal(b.StartTime) {
		return a.StartTime.After(b.StartTime)
	}
	return a.EndTime.After(b.EndTime)
}

// deleteCheckpoints deletes every incomplete snapshot of the source.
func deleteCheckpoints(ctx context.Context, w repo.RepositoryWriter, si snapshot.SourceInfo, log logrus.FieldLogger) error {
	mans, err := snapshot.ListSnapshots(ctx, w, si)
	if err != nil {
		return errors.Wrap(err, "listing checkpoints")
	}
	for _, m := range mans {
		if m.IncompleteReason == "" {
			continue
		}
		if err := w.DeleteManifest(ctx, m.ID); err != nil {
			return errors.Wrapf(err, "deleting checkpoint %s", m.ID)
		}
		log.WithField("checkpoint", m.ID).Debug("deleted the checkpoint of an interrupted upload")
	}
	return nil
}

// DefaultCheckpointInterval is how often a running upload saves a checkpoint unless asked
// otherwise. kopia's default, 45 minutes, is far too rare for a volume move that a node
// drain or a store outage may interrupt: a 4 GiB volume moves in well under a minute, so
// a retry would start over. Every checkpoint costs a snapshot manifest, the directory
// manifests of the directories in progress and a flush of the index (and of partly
// filled packs): at 30 s an hour-long upload writes 120 of each, and the checkpoints'
// manifests are deleted once the snapshot is complete.
const DefaultCheckpointInterval = 30 * time.Second

func checkpointInterval(d time.Duration) time.Duration {
	switch {
	case d <= 0:
		return DefaultCheckpointInterval
	case d > upload.DefaultCheckpointInterval: // kopia refuses longer ones
		return upload.DefaultCheckpointInterval
	}
	return d
}

// setupPolicy persists the source policy Velero's uploader persists (setupPolicy,
// getDefaultPolicy), with the requested compression (Velero's is none), and returns the
// effective policy tree. Being the source's policy, `kopia policy show` tells the truth.
//
// One deliberate difference: Velero's policy inherits kopia's file-ignore defaults, so its
// mover silently leaves out every directory holding a CACHEDIR.TAG and whatever a
// .kopiaignore file in the volume lists. A volume backup must hold the whole volume, so
// both are switched off here: cache directories are kept, and the only dot-ignore file
// name is one that cannot exist (a name with a "/" never appears in a directory listing).
// kopia cannot express "no dot-ignore files" otherwise: an empty list inherits the default.
func setupPolicy(ctx context.Context, w repo.RepositoryWriter, si snapshot.SourceInfo, parallel int, compressor string) (*policy.Tree, error) {
	if compressor == "" {
		compressor = datapath.CompressionNone
	}
	if !slices.Contains(datapath.Compressors, compressor) {
		return nil, errors.Errorf("compression %q is not one of %s", compressor, strings.Join(datapath.Compressors, ", "))
	}
	keep := policy.OptionalInt(math.MaxInt32)
	par := policy.OptionalInt(parallel)
	above := policy.OptionalInt64(parallelUploadAboveSize)
	ignoreUnknown := policy.OptionalBool(true)
	keepCacheDirs := policy.OptionalBool(false)
	pol := &policy.Policy{
		FilesPolicy: policy.FilesPolicy{
			IgnoreCacheDirectories: &keepCacheDirs,
			DotIgnoreFiles:         []string{noDotIgnoreFile},
		},
		RetentionPolicy: policy.RetentionPolicy{
			KeepLatest: &keep, KeepAnnual: &keep, KeepDaily: &keep,
			KeepHourly: &keep, KeepMonthly: &keep, KeepWeekly: &keep,
		},
		CompressionPolicy:   policy.CompressionPolicy{CompressorName: compression.Name(compressor)},
		UploadPolicy:        policy.UploadPolicy{MaxParallelFileReads: &par, ParallelUploadAboveSize: &above},
		SchedulingPolicy:    policy.SchedulingPolicy{Manual: true},
		ErrorHandlingPolicy: policy.ErrorHandlingPolicy{IgnoreUnknownTypes: &ignoreUnknown},
	}
	same, err := policyIsSet(ctx, w, si, pol)
	if err != nil {
		return nil, err
	}
	if !same {
		if err := policy.SetPolicy(ctx, w, si, pol); err != nil {
			return nil, errors.Wrap(err, "setting source policy")
		}
		if err := w.Flush(ctx); err != nil {
			return nil, errors.Wrap(err, "flushing source policy")
		}
	}
	tree, err := policy.TreeForSource(ctx, w, si)
	return tree, errors.Wrap(err, "reading source policy")
}

// policyIsSet reports whether si's policy is pol already, in exactly one manifest: then
// the backup writes no policy manifest (and no index blob for it), which a repository
// that backs up every volume every day would otherwise gain each time. Several manifests
// (two clients that set it at once) are replaced by one.
func policyIsSet(ctx context.Context, w repo.RepositoryWriter, si snapshot.SourceInfo, pol *policy.Policy) (bool, error) {
	md, err := w.FindManifests(ctx, policy.LabelsForSource(si))
	if err != nil {
		return false, errors.Wrap(err, "finding the source policy")
	}
	if len(md) != 1 {
		return false, nil
	}
	cur, err := policy.GetDefinedPolicy(ctx, w, si)
	if err != nil {
		return false, errors.Wrap(err, "reading the source policy")
	}
	have, err := json.Marshal(cur)
	if err != nil {
		return false, errors.Wrap(err, "encoding the source policy")
	}
	want, err := json.Marshal(pol)
	if err != nil {
		return false, errors.Wrap(err, "encoding the source policy")
	}
	return bytes.Equal(have, want), nil
}

// noDotIgnoreFile is a dot-ignore file name no directory can contain.
const noDotIgnoreFile = "snapmove/backs-up-everything"

// failedEntries lists the entries the upload could not read, except unknown types
// (sockets, FIFOs), which the policy ignores as Velero's does.
func failedEntries(man *snapshot.Manifest) []string {
	if man == nil || man.RootEntry == nil || man.RootEntry.DirSummary == nil {
		return nil
	}
	var out []string
	for _, e := range man.RootEntry.DirSummary.FailedEntries {
		if strings.Contains(e.Error, fs.ErrUnknown.Error()) {
			continue
		}
		if len(out) == maxFailedEntriesReported {
			out = append(out, "more entries not listed")
			break
		}
		out = append(out, fmt.Sprintf("%s: %s", e.EntryPath, e.Error))
	}
	return out
}

// uploadProgress adapts kopia's upload hooks to OnProgress like Velero's kopia.Progress:
// BytesDone = hashed + cached bytes, TotalBytes = the estimate (or the device size).
type uploadProgress struct {
	upload.NullUploadProgress

	hashed, cached, estimated atomic.Int64
	fixedTotal                int64
	report                    func(datapath.Progress)
	interval                  time.Duration
	next                      atomic.Int64
	log                       logrus.FieldLogger

	mu       sync.Mutex // serializes reports
	finished bool

	// firstErr is the first entry that could not be backed up (FailFast stops the
	// upload there), kept with its type so the caller can tell a store outage from an
	// unreadable source file.
	firstErrOnce sync.Once
	firstErr     error
}

func newUploadProgress(report func(datapath.Progress), interval time.Duration, fixedTotal int64, log logrus.FieldLogger) *uploadProgress {
	if interval <= 0 {
		interval = DefaultProgressInterval
	}
	return &uploadProgress{report: report, interval: interval, fixedTotal: fixedTotal, log: log}
}

func (p *uploadProgress) Enabled() bool { return true }

func (p *uploadProgress) EstimationParameters() upload.EstimationParameters {
	return upload.EstimationParameters{Type: upload.EstimationTypeClassic, AdaptiveThreshold: 300000}
}

func (p *uploadProgress) EstimatedDataSize(_ int64, totalBytes int64) {
	p.estimated.Store(totalBytes)
	p.maybeReport()
}

func (p *uploadProgress) HashedBytes(n int64) {
	p.hashed.Add(n)
	p.maybeReport()
}

func (p *uploadProgress) CachedFile(_ string, n int64) {
	p.cached.Add(n)
	p.maybeReport()
}

func (p *uploadProgress) FinishedDirectory(string) { p.maybeReport() }

func (p *uploadProgress) Error(entryPath string, err error, isIgnored bool) {
	entry := p.log.WithError(err).WithField("path", entryPath)
	if isIgnored {
		entry.Warn("ignored an entry that could not be backed up")
		return
	}
	entry.Error("could not back up an entry")
	p.firstErrOnce.Do(func() { p.firstErr = errors.Wrapf(err, "backing up %s", entryPath) })
}

func (p *uploadProgress) maybeReport() {
	if p.report == nil {
		return
	}
	now := time.Now().UnixNano()
	next := p.next.Load()
	if now < next || !p.next.CompareAndSwap(next, now+p.interval.Nanoseconds()) {
		return
	}
	if !p.mu.TryLock() {
		return // a report is running; the next hook reports
	}
	defer p.mu.Unlock()
	if p.finished {
		return
	}
	total := p.fixedTotal
	if total == 0 {
		total = p.estimated.Load()
	}
	p.report(datapath.Progress{TotalBytes: total, BytesDone: p.hashed.Load() + p.cached.Load()})
}

// finish sends the last report; no report follows it.
func (p *uploadProgress) finish(total int64) {
	if p.report == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.finished = true
	p.report(datapath.Progress{TotalBytes: total, BytesDone: total})
}
