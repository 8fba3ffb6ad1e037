package cmd

import (
	"context"
	"fmt"
	"os"

	"github.com/pkg/errors"
	"github.com/spf13/pflag"

	"github.com/snapmove/snapmove/internal/mover/catalog"
	"github.com/snapmove/snapmove/internal/mover/config"
	"github.com/snapmove/snapmove/internal/mover/connect"
	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/mover/expose"
	"github.com/snapmove/snapmove/internal/mover/snapmeta"
	"github.com/snapmove/snapmove/internal/mover/worker"
)

// MoverWorker runs `snapmove mover worker backup|restore` inside a worker pod. args[0] is
// the operation.
func MoverWorker(ctx context.Context, args []string) error {
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
		credentials  = fs.String("default-credentials-secret", DefaultCredentialsSecret, credentialsFlagHelp+" (the controller passes NAME/KEY or none: a worker may not read Velero's Deployment)")
		cacheDir     = fs.String("cache-dir", os.Getenv(expose.EnvCacheDir), "kopia cache directory (default $"+expose.EnvCacheDir+"; empty: a temporary directory)")
		cacheLimit   = fs.Int64("cache-limit-mb", 0, "kopia cache limit in MB (0: kopia's default)")
		sparse       = fs.Bool("write-sparse-default", true, "restore zero runs as holes unless the DataDownload says otherwise (filesystem volumes)")
		verify       = fs.String("verify", config.DefaultVerify, "what a backup reads back after saving its snapshot: none, metadata, sample:PERCENT or full")
		compression  = fs.String("compression", config.DefaultCompression, "kopia compressor of the volume data (backup): none, zstd*, s2*")
		checkpoint   = fs.Duration("checkpoint-interval", config.DefaultCheckpoint, "how often a backup saves a checkpoint to resume from")
		termLog      = fs.String("termination-log", worker.DefaultTerminationLog, "where the result is written")
		progressIvl  = fs.Duration("progress-interval", worker.DefaultProgressInterval, "how often the progress report (the ConfigMap named after the movement) is updated")
		kubeconfig   = fs.String("kubeconfig", "", "kubeconfig file (default: in-cluster)")
		logLevel     = fs.String("log-level", "info", "log level")
		logFormat    = fs.String("log-format", "text", "log format: text or json")
		// Changed block tracking of block backups (the controller's cbtPlan).
		cbtAddress     = fs.String("cbt-address", "", "host:port of the CSI SnapshotMetadata service to ask what changed (block backups)")
		cbtSnapshot    = fs.String("cbt-snapshot", "", "the VolumeSnapshot in --namespace that the service is asked about")
		cbtToken       = fs.String("cbt-token-file", expose.CBTTokenPath, "a token of the worker's account for the service's audience")
		cbtChangeID    = fs.String("cbt-change-id", "", "the CSI snapshot handle being read, recorded for the next backup")
		cbtVolumeID    = fs.String("cbt-volume-id", "", "the CSI volume handle the snapshot was taken of")
		cbtUnavailable = fs.String("cbt-unavailable", "", "why no service is asked (said in the DataUpload's message)")
	)
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	log, err := newLogger(*logLevel, *logFormat)
	if err != nil {
		return err
	}
	worker.TuneMemory(os.Getenv(expose.EnvMemoryLimit), log)
	verifyMode, err := config.ParseVerify(*verify)
	if err != nil {
		return errors.Wrap(err, "--verify")
	}
	if err := config.ValidCompression(*compression); err != nil {
		return errors.Wrap(err, "--compression")
	}
	name, path := *dataUpload, *source
	if op == expose.Restore {
		name, path = *dataDownload, *target
	}
	if name == "" || path == "" {
		return errors.Errorf("worker %s needs the object name (--data-upload/--data-download) and the volume path (--source/--target)", op)
	}

	c, err := clusterFlags{kubeconfig: *kubeconfig}.apiClient()
	if err != nil {
		return err
	}
	defaultCreds, _, err := defaultCredentials(*credentials, c, *namespace)
	if err != nil {
		return err
	}
	var src datapath.BlockSource
	if *block && op == expose.Backup {
		src = datapath.BlockSource{ChangeID: *cbtChangeID, VolumeID: *cbtVolumeID, NoChanges: *cbtUnavailable}
		if *cbtAddress != "" {
			sm, err := snapmeta.New(snapmeta.Config{
				Address: *cbtAddress, CACert: []byte(os.Getenv(expose.EnvCBTCACert)), TokenFile: *cbtToken,
				Namespace: *namespace, Snapshot: *cbtSnapshot, Log: log,
			})
			if err != nil {
				src.NoChanges = fmt.Sprintf("the SnapshotMetadataService at %s cannot be asked: %v", *cbtAddress, err)
			} else {
				defer sm.Close() //nolint:errcheck
				src.Changes = sm
			}
		}
	}
	w := &worker.Worker{
		Client: c,
		Opener: &connect.Connector{Client: c, Namespace: *namespace, DefaultCredentials: defaultCreds, CacheDir: *cacheDir, CacheLimitMB: *cacheLimit, Log: log},
		Log:    log,
		// The worker's result carries the verification in the printer's words.
		DescribeVerification: catalog.DescribeVerification,
		Config: worker.Config{
			Namespace: *namespace, Name: name, Path: path, Block: *block, WriteSparseDefault: *sparse,
			TerminationLog: *termLog, ProgressInterval: *progressIvl, Verify: verifyMode,
			Compression: *compression, CheckpointInterval: *checkpoint, BlockSource: src,
		},
	}
	if op == expose.Backup {
		return w.Backup(ctx)
	}
	return w.Restore(ctx)
}
