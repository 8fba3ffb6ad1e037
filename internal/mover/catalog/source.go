package catalog

import (
	"context"
	"sort"
	"time"

	"github.com/pkg/errors"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	"github.com/vmware-tanzu/velero/pkg/label"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/naming"
)

// Source finds the moved volumes of backups.
type Source interface {
	// Volumes lists moved volumes (every attempt, completed or not), of one backup when
	// backup is not "".
	Volumes(ctx context.Context, backup string) ([]Volume, error)
	// Location is the BackupStorageLocation that holds v's repository.
	Location(ctx context.Context, v Volume) (*velerov1.BackupStorageLocation, error)
}

// Cluster finds volumes through the API server: the DataUploads that Velero keeps until
// the backup is deleted.
type Cluster struct {
	Client client.Reader
	// Namespace is Velero's.
	Namespace string
}

// Volumes implements Source. A named backup that does not exist is an error.
func (c Cluster) Volumes(ctx context.Context, backup string) ([]Volume, error) {
	var opts []client.ListOption
	opts = append(opts, client.InNamespace(c.Namespace))
	if backup != "" {
		b := &velerov1.Backup{}
		if err := c.Client.Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: backup}, b); err != nil {
			if apierrors.IsNotFound(err) {
				return nil, errors.Errorf("backup %s not found in namespace %s", backup, c.Namespace)
			}
			return nil, errors.Wrapf(err, "getting backup %s", backup)
		}
		opts = append(opts, client.MatchingLabels{velerov1.BackupNameLabel: label.GetValidName(backup)})
	}
	dus := &velerov2alpha1.DataUploadList{}
	if err := c.Client.List(ctx, dus, opts...); err != nil {
		return nil, errors.Wrap(err, "listing DataUploads")
	}
	vols := make([]Volume, 0, len(dus.Items))
	for i := range dus.Items {
		vols = append(vols, fromDataUpload(&dus.Items[i], backup))
	}
	sortVolumes(vols)
	return vols, nil
}

// Location implements Source.
func (c Cluster) Location(ctx context.Context, v Volume) (*velerov1.BackupStorageLocation, error) {
	bsl := &velerov1.BackupStorageLocation{}
	if err := c.Client.Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: v.StorageLocation}, bsl); err != nil {
		return nil, errors.Wrapf(err, "getting BackupStorageLocation %s of backup %s", v.StorageLocation, v.Backup)
	}
	return bsl, nil
}

func fromDataUpload(du *velerov2alpha1.DataUpload, backup string) Volume {
	if backup == "" {
		backup = du.Labels[velerov1.BackupNameLabel]
	}
	v := Volume{
		Backup: backup, Namespace: du.Spec.SourceNamespace, PVC: du.Spec.SourcePVC,
		SnapshotID: du.Status.SnapshotID, Phase: string(du.Status.Phase), Message: du.Status.Message,
		DataMover: du.Spec.DataMover, DataUpload: du.Name, StorageLocation: du.Spec.BackupStorageLocation,
		TotalBytes: du.Status.Progress.TotalBytes, IncrementalBytes: du.Status.IncrementalBytes,
		Files: -1, Verification: du.Annotations[naming.VerificationAnnotation],
	}
	if v.Phase == "" {
		v.Phase = string(velerov2alpha1.DataUploadPhaseNew)
	}
	if v.DataMover == "" {
		v.DataMover = naming.VeleroDataMover
	}
	if t := du.Status.StartTimestamp; t != nil {
		v.Started = &t.Time
	}
	if t := du.Status.CompletionTimestamp; t != nil {
		v.Completed = &t.Time
	}
	return v
}

// Bucket finds volumes in the repositories of one BackupStorageLocation alone, for the
// day the cluster is gone: every complete snapshot of a moved volume, its backup read
// from the tag snapmove writes (velero.io/backup-name; a snapshot of Velero's own mover
// has none, and is listed with an empty backup).
type Bucket struct {
	BSL   *velerov1.BackupStorageLocation
	Repos Repositories
}

// Volumes implements Source; TotalBytes and Files are the snapshot's, and no backup is
// an error: none in the bucket may hold the name.
func (b Bucket) Volumes(ctx context.Context, backup string) ([]Volume, error) {
	namespaces, err := b.Repos.Namespaces(ctx, b.BSL)
	if err != nil {
		return nil, errors.Wrapf(err, "listing the repositories of BackupStorageLocation %s", b.BSL.Name)
	}
	var vols []Volume
	for _, ns := range namespaces {
		snaps, err := b.snapshots(ctx, ns)
		if err != nil {
			return nil, err
		}
		for _, s := range snaps {
			v := fromSnapshot(s, b.BSL.Name)
			if s.Incomplete != "" || (backup != "" && v.Backup != label.GetValidName(backup)) {
				continue
			}
			if backup != "" {
				v.Backup = backup
			}
			vols = append(vols, v)
		}
	}
	sortVolumes(vols)
	return vols, nil
}

func (b Bucket) snapshots(ctx context.Context, ns string) ([]datapath.Snapshot, error) {
	repo, err := b.Repos.Open(ctx, b.BSL, ns)
	if err != nil {
		return nil, errors.Wrapf(err, "opening the repository of namespace %s", ns)
	}
	defer repo.Close(ctx) //nolint:errcheck // read-only
	snaps, err := repo.Snapshots(ctx)
	return snaps, errors.Wrapf(err, "listing the snapshots of namespace %s", ns)
}

// Location implements Source.
func (b Bucket) Location(context.Context, Volume) (*velerov1.BackupStorageLocation, error) {
	return b.BSL, nil
}

func fromSnapshot(s datapath.Snapshot, bsl string) Volume {
	start, end := s.StartTime, s.EndTime
	mover := naming.DataMover
	if s.Tags[velerov1.BackupNameLabel] == "" {
		mover = "unknown"
	}
	return Volume{
		Backup: s.Tags[velerov1.BackupNameLabel], Namespace: s.Namespace, PVC: s.PVC, SnapshotID: s.ID,
		Phase: string(velerov2alpha1.DataUploadPhaseCompleted), DataMover: mover, StorageLocation: bsl,
		TotalBytes: s.Counts.Bytes, IncrementalBytes: -1, Files: s.Counts.Files,
		Started: timePtr(start), Completed: timePtr(end),
	}
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func sortVolumes(vols []Volume) {
	sort.SliceStable(vols, func(i, j int) bool {
		a, b := vols[i], vols[j]
		if a.Backup != b.Backup {
			return a.Backup < b.Backup
		}
		if a.Key() != b.Key() {
			return a.Key() < b.Key()
		}
		return a.Started != nil && b.Started != nil && a.Started.Before(*b.Started)
	})
}

// Pinned is a source of snapshots named by their IDs, with the BSL that holds them: the
// way to reach a snapshot that carries no backup tag (one of Velero's own mover), and
// what a command pod is told. Its Pins are returned for any backup.
type Pinned struct {
	Pins []Volume
	BSL  *velerov1.BackupStorageLocation
}

// Volumes implements Source.
func (p Pinned) Volumes(_ context.Context, backup string) ([]Volume, error) {
	vols := make([]Volume, len(p.Pins))
	for i, v := range p.Pins {
		if backup != "" {
			v.Backup = backup
		}
		vols[i] = v
	}
	return vols, nil
}

// Location implements Source.
func (p Pinned) Location(context.Context, Volume) (*velerov1.BackupStorageLocation, error) {
	return p.BSL, nil
}
