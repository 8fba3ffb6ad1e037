package cmd

import (
	"fmt"
	"os"

	"github.com/pkg/errors"

	"github.com/snapmove/snapmove/internal/install"
)

// Install runs `snapmove install DIR`: the image's entrypoint, which copies this binary
// into Velero's plugins folder (an initContainer's /target).
func Install(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: snapmove install DIR")
	}
	dst, err := install.Self(args[0])
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "installed %s\n", dst)
	return nil
}
