package cmd

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"

	"github.com/pkg/errors"
	"github.com/spf13/pflag"

	"github.com/snapmove/snapmove/internal/mover/filestream"
)

// ReceiveFiles runs `snapmove mover receive-files --to DIR`, in the receiver pod of
// `restore-files --to-pvc`: it writes the files streamed on stdin into DIR.
func ReceiveFiles(ctx context.Context, args []string, stdin io.Reader, out io.Writer) (err error) {
	fs := pflag.NewFlagSet("snapmove mover receive-files", pflag.ContinueOnError)
	to := fs.String("to", "", "the directory that receives the files (a mounted PVC)")
	reportFile := fs.String("report-file", "", "also write the outcome to this file (the pod's termination message)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *to == "" || fs.NArg() > 0 {
		return errors.New("usage: snapmove mover receive-files --to DIR [--report-file FILE] < stream")
	}
	if *reportFile != "" {
		var report bytes.Buffer
		defer func() { err = writeReport(*reportFile, report.String(), err) }()
		out = io.MultiWriter(out, &report)
	}
	if f, ok := stdin.(*os.File); ok {
		stdin = filestream.Interruptible(f)
	}
	if c, ok := stdin.(io.Closer); ok {
		// Stopped (the pod's deadline): a blocked read fails, and the file being written
		// beside its place is removed.
		stop := context.AfterFunc(ctx, func() { _ = c.Close() })
		defer stop()
	}
	res, err := filestream.Receive(stdin, *to)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "received %d files, %d directories, %d symlinks, %d bytes into %s\n",
		res.Files, res.Dirs, res.Symlinks, res.Bytes, *to)
	return err
}
