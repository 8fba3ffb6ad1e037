package cmd

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/snapmove/snapmove/internal/cancel"
)

// Cancel runs `snapmove cancel backup|restore NAME`: every volume move of the backup or
// restore that has not ended is canceled (spec.cancel, what
// `kubectl -n velero patch dataupload NAME --type merge -p '{"spec":{"cancel":true}}'`
// does for one), and the command waits until the mover has ended them. Velero then ends
// the backup or restore itself, PartiallyFailed: each canceled move is a failed item
// operation to it.
func Cancel(ctx context.Context, args []string, out io.Writer) error {
	f := newMovesFlags("snapmove cancel", 2*time.Minute, "how long to wait for the moves to end (0: do not wait)")
	if err := f.parse(args, "usage: snapmove cancel backup|restore NAME [--wait 2m] [-o text|json]", string(cancel.Backup), string(cancel.Restore)); err != nil {
		return err
	}
	c, err := apiClient(f.kubeconfig)
	if err != nil {
		return err
	}
	res, err := cancel.Request(ctx, c, f.namespace, cancel.Kind(f.kind), f.name, f.wait)
	if err != nil {
		return err
	}
	if f.output == "json" {
		return writeJSON(out, res)
	}
	return printCancel(out, res)
}

func printCancel(out io.Writer, res *cancel.Result) error {
	kind := "DataUpload"
	if res.Kind == cancel.Restore {
		kind = "DataDownload"
	}
	asked := 0
	for _, m := range res.Movements {
		if m.Asked {
			asked++
		}
	}
	fmt.Fprintf(out, "%s %s: canceled %d of %d %ss (the others had ended or were canceled already)\n",
		res.Kind, res.Name, asked, len(res.Movements), kind)
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tVOLUME\tBEFORE\tNOW\tMESSAGE")
	for _, m := range res.Movements {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", m.Name, m.Volume, orNew(m.Before), orNew(m.Phase), m.Message)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if !res.AllEnded {
		fmt.Fprintln(out, "some moves have not ended yet: is the snapmove mover running? They end when it acts on them.")
	}
	fmt.Fprintf(out, "Velero's %s is %s; Velero ends it once every move has ended (PartiallyFailed: a canceled move is a failed operation)\n",
		res.Kind, orNew(res.VeleroPhase))
	return nil
}

func orNew(phase string) string {
	if phase == "" {
		return "New"
	}
	return phase
}
