package controller

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/naming"
)

// DeleteRequestReconciler forgets kopia snapshots of deleted backups. The delete plugin
// cannot reach the repository (only the mover links kopia), so it creates a ConfigMap
// labelled naming.DeleteRequestLabel=true per snapshot; this reconciler deletes the
// snapshot and sets the request's phase to Completed or Failed (with a message). The
// plugin deletes the ConfigMap. A request is answered once; transient repository errors
// are retried for deleteRetryFor after the request was created.
type DeleteRequestReconciler struct{ *Reconciler }

const deleteRetryFor = 2 * time.Minute

// ReasonSnapshotDeleteFailed is the Event reason on a failed delete request.
const ReasonSnapshotDeleteFailed = "SnapshotDeleteFailed"

// Reconcile implements reconcile.Reconciler.
func (r *DeleteRequestReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	cm := &corev1.ConfigMap{}
	if err := r.Client.Get(ctx, req.NamespacedName, cm); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if cm.Labels[naming.DeleteRequestLabel] != "true" || cm.Data[naming.DeleteRequestPhaseKey] != "" || cm.DeletionTimestamp != nil {
		return ctrl.Result{}, nil
	}
	log := r.Log.WithFields(map[string]any{
		"backup": cm.Data[naming.DeleteRequestBackupKey], "snapshotID": cm.Data[naming.DeleteRequestSnapKey],
		"pvc": cm.Data[naming.DeleteRequestNSKey] + "/" + cm.Data[naming.DeleteRequestPVCKey],
	})

	phase, msg, err := r.forget(ctx, cm)
	if err != nil {
		if r.Clock.Since(cm.CreationTimestamp.Time) < deleteRetryFor {
			log.WithError(err).Warn("deleting snapshot failed; retrying")
			return ctrl.Result{}, err
		}
		phase, msg = naming.DeleteRequestFailed, err.Error()
	}

	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if cm.Data == nil {
			cm.Data = map[string]string{}
		}
		cm.Data[naming.DeleteRequestPhaseKey] = phase
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
	} else {
		log.Info("snapshot deleted")
	}
	return ctrl.Result{}, nil
}

// forget deletes the snapshot. A non-nil error is transient.
func (r *DeleteRequestReconciler) forget(ctx context.Context, cm *corev1.ConfigMap) (phase, msg string, err error) {
	snapshotID := cm.Data[naming.DeleteRequestSnapKey]
	if snapshotID == "" {
		return naming.DeleteRequestCompleted, "no snapshot to delete", nil
	}
	bsl, err := r.storageLocation(ctx, cm.Data[naming.DeleteRequestBSLKey])
	if p, ok := asPermanent(err); ok {
		return naming.DeleteRequestFailed, p.Error(), nil
	}
	if err != nil {
		return "", "", err
	}
	err = r.Repos.DeleteSnapshot(ctx, bsl, cm.Data[naming.DeleteRequestNSKey], snapshotID)
	if p, ok := asPermanent(err); ok {
		return naming.DeleteRequestFailed, p.Error(), nil
	}
	if err != nil {
		return "", "", err
	}
	return naming.DeleteRequestCompleted, "", nil
}
