package controller

import (
	"context"
	"fmt"
	"strings"

	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
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
	if r.Options.DefaultCredentials != "" {
		flags["default-credentials-secret"] = r.Options.DefaultCredentials
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

// workerIdentity creates the ServiceAccount, Role and RoleBinding of the worker pod of
// the movement name (expose.WorkerIdentity: its own object, its BSL and the secrets its
// repository needs) and returns the account's name. It is called before every creation
// of the pod; what exists already is kept. With Options.WorkerServiceAccount set it
// creates nothing and returns that account.
func (r *Reconciler) workerIdentity(ctx context.Context, op expose.Operation, name string, owner metav1.OwnerReference, bslName string) (string, error) {
	if r.Options.WorkerServiceAccount != "" {
		return r.Options.WorkerServiceAccount, nil
	}
	bsl, err := r.storageLocation(ctx, bslName)
	if err != nil {
		return "", err
	}
	var defaultCreds *corev1.SecretKeySelector
	if secret, key, ok := strings.Cut(r.Options.DefaultCredentials, "/"); ok {
		defaultCreds = &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: key}
	}
	sa, role, binding := expose.WorkerIdentity(expose.IdentityParams{
		Operation: op, Name: name, Namespace: r.Options.Namespace, Owner: owner,
		StorageLocation: bsl.Name, Secrets: repository.SecretNames(bsl, defaultCreds),
	})
	for _, obj := range []client.Object{sa, role, binding} {
		if err := expose.Create(ctx, r.Client, obj); err != nil {
			return "", err
		}
	}
	return sa.Name, nil
}

// deleteWorkerIdentity deletes what workerIdentity created for the movement name (the
// owner reference would also have it collected with the movement, which Velero keeps
// until the backup is deleted).
func (r *Reconciler) deleteWorkerIdentity(ctx context.Context, name string) error {
	meta := metav1.ObjectMeta{Namespace: r.Options.Namespace, Name: name}
	for _, obj := range []client.Object{&rbacv1.RoleBinding{ObjectMeta: meta}, &rbacv1.Role{ObjectMeta: meta}, &corev1.ServiceAccount{ObjectMeta: meta}} {
		if err := r.deleteIfExists(ctx, obj); err != nil {
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
