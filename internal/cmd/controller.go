package cmd

import (
	"context"
	"os"
	"time"

	"github.com/pkg/errors"
	"github.com/spf13/pflag"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/snapmove/snapmove/internal/mover/connect"
	"github.com/snapmove/snapmove/internal/mover/controller"
	"github.com/snapmove/snapmove/internal/mover/velerosrv"
)

// MoverController runs `snapmove mover controller`: a controller-runtime manager executing
// the DataUploads and DataDownloads of datamover "snapmove" in Velero's namespace, and the
// snapshot delete requests. It returns when ctx ends.
func MoverController(ctx context.Context, args []string) error {
	fs := pflag.NewFlagSet("snapmove mover controller", pflag.ContinueOnError)
	var (
		namespace   = fs.String("namespace", defaultNamespace(), "Velero's namespace (default: $VELERO_NAMESPACE or velero)")
		workerImage = fs.String("worker-image", os.Getenv("SNAPMOVE_WORKER_IMAGE"), "image of the worker pods (this snapmove image; default $SNAPMOVE_WORKER_IMAGE)")
		workerSA    = fs.String("worker-service-account", "", "service account of every worker pod (default: each worker pod gets its own, with a Role granting only its movement, its BackupStorageLocation and the secrets its repository needs)")
		credentials = fs.String("default-credentials-secret", DefaultCredentialsSecret, credentialsFlagHelp+"; workers get what auto resolves to")
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
	if _, err := velerosrv.ParseDefault(*credentials); err != nil {
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

	cfg, s, err := clusterFlags{kubeconfig: *kubeconfig}.cluster()
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
	// Velero's server is read from the API when first needed and again once velerosrv.DefaultTTL has passed
	// (it may be installed or changed after the mover starts): list on deployments.
	defaultCreds, server, err := defaultCredentials(*credentials, direct, *namespace)
	if err != nil {
		return err
	}
	r := controller.NewReconciler(controller.Reconciler{
		Client:   mgr.GetClient(),
		Reader:   mgr.GetAPIReader(),
		Recorder: mgr.GetEventRecorderFor("snapmove-mover"),
		Log:      log,
		Repos:    &connect.Connector{Client: direct, Namespace: *namespace, DefaultCredentials: defaultCreds, Log: log},
		Metrics:  controller.NewMetrics(metrics.Registry),
		Options: controller.Options{
			Namespace: *namespace, WorkerImage: *workerImage, WorkerServiceAccount: *workerSA,
			DefaultCredentials: defaultCreds, VeleroServer: server.Get, Identity: *identity,
		},
	})
	if err := r.SetupWithManager(mgr); err != nil {
		return errors.Wrap(err, "setting up the controllers")
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return errors.Wrap(err, "adding the health check")
	}
	if err := mgr.AddReadyzCheck("readyz", controller.ReadyCheck(mgr.GetCache().WaitForCacheSync, mgr.GetAPIReader(), *namespace)); err != nil {
		return errors.Wrap(err, "adding the readiness check")
	}
	log.WithField("namespace", *namespace).Info("starting the snapmove mover controller")
	return errors.Wrap(mgr.Start(ctx), "running the controller manager")
}
