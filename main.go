// Command snapmove is a Velero plugin set and the data mover that executes what it asks for,
// in one static binary:
//
//	snapmove [velero server flags]     serve the Velero plugins (only when Velero runs it: go-plugin's
//	                                   handshake variable VELERO_PLUGIN is set)
//	snapmove help | version            this list; the version and the image it expects
//	snapmove install DIR               copy this binary into DIR (the image entrypoint)
//	snapmove mover controller [flags]  execute DataUploads/DataDownloads of datamover "snapmove"
//	snapmove mover worker backup|restore [flags]
//	                                   move one volume's bytes (run inside the worker pod)
//	snapmove mover receive-files --to DIR
//	                                   write files streamed on stdin (run inside the pod of
//	                                   restore-files --to-pvc)
//	snapmove cancel backup|restore NAME
//	                                   cancel every volume move of a running backup or restore
//	snapmove handover restore NAME     hand a restore's volume moves to Velero's node-agent
//	snapmove list [BACKUP]             the moved volumes of backups
//	snapmove ls BACKUP NS/PVC [PATH]   a directory of a volume in a backup
//	snapmove restore-files BACKUP NS/PVC PATH... --to DIR
//	                                   chosen paths of a volume in a backup, without a full restore
//	snapmove verify [BACKUP [NS/PVC]]  read a backup's volumes back from the repository
//	snapmove report BACKUP             what protection each PVC of a backup got
//	snapmove forget-orphans [--confirm]
//	                                   forget the snapshots of backups no longer in the bucket
//	snapmove doctor [-n NS] [-o json]  check what the install needs, with a fix for each failure
//
// The repository commands (list to report) also run as a kubectl plugin: link the binary
// as kubectl-snapmove on PATH and run `kubectl snapmove list`.
//
// Each subcommand lives in one file of internal/cmd. In plugin mode stdout belongs to
// go-plugin: nothing here may print to it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/snapmove/snapmove/internal/cmd"
	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/naming"
	"github.com/snapmove/snapmove/internal/plugin"
)

func main() {
	if plugin.StartedByVelero(os.Getenv) {
		// Velero execs plugins with the server's own flags (and nothing else).
		plugin.Serve()
		return
	}
	if len(os.Args) < 2 {
		usage(os.Stderr)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "install":
		err = cmd.Install(os.Args[2:])
	case "mover":
		err = mover(ctx, os.Args[2:])
	case "cancel":
		err = cmd.Cancel(ctx, os.Args[2:], os.Stdout)
	case "handover":
		err = cmd.Handover(ctx, os.Args[2:], os.Stdout)
	case "list":
		err = cmd.List(ctx, os.Args[2:], os.Stdout)
	case "ls":
		err = cmd.Ls(ctx, os.Args[2:], os.Stdout)
	case "restore-files":
		err = cmd.RestoreFiles(ctx, os.Args[2:], os.Stdout)
	case "verify":
		err = cmd.Verify(ctx, os.Args[2:], os.Stdout)
	case "report":
		err = cmd.Report(ctx, os.Args[2:], os.Stdout)
	case "forget-orphans":
		err = cmd.ForgetOrphans(ctx, os.Args[2:], os.Stdout)
	case "doctor":
		err = cmd.Doctor(ctx, os.Args[2:], os.Stdout)
	case "help", "-h", "--help":
		usage(os.Stdout)
	case "version", "--version":
		version(os.Stdout)
	default:
		fmt.Fprintf(os.Stderr, "snapmove: unknown command %q\n\n", os.Args[1])
		usage(os.Stderr)
		stop()
		os.Exit(2)
	}
	if errors.Is(err, pflag.ErrHelp) || errors.Is(err, flag.ErrHelp) { // -h: the flags are printed, as asked
		err = nil
	}
	if err != nil {
		// errors may quote names from tenants' volumes: escaped, as the printers do
		fmt.Fprintf(os.Stderr, "snapmove: %s\n", datapath.EscapeText(err.Error()))
		stop()
		os.Exit(exitCode(err))
	}
}

// usage prints the commands: the package comment's list.
func usage(w io.Writer) {
	fmt.Fprint(w, `snapmove: Velero plugins and the data mover that executes them

Commands:
  list [BACKUP]                 the moved volumes of backups
  ls BACKUP NS/PVC [PATH]       a directory of a volume in a backup
  restore-files BACKUP NS/PVC PATH... --to DIR | --to-pvc NS/PVC
                                chosen paths of a volume, without a full restore
  verify [BACKUP [NS/PVC]]      read a backup's volumes back from the repository
  report BACKUP                 what protection each PVC of a backup got
  forget-orphans [--confirm]    forget the snapshots of backups no longer in the bucket
  doctor [-n NS] [-o json]      check what the install needs; a fix for each failure
  cancel backup|restore NAME    cancel every volume move of a running backup or restore
  handover restore NAME         hand a restore's volume moves to Velero's node-agent
  install DIR                   copy this binary into DIR (the image's entrypoint)
  mover controller|worker|receive-files
                                the mover and its pods (run in the cluster)
  version                       this binary's version and the image it expects
  help                          this text

Each command takes -h for its flags. Velero runs this binary as its plugin server.
`)
}

// version prints snapmove's version, the image its workers run by default, and the
// build's Go and commit.
func version(w io.Writer) {
	rev := "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				rev = s.Value
			}
		}
	}
	fmt.Fprintf(w, "snapmove %s (commit %s, %s, %s/%s)\nimage %s:%s\n", naming.Version, rev, runtime.Version(),
		runtime.GOOS, runtime.GOARCH, naming.Image, naming.Version)
}

// exitCode is 1, or the code an error in err's chain states (a worker's failure that may
// pass exits with datapath.ExitTransient, which the mover controller retries).
func exitCode(err error) int {
	var coder interface{ ExitCode() int }
	if errors.As(err, &coder) && coder.ExitCode() > 0 {
		return coder.ExitCode()
	}
	return 1
}

func mover(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: snapmove mover controller|worker [flags]")
	}
	switch args[0] {
	case "controller":
		return cmd.MoverController(ctx, args[1:])
	case "worker":
		return cmd.MoverWorker(ctx, args[1:])
	case "receive-files":
		return cmd.ReceiveFiles(ctx, args[1:], os.Stdin, os.Stdout)
	}
	return fmt.Errorf("unknown mover command %q: want controller, worker or receive-files", args[0])
}
