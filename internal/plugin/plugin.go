package plugin

import (
	"slices"
	"strings"

	"github.com/pkg/errors"
	"github.com/sirupsen/logrus"
	"github.com/spf13/pflag"
	veleroclient "github.com/vmware-tanzu/velero/pkg/client"
	"github.com/vmware-tanzu/velero/pkg/plugin/framework"
	"github.com/vmware-tanzu/velero/pkg/plugin/framework/common"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/naming"
	"github.com/snapmove/snapmove/internal/plugin/backup"
	snapdelete "github.com/snapmove/snapmove/internal/plugin/delete"
	"github.com/snapmove/snapmove/internal/plugin/restore"
)

// Serve serves the snapmove plugins to Velero until Velero closes the connection. It
// parses os.Args[1:] as Velero server flags on pflag.CommandLine (unknown flags are
// ignored). Run by hand without Velero's handshake environment, go-plugin prints a notice
// to stderr and exits 1.
func Serve() {
	NewServer(pflag.CommandLine).Serve()
}

// StartedByVelero reports whether Velero started this process as its plugin: Velero execs
// plugins with go-plugin's handshake cookie in the environment (framework.Handshake,
// VELERO_PLUGIN=hello). A user's shell never has it, so a bare `snapmove` or a typo never
// starts the plugin server.
func StartedByVelero(getenv func(string) string) bool {
	h := framework.Handshake()
	return getenv(h.MagicCookieKey) == h.MagicCookieValue
}

// Settings are the server flags the actions depend on, read once the flags are parsed.
type Settings struct {
	EnableCSI               bool    // --features contains EnableCSI
	DefaultSnapshotMoveData bool    // --default-snapshot-move-data
	ClientQPS               float32 // --client-qps
	ClientBurst             int     // --client-burst
}

// NewServer returns Velero's plugin server with Velero's server flags and --features bound
// to flags and snapmove's three actions registered. Serve() on it parses os.Args[1:]
// unless flags is already parsed.
func NewServer(flags *pflag.FlagSet) framework.Server {
	srv, _ := newServer(flags, kubeClient)
	return srv
}

func newServer(flags *pflag.FlagSet, newClient clientFunc) (framework.Server, func() Settings) {
	srv := framework.NewServer().BindFlags(flags)
	features := flags.StringSlice("features", nil, "Velero feature flags (snapmove reads EnableCSI)")
	settings := func() Settings {
		cfg := srv.GetConfig()
		return Settings{
			EnableCSI:               slices.ContainsFunc(*features, func(f string) bool { return strings.TrimSpace(f) == naming.FeatureEnableCSI }),
			DefaultSnapshotMoveData: cfg.DefaultSnapshotMoveData,
			ClientQPS:               cfg.ClientQPS,
			ClientBurst:             cfg.ClientBurst,
		}
	}
	register(srv, settings, newClient)
	return srv, settings
}

// clientFunc builds the Kubernetes client for the handlers.
type clientFunc func(Settings) (client.Client, error)

// kubeClient returns a controller-runtime client the way Velero's own plugins build one
// (scheme with core, Velero v1/v2alpha1 and snapshot v1; in-cluster config or KUBECONFIG).
func kubeClient(s Settings) (client.Client, error) {
	f := veleroclient.NewFactory("snapmove", veleroclient.VeleroConfig{})
	if s.ClientQPS > 0 {
		f.SetClientQPS(s.ClientQPS)
	}
	if s.ClientBurst > 0 {
		f.SetClientBurst(s.ClientBurst)
	}
	c, err := f.KubebuilderClient()
	if err != nil {
		return nil, errors.Wrap(err, "creating Kubernetes client")
	}
	return c, nil
}

func register(srv framework.Server, settings func() Settings, newClient clientFunc) {
	handler := func(build func(client.Client, logrus.FieldLogger, Settings) any) common.HandlerInitializer {
		return func(log logrus.FieldLogger) (any, error) {
			s := settings()
			c, err := newClient(s)
			if err != nil {
				return nil, err
			}
			return build(c, log, s), nil
		}
	}
	srv.RegisterBackupItemActionV2(naming.BackupActionName, handler(func(c client.Client, log logrus.FieldLogger, s Settings) any {
		log.Debugf("starting snapmove backup action (EnableCSI %t, default snapshot move data %t)", s.EnableCSI, s.DefaultSnapshotMoveData)
		return backup.NewAction(c, log, backup.Options{EnableCSI: s.EnableCSI, DefaultSnapshotMoveData: s.DefaultSnapshotMoveData})
	}))
	srv.RegisterRestoreItemActionV2(naming.RestoreActionName, handler(func(c client.Client, log logrus.FieldLogger, s Settings) any {
		return restore.NewAction(c, log, restore.Options{DefaultSnapshotMoveData: s.DefaultSnapshotMoveData})
	}))
	srv.RegisterDeleteItemAction(naming.DeleteActionName, handler(func(c client.Client, log logrus.FieldLogger, _ Settings) any {
		return snapdelete.NewAction(c, log, snapdelete.Options{})
	}))
}
