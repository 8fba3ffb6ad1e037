package controller

import (
	"context"
	"fmt"

	"github.com/pkg/errors"
	"github.com/sirupsen/logrus"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	"github.com/vmware-tanzu/velero/pkg/label"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/mover/repository"
)

// Velero maintains only the repositories it has a BackupRepository for
// (pkg/controller/backup_repository_controller.go: it connects to the repository, sets
// it Ready, and runs maintenance Jobs on its schedule, which free what deleted backups
// and failed uploads left and compact the indexes). Velero creates those objects only
// for its own movers and file system backups (pkg/repository/ensurer.go). So every
// repository snapmove moves data into or out of is made Velero's own: a BackupRepository
// with exactly the name, labels and spec Velero's ensurer gives it
// (pkg/repository/backup_repo_op.go NewBackupRepository), created unless one with those
// labels exists. The name is deterministic, so when Velero and snapmove create it at
// once, one of them gets AlreadyExists and both use the same object: `velero repo get`,
// the maintenance Jobs, their schedule, resources and metrics all apply.

// backupRepository is the BackupRepository Velero's ensurer creates for the kopia
// repository of volumeNamespace on bsl.
func backupRepository(veleroNamespace, volumeNamespace, bsl string) *velerov1.BackupRepository {
	return &velerov1.BackupRepository{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: veleroNamespace,
			Name:      fmt.Sprintf("%s-%s-%s", volumeNamespace, bsl, repository.RepositoryType),
			Labels:    backupRepositoryLabels(volumeNamespace, bsl),
		},
		Spec: velerov1.BackupRepositorySpec{
			VolumeNamespace:       volumeNamespace,
			BackupStorageLocation: bsl,
			RepositoryType:        repository.RepositoryType,
		},
	}
}

// backupRepositoryLabels are Velero's repoLabelsFromKey: how Velero finds the object.
func backupRepositoryLabels(volumeNamespace, bsl string) map[string]string {
	return map[string]string{
		velerov1.VolumeNamespaceLabel: label.GetValidName(volumeNamespace),
		velerov1.StorageLocationLabel: label.GetValidName(bsl),
		velerov1.RepositoryTypeLabel:  label.GetValidName(repository.RepositoryType),
	}
}

// ensureBackupRepository makes the repository of volumeNamespace on bsl known to Velero,
// as the comment above says. It is called after each successful repository check; an
// error is logged and leaves the movement alone (the data is safe; only maintenance
// waits), and the next movement of the repository tries again.
func (r *Reconciler) ensureBackupRepository(ctx context.Context, bsl, volumeNamespace string, log logrus.FieldLogger) {
	if err := r.createBackupRepository(ctx, bsl, volumeNamespace); err != nil {
		log.WithError(err).Warn("cannot make the repository Velero's own BackupRepository: Velero will not maintain it until this succeeds")
	}
}

func (r *Reconciler) createBackupRepository(ctx context.Context, bsl, volumeNamespace string) error {
	want := backupRepository(r.Options.Namespace, volumeNamespace, bsl)
	existing := &velerov1.BackupRepositoryList{}
	if err := r.Reader.List(ctx, existing, client.InNamespace(r.Options.Namespace), client.MatchingLabels(want.Labels)); err != nil {
		return errors.Wrap(err, "listing BackupRepositories")
	}
	if len(existing.Items) > 0 {
		return nil
	}
	if err := r.Client.Create(ctx, want); err != nil && !apierrors.IsAlreadyExists(err) {
		return errors.Wrapf(err, "creating BackupRepository %s/%s", want.Namespace, want.Name)
	}
	return nil
}
