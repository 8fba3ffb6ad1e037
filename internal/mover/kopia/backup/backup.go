package backup

import (
	"context"
	"path"
	"runtime"
	"strings"
	"time"

	"github.com/kopia/kopia/repo"
	"github.com/kopia/kopia/repo/manifest"
	"github.com/kopia/kopia/snapshot"
	"github.com/kopia/kopia/snapshot/upload"
	"github.com/pkg/errors"
	"github.com/sirupsen/logrus"
	velerokopia "github.com/vmware-tanzu/velero/pkg/kopia"

	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/mover/kopia/inspect"
	"github.com/snapmove/snapmove/internal/mover/kopia/store"
)

const (
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
// The snapshot is verified before it is saved, as req.Verify says (inspect.VerifyNew; the
// zero mode is VerifyMetadata), against the counts the upload reported, and skipping
// what it shares with a parent that was itself verified to that mode; it is saved tagged
// with the mode (inspect.VerifiedTag). A snapshot that fails, or whose verification is
// canceled, is never saved, and the error (a *datapath.VerificationError when it failed)
// names the volume and the first problems found.
//
// req.Parallel 0 means NumCPU, at most defaultMaxBackupParallel. req.OnProgress is called
// from the upload at most every req.ProgressInterval (0: datapath.DefaultProgressInterval), and
// once more at the end with both fields equal to the snapshot's total file size; calls
// never overlap and none follows the last.
func Backup(ctx context.Context, r *store.Repository, req datapath.BackupRequest) (datapath.BackupResult, error) {
	if r.ReadOnly() {
		return datapath.BackupResult{}, errors.Errorf("backing up PVC %s/%s: repository at %s is open read-only", req.SourceNamespace, req.SourcePVC, r.Location())
	}
	if req.SourceNamespace == "" || req.SourcePVC == "" || req.Path == "" {
		return datapath.BackupResult{}, errors.New("backing up a volume: namespace, PVC and path are required")
	}
	log := r.Log().WithField("pvc", req.SourceNamespace+"/"+req.SourcePVC)
	// A write the store fails after kopia's retries stops the upload (guard.go).
	kctx, stopUpload := store.StopOnStoreFailure(velerokopia.SetupKopiaLog(ctx, log))
	defer stopUpload(nil)

	sourceInfo := snapshot.SourceInfo{
		UserName: store.User,
		Host:     store.Host,
		Path:     path.Clean(store.SourcePath(req.SourceNamespace, req.SourcePVC)),
	}
	tags := make(map[string]string, len(req.Tags)+2)
	for k, v := range req.Tags {
		tags[k] = v
	}
	tags[store.TagRequester] = store.Requester
	tags[store.TagUploader] = store.Uploader

	parallel := req.Parallel
	if parallel <= 0 {
		parallel = min(runtime.NumCPU(), defaultMaxBackupParallel)
	}
	var (
		result  datapath.BackupResult
		man     *snapshot.Manifest
		started = time.Now()
		err     error
	)
	if req.Block {
		result, man, err = backupBlock(kctx, r, req, sourceInfo, tags, parallel, log)
	} else {
		result, man, err = backupTree(kctx, r, req, sourceInfo, tags, parallel, log)
	}
	if err != nil {
		return datapath.BackupResult{}, errors.Wrapf(err, "backing up PVC %s/%s to repository at %s", req.SourceNamespace, req.SourcePVC, r.Location())
	}
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
	return result, nil
}

// verifyAndSave verifies man, the uploaded tree (inspect.VerifyNew, trusting what it
// shares with parent when parent was verified to the mode asked), and saves it tagged
// with the mode it passed. A snapshot that fails, or whose verification cannot finish
// (ctx ends, the store stops answering), is not saved: no later backup takes it as its
// parent, nothing claims it, and maintenance collects its contents. The error keeps its
// type: a *datapath.VerificationError, a transient or a canceled one.
func verifyAndSave(ctx context.Context, r *store.Repository, w repo.RepositoryWriter, man, parent *snapshot.Manifest, req datapath.BackupRequest, parallel int, log logrus.FieldLogger) (manifest.ID, datapath.VerifyResult, error) {
	dw, ok := w.(repo.DirectRepositoryWriter)
	if !ok {
		return "", datapath.VerifyResult{}, errors.Errorf("the repository writer %T cannot read back what it wrote", w)
	}
	// What the upload wrote goes to the store first: the verification reads the store.
	if err := w.Flush(ctx); err != nil {
		return "", datapath.VerifyResult{}, errors.Wrap(err, "flushing the snapshot's contents")
	}
	verification, err := inspect.VerifyNew(ctx, r, dw, man, parent, req.Verify, inspect.UploadCounts(man), parallel)
	if err != nil {
		var ve *datapath.VerificationError
		if errors.As(err, &ve) {
			log.WithError(err).Error("the new snapshot failed verification; it is not saved")
		}
		if ctx.Err() != nil {
			return "", verification, errors.Wrap(context.Cause(ctx), "verifying the new snapshot")
		}
		return "", verification, err
	}
	if verification.Mode.Level != datapath.VerifyNone {
		man.Tags[inspect.VerifiedTag] = verification.Mode.String()
	}
	id, err := snapshot.SaveSnapshot(ctx, w, man)
	if err != nil {
		return "", verification, errors.Wrap(err, "saving snapshot manifest")
	}
	return id, verification, nil
}

// backupTree uploads the directory req.Path with kopia's uploader and saves the
// snapshot (see Backup).
func backupTree(kctx context.Context, r *store.Repository, req datapath.BackupRequest, sourceInfo snapshot.SourceInfo, tags map[string]string, parallel int, log logrus.FieldLogger) (datapath.BackupResult, *snapshot.Manifest, error) {
	source, err := backupSource(req.Path)
	if err != nil {
		return datapath.BackupResult{}, nil, err
	}
	progress := newUploadProgress(req.OnProgress, req.ProgressInterval, 0, log)

	var (
		result datapath.BackupResult
		man    *snapshot.Manifest
	)
	err = repo.WriteSession(kctx, r.Direct(), repo.WriteSessionOptions{Purpose: "snapmove backup " + sourceInfo.Path},
		func(ctx context.Context, w repo.RepositoryWriter) error {
			previous, checkpoint, err := FindPreviousSnapshot(ctx, w, sourceInfo, tags)
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
				return incomplete(man.IncompleteReason, progress.firstErr)
			}
			man.Tags = tags
			man.Description = store.Description
			man.Pins = []string{store.Pin}
			id, verification, err := verifyAndSave(ctx, r, w, man, previous, req, parallel, log)
			if err != nil {
				return err
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
				Empty:            man.Stats.TotalFileSize == 0 && man.Stats.TotalFileCount == 0,
				Verification:     verification,
			}
			return nil
		})
	if err != nil {
		return datapath.BackupResult{}, nil, err
	}
	progress.finish(result.TotalBytes)
	return result, man, nil
}

// incomplete is the error of an upload that kopia ended before its end without an error of
// its own, for reason (its IncompleteReason), firstErr being the first error it reported
// through the progress (nil when none):
//   - with firstErr, that error: typed, so that a store outage is transient;
//   - canceled without one: kopia canceled itself after a checkpoint failed to save or
//     flush (snapshot/upload periodicallyCheckpoint logs the error and cancels; with
//     FailFast every other error is reported first). A checkpoint only writes to the
//     repository, so the store failed it: transient, and the retry resumes from the last
//     checkpoint that was saved. Our own cancellation never gets here (the caller checks
//     the context first).
//   - any other reason (a limit kopia reached): permanent.
func incomplete(reason string, firstErr error) error {
	switch {
	case firstErr != nil:
		return errors.Wrapf(firstErr, "upload incomplete (%s)", reason)
	case reason == upload.IncompleteReasonCanceled:
		return datapath.Transient(errors.Errorf("upload incomplete: kopia canceled it after a checkpoint could not be written to the store (%s)", reason))
	}
	return errors.Errorf("upload incomplete: %s", reason)
}
