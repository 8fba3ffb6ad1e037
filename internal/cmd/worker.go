package cmd

import (
	"context"
	"os"

	"github.com/pkg/errors"
	"github.com/spf13/pflag"

	"github.com/snapmove/snapmove/internal/mover/catalog"
	"github.com/snapmove/snapmove/internal/mover/config"
	"github.com/snapmove/snapmove/internal/mover/connect"
	"github.com/snapmove/snapmove/internal/mover/expose"
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
	w := &worker.Worker{
		Client: c,
		Opener: &connect.Connector{Client: c, Namespace: *namespace, DefaultCredentials: defaultCreds, CacheDir: *cacheDir, CacheLimitMB: *cacheLimit, Log: log},
		Log:    log,
		// The worker's result carries the verification in the printer's words.
		DescribeVerification: catalog.DescribeVerification,
		Config: worker.Config{
			Namespace: *namespace, Name: name, Path: path, Block: *block, WriteSparseDefault: *sparse,
			TerminationLog: *termLog, ProgressInterval: *progressIvl, Verify: verifyMode,
			Compression: *compression, CheckpointInterval: *checkpoint,
		},
	}
	if op == expose.Backup {
		return w.Backup(ctx)
	}
	return w.Restore(ctx)
}
