package controller

import (
	"context"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/mover/datapath"
)

// Checkpoints of an upload that did not complete. kopia saves a checkpoint of a running
// upload every checkpoint interval, tagged with the backup; only a later complete save
// of the same source deletes them. A canceled or failed DataUpload names no snapshot, so
// nothing else would ever forget them, and each is a GC root: Velero's maintenance would
// keep their data for ever, and restore-files would offer it. So an upload that ends
// without a snapshot forgets what its backup wrote of the volume (issue #21 item 4),
// once its worker pod is gone (a stopping worker may still save one), best effort: a
// repository that does not answer is retried for forgetCheckpointsBound after the end,
// then given up with a warning (deleting the backup forgets them then: the delete
// plugin asks for it by the backup's UID).

// forgetCheckpointsBound is how long after its end an upload keeps trying to forget its
// checkpoints (holding our finalizer); forgetCheckpointsTimeout bounds one try.
const (
	forgetCheckpointsBound   = 2 * time.Minute
	forgetCheckpointsTimeout = 30 * time.Second
)

// forgetCheckpoints forgets the checkpoints (and any snapshot) that du's backup wrote of
// du's volume, when du ends without a snapshot. It returns a cleanupPending while the
// worker pod is still stopping or the repository should be tried again; it never fails
// the cleanup.
func (h uploadHandler) forgetCheckpoints(ctx context.Context, m upload, log logrus.FieldLogger) error {
	r, du := h.r, m.du
	if du.Status.SnapshotID != "" {
		return nil
	}
	// The volume and location as recorded at the claim, never as the spec says now.
	c := claimed(m, log)
	owner := datapath.SnapshotOwner{
		Namespace: c.SourceNamespace, PVC: c.SourcePVC,
		Backup: du.Labels[velerov1.BackupNameLabel], BackupUID: du.Labels[velerov1.BackupUIDLabel],
	}
	if owner.Backup == "" || owner.BackupUID == "" || owner.Namespace == "" || owner.PVC == "" {
		return nil // not a backup's DataUpload: the worker tagged nothing to find it by
	}
	pod := &corev1.Pod{}
	err := r.Reader.Get(ctx, client.ObjectKey{Namespace: r.Options.Namespace, Name: du.Name}, pod)
	if err == nil {
		return cleanupPending(fmt.Sprintf("worker pod %s to stop before the checkpoints of the upload are forgotten", describe(pod.Namespace, pod.Name)))
	}
	if !apierrors.IsNotFound(err) {
		return err
	}
	log = log.WithField("backup", owner.Backup)
	bsl, err := storageLocation(ctx, r.Reader, r.Options.Namespace, c.BackupStorageLocation)
	if err == nil {
		tctx, cancel := context.WithTimeout(ctx, forgetCheckpointsTimeout)
		err = r.Repos.DeleteSnapshot(tctx, bsl, owner, "")
		cancel()
	}
	if err == nil {
		log.Info("forgot the checkpoints of the upload")
		return nil
	}
	ended := r.Clock.Now()
	if du.Status.CompletionTimestamp != nil {
		ended = du.Status.CompletionTimestamp.Time
	}
	if _, permanent := asPermanent(err); permanent || r.Clock.Since(ended) >= forgetCheckpointsBound {
		log.WithError(err).Warn("could not forget the checkpoints of the upload; deleting the backup forgets them")
		return nil
	}
	log.WithError(err).Info("forgetting the checkpoints of the upload failed; retrying")
	return cleanupPending(fmt.Sprintf("forgetting the checkpoints of the upload: %v", err))
}
