package cmd

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/snapmove/snapmove/internal/cancel"
	"github.com/snapmove/snapmove/internal/mover/velerosrv"
)

func TestAnnouncedCredentials(t *testing.T) {
	ctx := context.Background()
	bsl := &velerov1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Namespace: "velero", Name: "default"}, Spec: velerov1.BackupStorageLocationSpec{Provider: "aws"}}
	var out bytes.Buffer
	log := logrus.New()
	log.SetOutput(&out)
	log.SetFormatter(&logrus.TextFormatter{DisableTimestamp: true})

	d, err := velerosrv.ParseDefault("my-secret/cloud")
	require.NoError(t, err)
	a := announce(velerosrv.Credentials{Default: d}, log)
	for range 2 {
		sel, err := a.DefaultFor(ctx, bsl)
		require.NoError(t, err)
		require.Equal(t, "my-secret", sel.Name)
	}
	require.Equal(t, 1, strings.Count(out.String(), "credentials: secret velero/my-secret key cloud (--default-credentials-secret)"), out.String())

	out.Reset()
	broken := announce(velerosrv.Credentials{Default: velerosrv.Default{Auto: true}, Server: func(context.Context) (velerosrv.Server, error) {
		return velerosrv.Server{}, errors.New("no Deployment in namespace velero runs Velero's server")
	}}, log)
	_, err = broken.DefaultFor(ctx, bsl)
	require.ErrorContains(t, err, "no Deployment")
	require.Contains(t, out.String(), "--default-credentials-secret NAME/KEY")
}

func TestUsageErrors(t *testing.T) {
	ctx := context.Background()
	require.ErrorContains(t, MoverWorker(ctx, nil), "usage: snapmove mover worker backup|restore")
	require.ErrorContains(t, MoverWorker(ctx, []string{"backup", "--no-such-flag"}), "unknown flag")
	require.ErrorContains(t, MoverWorker(ctx, []string{"restore", "--target=/data"}), "needs the object name")
	require.ErrorContains(t, MoverController(ctx, []string{"--worker-image="}), "--worker-image is required")
	require.ErrorContains(t, MoverController(ctx, []string{"--worker-image=x", "extra"}), "unexpected arguments")
	require.ErrorContains(t, MoverController(ctx, []string{"--worker-image=x", "--default-credentials-secret=a/b/c"}), "want auto, none or NAME/KEY")
	require.ErrorContains(t, Install(nil), "usage: snapmove install DIR")
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

	require.NoError(t, writeReport(file, "[\n  {\n    \"ok\": true\n  }\n]\n", nil))
	b, err = os.ReadFile(file)
	require.NoError(t, err)
	require.Equal(t, "[{\"ok\":true}]\n", string(b), "-o json compacted: more volumes fit")

	require.NoError(t, writeReport(file, strings.Repeat("x", 5000), nil))
	b, err = os.ReadFile(file)
	require.NoError(t, err)
	require.Len(t, b, 4096, "a termination message holds 4096 bytes")
	require.True(t, strings.HasPrefix(string(b), "..."))
}
