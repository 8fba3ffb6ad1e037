package cmd

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/pkg/errors"
	"github.com/spf13/cobra"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/doctor"
)

const doctorUsage = "usage: snapmove doctor [-n NAMESPACE] [--kubeconfig FILE] [--context NAME] [-o text|json|yaml]"

// newDoctorCommand is `snapmove doctor`: every check of package doctor against the cluster,
// printed as a table (or JSON, YAML), with a fix for each warning and failure. It fails
// when a check failed.
func newDoctorCommand() *cobra.Command {
	var (
		cluster clusterFlags
		output  string
	)
	c := &cobra.Command{
		Use:   "doctor",
		Short: "check what the install needs; a fix for each failure",
		Args:  noArgs(doctorUsage, &output),
		RunE: func(c *cobra.Command, _ []string) error {
			cl, err := doctorClient(cluster)
			if err != nil {
				return err
			}
			return printDoctor(c.OutOrStdout(), output, doctor.Run(c.Context(), cl, doctor.Options{Namespace: cluster.namespace}))
		},
	}
	cluster.bind(c.Flags())
	outputFlag(c.Flags(), &output)
	return c
}

// doctorClient is apiClient with the CustomResourceDefinitions the doctor reads.
func doctorClient(f clusterFlags) (client.Client, error) {
	cfg, s, err := f.cluster()
	if err != nil {
		return nil, err
	}
	if err := doctor.AddToScheme(s); err != nil {
		return nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: s})
	return c, errors.Wrap(err, "creating the API client")
}

// printDoctor writes r as output says, and returns the error that fails the command when
// a check failed.
func printDoctor(out io.Writer, output string, r doctor.Report) error {
	if err := printResult(out, output, r, func() error { return printDoctorText(out, r) }); err != nil {
		return err
	}
	if failed := r.Failed(); len(failed) > 0 {
		return errors.Errorf("%d of %d checks failed: %s", len(failed), len(r.Checks), strings.Join(failed, ", "))
	}
	return nil
}

func printDoctorText(out io.Writer, r doctor.Report) error {
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "CHECK\tSTATUS\tDETAIL")
	for _, c := range r.Checks {
		fmt.Fprintf(w, "%s\t%s\t%s\n", c.Name, c.Status, c.Detail)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	first := true
	for _, c := range r.Checks {
		if c.Status == doctor.OK || c.Fix == "" {
			continue
		}
		if first {
			fmt.Fprintln(out)
			first = false
		}
		fmt.Fprintf(out, "%s (%s) fix: %s\n", c.Name, c.Status, c.Fix)
	}
	return nil
}
