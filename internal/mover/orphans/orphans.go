package orphans

import (
	"context"
	"sort"
	"time"

	"github.com/pkg/errors"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	"github.com/vmware-tanzu/velero/pkg/label"

	"github.com/snapmove/snapmove/internal/mover/datapath"
)

// Bucket is what Run reads of one BackupStorageLocation.
type Bucket interface {
	// Backups are the names of the backups Velero stored in the bucket.
	Backups(ctx context.Context) ([]string, error)
	// Namespaces are the source namespaces that hold a repository.
	Namespaces(ctx context.Context) ([]string, error)
	// Open opens the repository of namespace, writable when forget is set.
	Open(ctx context.Context, namespace string, forget bool) (Repository, error)
}

// Repository is one namespace's repository (*kopia.Repository).
type Repository interface {
	// Snapshots lists every snapshot manifest, checkpoints included.
	Snapshots(ctx context.Context) ([]datapath.Snapshot, error)
	// DeleteSnapshot forgets one; a snapshot already gone is not an error.
	DeleteSnapshot(ctx context.Context, snapshotID string) error
	Close(ctx context.Context) error
}

// Options say what Run does.
type Options struct {
	// MinAge: a snapshot started less than this before Now is never an orphan.
	MinAge time.Duration
	Now    time.Time
	// Forget forgets the orphans; otherwise Run only finds them (a dry run).
	Forget bool
}

// Orphan is a snapshot whose backup is not in the bucket.
type Orphan struct {
	Namespace  string    `json:"namespace"`
	PVC        string    `json:"pvc"`
	SnapshotID string    `json:"snapshotID"`
	Backup     string    `json:"backup"`
	Checkpoint bool      `json:"checkpoint,omitempty"`
	StartTime  time.Time `json:"startTime"`
	// Forgotten is set once the snapshot was forgotten.
	Forgotten bool `json:"forgotten"`
}

// Result is what Run found and did.
type Result struct {
	// Backups is the number of backups in the bucket.
	Backups int      `json:"backups"`
	Orphans []Orphan `json:"orphans"`
}

// Run finds the orphans of b and, with opts.Forget, forgets them. A bucket that lists no
// backup at all while its repositories hold tagged snapshots is an error (a wrong prefix,
// or credentials that cannot list backups/, would otherwise make every snapshot an
// orphan). Forgetting stops at the first error; the result says what was forgotten.
func Run(ctx context.Context, b Bucket, opts Options) (Result, error) {
	backups, err := b.Backups(ctx)
	if err != nil {
		return Result{}, errors.Wrap(err, "listing the backups in the bucket")
	}
	exists := make(map[string]bool, len(backups))
	for _, name := range backups {
		exists[label.GetValidName(name)] = true // the tag is the DataUpload's label value
	}
	namespaces, err := b.Namespaces(ctx)
	if err != nil {
		return Result{}, errors.Wrap(err, "listing the repositories")
	}
	res := Result{Backups: len(backups), Orphans: []Orphan{}}
	for _, ns := range namespaces {
		if err := inNamespace(ctx, b, ns, exists, opts, &res); err != nil {
			return res, err
		}
	}
	return res, nil
}

// inNamespace finds, and forgets, the orphans of namespace ns.
func inNamespace(ctx context.Context, b Bucket, ns string, exists map[string]bool, opts Options, res *Result) error {
	repo, err := b.Open(ctx, ns, opts.Forget)
	if err != nil {
		return errors.Wrapf(err, "opening the repository of namespace %s", ns)
	}
	defer repo.Close(ctx) //nolint:errcheck // nothing to do about it
	snaps, err := repo.Snapshots(ctx)
	if err != nil {
		return errors.Wrapf(err, "listing the snapshots of namespace %s", ns)
	}
	var found []Orphan
	for _, s := range snaps {
		backup := s.Tags[velerov1.BackupNameLabel]
		if backup == "" || exists[backup] {
			continue
		}
		if len(exists) == 0 {
			return errors.Errorf("the bucket holds no backup at all, yet snapshot %s of %s/%s names backup %s: refusing to call every snapshot an orphan (check the BackupStorageLocation's prefix and credentials)",
				s.ID, s.Namespace, s.PVC, backup)
		}
		if opts.Now.Sub(s.StartTime) < opts.MinAge {
			continue
		}
		found = append(found, Orphan{Namespace: ns, PVC: s.PVC, SnapshotID: s.ID, Backup: backup, Checkpoint: s.Incomplete != "", StartTime: s.StartTime})
	}
	sort.Slice(found, func(i, j int) bool {
		if found[i].PVC != found[j].PVC {
			return found[i].PVC < found[j].PVC
		}
		return found[i].StartTime.Before(found[j].StartTime)
	})
	defer func() { res.Orphans = append(res.Orphans, found...) }()
	if !opts.Forget {
		return nil
	}
	for i := range found {
		if err := repo.DeleteSnapshot(ctx, found[i].SnapshotID); err != nil {
			return errors.Wrapf(err, "forgetting snapshot %s of %s/%s", found[i].SnapshotID, ns, found[i].PVC)
		}
		found[i].Forgotten = true
	}
	return nil
}
