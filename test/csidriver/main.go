// Command csidriver is snapmove's test CSI driver: a hostpath-style CSI plugin for this
// project's local Kubernetes stack and e2e tests. It is a test fixture, NOT a
// production driver; see package driver for what it does and its on-disk layout.
//
//	csidriver --endpoint unix:///run/csi/csi.sock --nodeid node-1 --statedir /var/lib/csi-hostpath \
//	    [--drivername hostpath.csi.snapmove.io] \
//	    [--kubelet-registration-path /var/lib/kubelet/plugins_registry/hostpath.csi.snapmove.io-reg.sock]
//
// With --kubelet-registration-path it also serves the kubelet plugin-registration
// service there, so no node-driver-registrar is needed.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"google.golang.org/grpc"

	"github.com/snapmove/snapmove/test/csidriver/driver"
)

func main() {
	var (
		endpoint   = flag.String("endpoint", "unix:///tmp/csi.sock", "CSI endpoint: unix:///path/to/csi.sock")
		name       = flag.String("drivername", driver.DefaultName, "CSI driver name")
		nodeID     = flag.String("nodeid", "", "node ID returned by NodeGetInfo (required)")
		stateDir   = flag.String("statedir", "", "directory holding state.json, volumes/ and snapshots/ (required)")
		regPath    = flag.String("kubelet-registration-path", "", "if set, also serve kubelet plugin registration on this unix socket")
		maxVolumes = flag.Int64("max-volumes-per-node", 0, "NodeGetInfo max_volumes_per_node (0: no limit)")
		snapMeta   = flag.Bool("snapshot-metadata", true, "serve the CSI SnapshotMetadata service (changed block tracking) and record block hashes of block snapshots")
		keepSums   = flag.Bool("snapshot-metadata-keep-deleted-base", true, "keep a deleted snapshot's block hashes so that it can still be GetMetadataDelta's base (false: a deleted base is NotFound)")
		debug      = flag.Bool("debug", false, "log every request")
		version    = flag.Bool("version", false, "print the version and exit")
	)
	flag.Parse()
	if *version {
		fmt.Println(driver.Version)
		return
	}
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if err := run(log, *endpoint, *regPath, driver.Config{
		Name: *name, NodeID: *nodeID, StateDir: *stateDir, MaxVolumesPerNode: *maxVolumes,
		SnapshotMetadata: *snapMeta, KeepDeletedSums: *keepSums,
	}); err != nil {
		log.Error("csidriver failed", "error", err)
		os.Exit(1)
	}
}

func run(log *slog.Logger, endpoint, regPath string, cfg driver.Config) error {
	d, err := driver.New(cfg, log)
	if err != nil {
		return err
	}
	if cfg.Name == "" {
		cfg.Name = driver.DefaultName
	}
	errc := make(chan error, 2)

	l, csiSocket, err := driver.ListenUnix(endpoint)
	if err != nil {
		return err
	}
	defer os.Remove(csiSocket)
	srv := grpc.NewServer(grpc.UnaryInterceptor(driver.LoggingInterceptor(log)),
		grpc.StreamInterceptor(driver.StreamLoggingInterceptor(log)))
	d.Register(srv)
	go func() { errc <- fmt.Errorf("serving CSI: %w", srv.Serve(l)) }()
	defer srv.GracefulStop()
	log.Info("serving CSI", "driver", cfg.Name, "version", driver.Version, "socket", csiSocket, "node", cfg.NodeID,
		"snapshotMetadata", cfg.SnapshotMetadata)

	if regPath != "" {
		rl, regSocket, err := driver.ListenUnix(regPath)
		if err != nil {
			return err
		}
		defer os.Remove(regSocket) // the kubelet's plugin watcher deregisters on removal
		rsrv := grpc.NewServer()
		driver.NewRegistrationServer(cfg.Name, csiSocket, log).Register(rsrv)
		go func() { errc <- fmt.Errorf("serving plugin registration: %w", rsrv.Serve(rl)) }()
		defer rsrv.Stop()
		log.Info("serving kubelet plugin registration", "socket", regSocket)
	}

	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM)
	select {
	case sig := <-sigc:
		log.Info("shutting down", "signal", sig.String())
		return nil
	case err := <-errc:
		return err
	}
}
