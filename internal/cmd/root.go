package cmd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/snapmove/snapmove/internal/mover/catalog"
	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/naming"
)

// rootHelp is `snapmove help`: the commands, as main.go's doc comment lists them.
const rootHelp = `snapmove: Velero plugins and the data mover that executes them

Commands:
  list [BACKUP] [-w]            the moved volumes of backups; -w: the moving ones, every 2s
  ls BACKUP NS/PVC [PATH]       a directory of a volume in a backup
  restore-files BACKUP NS/PVC PATH... --to DIR | --to-pvc NS/PVC
                                chosen paths of a volume, without a full restore
  verify [BACKUP [NS/PVC]]      read a backup's volumes back from the repository
  report BACKUP                 what protection each PVC of a backup got
  report --restore RESTORE      what each volume move (DataDownload) of a restore did
  forget-orphans [--confirm]    forget the snapshots of backups no longer in the bucket
  doctor                        check what the install needs; a fix for each failure
  cancel backup|restore NAME    cancel every volume move of a running backup or restore
  handover restore NAME         hand a restore's volume moves to Velero's node-agent
  install DIR                   copy this binary into DIR (the image's entrypoint)
  mover controller|worker|receive-files
                                the mover and its pods (run in the cluster)
  version                       this binary's version and the image it expects
  completion bash|zsh|fish|powershell
                                a shell's completion script
  help [COMMAND]                this text, or a command's flags

Commands that read the cluster take -n/--namespace (Velero's; default $VELERO_NAMESPACE,
else velero), --kubeconfig and --context as kubectl does; commands that print take
-o text|json|yaml; long ones show their progress on stderr. Each command takes -h for
its flags. Velero runs this binary as its plugin server.
`

// exitError ends the process with code, having printed what it had to say (or nothing).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }
func (e *exitError) ExitCode() int { return e.code }

// usageError is a command line cobra could not take (an unknown command or flag): exit 2,
// as Go's flag package and kubectl's unknown commands.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// Main runs snapmove's command line args (os.Args[1:]) and returns the process's exit
// status: 0; 2 for a command line it cannot take (help printed); otherwise 1, or the
// code that an error in the chain states (ExitCode(): a worker exits with
// datapath.ExitTransient, which the mover controller retries). Errors are printed once,
// escaped: they may quote names from tenants' volumes.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := NewRoot(stdout, stderr)
	root.SetArgs(args)
	c, err := root.ExecuteContextC(ctx)
	return exitStatus(c, err, stderr)
}

func exitStatus(c *cobra.Command, err error, stderr io.Writer) int {
	if err == nil || errors.Is(err, pflag.ErrHelp) || errors.Is(err, flag.ErrHelp) { // -h: the flags are printed, as asked
		return 0
	}
	var exit *exitError
	if errors.As(err, &exit) && exit.err == nil {
		return exit.code
	}
	var usage usageError
	if errors.As(err, &usage) || strings.HasPrefix(err.Error(), "unknown command ") {
		// cobra's message, on its lines (suggestions); each line escaped
		lines := strings.Split(strings.TrimSpace(err.Error()), "\n")
		for i, l := range lines {
			lines[i] = datapath.EscapeText(strings.ReplaceAll(l, "\t", "  "))
		}
		fmt.Fprintf(stderr, "snapmove: %s\n", strings.Join(lines, "\n"))
		if c == nil || !c.HasParent() {
			fmt.Fprint(stderr, "\n"+rootHelp)
		} else {
			fmt.Fprintf(stderr, "see '%s -h'\n", c.CommandPath())
		}
		return 2
	}
	fmt.Fprintf(stderr, "snapmove: %s\n", datapath.EscapeText(err.Error()))
	return exitCode(err)
}

// exitCode is 1, or the code an error in err's chain states.
func exitCode(err error) int {
	var coder interface{ ExitCode() int }
	if errors.As(err, &coder) && coder.ExitCode() > 0 {
		return coder.ExitCode()
	}
	return 1
}

// NewRoot is snapmove's command tree (everything but the plugin server, which main starts
// before it when Velero runs the binary). Results go to stdout, what commands say about
// how they run to stderr.
func NewRoot(stdout, stderr io.Writer) *cobra.Command {
	var showVersion bool
	root := &cobra.Command{
		Use:           "snapmove",
		Short:         "Velero plugins and the data mover that executes them",
		SilenceErrors: true, // Main prints them, escaped
		SilenceUsage:  true,
		// snapmove alone: the commands, and a failure (a script that forgot its command)
		RunE: func(c *cobra.Command, args []string) error {
			if showVersion {
				return printVersion(c.OutOrStdout(), catalog.FormatText)
			}
			fmt.Fprint(c.ErrOrStderr(), rootHelp)
			return &exitError{code: 2}
		},
	}
	root.Flags().BoolVar(&showVersion, "version", false, "snapmove version")
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	defaultHelp := root.HelpFunc()
	root.SetHelpFunc(func(c *cobra.Command, args []string) {
		if c.HasParent() {
			defaultHelp(c, args)
			return
		}
		fmt.Fprint(c.OutOrStdout(), rootHelp)
	})
	root.AddCommand(
		newListCommand(), newLsCommand(), newRestoreFilesCommand(), newVerifyCommand(), newReportCommand(),
		newForgetOrphansCommand(), newDoctorCommand(), newCancelCommand(), newHandoverCommand(),
		newInstallCommand(), newVersionCommand(), newMoverCommand(),
	)
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	return root
}

// clusterFlags are how a command reaches the cluster, as kubectl's and velero's flags.
type clusterFlags struct {
	namespace, kubeconfig, context string
}

// bind adds -n/--namespace, --kubeconfig and --context to fs.
func (f *clusterFlags) bind(fs *pflag.FlagSet) {
	fs.StringVarP(&f.namespace, "namespace", "n", defaultNamespace(), "Velero's namespace (default $VELERO_NAMESPACE, else velero)")
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster, then $KUBECONFIG, then ~/.kube/config)")
	fs.StringVar(&f.context, "context", "", "the kubeconfig context to use (default: its current-context)")
}

// outputFlag adds -o/--output (text, json or yaml) to fs. "table", velero's name for
// its text output, is taken as text.
func outputFlag(fs *pflag.FlagSet, output *string) {
	*output = catalog.FormatText
	fs.VarP((*outputValue)(output), "output", "o", "text (or table, as velero says), json or yaml")
}

// outputValue is -o's value: a string, with velero's "table" read as "text".
type outputValue string

func (v *outputValue) String() string { return string(*v) }
func (v *outputValue) Type() string   { return "string" }
func (v *outputValue) Set(s string) error {
	if s == "table" {
		s = catalog.FormatText
	}
	*v = outputValue(s)
	return nil
}

// noArgs is the Args of a command that takes none (else usage is the error), checking
// its -o output.
func noArgs(usage string, output *string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != 0 {
			return errors.New(usage)
		}
		return catalog.CheckFormat(*output)
	}
}

// printResult writes v as -o asks for JSON or YAML; text() writes the text.
func printResult(out io.Writer, format string, v any, text func() error) error {
	if format == catalog.FormatJSON || format == catalog.FormatYAML {
		return catalog.PrintFormat(out, format, v)
	}
	return text()
}

// Version is what `snapmove version` prints.
type Version struct {
	Version  string `json:"version"`
	Commit   string `json:"commit"`
	Go       string `json:"go"`
	Platform string `json:"platform"`
	// Image is the image the mover's workers run by default.
	Image string `json:"image"`
}

// BuildVersion is this binary's Version.
func BuildVersion() Version {
	rev := "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				rev = s.Value
			}
		}
	}
	return Version{Version: naming.Version, Commit: rev, Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH,
		Image: naming.Image + ":" + naming.Version}
}

// printVersion writes BuildVersion as format says; its text is two lines: the version,
// commit, Go and platform, then the image.
func printVersion(out io.Writer, format string) error {
	v := BuildVersion()
	return printResult(out, format, v, func() error {
		_, err := fmt.Fprintf(out, "snapmove %s (commit %s, %s, %s)\nimage %s\n", v.Version, v.Commit, v.Go, v.Platform, v.Image)
		return err
	})
}

func newVersionCommand() *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:   "version",
		Short: "this binary's version and the image it expects",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := catalog.CheckFormat(output); err != nil {
				return err
			}
			return printVersion(c.OutOrStdout(), output)
		},
	}
	outputFlag(c.Flags(), &output)
	return c
}

// newMoverCommand is `snapmove mover`: the commands that run in the cluster, each parsing
// its own flags (MoverController, MoverWorker, ReceiveFiles). Hidden: users run the
// mover's Deployment, not these.
func newMoverCommand() *cobra.Command {
	mover := &cobra.Command{
		Use:    "mover controller|worker|receive-files",
		Short:  "the mover and its pods (run in the cluster)",
		Hidden: true,
		RunE: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return errors.New("usage: snapmove mover controller|worker|receive-files [flags]")
			}
			return fmt.Errorf("unknown mover command %q: want controller, worker or receive-files", args[0])
		},
	}
	raw := func(use, short string, run func(c *cobra.Command, args []string) error) *cobra.Command {
		return &cobra.Command{Use: use, Short: short, Hidden: true, DisableFlagParsing: true, RunE: run}
	}
	mover.AddCommand(
		raw("controller [flags]", "execute DataUploads/DataDownloads of datamover snapmove", func(c *cobra.Command, args []string) error {
			return MoverController(c.Context(), args)
		}),
		raw("worker backup|restore [flags]", "move one volume's bytes (run inside the worker pod)", func(c *cobra.Command, args []string) error {
			return MoverWorker(c.Context(), args)
		}),
		raw("receive-files --to DIR", "write files streamed on stdin (the pod of restore-files --to-pvc)", func(c *cobra.Command, args []string) error {
			return ReceiveFiles(c.Context(), args, c.InOrStdin(), c.OutOrStdout())
		}),
	)
	return mover
}

func newInstallCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "install DIR",
		Short: "copy this binary into DIR (the image's entrypoint)",
		RunE: func(_ *cobra.Command, args []string) error {
			return Install(args)
		},
	}
}
