package cmd

import (
	"context"
	"os"
	"slices"
	"sync"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"github.com/pkg/errors"
	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/mover/catalog"
	"github.com/snapmove/snapmove/internal/mover/velerosrv"
)

// Defaults of the mover's flags.
const (
	// DefaultCredentialsSecret is --default-credentials-secret's default: the secret
	// Velero's Deployment mounts (velerosrv.Discover).
	DefaultCredentialsSecret = velerosrv.Auto
	LeaderElectionID         = "snapmove-mover-controller"
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

// cluster is how a command reaches the API server: its address and credentials, and the
// scheme of the objects snapmove reads and writes.
func (f clusterFlags) cluster() (*rest.Config, *runtime.Scheme, error) {
	cfg, err := f.restConfig()
	if err != nil {
		return nil, nil, err
	}
	s, err := scheme()
	return cfg, s, err
}

// apiClient is an uncached client of the API server, for commands that make a few calls.
func (f clusterFlags) apiClient() (client.Client, error) {
	cfg, s, err := f.cluster()
	if err != nil {
		return nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: s})
	return c, errors.Wrap(err, "creating the API client")
}

// restConfig is the API server as kubectl finds it: --kubeconfig (else $KUBECONFIG, else
// ~/.kube/config) and its --context (else its current-context); with neither flag, the
// pod's service account first (controller-runtime's GetConfig).
func (f clusterFlags) restConfig() (*rest.Config, error) {
	if f.kubeconfig == "" && f.context == "" {
		cfg, err := ctrl.GetConfig()
		return cfg, errors.Wrap(err, "finding the cluster (in-cluster config, KUBECONFIG or ~/.kube/config)")
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = f.kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: f.context}).ClientConfig()
	switch {
	case err != nil && f.context != "":
		return nil, errors.Wrapf(err, "reading kubeconfig %s context %s", orDefault(f.kubeconfig, "($KUBECONFIG or ~/.kube/config)"), f.context)
	case err != nil:
		return nil, errors.Wrapf(err, "reading kubeconfig %s", f.kubeconfig)
	}
	return cfg, nil
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
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

// credentialsFlagHelp is --default-credentials-secret's help.
const credentialsFlagHelp = "credentials of BackupStorageLocations without spec.credential: auto (the secret Velero's Deployment mounts, " +
	"as Velero's server reads it), none (ambient credentials: workload identity) or NAME/KEY of a secret in Velero's namespace"

// defaultCredentials is --default-credentials-secret v as connect's Credentials: auto
// discovers Velero's server through r in namespace (cached for velerosrv.DefaultTTL: the returned
// Cache, also the source of its identity and pull secrets).
func defaultCredentials(v string, r client.Reader, namespace string) (velerosrv.Credentials, *velerosrv.Cache, error) {
	d, err := velerosrv.ParseDefault(v)
	if err != nil {
		return velerosrv.Credentials{}, nil, err
	}
	cache := &velerosrv.Cache{Reader: r, Namespace: namespace}
	return velerosrv.Credentials{Default: d, Server: cache.Get}, cache, nil
}

// noticeLogger logs what the user's commands say about how they run (to stderr), even
// when their own logger logs warnings only.
func noticeLogger() logrus.FieldLogger {
	log := logrus.New()
	log.SetOutput(os.Stderr)
	log.SetFormatter(&logrus.TextFormatter{DisableTimestamp: true})
	return log
}

// announcedCredentials is Credentials that says, once per BackupStorageLocation, which
// credentials the user's command opens it with (to log: stderr).
type announcedCredentials struct {
	creds velerosrv.Credentials
	log   logrus.FieldLogger
	mu    sync.Mutex
	said  map[string]bool
}

func announce(creds velerosrv.Credentials, log logrus.FieldLogger) *announcedCredentials {
	return &announcedCredentials{creds: creds, log: log, said: map[string]bool{}}
}

// DefaultFor implements connect.Credentials.
func (a *announcedCredentials) DefaultFor(ctx context.Context, bsl *velerov1.BackupStorageLocation) (*corev1.SecretKeySelector, error) {
	a.mu.Lock()
	first := !a.said[bsl.Name]
	a.said[bsl.Name] = true
	a.mu.Unlock()
	if first {
		how, err := a.creds.Describe(ctx, bsl)
		if err != nil {
			a.log.WithError(err).WithField("backupStorageLocation", bsl.Name).
				Error("cannot read Velero's Deployment to find the credentials; name them with --default-credentials-secret NAME/KEY (or none: ambient credentials)")
			return nil, err
		}
		a.log.WithField("backupStorageLocation", bsl.Name).Info("credentials: " + how)
	}
	return a.creds.DefaultFor(ctx, bsl)
}

// movesFlags are the flags of the commands that act on the volume moves of one backup or
// restore (cancel, handover): KIND NAME, Velero's namespace, how long to wait, the output.
type movesFlags struct {
	cluster    clusterFlags
	output     string
	wait       time.Duration
	kind, name string
}

// newMovesFlags adds the flags to c, and its Args: exactly KIND NAME, KIND one of kinds
// (else usage as the error).
func newMovesFlags(c *cobra.Command, wait time.Duration, waitHelp, usage string, kinds ...string) *movesFlags {
	f := &movesFlags{}
	f.cluster.bind(c.Flags())
	c.Flags().DurationVar(&f.wait, "wait", wait, waitHelp)
	outputFlag(c.Flags(), &f.output)
	c.Args = func(_ *cobra.Command, args []string) error {
		if len(args) != 2 || !slices.Contains(kinds, args[0]) {
			return errors.New(usage)
		}
		f.kind, f.name = args[0], args[1]
		return catalog.CheckFormat(f.output)
	}
	return f
}
