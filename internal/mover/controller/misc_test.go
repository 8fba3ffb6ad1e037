package controller

import (
	"context"
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
	"k8s.io/apimachinery/pkg/types"

	"github.com/snapmove/snapmove/internal/mover/expose"
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
