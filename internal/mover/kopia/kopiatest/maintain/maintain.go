// Package maintain runs kopia's full maintenance on a repository, for tests only: the
// unit tests of package kopia and the e2e suite, which show that what a deleted snapshot
// held is freed. It is imported only by _test.go files (internal/archtest checks it).
//
// It is here, in a package only tests import, and not in store: the zero-margin
// reclaim (MaintenanceSafetyReclaim) is safe only while nobody else uses the repository,
// which holds in a test's own repository and never in a cluster's, so the shipped binary
// must not be able to run it (issue #21 item 11). snapmove never runs maintenance: Velero's
// Jobs do, as default@default, with SafetyFull.
package maintain

import (
	"context"
	"math"
	"time"

	"github.com/kopia/kopia/repo"
	"github.com/kopia/kopia/repo/maintenance"
	"github.com/kopia/kopia/snapshot/snapshotmaintenance"
	"github.com/pkg/errors"
	velerokopia "github.com/vmware-tanzu/velero/pkg/kopia"

	"github.com/snapmove/snapmove/internal/mover/kopia/store"
)

// MaintenanceSafety selects the time margins of RunMaintenance.
type MaintenanceSafety string

const (
	// MaintenanceSafetyFull is kopia's SafetyFull, with which Velero's maintenance Jobs
	// run: safe next to running backups, but data stays until it has been unreferenced
	// for about a day and two snapshot GCs four hours apart have seen it.
	MaintenanceSafetyFull MaintenanceSafety = "full"
	// MaintenanceSafetyReclaim frees at once the storage of the data no snapshot
	// references, with kopia's SafetyNone margins (none: safe only while no other client
	// uses the repository), in two full runs. The first rewrites no content: plain
	// SafetyNone rewrites the contents of short packs (below 60% of the 20 MiB pack size)
	// between its snapshot GC and dropping deleted contents from the index, the just
	// deleted ones too, stamped a second after the run's deletion watermark, so they keep
	// their storage next to live contents (and kopia never rewrites the only short pack
	// of a prefix). Without the rewrite, the deleted contents leave the index and every
	// pack that held only them is deleted. The second run, now that the index holds live
	// contents only, rewrites the short packs (a pack holding a deleted generation and an
	// unchanged file is the usual case) and deletes what they were copied from.
	MaintenanceSafetyReclaim MaintenanceSafety = "reclaim"
)

// runs are the safety parameters of each full maintenance run of s.
func (s MaintenanceSafety) runs() ([]maintenance.SafetyParameters, error) {
	switch s {
	case MaintenanceSafetyFull:
		return []maintenance.SafetyParameters{maintenance.SafetyFull}, nil
	case MaintenanceSafetyReclaim:
		noRewrite := maintenance.SafetyNone
		noRewrite.RewriteMinAge = math.MaxInt64 // older than any content: rewrite none
		return []maintenance.SafetyParameters{noRewrite, maintenance.SafetyNone}, nil
	}
	return nil, errors.Errorf("unknown maintenance safety %q", s)
}

// RunMaintenance runs kopia's full maintenance (snapshot GC, then the repository's) of r
// with safety, as kopia's `maintenance run --full` and Velero's maintenance Job do.
// snapmove's client identity must be the repository's maintenance owner (default@default,
// as Velero's); it is not forced, so another owner is an error (kopia's RunExclusive
// returns NotOwnedError).
func RunMaintenance(ctx context.Context, r *store.Repository, safety MaintenanceSafety) error {
	runs, err := safety.runs()
	if err != nil {
		return err
	}
	if r.ReadOnly() {
		return errors.Errorf("running maintenance: repository at %s is open read-only", r.Location())
	}
	kctx := velerokopia.SetupKopiaLog(ctx, r.Log().WithField("maintenanceSafety", string(safety)))
	for i, params := range runs {
		if safety == MaintenanceSafetyReclaim {
			// Index timestamps are whole seconds: GC stamps a deletion max(now, written+1),
			// a rewritten content a second after its old entry, and the index drops
			// deleted entries up to the current second. What was written in this second
			// would only be freed by a later run.
			select {
			case <-time.After(time.Until(time.Now().Truncate(time.Second).Add(time.Second))):
			case <-ctx.Done():
				return errors.Wrap(ctx.Err(), "running maintenance")
			}
		}
		err := repo.DirectWriteSession(kctx, r.Direct(), repo.WriteSessionOptions{Purpose: "snapmove maintenance"},
			func(ctx context.Context, w repo.DirectRepositoryWriter) error {
				return snapshotmaintenance.Run(ctx, w, maintenance.ModeFull, false, params)
			})
		if err != nil {
			return errors.Wrapf(err, "running full maintenance (safety %s, run %d of %d) of repository at %s", safety, i+1, len(runs), r.Location())
		}
	}
	return nil
}
