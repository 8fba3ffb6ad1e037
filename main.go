// Command snapmove is a Velero plugin set and the data mover that executes what it asks for,
// in one static binary:
//
//	snapmove [velero server flags]     serve the Velero plugins (how Velero runs it)
//	snapmove install DIR               copy this binary into DIR (the image entrypoint)
//	snapmove mover controller [flags]  execute DataUploads/DataDownloads of datamover "snapmove"
//	snapmove mover worker backup|restore [flags]
//	                                   move one volume's bytes (run inside the worker pod)
//
// In plugin mode stdout belongs to go-plugin: nothing here may print to it.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/snapmove/snapmove/internal/install"
	"github.com/snapmove/snapmove/internal/mover"
	"github.com/snapmove/snapmove/internal/plugin"
)

func main() {
	if len(os.Args) < 2 {
		plugin.Serve()
		return
	}
	switch os.Args[1] {
	case "install":
		if len(os.Args) != 3 {
			fail(fmt.Errorf("usage: snapmove install DIR"))
		}
		dst, err := install.Self(os.Args[2])
		if err != nil {
			fail(err)
		}
		fmt.Fprintf(os.Stderr, "installed %s\n", dst)
	case "mover":
		if len(os.Args) < 3 {
			fail(fmt.Errorf("usage: snapmove mover controller|worker ..."))
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		var err error
		switch os.Args[2] {
		case "controller":
			err = mover.RunController(ctx, os.Args[3:])
		case "worker":
			err = mover.RunWorker(ctx, os.Args[3:])
		default:
			err = fmt.Errorf("unknown mover command %q: want controller or worker", os.Args[2])
		}
		if err != nil {
			fail(err)
		}
	default:
		// Velero execs plugins with the server's own flags (and nothing else).
		plugin.Serve()
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "snapmove: %v\n", err)
	os.Exit(1)
}
