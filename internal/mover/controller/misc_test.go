package controller

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/snapmove/snapmove/internal/mover/expose"
	"github.com/snapmove/snapmove/internal/naming"
)

func TestAdmissionCount(t *testing.T) {
	a := newAdmission()
	acts := []activity{
		{expose.Backup, "a", phaseAccepted, "", false},
		{expose.Backup, "b", phaseInProgress, nodeA, false},
		{expose.Restore, "c", phaseCanceling, nodeA, false},
		{expose.Restore, "d", phaseInProgress, "node-b", false},
		{expose.Backup, "e", phaseNew, "", false},
		{expose.Backup, "f", phaseCompleted, nodeA, false},
		{expose.Restore, "g", phaseInProgress, nodeA, true},
	}
	active, onNode := a.count(acts, "b", nodeA, t0)
	require.Equal(t, 4, active, "a, c, d, g; b is self")
	require.Equal(t, 1, onNode, "c; g is finishing")

	// Just claimed "e" and started "x" on node-a: the cache does not show it yet.
	a.reserve("e", "", t0)
	a.reserve("x", nodeA, t0)
	active, onNode = a.count(acts, "", nodeA, t0)
	require.Equal(t, 6, active, "a, b, c, d, g + reserved e")
	require.Equal(t, 3, onNode, "b, c + reserved x")

	// The cache catches up with e; reservations expire.
	acts[4].phase = phaseAccepted
	active, _ = a.count(acts, "", nodeA, t0)
	require.Equal(t, 6, active, "e counted once")
	require.NotContains(t, a.reserved, types.UID("e"))
	_, onNode = a.count(acts, "", nodeA, t0.Add(2*reservationTTL))
	require.Equal(t, 2, onNode)
	require.Empty(t, a.reserved)
}

func TestInFlightGauge(t *testing.T) {
	du := dataUpload(velerov2alpha1.DataUploadPhaseInProgress)
	dd := dataDownload(velerov2alpha1.DataDownloadPhaseAccepted)
	e := newEnv(t, nil, du, dd)
	reg := prometheus.NewRegistry()
	require.NoError(t, RegisterInFlight(reg, e.c, veleroNS))
	require.NoError(t, testutil.CollectAndCompare(reg, strings.NewReader(`
# HELP snapmove_mover_in_flight Data movements claimed and not finished, by kind and phase.
# TYPE snapmove_mover_in_flight gauge
snapmove_mover_in_flight{kind="backup",phase="Accepted"} 0
snapmove_mover_in_flight{kind="backup",phase="Canceling"} 0
snapmove_mover_in_flight{kind="backup",phase="InProgress"} 1
snapmove_mover_in_flight{kind="backup",phase="Prepared"} 0
snapmove_mover_in_flight{kind="restore",phase="Accepted"} 1
snapmove_mover_in_flight{kind="restore",phase="Canceling"} 0
snapmove_mover_in_flight{kind="restore",phase="InProgress"} 0
snapmove_mover_in_flight{kind="restore",phase="Prepared"} 0
`), "snapmove_mover_in_flight"))
}

type countingRepos struct {
	fakeRepos
	calls int
}

func (c *countingRepos) Verify(ctx context.Context, bsl *velerov1.BackupStorageLocation, ns string, create bool) error {
	c.calls++
	return c.fakeRepos.Verify(ctx, bsl, ns, create)
}

func TestVerifierRemembersSuccessOnly(t *testing.T) {
	v := newVerifier()
	repos := &countingRepos{}
	now := t0
	clock := func() time.Time { return now }
	b := bsl()
	b.UID, b.ResourceVersion = "bsl-uid", "1"

	repos.verifyErr = errString("boom")
	require.Error(t, v.verify(context.Background(), repos, clock, b, appNS, true, false))
	repos.verifyErr = nil
	require.NoError(t, v.verify(context.Background(), repos, clock, b, appNS, true, false))
	require.NoError(t, v.verify(context.Background(), repos, clock, b, appNS, true, false))
	require.Equal(t, 2, repos.calls, "a success is remembered, a failure is not")

	b.ResourceVersion = "2" // Velero validated the BSL: same repository
	require.NoError(t, v.verify(context.Background(), repos, clock, b, appNS, true, false))
	require.Equal(t, 2, repos.calls, "a validation does not invalidate the check")
	b.Spec.ObjectStorage.Prefix = "elsewhere" // the BSL was edited: another repository
	require.NoError(t, v.verify(context.Background(), repos, clock, b, appNS, true, false))
	require.Equal(t, 3, repos.calls)
	now = now.Add(verifiedFor)
	require.NoError(t, v.verify(context.Background(), repos, clock, b, appNS, true, false))
	require.Equal(t, 4, repos.calls)
	require.NoError(t, v.verify(context.Background(), repos, clock, b, appNS, true, true))
	require.Equal(t, 5, repos.calls, "a retry after a failed store checks again")
	require.Empty(t, v.locks, "no lock outlives its callers")
}

func TestLogr(t *testing.T) {
	log, hook := logtest.NewNullLogger()
	log.SetLevel(logrus.InfoLevel)
	l := NewLogr(log).WithName("ctrl").WithValues("controller", "x")
	l.Info("hello", "k", 1)
	l.V(1).Info("hidden")
	l.Error(errString("bad"), "failed")
	require.Len(t, hook.AllEntries(), 2)
	require.Equal(t, "hello", hook.AllEntries()[0].Message)
	require.Equal(t, "ctrl", hook.AllEntries()[0].Data["logger"])
	require.Equal(t, "x", hook.AllEntries()[0].Data["controller"])
	require.Equal(t, 1, hook.AllEntries()[0].Data["k"])
	require.Equal(t, logrus.ErrorLevel, hook.LastEntry().Level)
}

// TestProgressQueueAndDeleteGauges: what is under way while it runs, read at scrape time:
// bytes of the movements InProgress, the movements not claimed yet and the oldest one's
// age, and the unanswered snapshot delete requests.
func TestProgressQueueAndDeleteGauges(t *testing.T) {
	moving := dataUpload(velerov2alpha1.DataUploadPhaseInProgress)
	moving.Status.Progress.BytesDone, moving.Status.Progress.TotalBytes = 300, 1000
	queued := dataUpload(velerov2alpha1.DataUploadPhaseNew)
	queued.Name, queued.UID, queued.CreationTimestamp = "queued-1", "uid-queued-1", metav1.NewTime(t0.Add(-90*time.Second))
	queuedDD := dataDownload("")
	queuedDD.CreationTimestamp = metav1.NewTime(t0.Add(-30 * time.Second))
	otherMover := dataUpload(velerov2alpha1.DataUploadPhaseNew)
	otherMover.Name, otherMover.UID, otherMover.Spec.DataMover = "velero-1", "uid-velero-1", "velero"
	request := func(name, phase string, age time.Duration) *corev1.ConfigMap {
		return &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: veleroNS, Name: name, Labels: map[string]string{naming.DeleteRequestLabel: "true"},
				CreationTimestamp: metav1.NewTime(t0.Add(-age))},
			Data: map[string]string{naming.DeleteRequestPhaseKey: phase},
		}
	}
	e := newEnv(t, nil, moving, queued, queuedDD, otherMover,
		request("pending", "", 2*time.Minute), request("answered", naming.DeleteRequestFailed, time.Hour))
	reg := prometheus.NewRegistry()
	require.NoError(t, reg.Register(newInFlight(e.c, veleroNS, func() time.Time { return t0 })))
	require.NoError(t, testutil.CollectAndCompare(reg, strings.NewReader(`
# HELP snapmove_mover_delete_requests_oldest_seconds Age of the oldest snapshot delete request not answered yet (0 when none).
# TYPE snapmove_mover_delete_requests_oldest_seconds gauge
snapmove_mover_delete_requests_oldest_seconds 120
# HELP snapmove_mover_delete_requests_pending Snapshot delete requests of deleted backups not answered yet.
# TYPE snapmove_mover_delete_requests_pending gauge
snapmove_mover_delete_requests_pending 1
# HELP snapmove_mover_moving_bytes Bytes done so far by the data movements InProgress.
# TYPE snapmove_mover_moving_bytes gauge
snapmove_mover_moving_bytes{kind="backup"} 300
snapmove_mover_moving_bytes{kind="restore"} 0
# HELP snapmove_mover_moving_total_bytes Total bytes of the data movements InProgress, as far as known.
# TYPE snapmove_mover_moving_total_bytes gauge
snapmove_mover_moving_total_bytes{kind="backup"} 1000
snapmove_mover_moving_total_bytes{kind="restore"} 0
# HELP snapmove_mover_queued Data movements of this mover not claimed yet.
# TYPE snapmove_mover_queued gauge
snapmove_mover_queued{kind="backup"} 1
snapmove_mover_queued{kind="restore"} 1
# HELP snapmove_mover_queued_oldest_seconds Age of the oldest data movement not claimed yet (0 when none).
# TYPE snapmove_mover_queued_oldest_seconds gauge
snapmove_mover_queued_oldest_seconds{kind="backup"} 90
snapmove_mover_queued_oldest_seconds{kind="restore"} 30
`), "snapmove_mover_moving_bytes", "snapmove_mover_moving_total_bytes", "snapmove_mover_queued", "snapmove_mover_queued_oldest_seconds",
		"snapmove_mover_delete_requests_pending", "snapmove_mover_delete_requests_oldest_seconds"))
}

// TestReadyCheck: ready only with a synced cache and an API server that answers the
// mover's list of DataUploads.
func TestReadyCheck(t *testing.T) {
	forbidden := &interceptor.Funcs{List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
		return apierrors.NewForbidden(schema.GroupResource{Group: "velero.io", Resource: "datauploads"}, "", nil)
	}}
	for _, tc := range []struct {
		name    string
		synced  bool
		funcs   *interceptor.Funcs
		wantErr string
	}{
		{name: "ready", synced: true},
		{name: "cache not synced", synced: false, wantErr: "has not synced"},
		{name: "rights lost", synced: true, funcs: forbidden, wantErr: "listing DataUploads in velero"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.funcs)
			check := ReadyCheck(func(context.Context) bool { return tc.synced }, e.c, veleroNS)
			err := check(httptest.NewRequest(http.MethodGet, "/readyz", nil))
			if tc.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}
