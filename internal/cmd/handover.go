package cmd

import (
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/pkg/errors"
	"github.com/spf13/cobra"

	"github.com/snapmove/snapmove/internal/handover"
)

// newHandoverCommand is `snapmove handover restore NAME`: the restore's volume moves go to Velero's
// built-in data mover (node-agent) instead of snapmove's, which is how a backup that snapmove
// made is restored with stock Velero alone. For each DataDownload that no mover has taken it
// does what `kubectl -n velero patch datadownload DD --type merge -p '{"spec":{"datamover":"velero"}}'`
// does, until Velero has created them all.
func newHandoverCommand() *cobra.Command {
	c := &cobra.Command{Use: "handover restore NAME", Short: "hand a restore's volume moves to Velero's node-agent"}
	f := newMovesFlags(c, 10*time.Minute, "how long to wait for Velero to create the restore's DataDownloads",
		"usage: snapmove handover restore NAME [--wait 10m] [-o text|json|yaml]", "restore")
	c.RunE = func(c *cobra.Command, _ []string) error {
		cl, err := f.cluster.apiClient()
		if err != nil {
			return err
		}
		progress := newProgress(os.Stderr)
		res, err := handover.Restore(c.Context(), cl, f.cluster.namespace, f.name, f.wait, func(r *handover.Result) {
			progress.Status(fmt.Sprintf("restore %s is %s: %d DataDownloads so far, %d handed over; waiting for Velero to create them all",
				r.Restore, orNew(r.VeleroPhase), len(r.Movements), r.HandedOver()))
		})
		progress.Done()
		if err != nil {
			return err
		}
		out := c.OutOrStdout()
		if err := printResult(out, f.output, res, func() error { return printHandover(out, res) }); err != nil {
			return err
		}
		if !res.Complete {
			return errors.Errorf("restore %s is still %s after %s: Velero may create more DataDownloads; run this again", res.Restore, orNew(res.VeleroPhase), f.wait)
		}
		return nil
	}
	return c
}

func printHandover(out io.Writer, res *handover.Result) error {
	fmt.Fprintf(out, "restore %s: handed %d of %d DataDownloads to Velero's data mover (node-agent)\n",
		res.Restore, res.HandedOver(), len(res.Movements))
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tVOLUME\tDATAMOVER\tPHASE\tNOTE")
	for _, m := range res.Movements {
		note := m.Reason
		if m.HandedOver {
			note = "handed over"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", m.Name, m.Volume, m.DataMover, orNew(m.Phase), note)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(out, "Velero's restore is %s; node-agent moves the handed-over volumes (velero restore describe %s)\n",
		orNew(res.VeleroPhase), res.Restore)
	return nil
}
