package kopia

import (
	"context"
	"math"
	"time"

	"github.com/kopia/kopia/repo"
	"github.com/kopia/kopia/repo/maintenance"
	"github.com/kopia/kopia/snapshot/snapshotmaintenance"
	"github.com/pkg/errors"
	velerokopia "github.com/vmware-tanzu/velero/pkg/kopia"
)

// MaintenanceSafety selects the time margins of RunMaintenance.
type MaintenanceSafety string

const (
	// MaintenanceSafetyFull is kopia's SafetyFull, with which Velero's maintenance Jobs
	// run: safe next to running backups, but data stays until it has been unreferenced
	// for about a day and two snapshot GCs four hours apart have seen it.
	MaintenanceSafetyFull MaintenanceSafety = "full"
	// MaintenanceSafetyReclaim frees at once the storage of the data no snapshot
	// references. It is kopia's SafetyNone (no margins: safe only while no other client
	// uses the repository), except that no content is rewritten. Full maintenance rewrites the contents of short packs
	// (below 60% of the 20 MiB pack size) between its snapshot GC and dropping deleted
	// contents from the index, and it rewrites deleted contents too: with SafetyNone, the
	// contents its own GC has just deleted are copied into new packs next to live ones,
	// stamped a second after the run's deletion watermark, and keep their storage (kopia
	// never rewrites the only short pack of a prefix). Without the rewrite, every pack
	// whose contents are all unreferenced is deleted; packs that also hold live contents
	// are left to Velero's maintenance to compact.
	MaintenanceSafetyReclaim MaintenanceSafety = "reclaim"
)

func (s MaintenanceSafety) parameters() (maintenance.SafetyParameters, error) {
	switch s {
	case MaintenanceSafetyFull:
		return maintenance.SafetyFull, nil
	case MaintenanceSafetyReclaim:
		p := maintenance.SafetyNone
		p.RewriteMinAge = math.MaxInt64 // older than any content: rewrite none
		return p, nil
	}
	return maintenance.SafetyParameters{}, errors.Errorf("unknown maintenance safety %q", s)
}

// RunMaintenance runs kopia's full maintenance (snapshot GC, then the repository's) with
// safety, as kopia's `maintenance run --full` and Velero's maintenance Job do. snapmove's
// client identity must be the repository's maintenance owner (default@default, as
// Velero's); it is not forced, so another owner is an error (kopia's RunExclusive returns
// NotOwnedError).
func (r *Repository) RunMaintenance(ctx context.Context, safety MaintenanceSafety) error {
	params, err := safety.parameters()
	if err != nil {
		return err
	}
	if r.opts.ReadOnly {
		return errors.Errorf("running maintenance: repository at %s is open read-only", r.loc)
	}
	if safety == MaintenanceSafetyReclaim {
		// Index timestamps are whole seconds: GC stamps a deletion max(now, written+1), and
		// the index drops deleted entries up to the current second. Data written in this
		// second would only be freed by a later run.
		select {
		case <-time.After(time.Until(time.Now().Truncate(time.Second).Add(time.Second))):
		case <-ctx.Done():
			return errors.Wrap(ctx.Err(), "running maintenance")
		}
	}
	kctx := velerokopia.SetupKopiaLog(ctx, r.log.WithField("maintenanceSafety", string(safety)))
	err = repo.DirectWriteSession(kctx, r.rep, repo.WriteSessionOptions{Purpose: "snapmove maintenance"},
		func(ctx context.Context, w repo.DirectRepositoryWriter) error {
			return snapshotmaintenance.Run(ctx, w, maintenance.ModeFull, false, params)
		})
	return errors.Wrapf(err, "running full maintenance (safety %s) of repository at %s", safety, r.loc)
}
