package store

import (
	"context"
	stderrors "errors"
	"path"

	"github.com/kopia/kopia/repo"
	"github.com/kopia/kopia/repo/manifest"
	"github.com/kopia/kopia/snapshot"
	"github.com/pkg/errors"
	velerokopia "github.com/vmware-tanzu/velero/pkg/kopia"

	"github.com/snapmove/snapmove/internal/mover/datapath"
)

// DeleteSnapshot forgets snapshot snapshotID (deletes its manifest), as Velero's
// BatchForget does, whatever it is a snapshot of: for tests. A request from outside goes through
// ForgetSnapshot, which checks the owner first. It is idempotent: a snapshot that is
// already gone is not an error. The data stays until maintenance (Velero's, as
// default@default) collects it. IDs of manifests that are not snapshots are refused.
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
	return r.deleteManifests(kctx, "snapmove delete snapshot", id)
}

// ForgetSnapshot forgets snapshot snapshotID when it belongs to owner: its kopia source
// is owner's volume and its backup tags name owner's backup (ownerMismatch). A snapshot
// of anything else is left alone and the error, a *datapath.PermanentError, says why: a
// delete request is a ConfigMap that whoever may create ConfigMaps in Velero's namespace
// can write, and it must not forget another backup's data. A snapshot already gone is not
// an error.
func (r *Repository) ForgetSnapshot(ctx context.Context, snapshotID string, owner datapath.SnapshotOwner) error {
	if r.opts.ReadOnly {
		return errors.Errorf("deleting snapshot %s: repository at %s is open read-only", snapshotID, r.loc)
	}
	if snapshotID == "" {
		return errors.New("deleting snapshot: empty snapshot ID")
	}
	kctx := velerokopia.SetupKopiaLog(ctx, r.log.WithField("snapshotID", snapshotID))
	man, err := snapshot.LoadSnapshot(kctx, r.rep, manifest.ID(snapshotID))
	if stderrors.Is(err, snapshot.ErrSnapshotNotFound) {
		return nil
	}
	if err != nil {
		return errors.Wrapf(err, "loading snapshot %s from repository at %s", snapshotID, r.loc)
	}
	if why := ownerMismatch(man, owner); why != "" {
		return datapath.Permanent("", errors.Errorf("refusing to delete snapshot %s of repository at %s for backup %s, PVC %s/%s: %s",
			snapshotID, r.loc, owner.Backup, owner.Namespace, owner.PVC, why))
	}
	return r.deleteManifests(kctx, "snapmove delete snapshot", man.ID)
}

// ForgetBackupSnapshots forgets every snapshot and checkpoint of owner's volume whose
// velero.io/backup-name and velero.io/backup-uid tags both name owner's backup, and
// returns their IDs: what a backup wrote of the volume besides the snapshot its
// DataUpload names, such as the checkpoints of a canceled or failed upload (each a GC
// root: maintenance never frees their data while they exist). An owner without a
// BackupUID forgets nothing: a backup's name may be used again later, its UID never.
// Nothing is an error.
func (r *Repository) ForgetBackupSnapshots(ctx context.Context, owner datapath.SnapshotOwner) ([]string, error) {
	if owner.BackupUID == "" || owner.Backup == "" || owner.Namespace == "" || owner.PVC == "" {
		return nil, nil
	}
	if r.opts.ReadOnly {
		return nil, errors.Errorf("deleting the snapshots of backup %s: repository at %s is open read-only", owner.Backup, r.loc)
	}
	kctx := velerokopia.SetupKopiaLog(ctx, r.log.WithField("backup", owner.Backup))
	si := snapshot.SourceInfo{UserName: User, Host: Host, Path: path.Clean(SourcePath(owner.Namespace, owner.PVC))}
	mans, err := snapshot.ListSnapshots(kctx, r.rep, si)
	if err != nil {
		return nil, errors.Wrapf(err, "listing snapshots of %s in repository at %s", si, r.loc)
	}
	var ids []manifest.ID
	var forgotten []string
	for _, m := range mans {
		if ownerMismatch(m, owner) == "" {
			ids = append(ids, m.ID)
			forgotten = append(forgotten, string(m.ID))
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	if err := r.deleteManifests(kctx, "snapmove delete snapshots of a backup", ids...); err != nil {
		return nil, err
	}
	return forgotten, nil
}

// ownerMismatch says why man does not belong to owner, or "" when it does.
func ownerMismatch(man *snapshot.Manifest, owner datapath.SnapshotOwner) string {
	want := path.Clean(SourcePath(owner.Namespace, owner.PVC))
	switch {
	case owner.Namespace == "" || owner.PVC == "" || owner.Backup == "":
		return "the request names no namespace, PVC or backup"
	case man.Source.UserName != User || man.Source.Host != Host || man.Source.Path != want:
		return "it is a snapshot of " + man.Source.String() + ", not of " + (snapshot.SourceInfo{UserName: User, Host: Host, Path: want}).String()
	case man.Tags[TagBackupName] != owner.Backup:
		return "its tag " + TagBackupName + " is " + quoteOrNone(man.Tags[TagBackupName])
	case owner.BackupUID != "" && man.Tags[TagBackupUID] != owner.BackupUID:
		return "its tag " + TagBackupUID + " is " + quoteOrNone(man.Tags[TagBackupUID]) + ", not " + owner.BackupUID
	}
	return ""
}

func quoteOrNone(s string) string {
	if s == "" {
		return "missing"
	}
	return `"` + s + `"`
}

// deleteManifests deletes ids in one write session.
func (r *Repository) deleteManifests(ctx context.Context, purpose string, ids ...manifest.ID) error {
	err := repo.WriteSession(ctx, r.rep, repo.WriteSessionOptions{Purpose: purpose},
		func(ctx context.Context, w repo.RepositoryWriter) error {
			for _, id := range ids {
				if err := w.DeleteManifest(ctx, id); err != nil {
					return errors.Wrapf(err, "deleting snapshot %s", id)
				}
			}
			return nil
		})
	return errors.Wrapf(err, "deleting snapshots from repository at %s", r.loc)
}
