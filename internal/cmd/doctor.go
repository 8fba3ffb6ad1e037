package cmd

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/pkg/errors"
	"github.com/spf13/pflag"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/doctor"
)

const doctorUsage = "usage: snapmove doctor [-n NAMESPACE] [--kubeconfig FILE] [-o text|json]"

// Doctor runs `snapmove doctor`: every check of package doctor against the cluster, printed
// as a table (or JSON), with a fix for each warning and failure. It fails when a check failed.
func Doctor(ctx context.Context, args []string, out io.Writer) error {
	fs := pflag.NewFlagSet("snapmove doctor", pflag.ContinueOnError)
	namespace := fs.StringP("namespace", "n", defaultNamespace(), "Velero's namespace")
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)")
	output := fs.StringP("output", "o", "text", "text or json")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return errors.New(doctorUsage)
	}
	if *output != "text" && *output != "json" {
		return errors.Errorf("-o %q: want text or json", *output)
	}
	c, err := doctorClient(*kubeconfig)
	if err != nil {
		return err
	}
	return printDoctor(out, *output, doctor.Run(ctx, c, doctor.Options{Namespace: *namespace}))
}

// doctorClient is apiClient with the CustomResourceDefinitions the doctor reads.
func doctorClient(kubeconfig string) (client.Client, error) {
	cfg, s, err := cluster(kubeconfig)
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
	var err error
	if output == "json" {
		err = writeJSON(out, r)
	} else {
		err = printDoctorText(out, r)
	}
	if err != nil {
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
