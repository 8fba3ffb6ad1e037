package controller

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/pkg/errors"
	"github.com/sirupsen/logrus"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/mover/config"
	"github.com/snapmove/snapmove/internal/mover/expose"
	"github.com/snapmove/snapmove/internal/mover/repository"
	"github.com/snapmove/snapmove/internal/mover/velerosrv"
	"github.com/snapmove/snapmove/internal/naming"
)

// podParams are the worker pod settings common to backups and restores. id is
// workerIdentity's.
func (r *Reconciler) podParams(op expose.Operation, name string, owner metav1.OwnerReference, id workerID, pvc string, block bool, cfg config.Config, extra func(*expose.PodParams)) expose.PodParams {
	flags := map[string]string{"cache-limit-mb": fmt.Sprint(cfg.CacheLimitMB), "default-credentials-secret": id.Credentials}
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
		Image: r.Options.WorkerImage, ImagePullPolicy: cfg.WorkerImagePullPolicy, ServiceAccount: id.ServiceAccount,
		Labels: id.Labels, ImagePullSecrets: id.PullSecrets, Env: id.Env,
		PVC: pvc, Block: block, HostNetwork: cfg.WorkerHostNetwork, Resources: cfg.WorkerResources,
		CacheSize: cfg.CacheSizeLimit, Args: expose.WorkerArgs(flags),
		NodeSelector: cfg.WorkerNodeSelector, Tolerations: cfg.WorkerTolerations, PriorityClassName: cfg.WorkerPriorityClassName,
	}
	if extra != nil {
		extra(&p)
	}
	return p
}

// workerID is what workerIdentity made or found for one worker pod.
type workerID struct {
	// ServiceAccount is the pod's account; "" until workerIdentity ran.
	ServiceAccount string
	// Credentials is the worker's --default-credentials-secret: NAME/KEY or none.
	Credentials string
	// Labels and PullSecrets are Velero's server pod's (velerosrv.Server).
	Labels      map[string]string
	PullSecrets []corev1.LocalObjectReference
	// Env is how Velero's server reaches the object store (velerosrv.StoreEnv).
	Env []corev1.EnvVar
	// Injected are the variables a pod identity webhook is to put into the pod of
	// ServiceAccount, a per-movement account made with Velero's identity annotations
	// (velerosrv.InjectedEnv); createWorkerPod checks them.
	Injected []string
}

// workerIdentity creates the progress report (ensureReport), ServiceAccount, Role and
// RoleBinding of the worker pod of the movement name (expose.WorkerIdentity: read its own
// object, write its report, read its BSL and the secrets its repository needs) and
// returns them with the credentials the worker is to use. It is called before every
// creation of the pod; what exists already is kept. With Options.WorkerServiceAccount
// set it creates only the report and returns that account, which needs patch on
// configmaps in Velero's namespace.
//
// The default credentials are resolved here (Options.DefaultCredentials, for a BSL
// without spec.credential), so that the worker gets NAME/KEY or none and its Role names
// the secret. The ServiceAccount gets the workload-identity annotations of Velero's
// (Options.VeleroServer), and the pod its label and pull secrets; with
// WorkerServiceAccount set the account is the operator's and nothing is copied onto it.
//
// Forbidden is permanent: the mover's own RBAC lacks what the identity needs (an upgrade
// of the image without examples/mover.yaml's rules, or an install that removed them), and
// no retry can change that; the message says what to grant, or to set
// --worker-service-account.
func (r *Reconciler) workerIdentity(ctx context.Context, op expose.Operation, name string, owner metav1.OwnerReference, bslName string, cbt bool) (workerID, error) {
	if err := r.ensureReport(ctx, op, name, owner); err != nil {
		return workerID{}, err
	}
	bsl, err := storageLocation(ctx, r.Reader, r.Options.Namespace, bslName)
	if err != nil {
		return workerID{}, err
	}
	creds, err := r.defaultCredentials(ctx, bsl)
	if err != nil {
		return workerID{}, err
	}
	srv, err := r.veleroServer(ctx)
	if err != nil {
		return workerID{}, err
	}
	id := workerID{Credentials: velerosrv.FlagValue(creds), Labels: srv.PodLabels, PullSecrets: srv.ImagePullSecrets, Env: srv.Env}
	if r.Options.WorkerServiceAccount != "" {
		id.ServiceAccount = r.Options.WorkerServiceAccount
		return id, nil
	}
	if _, ok := srv.Annotations[velerosrv.AzureClientIDAnnotation]; ok {
		r.warnAzurePerMovement()
	}
	sa, role, binding := expose.WorkerIdentity(expose.IdentityParams{
		Operation: op, Name: name, Namespace: r.Options.Namespace, Owner: owner,
		StorageLocation: bsl.Name, Secrets: repository.SecretNames(bsl, creds), Annotations: srv.Annotations, CBT: cbt,
	})
	for _, obj := range []client.Object{sa, role, binding} {
		err := expose.Create(ctx, r.Client, r.Reader, obj)
		if apierrors.IsForbidden(err) {
			return workerID{}, r.identityForbidden(err)
		}
		if err != nil {
			return workerID{}, err
		}
	}
	id.ServiceAccount = sa.Name
	id.Injected = velerosrv.InjectedEnv(srv.Annotations, srv.PodLabels)
	return id, nil
}

// identityWebhookGrace is how long after its ServiceAccount was made a worker pod that
// came back from admission without the identity a webhook injects for that account is
// deleted and made again. Such webhooks read accounts from an informer cache, and the
// mover makes the account a moment before the pod: EKS's pod identity webhook mutates
// nothing for an account its cache has not seen yet unless it runs with
// --service-account-lookup-grace-period (default 0: amazon-eks-pod-identity-webhook
// pkg/handler/handler.go, MutatePod). Past the grace the pod is kept, with a warning: the
// cluster may run no such webhook, and the worker then uses what else it has.
const identityWebhookGrace = 30 * time.Second

// createWorkerPod creates pod, the worker of the movement uid that runs as id. When the
// pod came back from admission without a variable of id.Injected and its account is
// younger than identityWebhookGrace, it deletes the pod and returns why as the wait: the
// next pass makes it again.
func (r *Reconciler) createWorkerPod(ctx context.Context, uid types.UID, pod *corev1.Pod, id workerID, log logrus.FieldLogger) (string, error) {
	if err := expose.Create(ctx, r.Client, r.Reader, pod); err != nil {
		return "", err
	}
	// A pod that existed already (made for this movement by an earlier pass) is not
	// the API server's answer: pod is then still as built, with no UID.
	missing := missingEnv(pod, id.Injected)
	if pod.UID == "" || missing == "" {
		log.Info("created worker pod")
		return "", nil
	}
	sa := &corev1.ServiceAccount{}
	found, err := get(ctx, r.Reader, pod.Namespace, id.ServiceAccount, sa)
	if err != nil {
		return "", err
	}
	log = log.WithFields(logrus.Fields{"serviceAccount": id.ServiceAccount, "missingEnv": missing})
	if !found || r.Clock.Since(sa.CreationTimestamp.Time) >= identityWebhookGrace {
		log.Warn("created worker pod without the workload identity its ServiceAccount's annotations ask for: " +
			"is the cloud's pod identity webhook installed?")
		return "", nil
	}
	if err := r.deleteOurs(ctx, uid, pod, log); err != nil {
		return "", err
	}
	msg := fmt.Sprintf("worker pod %s/%s came without %s, which the pod identity webhook injects for ServiceAccount %s; "+
		"made again once the webhook has seen the new account", pod.Namespace, pod.Name, missing, id.ServiceAccount)
	log.Info("deleted a worker pod the pod identity webhook did not mutate")
	return msg, nil
}

// missingEnv is the first of names that a container of pod lacks, "" when none.
func missingEnv(pod *corev1.Pod, names []string) string {
	for _, name := range names {
		for _, c := range pod.Spec.Containers {
			if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == name }) {
				return name
			}
		}
	}
	return ""
}

// warnAzurePerMovement logs, once per process, that the Azure Workload Identity
// annotation of Velero's ServiceAccount is copied onto per-movement accounts, which no
// federated identity credential matches: one names a single exact subject
// (system:serviceaccount:NS:NAME), and each worker's account is named after its
// movement. The movement goes on: the operator may have set up a trust the mover cannot
// see. Once per process, not per movement, so that the log says it and moves on.
func (r *Reconciler) warnAzurePerMovement() {
	r.azureWarning.Do(func() {
		r.Log.Warn("Velero's ServiceAccount has " + velerosrv.AzureClientIDAnnotation + ", but per-movement worker accounts cannot match " +
			"an Azure federated identity credential; run the mover with --worker-service-account NAME, an account federated once " +
			"(see README \"Credentials and cloud identity\")")
	})
}

// defaultCredentials is the secret key of bsl's credentials when it names none
// (Options.DefaultCredentials), nil for none or when bsl names its own. An API error
// that may pass is returned as it is (retried); any other failure (Velero's Deployment
// is not there, or may not be read) fails the movement naming it.
func (r *Reconciler) defaultCredentials(ctx context.Context, bsl *velerov1.BackupStorageLocation) (*corev1.SecretKeySelector, error) {
	if bsl.Spec.Credential != nil || r.Options.DefaultCredentials == nil {
		return nil, nil
	}
	sel, err := r.Options.DefaultCredentials.DefaultFor(ctx, bsl)
	if err == nil {
		return sel, nil
	}
	if transientAPIError(err) {
		return nil, errors.Wrapf(err, "finding the credentials of BackupStorageLocation %s", bsl.Name)
	}
	return nil, permanentf(ReasonPrepareFailed, "finding the credentials of BackupStorageLocation %s (it has no spec.credential): %v", bsl.Name, err)
}

// veleroServer is how Velero's server runs (Options.VeleroServer), for the identity and
// pull secrets of the workers. An API error that may pass is returned (retried); any
// other failure is logged, and the worker runs without them, as it did before snapmove
// copied them: credentials named by --default-credentials-secret need none of it.
func (r *Reconciler) veleroServer(ctx context.Context) (velerosrv.Server, error) {
	if r.Options.VeleroServer == nil {
		return velerosrv.Server{}, nil
	}
	srv, err := r.Options.VeleroServer(ctx)
	if err == nil {
		return srv, nil
	}
	if transientAPIError(err) {
		return velerosrv.Server{}, errors.Wrap(err, "reading how Velero's server runs")
	}
	r.Log.WithError(err).Warn("the worker gets no workload identity or pull secrets of Velero's server")
	return velerosrv.Server{}, nil
}

// transientAPIError reports whether err is an API error that may pass (a timeout, a 5xx,
// throttling), not a refusal or an absence.
func transientAPIError(err error) bool {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return false
	}
	return !(apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) || apierrors.IsNotFound(err) ||
		apierrors.IsBadRequest(err) || apierrors.IsInvalid(err))
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
