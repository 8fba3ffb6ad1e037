package driver

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// DefaultName is the driver name used when Config.Name is empty.
const DefaultName = "hostpath.csi.snapmove.io"

// Version is returned as GetPluginInfo's vendor_version (csi-snapshotter refuses an
// empty one). Overridable with -ldflags "-X .../driver.Version=...".
var Version = "0.1.0"

// defaultCapacityBytes is the size of a volume whose CreateVolume has no capacity range.
const defaultCapacityBytes int64 = 1 << 30

// Config is the driver's configuration, parsed once from flags by main.
type Config struct {
	Name              string // CSI driver name
	NodeID            string // returned by NodeGetInfo
	StateDir          string // see the package doc for its layout
	MaxVolumesPerNode int64  // NodeGetInfo's max_volumes_per_node; 0 means no limit
	// SnapshotMetadata serves the CSI SnapshotMetadata service (changed block tracking)
	// and advertises SNAPSHOT_METADATA_SERVICE. CreateSnapshot of a block volume then
	// also records the snapshot's block hashes (<statedir>/snapshots/<id>.sums), which
	// GetMetadataDelta compares.
	SnapshotMetadata bool
	// KeepDeletedSums keeps a deleted snapshot's block hashes while its source volume
	// or any snapshot of it exists, so that it can still be GetMetadataDelta's base
	// (as with storage whose changed block tracking needs no base snapshot). Without
	// it a deleted base is NotFound (as with storage that diffs two live snapshots).
	KeepDeletedSums bool
}

// Driver implements the CSI Identity, Controller, Node and (optionally) SnapshotMetadata services.
// All RPCs are serialised by one mutex: the driver is a test fixture and simplicity
// beats throughput. A long copy (snapshot, restore, clone) blocks other calls.
type Driver struct {
	csi.UnimplementedIdentityServer
	csi.UnimplementedControllerServer
	csi.UnimplementedNodeServer
	csi.UnimplementedSnapshotMetadataServer

	cfg Config
	log *slog.Logger

	mu    sync.Mutex
	state *state
}

// New loads (or creates) the state directory and returns a driver for it.
func New(cfg Config, log *slog.Logger) (*Driver, error) {
	if cfg.Name == "" {
		cfg.Name = DefaultName
	}
	if cfg.NodeID == "" {
		return nil, fmt.Errorf("node ID must be set")
	}
	if cfg.StateDir == "" {
		return nil, fmt.Errorf("state directory must be set")
	}
	abs, err := filepath.Abs(cfg.StateDir)
	if err != nil {
		return nil, fmt.Errorf("resolving state directory %s: %w", cfg.StateDir, err)
	}
	cfg.StateDir = abs
	for _, dir := range []string{cfg.StateDir, filepath.Join(cfg.StateDir, "volumes"), filepath.Join(cfg.StateDir, "snapshots")} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("creating directory %s: %w", dir, err)
		}
	}
	st, err := loadState(filepath.Join(cfg.StateDir, "state.json"))
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log.Info("driver state loaded", "stateDir", cfg.StateDir, "volumes", len(st.Volumes), "snapshots", len(st.Snapshots))
	return &Driver{cfg: cfg, log: log, state: st}, nil
}

// Register adds the Identity, Controller and Node services to srv, and the
// SnapshotMetadata service if Config.SnapshotMetadata is set.
func (d *Driver) Register(srv *grpc.Server) {
	csi.RegisterIdentityServer(srv, d)
	csi.RegisterControllerServer(srv, d)
	csi.RegisterNodeServer(srv, d)
	if d.cfg.SnapshotMetadata {
		csi.RegisterSnapshotMetadataServer(srv, d)
	}
}

// LoggingInterceptor logs every RPC's method and outcome (and the request at debug level).
func LoggingInterceptor(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		log.Debug("rpc request", "method", info.FullMethod, "request", fmt.Sprintf("%+v", req))
		resp, err := handler(ctx, req)
		if err != nil {
			log.Info("rpc failed", "method", info.FullMethod, "code", status.Code(err).String(), "error", err)
		} else {
			log.Info("rpc done", "method", info.FullMethod)
		}
		return resp, err
	}
}

// StreamLoggingInterceptor logs every streaming RPC's method and outcome.
func StreamLoggingInterceptor(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		log.Debug("rpc stream started", "method", info.FullMethod)
		if err := handler(srv, ss); err != nil {
			log.Info("rpc failed", "method", info.FullMethod, "code", status.Code(err).String(), "error", err)
			return err
		}
		log.Info("rpc done", "method", info.FullMethod)
		return nil
	}
}

// ListenUnix listens on a unix socket given as "unix:///abs/path", "unix:/abs/path" or
// a plain path, removing a stale socket file first. It returns the listener and the
// socket's path.
func ListenUnix(endpoint string) (net.Listener, string, error) {
	path := endpoint
	if strings.HasPrefix(endpoint, "unix:") {
		u, err := url.Parse(endpoint)
		if err != nil {
			return nil, "", fmt.Errorf("parsing endpoint %q: %w", endpoint, err)
		}
		path = u.Path
		if path == "" {
			path = u.Opaque
		}
	}
	if path == "" {
		return nil, "", fmt.Errorf("endpoint %q has no socket path", endpoint)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, "", fmt.Errorf("creating socket directory for %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return nil, "", fmt.Errorf("removing stale socket %s: %w", path, err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, "", fmt.Errorf("listening on %s: %w", path, err)
	}
	return l, path, nil
}

// paths of the data of volumes and snapshots; IDs come from the state, never from a request.

func (d *Driver) volumePath(v *volume) string {
	if v.Kind == kindBlock {
		return filepath.Join(d.cfg.StateDir, "volumes", v.ID+".img")
	}
	return filepath.Join(d.cfg.StateDir, "volumes", v.ID)
}

func (d *Driver) snapshotPath(s *snapshot) string {
	if s.Kind == kindBlock {
		return filepath.Join(d.cfg.StateDir, "snapshots", s.ID+".img")
	}
	return filepath.Join(d.cfg.StateDir, "snapshots", s.ID)
}

// persist saves the state; callers hold d.mu.
func (d *Driver) persist() error {
	return d.state.save(filepath.Join(d.cfg.StateDir, "state.json"))
}
