package controller

import (
	"context"
	"fmt"

	"github.com/pkg/errors"
	"github.com/sirupsen/logrus"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/mover/config"
	"github.com/snapmove/snapmove/internal/mover/expose"
	"github.com/snapmove/snapmove/internal/mover/repository"
	"github.com/snapmove/snapmove/internal/naming"
)

// podParams are the worker pod settings common to backups and restores. serviceAccount
// is workerIdentity's.
func (r *Reconciler) podParams(op expose.Operation, name string, owner metav1.OwnerReference, serviceAccount, pvc string, block bool, cfg config.Config, extra func(*expose.PodParams)) expose.PodParams {
	flags := map[string]string{"cache-limit-mb": fmt.Sprint(cfg.CacheLimitMB)}
	if c := r.Options.DefaultCredentials; c != nil {
		flags["default-credentials-secret"] = c.Name + "/" + c.Key
	}
	if op == expose.Restore {
		flags["write-sparse-default"] = expose.FormatBool(cfg.WriteSparseFiles)
	}
	if op == expose.Backup {
		flags["verify"] = cfg.Verify
		flags["compression"] = cfg.Compression
		flags["checkpoint-interval"] = cfg.CheckpointInterval.Duration.String()
	}
	p := expose.PodParams{
		Operation: op, Name: name, Namespace: r.Options.Namespace, Owner: owner,
		Image: r.Options.WorkerImage, ImagePullPolicy: cfg.WorkerImagePullPolicy, ServiceAccount: serviceAccount,
		PVC: pvc, Block: block, HostNetwork: cfg.WorkerHostNetwork, Resources: cfg.WorkerResources,
		CacheSize: cfg.CacheSizeLimit, Args: expose.WorkerArgs(flags),
		NodeSelector: cfg.WorkerNodeSelector, Tolerations: cfg.WorkerTolerations, PriorityClassName: cfg.WorkerPriorityClassName,
	}
	if extra != nil {
		extra(&p)
	}
	return p
}

// workerIdentity creates the progress report (ensureReport), ServiceAccount, Role and
// RoleBinding of the worker pod of the movement name (expose.WorkerIdentity: read its own
// object, write its report, read its BSL and the secrets its repository needs) and
// returns the account's name. It is called before every creation of the pod; what exists
// already is kept. With Options.WorkerServiceAccount set it creates only the report and
// returns that account, which needs patch on configmaps in Velero's namespace.
//
// Forbidden is permanent: the mover's own RBAC lacks what the identity needs (an upgrade
// of the image without examples/mover.yaml's rules, or an install that removed them), and
// no retry can change that; the message says what to grant, or to set
// --worker-service-account.
func (r *Reconciler) workerIdentity(ctx context.Context, op expose.Operation, name string, owner metav1.OwnerReference, bslName string) (string, error) {
	if err := r.ensureReport(ctx, op, name, owner); err != nil {
		return "", err
	}
	if r.Options.WorkerServiceAccount != "" {
		return r.Options.WorkerServiceAccount, nil
	}
	bsl, err := storageLocation(ctx, r.Reader, r.Options.Namespace, bslName)
	if err != nil {
		return "", err
	}
	sa, role, binding := expose.WorkerIdentity(expose.IdentityParams{
		Operation: op, Name: name, Namespace: r.Options.Namespace, Owner: owner,
		StorageLocation: bsl.Name, Secrets: repository.SecretNames(bsl, r.Options.DefaultCredentials),
	})
	for _, obj := range []client.Object{sa, role, binding} {
		err := expose.Create(ctx, r.Client, r.Reader, obj)
		if apierrors.IsForbidden(err) {
			return "", r.identityForbidden(err)
		}
		if err != nil {
			return "", err
		}
	}
	return sa.Name, nil
}

// identityForbidden is the permanent failure of a mover whose RBAC lacks the rules the
// worker's identity needs (err is the Forbidden answer): what to grant, or to set
// --worker-service-account.
func (r *Reconciler) identityForbidden(err error) error {
	return permanentf(ReasonPrepareFailed, "the mover may not create its worker's identity: %v; "+
		"give the mover's account get, create and delete on serviceaccounts, roles and rolebindings in namespace %s "+
		"(examples/mover.yaml), or run every worker as one account of yours with --worker-service-account",
		err, r.Options.Namespace)
}

// deleteWorkerIdentity deletes what workerIdentity created for m (the owner reference
// would also have it collected with the movement, which Velero keeps until the backup is
// deleted): only objects made for m (deleteOurs).
//
// A mover that may not read or delete them (its RBAC lacks examples/mover.yaml's rules,
// which workerIdentity reports as the movement's failure) logs it and goes on: the
// cleanup of everything else must not wait for a right it will not get, and the owner
// reference still has the garbage collector delete them with the movement. With
// Options.WorkerServiceAccount set nothing was created (an install that runs workers as
// its own account need not grant these rules), so nothing is deleted.
func (r *Reconciler) deleteWorkerIdentity(ctx context.Context, m movement, log logrus.FieldLogger) error {
	if r.Options.WorkerServiceAccount != "" {
		return nil
	}
	meta := metav1.ObjectMeta{Namespace: r.Options.Namespace, Name: m.object().GetName()}
	for _, obj := range []client.Object{&rbacv1.RoleBinding{ObjectMeta: meta}, &rbacv1.Role{ObjectMeta: meta}, &corev1.ServiceAccount{ObjectMeta: meta}} {
		err := r.deleteOurs(ctx, m.object().GetUID(), obj, log)
		if apierrors.IsForbidden(err) {
			log.WithError(err).Warn("the mover may not delete its worker's identity; it goes with the movement")
			continue
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Annotations of a DataUpload about verification (see config.Config.Verify).
const (
	// annVerify, set by whoever creates the DataUpload, overrides the mover setting
	// verify for its backup, with a value of the same form ("none", "metadata",
	// "sample:<percent>", "full"). An invalid value fails the DataUpload.
	annVerify = naming.VerifyAnnotation
	// annVerification is what the worker verified (expose.Result.Verification),
	// recorded with its result.
	annVerification = naming.VerificationAnnotation
)

// backupCompression is the compression of du's backup: its annotation
// naming.CompressionAnnotation when set, else the setting. An invalid annotation is a
// permanent error naming it.
func backupCompression(du *velerov2alpha1.DataUpload, setting string) (string, error) {
	v := du.Annotations[naming.CompressionAnnotation]
	if v == "" {
		return setting, nil
	}
	if err := config.ValidCompression(v); err != nil {
		return "", permanentf(ReasonPrepareFailed, "annotation %s on DataUpload %s: %v", naming.CompressionAnnotation, describe(du.Namespace, du.Name), err)
	}
	return v, nil
}

// backupVerify is the verify mode of du's backup, in its text form: annVerify when set,
// else the setting. An invalid annotation is a permanent error naming it: a backup
// must not be Completed with less checking than it asked for.
func backupVerify(du *velerov2alpha1.DataUpload, setting string) (string, error) {
	v := du.Annotations[annVerify]
	if v == "" {
		return setting, nil
	}
	mode, err := config.ParseVerify(v)
	if err != nil {
		return "", permanentf(ReasonPrepareFailed, "annotation %s on DataUpload %s: %v", annVerify, describe(du.Namespace, du.Name), err)
	}
	return config.FormatVerify(mode), nil
}

// pod is m's worker pod from the cache, nil when there is none. A pod of m's name that
// was not made for m (expose.MadeFor) is not m's worker: nil too (creating m's pod then
// fails naming it, and cleanup leaves it alone).
func (r *Reconciler) pod(ctx context.Context, m movement) (*corev1.Pod, error) {
	return r.podFrom(ctx, r.Client, m)
}

// podFrom is pod, read from reader.
func (r *Reconciler) podFrom(ctx context.Context, reader client.Reader, m movement) (*corev1.Pod, error) {
	pod := &corev1.Pod{}
	err := reader.Get(ctx, client.ObjectKey{Namespace: r.Options.Namespace, Name: m.object().GetName()}, pod)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, errors.Wrapf(err, "getting worker pod %s", key(m))
	}
	if !expose.MadeFor(pod, m.object().GetUID()) {
		return nil, nil
	}
	return pod, nil
}
