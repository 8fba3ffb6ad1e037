package controller

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/pkg/errors"
	"github.com/sirupsen/logrus"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	"github.com/vmware-tanzu/velero/pkg/label"

	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/naming"
)

// DeleteRequestReconciler forgets kopia snapshots of deleted backups. The delete plugin
// cannot reach the repository (only the mover links kopia), so it creates a ConfigMap
// labelled naming.DeleteRequestLabel=true per DataUpload; this reconciler deletes the
// snapshot, and every other snapshot and checkpoint the backup (named with its UID) wrote
// of the PVC, and sets the request's phase to Completed or Failed (with a message).
// Anyone who may create ConfigMaps in Velero's namespace can write a request, so the
// repository forgets a snapshot only when its source is the request's PVC and its backup
// tag the request's backup; a mismatch fails the request, naming it, and deletes nothing.
//
// A request is a durable job: transient repository errors (the store is down, the mover
// was scaled to zero when Velero deleted the backup) are retried with the controller's
// backoff for as long as it takes, since Velero deletes the backup whatever its delete
// actions say and nobody else would ever forget the snapshot. Only a permanent error
// (the BSL is gone, the password does not open the repository) ends a request Failed,
// with a Warning Event. Answered requests are deleted here after a while (the plugin,
// when it is still waiting, deletes them first).
//
// It needs none of the movements' machinery: only clients, the repository and Velero's
// namespace (where requests and BSLs live).
type DeleteRequestReconciler struct {
	// Client reads requests from the manager's cache and writes them; Reader reads BSLs,
	// and fresh requests after a write conflict, from the API server.
	Client    client.Client
	Reader    client.Reader
	Recorder  record.EventRecorder
	Clock     clock.PassiveClock
	Log       logrus.FieldLogger
	Repos     Repositories
	Namespace string // Velero's
}

// deleteRequests is the DeleteRequestReconciler that shares r's clients and repository.
func (r *Reconciler) deleteRequests() *DeleteRequestReconciler {
	return &DeleteRequestReconciler{
		Client: r.Client, Reader: r.Reader, Recorder: r.Recorder, Clock: r.Clock, Log: r.Log,
		Repos: r.Repos, Namespace: r.Options.Namespace,
	}
}

// How long an answered request stays. A completed one stays until no plugin can still
// be waiting for it (the plugin waits naming.DeleteRequestWait from the request's
// creation, and deletes it itself when it reads the answer); a failed one stays a day,
// for a person to see it (with its Event).
const (
	completedRequestGrace = 5 * time.Second
	failedRequestTTL      = 24 * time.Hour
)

// deleteRequestAnsweredKey, in a request's data: when the mover answered it (RFC 3339).
const deleteRequestAnsweredKey = "answeredAt"

// ReasonSnapshotDeleteFailed is the Event reason on a failed delete request.
const ReasonSnapshotDeleteFailed = "SnapshotDeleteFailed"

// Reconcile implements reconcile.Reconciler.
func (r *DeleteRequestReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	cm := &corev1.ConfigMap{}
	if err := r.Client.Get(ctx, req.NamespacedName, cm); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if cm.Labels[naming.DeleteRequestLabel] != "true" || cm.DeletionTimestamp != nil {
		return ctrl.Result{}, nil
	}
	if cm.Data[naming.DeleteRequestPhaseKey] != "" {
		return r.expire(ctx, cm)
	}
	log := r.Log.WithFields(map[string]any{
		"backup": cm.Data[naming.DeleteRequestBackupKey], "snapshotID": cm.Data[naming.DeleteRequestSnapKey],
		"pvc": describe(cm.Data[naming.DeleteRequestNSKey], cm.Data[naming.DeleteRequestPVCKey]),
	})

	phase, msg, err := r.forget(ctx, cm)
	if err != nil {
		log.WithError(err).Warnf("deleting snapshot failed (request %s, %s old); retrying",
			describe(cm.Namespace, cm.Name), r.Clock.Since(cm.CreationTimestamp.Time).Round(time.Second))
		return ctrl.Result{}, err
	}

	now := r.Clock.Now().UTC().Format(time.RFC3339)
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if cm.Data == nil {
			cm.Data = map[string]string{}
		}
		cm.Data[naming.DeleteRequestPhaseKey] = phase
		cm.Data[deleteRequestAnsweredKey] = now
		if msg != "" {
			cm.Data[naming.DeleteRequestMessageKey] = msg
		}
		err := r.Client.Update(ctx, cm)
		if !apierrors.IsConflict(err) {
			return err
		}
		fresh := &corev1.ConfigMap{}
		if getErr := r.Reader.Get(ctx, client.ObjectKeyFromObject(cm), fresh); getErr != nil {
			return getErr
		}
		if fresh.Data[naming.DeleteRequestPhaseKey] != "" {
			return nil
		}
		*cm = *fresh
		return err
	})
	if err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if phase == naming.DeleteRequestFailed {
		if r.Recorder != nil {
			r.Recorder.Event(cm, corev1.EventTypeWarning, ReasonSnapshotDeleteFailed, msg)
		}
		log.Warn(msg)
		return ctrl.Result{RequeueAfter: failedRequestTTL}, nil
	}
	log.Info("snapshot deleted")
	return r.expire(ctx, cm)
}

// expire deletes an answered request once its time is up.
func (r *DeleteRequestReconciler) expire(ctx context.Context, cm *corev1.ConfigMap) (ctrl.Result, error) {
	until := cm.CreationTimestamp.Add(naming.DeleteRequestWait + completedRequestGrace)
	if cm.Data[naming.DeleteRequestPhaseKey] == naming.DeleteRequestFailed {
		answered := cm.CreationTimestamp.Time
		if at, err := time.Parse(time.RFC3339, cm.Data[deleteRequestAnsweredKey]); err == nil {
			answered = at
		}
		until = answered.Add(failedRequestTTL)
	}
	if left := until.Sub(r.Clock.Now()); left > 0 {
		return ctrl.Result{RequeueAfter: left}, nil
	}
	return ctrl.Result{}, deleteIfExists(ctx, r.Client, cm)
}

// backupLive says why request cm is refused when the backup it names is still there and
// not being deleted: Velero sets a backup's phase to Deleting before it runs the delete
// actions (pkg/controller/backup_deletion_controller.go), and deletes it afterwards, so a
// request for a live backup was not made by Velero's deletion (issue #21). A backup of the
// same name but another UID is a later one: the request's is gone. The error is transient.
func (r *DeleteRequestReconciler) backupLive(ctx context.Context, cm *corev1.ConfigMap, owner datapath.SnapshotOwner) (string, error) {
	name := cm.Data[naming.DeleteRequestBackupKey]
	if name == "" {
		return "the request names no backup", nil
	}
	b := &velerov1.Backup{}
	err := r.Reader.Get(ctx, client.ObjectKey{Namespace: r.Namespace, Name: name}, b)
	switch {
	case apierrors.IsNotFound(err):
		return "", nil
	case apierrors.IsForbidden(err):
		return fmt.Sprintf("the mover may not get Backup %s/%s, which it checks is being deleted: grant it get on backups.velero.io (examples/mover.yaml)", r.Namespace, name), nil
	case err != nil:
		return "", errors.Wrapf(err, "getting Backup %s/%s", r.Namespace, name)
	case owner.BackupUID != "" && string(b.UID) != owner.BackupUID:
		return "", nil
	case b.Status.Phase != velerov1.BackupPhaseDeleting:
		return fmt.Sprintf("refusing to delete snapshots of backup %s: it exists and is not being deleted (phase %s)", name, phaseOrNone(string(b.Status.Phase))), nil
	}
	return "", nil
}

func phaseOrNone(p string) string {
	if p == "" {
		return "none"
	}
	return p
}

// requestOwner is the backup and volume request cm names: the repository forgets only
// their snapshots. Anyone who may create ConfigMaps in Velero's namespace can write a
// request, so a request is a claim the repository checks, never an order (issue #21).
// The worker tags a snapshot with the DataUpload's velero.io/backup-name label, which
// is Velero's label-safe form of the backup's name.
func requestOwner(cm *corev1.ConfigMap) datapath.SnapshotOwner {
	owner := datapath.SnapshotOwner{
		Namespace: cm.Data[naming.DeleteRequestNSKey], PVC: cm.Data[naming.DeleteRequestPVCKey],
		BackupUID: cm.Data[naming.DeleteRequestBackupUIDKey],
	}
	if b := cm.Data[naming.DeleteRequestBackupKey]; b != "" {
		owner.Backup = label.GetValidName(b)
	}
	return owner
}

// forget deletes the snapshot. A non-nil error is transient; a snapshot that is not of
// the request's backup and volume is refused (Failed, with the repository's reason).
func (r *DeleteRequestReconciler) forget(ctx context.Context, cm *corev1.ConfigMap) (phase, msg string, err error) {
	snapshotID := cm.Data[naming.DeleteRequestSnapKey]
	owner := requestOwner(cm)
	if snapshotID == "" && owner.BackupUID == "" {
		return naming.DeleteRequestCompleted, "no snapshot to delete", nil
	}
	if refused, err := r.backupLive(ctx, cm, owner); refused != "" || err != nil {
		return naming.DeleteRequestFailed, refused, err
	}
	bsl, err := storageLocation(ctx, r.Reader, r.Namespace, cm.Data[naming.DeleteRequestBSLKey])
	if p, ok := asPermanent(err); ok {
		return naming.DeleteRequestFailed, p.Error(), nil
	}
	if err != nil {
		return "", "", err
	}
	err = r.Repos.DeleteSnapshot(ctx, bsl, owner, snapshotID)
	if p, ok := asPermanent(err); ok {
		return naming.DeleteRequestFailed, p.Error(), nil
	}
	if err != nil {
		return "", "", err
	}
	return naming.DeleteRequestCompleted, "", nil
}
