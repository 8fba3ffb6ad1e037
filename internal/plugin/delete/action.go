package delete

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"time"

	"github.com/pkg/errors"
	"github.com/sirupsen/logrus"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	"github.com/vmware-tanzu/velero/pkg/label"
	"github.com/vmware-tanzu/velero/pkg/plugin/velero"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/naming"
)

const (
	// DefaultTimeout bounds the wait for the mover per DataUpload. Velero runs delete
	// actions one after another and only logs their errors, so the plugin waits briefly
	// for an answer to report and never holds the deletion for minutes: the request is a
	// durable job that the mover retries until the snapshot is gone.
	DefaultTimeout = naming.DeleteRequestWait
	// DefaultInterval is how often the request is looked at.
	DefaultInterval = time.Second
)

// Options tune the wait; zero values mean the defaults.
type Options struct {
	Timeout  time.Duration
	Interval time.Duration
}

// Action is the DeleteItemAction for DataUploads. It is safe for concurrent use.
type Action struct {
	client client.Client
	log    logrus.FieldLogger
	opts   Options
}

var _ velero.DeleteItemAction = (*Action)(nil)

// NewAction returns the action.
func NewAction(c client.Client, log logrus.FieldLogger, opts Options) *Action {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	return &Action{client: c, log: log, opts: opts}
}

// AppliesTo selects DataUploads.
func (a *Action) AppliesTo() (velero.ResourceSelector, error) {
	return velero.ResourceSelector{IncludedResources: []string{"datauploads.velero.io"}}, nil
}

// NewDeleteRequest returns the snapshot delete request for du of backup.
func NewDeleteRequest(backup *velerov1.Backup, du *velerov2alpha1.DataUpload) *corev1.ConfigMap {
	bsl := du.Spec.BackupStorageLocation
	if bsl == "" {
		bsl = backup.Spec.StorageLocation
	}
	sum := sha256.Sum256([]byte(bsl + "/" + du.Spec.SourceNamespace + "/" + du.Status.SnapshotID))
	base := "snapmove-delete-" + du.Name
	if len(base) > 200 {
		base = base[:200]
	}
	return &corev1.ConfigMap{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{
			Namespace: backup.Namespace,
			Name:      base + "-" + hex.EncodeToString(sum[:4]),
			Labels: map[string]string{
				naming.DeleteRequestLabel: "true",
				velerov1.BackupNameLabel:  label.GetValidName(backup.Name),
				naming.ManagedByLabel:     naming.ManagedByLabelVal,
			},
		},
		Data: map[string]string{
			naming.DeleteRequestBackupKey: backup.Name,
			naming.DeleteRequestBSLKey:    bsl,
			naming.DeleteRequestNSKey:     du.Spec.SourceNamespace,
			naming.DeleteRequestPVCKey:    du.Spec.SourcePVC,
			naming.DeleteRequestSnapKey:   du.Status.SnapshotID,
			// With the UID the mover also forgets what the backup wrote besides the
			// snapshot (the checkpoints of a canceled or failed upload).
			naming.DeleteRequestBackupUIDKey: string(backup.UID),
		},
	}
}

// Execute asks the mover to delete the kopia snapshot of a snapmove DataUpload, and every
// checkpoint and snapshot the backup wrote of its PVC, and waits briefly for its answer
// (at most Options.Timeout); an unanswered request stays for the mover. A DataUpload
// without a snapshot ID (canceled or failed) is asked for too: its checkpoints carry the
// backup's tags and would otherwise stay for ever. DataUploads of other movers are
// ignored.
func (a *Action) Execute(input *velero.DeleteItemActionExecuteInput) error {
	du := &velerov2alpha1.DataUpload{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(input.Item.UnstructuredContent(), du); err != nil {
		return errors.Wrap(err, "converting item to DataUpload")
	}
	backup := input.Backup
	log := a.log.WithFields(logrus.Fields{"backup": client.ObjectKeyFromObject(backup).String(), "dataUpload": du.Name})
	if du.Spec.DataMover != naming.DataMover {
		log.Debugf("DataUpload belongs to data mover %q: not ours", du.Spec.DataMover)
		return nil
	}
	if du.Status.SnapshotID == "" && backup.UID == "" {
		log.Infof("DataUpload has no snapshot ID (phase %s) and the backup no UID: nothing to delete", du.Status.Phase)
		return nil
	}
	if du.Status.SnapshotID != "" {
		log = log.WithField("snapshotID", du.Status.SnapshotID)
	}
	ctx := context.Background()

	req := NewDeleteRequest(backup, du)
	key := client.ObjectKeyFromObject(req)
	if err := a.client.Create(ctx, req); err != nil {
		if !apierrors.IsAlreadyExists(err) {
			return errors.Wrapf(err, "creating snapshot delete request for DataUpload %s", du.Name)
		}
		log.Infof("snapshot delete request %s exists already: waiting for it", key)
	} else {
		log.Infof("created snapshot delete request %s", key)
	}
	return a.wait(ctx, key, du, log)
}

func (a *Action) wait(ctx context.Context, key client.ObjectKey, du *velerov2alpha1.DataUpload, log logrus.FieldLogger) error {
	deadline := time.Now().Add(a.opts.Timeout)
	ticker := time.NewTicker(a.opts.Interval)
	defer ticker.Stop()
	for {
		cm := &corev1.ConfigMap{}
		err := a.client.Get(ctx, key, cm)
		switch {
		case apierrors.IsNotFound(err):
			log.Infof("snapshot delete request %s is gone: taking it as processed", key)
			return nil
		case err != nil:
			log.WithError(err).Warnf("getting snapshot delete request %s; retrying", key)
		default:
			switch cm.Data[naming.DeleteRequestPhaseKey] {
			case naming.DeleteRequestCompleted:
				log.Info("the snapmove mover deleted the snapshot")
				return a.remove(ctx, cm)
			case naming.DeleteRequestFailed:
				msg := cm.Data[naming.DeleteRequestMessageKey]
				if err := a.remove(ctx, cm); err != nil {
					log.WithError(err).Warn("removing the failed snapshot delete request")
				}
				return errors.Errorf("the snapmove mover could not delete the snapshots of PVC %s/%s (snapshot ID %q): %s",
					du.Spec.SourceNamespace, du.Spec.SourcePVC, du.Status.SnapshotID, msg)
			}
		}
		if !time.Now().Before(deadline) {
			return errors.Errorf("the snapmove mover did not process snapshot delete request %s within %s: is the mover controller running? The request stays in place; the mover deletes the snapshot when it runs, retrying until it succeeds", key, a.opts.Timeout)
		}
		select {
		case <-ctx.Done():
			return errors.Wrapf(ctx.Err(), "waiting for snapshot delete request %s", key)
		case <-ticker.C:
		}
	}
}

func (a *Action) remove(ctx context.Context, cm *corev1.ConfigMap) error {
	if err := a.client.Delete(ctx, cm); err != nil && !apierrors.IsNotFound(err) {
		return errors.Wrapf(err, "deleting snapshot delete request %s/%s", cm.Namespace, cm.Name)
	}
	return nil
}
