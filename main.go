// Command snapmove is a Velero plugin set and the data mover that executes what it asks for,
// in one static binary:
//
//	snapmove [velero server flags]     serve the Velero plugins (only when Velero runs it: go-plugin's
//	                                   handshake variable VELERO_PLUGIN is set)
//	snapmove help [COMMAND] | version  this list (or a command's flags); the version and the image it expects
//	snapmove completion SHELL          a completion script for bash, zsh, fish or powershell
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
//	snapmove list [BACKUP] [-w]        the moved volumes of backups; -w: the moving ones, every 2s
//	snapmove ls BACKUP NS/PVC [PATH]   a directory of a volume in a backup
//	snapmove restore-files BACKUP NS/PVC PATH... --to DIR
//	                                   chosen paths of a volume in a backup, without a full restore
//	snapmove verify [BACKUP [NS/PVC]]  read a backup's volumes back from the repository
//	snapmove report BACKUP             what protection each PVC of a backup got
//	snapmove report --restore RESTORE  what each volume move (DataDownload) of a restore did
//	snapmove forget-orphans [--confirm]
//	                                   forget the snapshots of backups no longer in the bucket
//	snapmove doctor                    check what the install needs, with a fix for each failure
//
// The commands that read the cluster take -n/--namespace (Velero's), --kubeconfig and
// --context as kubectl does; those that print take -o text|json|yaml, and the long ones
// (restore-files, verify, cancel, handover) show their progress on stderr. `snapmove` alone
// prints this list and exits 2, as does an unknown command (with cobra's suggestion).
//
// The repository commands (list to report) also run as a kubectl plugin: link the binary
// as kubectl-snapmove on PATH and run `kubectl snapmove list`.
//
// The command tree (spf13/cobra, as Velero's CLI) is internal/cmd's NewRoot, each subcommand
// in one of its files. In plugin mode stdout belongs to
// go-plugin: nothing here may print to it.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/snapmove/snapmove/internal/cmd"
	"github.com/snapmove/snapmove/internal/plugin"
)

func main() {
	if plugin.StartedByVelero(os.Getenv) {
		// Velero execs plugins with the server's own flags (and nothing else).
		plugin.Serve()
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cmd.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
