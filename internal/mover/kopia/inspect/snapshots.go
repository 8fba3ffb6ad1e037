package inspect

import (
	"context"
	stderrors "errors"
	"sort"
	"strings"

	"github.com/kopia/kopia/repo/manifest"
	"github.com/kopia/kopia/snapshot"
	"github.com/pkg/errors"
	velerokopia "github.com/vmware-tanzu/velero/pkg/kopia"

	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/mover/kopia/store"
)

// cliTagPrefix is the prefix of the tags the kopia CLI writes (snapshot create --tags);
// Velero's data mover and ours write tags without it.
const cliTagPrefix = "tag:"

// Snapshots lists every snapshot of a moved volume in the repository: the manifests,
// complete ones and checkpoints (Incomplete set), whose source path is
// snapshot-data-upload-download/kopia/<ns>/<pvc>, written by Velero's data mover or by
// us, whatever the source's user and host. Snapshots of other sources (Velero's file
// system backups, the kopia CLI) are left out. The list is sorted by namespace, PVC and
// start time (then ID). It reads manifests only, which kopia keeps in memory once listed.
//
// Tags are returned as they were given, without the "tag:" prefix the kopia CLI adds;
// Counts and Errors come from the root directory's summary (Errors from the upload's
// statistics when there is none).
func Snapshots(ctx context.Context, r *store.Repository) ([]datapath.Snapshot, error) {
	kctx := velerokopia.SetupKopiaLog(ctx, r.Log())
	rep := r.Direct()
	entries, err := rep.FindManifests(kctx, map[string]string{manifest.TypeLabelKey: snapshot.ManifestType})
	if err != nil {
		return nil, errors.Wrapf(err, "listing snapshots in repository at %s", r.Location())
	}
	out := make([]datapath.Snapshot, 0, len(entries))
	for _, e := range entries {
		if _, _, ok := store.ParseSourcePath(e.Labels[snapshot.PathLabel]); !ok {
			continue
		}
		man, err := snapshot.LoadSnapshot(kctx, rep, e.ID)
		if stderrors.Is(err, snapshot.ErrSnapshotNotFound) {
			continue // deleted since it was listed
		}
		if err != nil {
			return nil, errors.Wrapf(err, "loading snapshot %s from repository at %s", e.ID, r.Location())
		}
		ns, pvc, ok := store.ParseSourcePath(man.Source.Path)
		if !ok {
			continue
		}
		out = append(out, snapshotInfo(man, ns, pvc))
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		switch {
		case a.Namespace != b.Namespace:
			return a.Namespace < b.Namespace
		case a.PVC != b.PVC:
			return a.PVC < b.PVC
		case !a.StartTime.Equal(b.StartTime):
			return a.StartTime.Before(b.StartTime)
		}
		return a.ID < b.ID
	})
	return out, nil
}

func snapshotInfo(man *snapshot.Manifest, namespace, pvc string) datapath.Snapshot {
	s := datapath.Snapshot{
		ID:         string(man.ID),
		Namespace:  namespace,
		PVC:        pvc,
		Source:     man.Source.String(),
		StartTime:  man.StartTime.ToTime(),
		EndTime:    man.EndTime.ToTime(),
		Incomplete: man.IncompleteReason,
		Errors:     int(man.Stats.ErrorCount + man.Stats.IgnoredErrorCount),
	}
	if c := UploadCounts(man); c != nil {
		s.Counts = *c
		sum := man.RootEntry.DirSummary
		s.Errors = sum.FatalErrorCount + sum.IgnoredErrorCount
	}
	if len(man.Tags) > 0 {
		s.Tags = make(map[string]string, len(man.Tags))
		for k, v := range man.Tags {
			key, cli := strings.CutPrefix(k, cliTagPrefix)
			if _, given := man.Tags[key]; cli && given {
				continue // both "x" and "tag:x": the unprefixed one wins
			}
			s.Tags[key] = v
		}
	}
	return s
}
