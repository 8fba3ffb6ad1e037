package orphans

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// PrintJSON writes res as indented JSON.
func PrintJSON(w io.Writer, res Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(res)
}

// Print writes res as a table and a closing sentence; forget says whether Run forgot.
func Print(w io.Writer, res Result, forget bool) error {
	if len(res.Orphans) > 0 {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAMESPACE/PVC\tBACKUP\tSNAPSHOT\tKIND\tSTARTED\tSTATE")
		for _, o := range res.Orphans {
			kind, state := "snapshot", "orphan"
			if o.Checkpoint {
				kind = "checkpoint"
			}
			if o.Forgotten {
				state = "forgotten"
			}
			fmt.Fprintf(tw, "%s/%s\t%s\t%s\t%s\t%s\t%s\n", o.Namespace, o.PVC, o.Backup, o.SnapshotID, kind, o.StartTime.UTC().Format(time.RFC3339), state)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	switch {
	case len(res.Orphans) == 0:
		_, err := fmt.Fprintf(w, "no orphaned snapshots (%d backups in the bucket)\n", res.Backups)
		return err
	case forget:
		forgotten := 0
		for _, o := range res.Orphans {
			if o.Forgotten {
				forgotten++
			}
		}
		_, err := fmt.Fprintf(w, "forgot %d of %d orphaned snapshots; Velero's repository maintenance frees their data\n", forgotten, len(res.Orphans))
		return err
	}
	_, err := fmt.Fprintf(w, "%d orphaned snapshots (dry run: run again with --confirm to forget them)\n", len(res.Orphans))
	return err
}
