package backup

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/kopia/kopia/fs"
	"github.com/kopia/kopia/fs/localfs"
	"github.com/kopia/kopia/repo"
	"github.com/kopia/kopia/repo/compression"
	"github.com/kopia/kopia/snapshot"
	"github.com/kopia/kopia/snapshot/policy"
	"github.com/kopia/kopia/snapshot/upload"
	"github.com/pkg/errors"
	"github.com/sirupsen/logrus"

	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/mover/kopia/store"
	"github.com/snapmove/snapmove/internal/mover/kopia/tree"
)

// backupSource returns the directory to upload (block devices: backupBlock).
func backupSource(p string) (fs.Entry, error) {
	resolved, err := filepath.EvalSymlinks(p)
	if err != nil {
		return nil, errors.Wrapf(err, "resolving %s", p)
	}
	e, err := localfs.NewEntry(resolved)
	if err != nil {
		return nil, errors.Wrapf(err, "reading %s", resolved)
	}
	dir, ok := e.(fs.Directory)
	if !ok {
		return nil, errors.Errorf("%s is not a directory", p)
	}
	return tree.EncodeNames(dir), nil
}

// FindPreviousSnapshot returns the newest complete snapshot of the source whose requester
// and uploader tags match ours (Velero's FindPreviousSnapshotManifest), or nil, and the
// newest checkpoint (incomplete snapshot) written after it by an interrupted upload, or
// nil. The checkpoints of one upload share its start time: the newest is the one that
// ended last, and holds the most.
func FindPreviousSnapshot(ctx context.Context, rep repo.Repository, si snapshot.SourceInfo, tags map[string]string) (complete, checkpoint *snapshot.Manifest, err error) {
	mans, err := snapshot.ListSnapshots(ctx, rep, si)
	if err != nil {
		return nil, nil, errors.Wrap(err, "listing previous snapshots")
	}
	for _, m := range mans {
		if m.Tags[store.TagRequester] != tags[store.TagRequester] || m.Tags[store.TagUploader] != tags[store.TagUploader] {
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
