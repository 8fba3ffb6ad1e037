package cmd

import (
	"flag"
	"fmt"
	"os"

	"github.com/pkg/errors"

	"github.com/snapmove/snapmove/internal/install"
)

// Install runs `snapmove install DIR`: the image's entrypoint, which copies this binary
// into Velero's plugins folder (an initContainer's /target).
func Install(args []string) error {
	fs := flag.NewFlagSet("snapmove install", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprintln(fs.Output(), "usage: snapmove install DIR (copies this binary into DIR)") }
	if err := fs.Parse(args); err != nil {
		return err // flag.ErrHelp for -h: the usage is printed
	}
	if fs.NArg() != 1 {
		return errors.New("usage: snapmove install DIR")
	}
	dst, err := install.Self(fs.Arg(0))
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "installed %s\n", dst)
	return nil
}
