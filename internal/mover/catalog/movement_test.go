package catalog

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/pkg/errors"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmware-tanzu/velero/pkg/apis/velero/shared"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/snapmove/snapmove/internal/naming"
	"github.com/snapmove/snapmove/internal/testkit"
)

var moveStart = time.Date(2026, 12, 7, 20, 0, 0, 0, time.UTC)

// dataDownload is a DataDownload of restore into ns/pvc, started at moveStart, done of
// total bytes; ended ones took 90s.
func dataDownload(name, restore, ns, pvc string, phase velerov2alpha1.DataDownloadPhase, done, total int64) *velerov2alpha1.DataDownload {
	dd := &velerov2alpha1.DataDownload{
		ObjectMeta: metav1.ObjectMeta{Namespace: veleroNS, Name: name, Labels: map[string]string{velerov1.RestoreNameLabel: restore}},
		Spec: velerov2alpha1.DataDownloadSpec{TargetVolume: velerov2alpha1.TargetVolumeSpec{Namespace: ns, PVC: pvc},
			SnapshotID: "s-" + pvc, DataMover: naming.DataMover},
		Status: velerov2alpha1.DataDownloadStatus{Phase: phase,
			Progress: shared.DataMoveOperationProgress{BytesDone: done, TotalBytes: total}},
	}
	if phase != velerov2alpha1.DataDownloadPhaseNew {
		start := metav1.NewTime(moveStart)
		dd.Status.StartTimestamp, dd.Status.Node = &start, "node-1"
	}
	if naming.MovementEnded(string(phase)) {
		end := metav1.NewTime(moveStart.Add(90 * time.Second))
		dd.Status.CompletionTimestamp = &end
	}
	return dd
}

func TestMovementsWatch(t *testing.T) {
	inZone(t, time.FixedZone("CET", 3600))
	moving := dataUpload("du1", "b1", "app", "data", velerov2alpha1.DataUploadPhaseInProgress, "")
	start := metav1.NewTime(moveStart.Add(-time.Minute))
	moving.Status.StartTimestamp, moving.Status.CompletionTimestamp = &start, nil
	moving.Status.Progress.BytesDone, moving.Status.Node = 1200, "node-2"
	objs := []client.Object{
		moving,
		dataUpload("du2", "b1", "app", "logs", velerov2alpha1.DataUploadPhaseCompleted, "s2"),
		dataUpload("du3", "b2", "other", "db", velerov2alpha1.DataUploadPhaseAccepted, ""),
		dataDownload("dd1", "r1", "app", "data", velerov2alpha1.DataDownloadPhaseInProgress, 750, 3000),
		dataDownload("dd2", "r1", "app", "new", velerov2alpha1.DataDownloadPhaseNew, 0, 0),
	}
	c := fake.NewClientBuilder().WithScheme(testkit.Scheme(t)).WithObjects(objs...).Build()
	ctx := context.Background()
	now := moveStart.Add(2 * time.Minute)

	all, err := Movements(ctx, c, veleroNS, "")
	require.NoError(t, err)
	var w Watch
	frame := w.Frame(all)
	var names []string
	for _, m := range frame {
		names = append(names, m.Name)
	}
	assert.Equal(t, []string{"du1", "du3", "dd1", "dd2"}, names, "uploads first, then by volume; what has ended is not moving")
	var out bytes.Buffer
	require.NoError(t, PrintMovements(&out, now, frame))
	testkit.Golden(t, "testdata/watch.txt", out.String())

	// du1 ends: the next frame shows it once, Completed; the one after no more.
	done := &velerov2alpha1.DataUpload{}
	require.NoError(t, c.Get(ctx, client.ObjectKey{Namespace: veleroNS, Name: "du1"}, done))
	done.Status.Phase = velerov2alpha1.DataUploadPhaseCompleted
	require.NoError(t, c.Update(ctx, done))
	for _, want := range []bool{true, false} {
		all, err = Movements(ctx, c, veleroNS, "")
		require.NoError(t, err)
		shown := false
		for _, m := range w.Frame(all) {
			shown = shown || m.Name == "du1"
		}
		assert.Equal(t, want, shown)
	}

	// Of one backup: its uploads alone.
	of, err := Movements(ctx, c, veleroNS, "b2")
	require.NoError(t, err)
	require.Len(t, of, 1)
	assert.Equal(t, Movement{Kind: KindDataUpload, Name: "du3", Backup: "b2", Namespace: "other", PVC: "db", Phase: "Accepted",
		Message: "msg of du3", DataMover: naming.DataMover, TotalBytes: 3000, Started: of[0].Started, Completed: of[0].Completed}, of[0])

	out.Reset()
	require.NoError(t, PrintMovements(&out, now, nil))
	assert.Equal(t, "2026-12-07T21:02:00+01:00: no volume is moving\n", out.String())
}

func TestRestoreReport(t *testing.T) {
	inZone(t, time.FixedZone("CET", 3600))
	restore := &velerov1.Restore{ObjectMeta: metav1.ObjectMeta{Namespace: veleroNS, Name: "r1"},
		Spec: velerov1.RestoreSpec{BackupName: "b1"}, Status: velerov1.RestoreStatus{Phase: velerov1.RestorePhaseWaitingForPluginOperations}}
	failed := dataDownload("dd3", "r1", "app", "cache", velerov2alpha1.DataDownloadPhaseFailed, 100, 3000)
	failed.Status.Message = "restoring: disk full\x1b[2J"
	objs := []client.Object{restore, failed,
		dataDownload("dd1", "r1", "app", "data", velerov2alpha1.DataDownloadPhaseCompleted, 3000, 3000),
		dataDownload("dd2", "r1", "app", "logs", velerov2alpha1.DataDownloadPhaseInProgress, 1000, 4000),
		dataDownload("dd4", "r1", "app", "new", velerov2alpha1.DataDownloadPhaseNew, 0, 0),
		dataDownload("other", "r2", "app", "data", velerov2alpha1.DataDownloadPhaseCompleted, 3000, 3000),
	}
	c := fake.NewClientBuilder().WithScheme(testkit.Scheme(t)).WithObjects(objs...).Build()
	r := &Reporter{Client: c, Namespace: veleroNS}
	rep, err := r.RestoreReport(context.Background(), "r1")
	require.NoError(t, err)
	assert.Equal(t, map[string]int{"Completed": 1, "InProgress": 1, "Failed": 1, "New": 1}, rep.Counts)

	var text, js bytes.Buffer
	require.NoError(t, PrintRestoreReport(&text, rep, moveStart.Add(2*time.Minute)))
	assert.NotContains(t, text.String(), "\x1b")
	testkit.Golden(t, "testdata/restore-report.txt", text.String())
	require.NoError(t, PrintJSON(&js, rep))
	testkit.Golden(t, "testdata/restore-report.json", js.String())

	empty := &velerov1.Restore{ObjectMeta: metav1.ObjectMeta{Namespace: veleroNS, Name: "r3"}, Spec: velerov1.RestoreSpec{BackupName: "b1"}}
	require.NoError(t, c.Create(context.Background(), empty))
	rep, err = r.RestoreReport(context.Background(), "r3")
	require.NoError(t, err)
	text.Reset()
	require.NoError(t, PrintRestoreReport(&text, rep, moveStart))
	assert.Contains(t, text.String(), "Restore r3 of backup b1 (New)\nno DataDownloads")

	_, err = r.RestoreReport(context.Background(), "nope")
	assert.EqualError(t, err, "restore nope not found in namespace velero")
	r.Client = fake.NewClientBuilder().WithScheme(testkit.Scheme(t)).WithObjects(objs...).WithInterceptorFuncs(interceptor.Funcs{
		List: func(context.Context, client.WithWatch, client.ObjectList, ...client.ListOption) error {
			return errors.New("etcd is gone")
		}}).Build()
	_, err = r.RestoreReport(context.Background(), "r1")
	assert.EqualError(t, err, "listing the DataDownloads of restore r1: etcd is gone")
}
