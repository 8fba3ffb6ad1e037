package mover

import (
	"context"
	"os"
	"strings"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"github.com/pkg/errors"
	"github.com/sirupsen/logrus"
	"github.com/spf13/pflag"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/snapmove/snapmove/internal/mover/controller"
	"github.com/snapmove/snapmove/internal/mover/expose"
	"github.com/snapmove/snapmove/internal/mover/kopia"
	"github.com/snapmove/snapmove/internal/mover/repository"
	"github.com/snapmove/snapmove/internal/mover/worker"
)

// Defaults of the flags.
const (
	DefaultWorkerServiceAccount = "snapmove-worker"
	DefaultCredentialsSecret    = "cloud-credentials/cloud"
	LeaderElectionID            = "snapmove-mover-controller"
)

func defaultNamespace() string {
	if ns := os.Getenv("VELERO_NAMESPACE"); ns != "" {
		return ns
	}
	return "velero"
}

func scheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, velerov1.AddToScheme, velerov2alpha1.AddToScheme, snapshotv1.AddToScheme} {
		if err := add(s); err != nil {
			return nil, errors.Wrap(err, "building the API scheme")
		}
	}
	return s, nil
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		return cfg, errors.Wrapf(err, "reading kubeconfig %s", kubeconfig)
	}
	cfg, err := ctrl.GetConfig()
	return cfg, errors.Wrap(err, "finding the cluster (in-cluster config, KUBECONFIG or ~/.kube/config)")
}

func newLogger(level, format string) (*logrus.Logger, error) {
	log := logrus.New()
	log.SetOutput(os.Stderr)
	l, err := logrus.ParseLevel(level)
	if err != nil {
		return nil, errors.Wrapf(err, "parsing --log-level")
	}
	log.SetLevel(l)
	switch format {
	case "text":
		log.SetFormatter(&logrus.TextFormatter{FullTimestamp: true})
	case "json":
		log.SetFormatter(&logrus.JSONFormatter{})
	default:
		return nil, errors.Errorf("--log-format %q: want text or json", format)
	}
	return log, nil
}

// parseSecretKey reads "name/key" ("name" alone means key "cloud"); "" means none.
func parseSecretKey(v string) (*corev1.SecretKeySelector, error) {
	if v == "" {
		return nil, nil
	}
	name, key, found := strings.Cut(v, "/")
	if !found {
		key = "cloud"
	}
	if name == "" || key == "" || strings.Contains(key, "/") {
		return nil, errors.Errorf("--default-credentials-secret %q: want NAME/KEY", v)
	}
	return &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: key}, nil
}

// RunController runs `snapmove mover controller`: a controller-runtime manager executing
// the DataUploads and DataDownloads of datamover "snapmove" in Velero's namespace, and the
// snapshot delete requests. It returns when ctx ends.
func RunController(ctx context.Context, args []string) error {
	fs := pflag.NewFlagSet("snapmove mover controller", pflag.ContinueOnError)
	var (
		namespace   = fs.String("namespace", defaultNamespace(), "Velero's namespace (default: $VELERO_NAMESPACE or velero)")
		workerImage = fs.String("worker-image", os.Getenv("SNAPMOVE_WORKER_IMAGE"), "image of the worker pods (this snapmove image; default $SNAPMOVE_WORKER_IMAGE)")
		workerSA    = fs.String("worker-service-account", DefaultWorkerServiceAccount, "service account of the worker pods")
		credentials = fs.String("default-credentials-secret", DefaultCredentialsSecret, "NAME/KEY of the secret in Velero's namespace with the object store credentials of BSLs that name none (\"\": none)")
		leaderElect = fs.Bool("leader-elect", true, "elect a leader, so that only one replica acts")
		metricsAddr = fs.String("metrics-bind-address", ":8080", "address of the Prometheus metrics endpoint (\"0\": off)")
		probeAddr   = fs.String("health-probe-bind-address", ":8081", "address of the /healthz and /readyz endpoints")
		resync      = fs.Duration("resync-period", 10*time.Minute, "how often every object is reconciled even without changes")
		kubeconfig  = fs.String("kubeconfig", "", "kubeconfig file (default: in-cluster, then $KUBECONFIG, then ~/.kube/config)")
		identity    = fs.String("node-name", os.Getenv("NODE_NAME"), "recorded as status.acceptedByNode (default $NODE_NAME, else the host name)")
		logLevel    = fs.String("log-level", "info", "log level: debug, info, warning, error")
		logFormat   = fs.String("log-format", "text", "log format: text or json")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return errors.Errorf("unexpected arguments %v", fs.Args())
	}
	if *workerImage == "" {
		return errors.New("--worker-image is required")
	}
	if _, err := parseSecretKey(*credentials); err != nil {
		return err
	}
	log, err := newLogger(*logLevel, *logFormat)
	if err != nil {
		return err
	}
	if *identity == "" {
		*identity, _ = os.Hostname()
	}
	ctrl.SetLogger(controller.NewLogr(log))

	cfg, err := restConfig(*kubeconfig)
	if err != nil {
		return err
	}
	s, err := scheme()
	if err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme: s,
		// Only Velero's namespace is cached (DataUploads, DataDownloads, our pods, PVCs
		// and ConfigMaps); everything else is read from the API server when needed.
		Cache:                         cache.Options{DefaultNamespaces: map[string]cache.Config{*namespace: {}}, SyncPeriod: resync},
		Metrics:                       metricsserver.Options{BindAddress: *metricsAddr},
		HealthProbeBindAddress:        *probeAddr,
		LeaderElection:                *leaderElect,
		LeaderElectionID:              LeaderElectionID,
		LeaderElectionNamespace:       *namespace,
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		return errors.Wrap(err, "creating the controller manager")
	}
	direct, err := client.New(cfg, client.Options{Scheme: s})
	if err != nil {
		return errors.Wrap(err, "creating the API client")
	}
	defaultCreds, _ := parseSecretKey(*credentials)
	r := controller.NewReconciler(controller.Reconciler{
		Client:   mgr.GetClient(),
		Reader:   mgr.GetAPIReader(),
		Recorder: mgr.GetEventRecorderFor("snapmove-mover"),
		Log:      log,
		Repos:    &repositories{client: direct, namespace: *namespace, defaultCreds: defaultCreds, log: log},
		Metrics:  controller.NewMetrics(metrics.Registry),
		Options: controller.Options{
			Namespace: *namespace, WorkerImage: *workerImage, WorkerServiceAccount: *workerSA,
			DefaultCredentials: *credentials, Identity: *identity,
		},
	})
	if err := r.SetupWithManager(mgr); err != nil {
		return errors.Wrap(err, "setting up the controllers")
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return errors.Wrap(err, "adding the health check")
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return errors.Wrap(err, "adding the readiness check")
	}
	log.WithField("namespace", *namespace).Info("starting the snapmove mover controller")
	return errors.Wrap(mgr.Start(ctx), "running the controller manager")
}

// RunWorker runs `snapmove mover worker backup|restore` inside a worker pod. args[0] is
// the operation.
func RunWorker(ctx context.Context, args []string) error {
	if len(args) == 0 || (args[0] != string(expose.Backup) && args[0] != string(expose.Restore)) {
		return errors.New("usage: snapmove mover worker backup|restore [flags]")
	}
	op := expose.Operation(args[0])
	fs := pflag.NewFlagSet("snapmove mover worker "+args[0], pflag.ContinueOnError)
	var (
		dataUpload   = fs.String("data-upload", "", "DataUpload to execute (backup)")
		dataDownload = fs.String("data-download", "", "DataDownload to execute (restore)")
		namespace    = fs.String("namespace", defaultNamespace(), "Velero's namespace")
		source       = fs.String("source", "", "the volume to back up: mount point, or device with --block")
		target       = fs.String("target", "", "where to restore: mount point, or device with --block")
		block        = fs.Bool("block", false, "the volume is a block device")
		credentials  = fs.String("default-credentials-secret", DefaultCredentialsSecret, "NAME/KEY of the object store credentials of BSLs that name none")
		cacheDir     = fs.String("cache-dir", os.Getenv(expose.EnvCacheDir), "kopia cache directory (default $"+expose.EnvCacheDir+"; empty: a temporary directory)")
		cacheLimit   = fs.Int64("cache-limit-mb", 0, "kopia cache limit in MB (0: kopia's default)")
		sparse       = fs.Bool("write-sparse-default", true, "restore zero runs as holes unless the DataDownload says otherwise (filesystem volumes)")
		termLog      = fs.String("termination-log", worker.DefaultTerminationLog, "where the result is written")
		progressIvl  = fs.Duration("progress-interval", worker.DefaultProgressInterval, "how often status.progress is updated")
		kubeconfig   = fs.String("kubeconfig", "", "kubeconfig file (default: in-cluster)")
		logLevel     = fs.String("log-level", "info", "log level")
		logFormat    = fs.String("log-format", "text", "log format: text or json")
	)
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	log, err := newLogger(*logLevel, *logFormat)
	if err != nil {
		return err
	}
	worker.SetMemoryLimit(os.Getenv(expose.EnvMemoryLimit), log)
	defaultCreds, err := parseSecretKey(*credentials)
	if err != nil {
		return err
	}
	name, path := *dataUpload, *source
	if op == expose.Restore {
		name, path = *dataDownload, *target
	}
	if name == "" || path == "" {
		return errors.Errorf("worker %s needs the object name (--data-upload/--data-download) and the volume path (--source/--target)", op)
	}

	cfg, err := restConfig(*kubeconfig)
	if err != nil {
		return err
	}
	s, err := scheme()
	if err != nil {
		return err
	}
	c, err := client.New(cfg, client.Options{Scheme: s})
	if err != nil {
		return errors.Wrap(err, "creating the API client")
	}
	w := &worker.Worker{
		Client: c,
		Opener: &opener{client: c, namespace: *namespace, defaultCreds: defaultCreds, cacheDir: *cacheDir, cacheLimitMB: *cacheLimit, log: log},
		Log:    log,
		Config: worker.Config{
			Namespace: *namespace, Name: name, Path: path, Block: *block, WriteSparseDefault: *sparse,
			TerminationLog: *termLog, ProgressInterval: *progressIvl,
		},
	}
	if op == expose.Backup {
		return w.Backup(ctx)
	}
	return w.Restore(ctx)
}

// repositories is the controller's view of the repositories (controller.Repositories).
type repositories struct {
	client       client.Client // uncached: reads secrets, creates the password secret
	namespace    string
	defaultCreds *corev1.SecretKeySelector
	log          logrus.FieldLogger
}

func (r *repositories) open(ctx context.Context, bsl *velerov1.BackupStorageLocation, ns string, opts kopia.Options) (*kopia.Repository, error) {
	loc, err := repository.ResolveLocation(ctx, r.client, bsl, ns, r.defaultCreds)
	if err != nil {
		return nil, controller.Permanent(controller.ReasonRepositoryError, err)
	}
	password, err := repository.EnsurePassword(ctx, r.client, r.namespace)
	if err != nil {
		return nil, err
	}
	opts.CacheLimitMB = -1 // a check or a delete reads little; no local cache
	opts.Log = r.log
	repo, err := kopia.Open(ctx, loc, password, opts)
	return repo, classify(err, r.namespace)
}

// Verify implements controller.Repositories.
func (r *repositories) Verify(ctx context.Context, bsl *velerov1.BackupStorageLocation, ns string, create bool) error {
	repo, err := r.open(ctx, bsl, ns, kopia.Options{Create: create, ReadOnly: !create})
	if err != nil {
		return err
	}
	return repo.Close(ctx)
}

// DeleteSnapshot implements controller.Repositories.
func (r *repositories) DeleteSnapshot(ctx context.Context, bsl *velerov1.BackupStorageLocation, ns, snapshotID string) error {
	repo, err := r.open(ctx, bsl, ns, kopia.Options{})
	if errors.Is(err, kopia.ErrNotInitialized) {
		return nil // no repository: nothing to delete
	}
	if err != nil {
		return err
	}
	defer func() {
		if cErr := repo.Close(ctx); cErr != nil {
			r.log.WithError(cErr).Warn("closing the repository")
		}
	}()
	return repo.DeleteSnapshot(ctx, snapshotID)
}

// classify marks kopia's storage and password errors permanent: retrying cannot fix a
// wrong password, a missing bucket, denied access or an endpoint that does not answer.
func classify(err error, veleroNamespace string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, kopia.ErrWrongPassword):
		return controller.Permanent(controller.ReasonRepositoryError, errors.Wrapf(err,
			"the password in secret %s/%s (key %s) does not open it", veleroNamespace, repository.PasswordSecretName, repository.PasswordSecretKey))
	case errors.Is(err, kopia.ErrBucketNotFound), errors.Is(err, kopia.ErrAccessDenied),
		errors.Is(err, kopia.ErrUnreachable), errors.Is(err, kopia.ErrNotInitialized):
		return controller.Permanent(controller.ReasonRepositoryError, err)
	}
	return err
}

// opener is the worker's view of the repositories (worker.Opener).
type opener struct {
	client       client.Client
	namespace    string
	defaultCreds *corev1.SecretKeySelector
	cacheDir     string
	cacheLimitMB int64
	log          logrus.FieldLogger
}

// Open implements worker.Opener.
func (o *opener) Open(ctx context.Context, bsl *velerov1.BackupStorageLocation, ns string, forWrite bool) (worker.Repository, error) {
	loc, err := repository.ResolveLocation(ctx, o.client, bsl, ns, o.defaultCreds)
	if err != nil {
		return nil, err
	}
	password, err := repository.EnsurePassword(ctx, o.client, o.namespace)
	if err != nil {
		return nil, err
	}
	limit := o.cacheLimitMB
	if !forWrite {
		limit = -1 // a restore reads every content once: a cache only doubles disk writes
	}
	repo, err := kopia.Open(ctx, loc, password, kopia.Options{
		CacheDir: o.cacheDir, CacheLimitMB: limit, Create: forWrite, ReadOnly: !forWrite, Log: o.log,
	})
	if err != nil {
		return nil, err
	}
	o.log.WithField("repository", loc.String()).Info("opened the repository")
	return kopiaRepo{repo}, nil
}

// kopiaRepo adapts *kopia.Repository to worker.Repository.
type kopiaRepo struct{ r *kopia.Repository }

func (k kopiaRepo) Backup(ctx context.Context, req worker.BackupRequest) (worker.BackupResult, error) {
	res, err := k.r.Backup(ctx, kopia.BackupRequest{
		SourceNamespace: req.SourceNamespace, SourcePVC: req.SourcePVC, Path: req.Path, Block: req.Block,
		Tags: req.Tags, Parallel: req.Parallel, OnProgress: progressFunc(req.OnProgress), ProgressInterval: req.ProgressInterval,
	})
	return worker.BackupResult{SnapshotID: res.SnapshotID, TotalBytes: res.TotalBytes, IncrementalBytes: res.IncrementalBytes, Empty: res.Empty}, err
}

func (k kopiaRepo) Restore(ctx context.Context, req worker.RestoreRequest) (worker.RestoreResult, error) {
	res, err := k.r.Restore(ctx, kopia.RestoreRequest{
		SnapshotID: req.SnapshotID, Path: req.Path, Block: req.Block, Parallel: req.Parallel, WriteSparse: req.WriteSparse,
		OnProgress: progressFunc(req.OnProgress), ProgressInterval: req.ProgressInterval,
	})
	return worker.RestoreResult{TotalBytes: res.TotalBytes}, err
}

func (k kopiaRepo) Close(ctx context.Context) error { return k.r.Close(ctx) }

func progressFunc(f func(worker.Progress)) func(kopia.Progress) {
	if f == nil {
		return nil
	}
	return func(p kopia.Progress) { f(worker.Progress{TotalBytes: p.TotalBytes, BytesDone: p.BytesDone}) }
}
