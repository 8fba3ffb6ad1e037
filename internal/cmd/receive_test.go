package cmd

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestReceiveFilesStopped stops the receiver while it waits for the rest of a file (the
// pod's deadline, once the CLI died): it fails, the original stays and nothing is left
// beside it.
func TestReceiveFilesStopped(t *testing.T) {
	target := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(target, "f"), []byte("original"), 0o600))
	var stream bytes.Buffer
	tw := tar.NewWriter(&stream)
	require.NoError(t, tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "f", Size: 1 << 20, Mode: 0o644}))
	_, err := tw.Write(make([]byte, 1000))
	require.NoError(t, err)

	// A blocking pipe, as a pod's stdin is (os.Pipe's would be one the runtime polls).
	var fds [2]int
	require.NoError(t, unix.Pipe(fds[:]))
	r, w := os.NewFile(uintptr(fds[0]), "stdin"), os.NewFile(uintptr(fds[1]), "stream")
	defer w.Close()
	_, err = w.Write(stream.Bytes()[:512+1000]) // the writer stays open: no EOF
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	report := filepath.Join(t.TempDir(), "report")
	go func() {
		done <- ReceiveFiles(ctx, []string{"--to", target, "--report-file", report}, r, &bytes.Buffer{})
	}()
	time.Sleep(100 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		require.Error(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("the receiver did not stop")
	}
	got, err := os.ReadFile(filepath.Join(target, "f"))
	require.NoError(t, err)
	require.Equal(t, "original", string(got))
	entries, err := os.ReadDir(target)
	require.NoError(t, err)
	require.Len(t, entries, 1, "only the original")
	msg, err := os.ReadFile(report)
	require.NoError(t, err)
	require.Contains(t, string(msg), "snapmove: writing f")
}
