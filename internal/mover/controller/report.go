package controller

import (
	"context"
	"fmt"

	"github.com/pkg/errors"
	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/mover/expose"
	"github.com/snapmove/snapmove/internal/naming"
)

// The worker's progress report (expose.ProgressReport): a ConfigMap named after the
// movement, which the mover creates before the worker's identity and deletes when the
// movement ends, and which only the worker writes (its Role names it). The worker may
// not write its movement, so the controller copies the report onto status.progress,
// where Velero and the stall check read it. What the worker writes is untrusted input:
// expose.ParseProgress bounds it, a report that cannot be read fails the movement, and
// nothing in it is ever used as a name.

// ReasonInvalidReport is the Event reason of a movement whose worker's report cannot be read.
const ReasonInvalidReport = "InvalidWorkerReport"

// ensureReport creates the report of the movement name. An existing ConfigMap of that
// name that is not this movement's report (expose.IsReportOf) is never used: the worker
// would be allowed to write it. Forbidden is permanent, as workerIdentity's.
func (r *Reconciler) ensureReport(ctx context.Context, op expose.Operation, name string, owner metav1.OwnerReference) error {
	ns := r.Options.Namespace
	cm := expose.ProgressReport(expose.ReportParams{Operation: op, Name: name, Namespace: ns, Owner: owner})
	err := r.Client.Create(ctx, cm)
	switch {
	case err == nil:
		return nil
	case apierrors.IsForbidden(err):
		return permanentf(ReasonPrepareFailed, "the mover may not create its worker's progress report: %v; "+
			"give the mover's account create on configmaps in namespace %s (examples/mover.yaml)", err, ns)
	case !apierrors.IsAlreadyExists(err):
		return errors.Wrapf(err, "creating ConfigMap %s", describe(ns, name))
	}
	existing := &corev1.ConfigMap{}
	if err := r.Reader.Get(ctx, client.ObjectKeyFromObject(cm), existing); err != nil {
		return errors.Wrapf(err, "getting ConfigMap %s", describe(ns, name))
	}
	if !expose.IsReportOf(existing, owner.UID) {
		return permanentf(ReasonPrepareFailed, "ConfigMap %s exists and is not this %s's progress report (no label %s=%s); "+
			"it is left alone and no worker is started, which would be allowed to write it", describe(ns, name), owner.Kind, naming.MovementUIDLabel, owner.UID)
	}
	return nil
}

// copyProgress copies m's report onto its status.progress when it says something new.
// A report that cannot be read returns invalid, the failure message; nothing is written.
func (r *Reconciler) copyProgress(ctx context.Context, m movement) (invalid string, err error) {
	cm := &corev1.ConfigMap{}
	found, err := get(ctx, r.Client, r.Options.Namespace, m.object().GetName(), cm)
	if err != nil || !found || !expose.IsReportOf(cm, m.object().GetUID()) {
		return "", err // someone else's ConfigMap of that name says nothing of m
	}
	p, reported, perr := expose.ParseProgress(cm)
	if perr != nil {
		return fmt.Sprintf("the progress report of worker pod %s (ConfigMap %s) cannot be read: %v", key(m), key(m), perr), nil
	}
	if cur := m.progress(); !reported || (cur.BytesDone == p.BytesDone && cur.TotalBytes == p.TotalBytes) {
		return "", nil
	}
	return "", r.write(ctx, m, func(m movement) {
		cur := m.progress()
		cur.BytesDone, cur.TotalBytes = p.BytesDone, p.TotalBytes
	})
}

// deleteReport deletes m's report, only if it is m's (the UID precondition keeps a
// ConfigMap made meanwhile under that name). One that is not m's is left alone.
func (r *Reconciler) deleteReport(ctx context.Context, m movement, log logrus.FieldLogger) error {
	cm := &corev1.ConfigMap{}
	found, err := get(ctx, r.Reader, r.Options.Namespace, m.object().GetName(), cm)
	if err != nil || !found {
		return err
	}
	if !expose.IsReportOf(cm, m.object().GetUID()) {
		log.Warnf("leaving ConfigMap %s alone: it is not this %s's progress report", key(m), m.kind())
		return nil
	}
	err = r.Client.Delete(ctx, cm, client.Preconditions{UID: &cm.UID})
	if err == nil || apierrors.IsNotFound(err) {
		return nil
	}
	return errors.Wrapf(err, "deleting ConfigMap %s", key(m))
}
