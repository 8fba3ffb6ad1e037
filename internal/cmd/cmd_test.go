package cmd

import (
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/snapmove/snapmove/internal/cancel"
)

func TestParseSecretKey(t *testing.T) {
	s, err := parseSecretKey("cloud-credentials/cloud")
	require.NoError(t, err)
	require.Equal(t, "cloud-credentials", s.Name)
	require.Equal(t, "cloud", s.Key)
	s, err = parseSecretKey("creds")
	require.NoError(t, err)
	require.Equal(t, "cloud", s.Key)
	s, err = parseSecretKey("")
	require.NoError(t, err)
	require.Nil(t, s)
	_, err = parseSecretKey("/x")
	require.Error(t, err)
}

func TestUsageErrors(t *testing.T) {
	ctx := context.Background()
	require.ErrorContains(t, MoverWorker(ctx, nil), "usage: snapmove mover worker backup|restore")
	require.ErrorContains(t, MoverWorker(ctx, []string{"backup", "--no-such-flag"}), "unknown flag")
	require.ErrorContains(t, MoverWorker(ctx, []string{"restore", "--target=/data"}), "needs the object name")
	require.ErrorContains(t, MoverController(ctx, []string{"--worker-image="}), "--worker-image is required")
	require.ErrorContains(t, MoverController(ctx, []string{"--worker-image=x", "extra"}), "unexpected arguments")
	require.ErrorContains(t, MoverController(ctx, []string{"--worker-image=x", "--default-credentials-secret=a/b/c"}), "want NAME/KEY")
	require.ErrorContains(t, Install(nil), "usage: snapmove install DIR")
}

func TestCancelUsage(t *testing.T) {
	ctx := context.Background()
	require.ErrorContains(t, Cancel(ctx, nil, io.Discard), "usage: snapmove cancel backup|restore NAME")
	require.ErrorContains(t, Cancel(ctx, []string{"schedule", "x"}, io.Discard), "usage: snapmove cancel backup|restore NAME")
	require.ErrorContains(t, Cancel(ctx, []string{"backup", "x", "-o", "yaml"}, io.Discard), `-o "yaml": want text or json`)
}

func TestPrintCancel(t *testing.T) {
	var b strings.Builder
	require.NoError(t, printCancel(&b, &cancel.Result{Kind: cancel.Backup, Name: "nightly", VeleroPhase: "WaitingForPluginOperations",
		AllEnded: true, Movements: []cancel.Movement{
			{Name: "nightly-a", Volume: "app/data", Before: "InProgress", Phase: "Canceled", Message: "canceled while moving data", Asked: true},
			{Name: "nightly-b", Volume: "app/logs", Before: "Completed", Phase: "Completed"},
		}}))
	require.Equal(t, `backup nightly: canceled 1 of 2 DataUploads (the others had ended or were canceled already)
NAME       VOLUME    BEFORE      NOW        MESSAGE
nightly-a  app/data  InProgress  Canceled   canceled while moving data
nightly-b  app/logs  Completed   Completed  
Velero's backup is WaitingForPluginOperations; Velero ends it once every move has ended (PartiallyFailed: a canceled move is a failed operation)
`, b.String())
}

func TestWriteReport(t *testing.T) {
	dir := t.TempDir()
	file := dir + "/termination-log"
	require.NoError(t, writeReport(file, "restored a of ns/pvc\n", nil))
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	require.Equal(t, "restored a of ns/pvc\n", string(b))

	failure := errors.New("no such path")
	require.Equal(t, failure, writeReport(file, "partial output", failure), "the command's error is kept")
	b, err = os.ReadFile(file)
	require.NoError(t, err)
	require.Equal(t, "partial outputsnapmove: no such path", string(b), "what it printed, then why it failed")

	require.NoError(t, writeReport(file, strings.Repeat("x", 5000), nil))
	b, err = os.ReadFile(file)
	require.NoError(t, err)
	require.Len(t, b, 4096, "a termination message holds 4096 bytes")
	require.True(t, strings.HasPrefix(string(b), "..."))
}
