package restore

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kopia/kopia/repo"
	"github.com/kopia/kopia/repo/manifest"
	"github.com/kopia/kopia/snapshot"
	"github.com/pkg/errors"
	"github.com/sirupsen/logrus"
	velerokopia "github.com/vmware-tanzu/velero/pkg/kopia"
	"golang.org/x/sync/semaphore"

	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/mover/kopia/store"
	"github.com/snapmove/snapmove/internal/mover/kopia/tree"
)

// A restore is split by job, as restic's restorer is: this file holds the API, the
// restorer's state and progress; fileswriter.go the writer pool, the read budget and
// chunk reads and writes; restoretree.go the walk of a directory snapshot (on package
// tree's walker) and the attributes it sets; beneath_unix.go how entries of the target
// are made and changed (relative to open directories, never through a symlink);
// restoreblock.go the restore of a block volume; files.go the restore of chosen paths
// (Files), which reuses the walker and writers.

// Restore writes snapshot req.SnapshotID to req.Path: file data, modes (including
// setuid/setgid/sticky), owners, modification times, symlinks and empty directories.
// Existing entries in the way are replaced; other existing entries are left alone.
// Nothing is written outside req.Path: entries are made beneath it without following a
// symlink, and a name that is not one path component fails the restore. A name that a
// snapshot directory holds more than once (tree.CheckNames: names that were not UTF-8,
// collapsed by Velero's node-agent or the kopia CLI) is restored for none of its entries;
// everything else is, and then the restore fails with a *tree.CollisionError naming them. The target filesystem (or device) is synced before
// Restore returns. Cancelling ctx stops it with a partial tree.
//
// req.Parallel 0 means NumCPU writers. Without req.WriteSparse, all-zero runs of
// minAllocateRun (64 KiB) or more are allocated (fallocate) instead of written.
// req.OnProgress is called every req.ProgressInterval (0: datapath.DefaultProgressInterval) and
// once at the end with both fields equal to the restored size.
func Restore(ctx context.Context, r *store.Repository, req datapath.RestoreRequest) (datapath.RestoreResult, error) {
	if req.SnapshotID == "" || req.Path == "" {
		return datapath.RestoreResult{}, errors.New("restoring a snapshot: snapshot ID and path are required")
	}
	log := r.Log().WithField("snapshotID", req.SnapshotID)
	kctx := velerokopia.SetupKopiaLog(ctx, log)

	man, err := snapshot.LoadSnapshot(kctx, r.Direct(), manifest.ID(req.SnapshotID))
	if err != nil {
		return datapath.RestoreResult{}, errors.Wrapf(err, "loading snapshot %s from repository at %s", req.SnapshotID, r.Location())
	}
	root := man.RootEntry
	if root == nil {
		return datapath.RestoreResult{}, errors.Errorf("snapshot %s has no root entry", req.SnapshotID)
	}

	rs := newRestorer(r.Direct(), req, man.Stats.TotalFileSize, log)
	stopProgress := rs.startProgress(req.OnProgress, req.ProgressInterval)
	started := time.Now()
	if req.Block {
		err = rs.restoreBlock(kctx, root, req.Path)
	} else {
		err = rs.restoreTree(kctx, root, req.Path)
	}
	stopProgress()
	if err != nil {
		return datapath.RestoreResult{}, errors.Wrapf(err, "restoring snapshot %s to %s", req.SnapshotID, req.Path)
	}
	total := rs.done.Load()
	if req.OnProgress != nil {
		req.OnProgress(datapath.Progress{TotalBytes: total, BytesDone: total})
	}
	log.WithFields(logrus.Fields{"totalBytes": total, "duration": time.Since(started).Round(time.Millisecond).String()}).
		Info("restored snapshot")
	return datapath.RestoreResult{TotalBytes: total}, nil
}

// writeMode says how all-zero data is written.
type writeMode int

const (
	writeAll      writeMode = iota // write every byte (block devices)
	writeSparse                    // leave all-zero blocks as holes
	writeAllocate                  // allocate all-zero runs without writing them
)

type restorer struct {
	rep      repo.DirectRepository
	cr       tree.ContentReader
	parallel int
	mode     writeMode
	// replace writes each file beside the entry it replaces and renames it into place
	// (fileTarget.replace): Files, whose target is a live volume, sets it.
	replace bool
	total   int64
	done    atomic.Int64
	log     logrus.FieldLogger

	// reads admits chunk reads by readCost; inFlight and peakInFlight are what it
	// admitted (for tests).
	reads                  *semaphore.Weighted
	inFlight, peakInFlight atomic.Int64

	// zeroContents remembers contents known to be all zeros (holes dedup to one).
	zeroContents sync.Map
	noFallocate  atomic.Bool

	dirsMu sync.Mutex
	dirs   []restoredDir
	// collisions are the names that directories hold more than once (also under dirsMu).
	collisions []tree.Collision

	// restored counts the entries the walkers made: directories walked, symlinks made,
	// files queued (their bytes are done).
	restored struct{ files, dirs, symlinks atomic.Int64 }
}

// restoredCounts are the entries restored so far and the bytes written.
func (rs *restorer) restoredCounts() datapath.TreeCounts {
	return datapath.TreeCounts{
		Files:    rs.restored.files.Load(),
		Dirs:     rs.restored.dirs.Load(),
		Symlinks: rs.restored.symlinks.Load(),
		Bytes:    rs.done.Load(),
	}
}

func newRestorer(rep repo.DirectRepository, req datapath.RestoreRequest, total int64, log logrus.FieldLogger) *restorer {
	parallel := req.Parallel
	if parallel <= 0 {
		parallel = runtime.NumCPU()
	}
	mode := writeAllocate
	if req.WriteSparse {
		mode = writeSparse
	}
	return &restorer{
		rep:      rep,
		cr:       tree.NewContentReader(rep),
		parallel: parallel,
		mode:     mode,
		total:    total,
		log:      log,
		reads:    semaphore.NewWeighted(readBudget),
	}
}

func (rs *restorer) startProgress(report func(datapath.Progress), interval time.Duration) func() {
	if report == nil {
		return func() {}
	}
	if interval <= 0 {
		interval = datapath.DefaultProgressInterval
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				report(datapath.Progress{TotalBytes: rs.total, BytesDone: rs.done.Load()})
			}
		}
	}()
	return func() { close(stop); wg.Wait() }
}
