package cmd

import (
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/snapmove/snapmove/internal/cancel"
)

// newCancelCommand is `snapmove cancel backup|restore NAME`: every volume move of the backup or
// restore that has not ended is canceled (spec.cancel, what
// `kubectl -n velero patch dataupload NAME --type merge -p '{"spec":{"cancel":true}}'`
// does for one), and the command waits until the mover has ended them. Velero then ends
// the backup or restore itself, PartiallyFailed: each canceled move is a failed item
// operation to it.
func newCancelCommand() *cobra.Command {
	c := &cobra.Command{Use: "cancel backup|restore NAME", Short: "cancel every volume move of a running backup or restore"}
	f := newMovesFlags(c, 2*time.Minute, "how long to wait for the moves to end (0: do not wait)",
		"usage: snapmove cancel backup|restore NAME [--wait 2m] [-o text|json|yaml]", string(cancel.Backup), string(cancel.Restore))
	c.RunE = func(c *cobra.Command, _ []string) error {
		cl, err := f.cluster.apiClient()
		if err != nil {
			return err
		}
		progress := newProgress(os.Stderr)
		res, err := cancel.Request(c.Context(), cl, f.cluster.namespace, cancel.Kind(f.kind), f.name, f.wait, func(r *cancel.Result) {
			ended, all := r.Ended(), len(r.Movements)
			progress.Step(ended, all, fmt.Sprintf("%s %s: waiting for %d of %d moves to end", r.Kind, r.Name, all-ended, all))
		})
		progress.Done()
		if err != nil {
			return err
		}
		return printResult(c.OutOrStdout(), f.output, res, func() error { return printCancel(c.OutOrStdout(), res) })
	}
	return c
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
