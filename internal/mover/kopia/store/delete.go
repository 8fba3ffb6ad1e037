package store

import (
	"context"
	stderrors "errors"

	"github.com/kopia/kopia/repo"
	"github.com/kopia/kopia/repo/manifest"
	"github.com/kopia/kopia/snapshot"
	"github.com/pkg/errors"
	velerokopia "github.com/vmware-tanzu/velero/pkg/kopia"
)

// DeleteSnapshot forgets snapshot snapshotID (deletes its manifest), as Velero's
// BatchForget does. It is idempotent: a snapshot that is already gone is not an error.
// The data stays until maintenance (Velero's, as default@default) collects it. IDs of
// manifests that are not snapshots are refused.
func (r *Repository) DeleteSnapshot(ctx context.Context, snapshotID string) error {
	if r.opts.ReadOnly {
		return errors.Errorf("deleting snapshot %s: repository at %s is open read-only", snapshotID, r.loc)
	}
	if snapshotID == "" {
		return errors.New("deleting snapshot: empty snapshot ID")
	}
	kctx := velerokopia.SetupKopiaLog(ctx, r.log.WithField("snapshotID", snapshotID))
	id := manifest.ID(snapshotID)
	if _, err := snapshot.LoadSnapshot(kctx, r.rep, id); err != nil {
		if stderrors.Is(err, snapshot.ErrSnapshotNotFound) {
			return nil
		}
		return errors.Wrapf(err, "loading snapshot %s from repository at %s", snapshotID, r.loc)
	}
	err := repo.WriteSession(kctx, r.rep, repo.WriteSessionOptions{Purpose: "snapmove delete snapshot"},
		func(ctx context.Context, w repo.RepositoryWriter) error {
			return w.DeleteManifest(ctx, id)
		})
	return errors.Wrapf(err, "deleting snapshot %s from repository at %s", snapshotID, r.loc)
}
