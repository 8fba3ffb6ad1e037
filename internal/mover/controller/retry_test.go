package controller

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/mover/datapath"
)

// workerFailedEnv is an InProgress movement of kind k whose worker failed as the store
// went away (exit 75), with get (the movement now) and reconcile.
func workerFailedEnv(t *testing.T, k kindUnderTest) (e *env, get func() movement, reconcile func()) {
	name := k.objectName()
	pod := terminated(workerPod(name, corev1.PodFailed), "Error", storeDown, 75)
	pod.UID = failedWorkerUID
	e = newEnv(t, nil, dedupe(append([]client.Object{k.object(phaseInProgress), bsl(), pod}, k.exposed()...))...)
	ctx := context.Background()
	get = func() movement {
		obj := k.object("")
		require.NoError(t, e.c.Get(ctx, client.ObjectKey{Namespace: veleroNS, Name: name}, obj))
		return asMovement(obj)
	}
	reconcile = func() {
		t.Helper()
		_, err := k.reconcile(ctx, e.r)
		require.NoError(t, err)
	}
	return e, get, reconcile
}

// A movement whose worker keeps failing for a reason that may pass runs moveAttempts
// times through Accepted, Prepared and InProgress, on the PVC (and snapshot) exposed
// once, and then fails naming the attempts; each retry is an Event.
func TestRetryWholeMove(t *testing.T) {
	for _, k := range kindsUnderTest {
		t.Run(k.name, func(t *testing.T) {
			name := k.objectName()
			e, get, reconcile := workerFailedEnv(t, k)
			pvc := ourPVC(name)
			require.True(t, e.exists(pvc))
			pvcVersion := pvc.ResourceVersion

			for n := 2; n <= 3; n++ {
				e.clock.SetTime(e.clock.Now().Add(time.Minute))
				reconcile() // the worker failed: retried
				m := get()
				require.Equal(t, phaseAccepted, m.phase())
				require.True(t, strings.HasPrefix(m.message(), fmt.Sprintf("retrying (attempt %d of 3) after: %s", n, storeDown)), m.message())
				require.True(t, e.clock.Now().Equal(m.acceptedAt().Time), "accepted again at %v", m.acceptedAt())
				require.False(t, e.exists(ourPod(name)), "the failed pod is deleted")

				reconcile() // expose creates the new pod, and nothing else
				p := ourPod(name)
				require.True(t, e.exists(p), "a new worker pod")
				same := ourPVC(name)
				require.True(t, e.exists(same))
				require.Equal(t, pvcVersion, same.ResourceVersion, "the exposed PVC is kept, untouched")
				e.update(p, func() { p.Status.Phase = corev1.PodRunning })
				reconcile()
				require.Equal(t, phasePrepared, get().phase())
				reconcile()
				require.Equal(t, phaseInProgress, get().phase())

				// It fails again the same way.
				e.update(p, func() { terminated(p, "Error", storeDown, 75).Status.Phase = corev1.PodFailed })
			}
			reconcile()
			m := get()
			require.Equal(t, phaseFailed, m.phase())
			require.Equal(t, "worker pod velero/"+name+" failed (attempt 3 of 3): "+storeDown, m.message())
			require.Equal(t, "3", m.object().GetAnnotations()[annAttempt])
			require.NotEqual(t, types.UID(failedWorkerUID), types.UID(m.object().GetAnnotations()[annFailedWorker]))

			var reasons []string
			for _, ev := range e.events() {
				reasons = append(reasons, strings.Fields(ev)[1])
			}
			require.Equal(t, []string{ReasonWorkerRetried, ReasonWorkerRetried, ReasonWorkerFailed}, reasons)
			require.Len(t, e.repos.verified, 2, "the repository is checked again (uncached) before each retry's worker")
			require.False(t, e.exists(ourPod(name)))
			require.False(t, e.exists(ourPVC(name)), "cleaned up at the end")
		})
	}
}

// A retry after the store failed the last worker waits for the store before it starts
// the next one (the cached success of the first check says nothing now): the message
// says so, no pod is made, and the next worker starts once the store answers. Without
// this, a store down for longer than the data path's retries failed every attempt at once.
// The wait does not eat into prepareTimeout: the movement is accepted again when the store
// answers.
func TestRetryWaitsForTheStore(t *testing.T) {
	for _, k := range kindsUnderTest {
		t.Run(k.name, func(t *testing.T) {
			name := k.objectName()
			e, get, reconcile := workerFailedEnv(t, k)
			require.NoError(t, e.r.verifier.verify(context.Background(), e.repos, e.clock.Now, bsl(), appNS, false, false)) // the first check passed

			reconcile()
			require.Equal(t, phaseAccepted, get().phase(), "retried")
			e.repos.verifyErr = errString("dial tcp 127.0.0.1:9000: connect: connection refused")
			for range 3 {
				e.clock.SetTime(e.clock.Now().Add(time.Minute))
				reconcile()
				m := get()
				require.Equal(t, phaseAccepted, m.phase())
				require.Contains(t, m.message(), "waiting: checking the kopia repository for namespace app on BackupStorageLocation default: dial tcp 127.0.0.1:9000: connect: connection refused")
				require.False(t, e.exists(ourPod(name)), "no worker while the store is down")
				require.Equal(t, t0.Add(time.Minute).Format(time.RFC3339), m.object().GetAnnotations()[annWaitingForStore], "when the wait began")
			}
			e.repos.verifyErr = nil
			e.clock.SetTime(e.clock.Now().Add(time.Minute))
			reconcile()
			require.True(t, e.exists(ourPod(name)), "the next worker once the store answers")
			m := get()
			require.NotContains(t, m.object().GetAnnotations(), annWaitingForStore)
			require.True(t, e.clock.Now().Equal(m.acceptedAt().Time), "prepareTimeout counts from the store's return, not from the retry")
		})
	}
}

// A backup that failed its verification (the worker exits with
// datapath.ExitVerificationFailed) is not retried: it fails at once with reason
// VerificationFailed, counted apart in snapmove_mover_failures_total; a retried attempt
// counts in snapmove_mover_retries_total.
func TestVerificationFailureIsCountedNotRetried(t *testing.T) {
	k := kindsUnderTest[0]
	name := k.objectName()
	e, get, reconcile := workerFailedEnv(t, k)
	reconcile() // the store went away: retried
	require.Equal(t, phaseAccepted, get().phase())
	require.Equal(t, 1.0, testutil.ToFloat64(e.r.Metrics.retries.WithLabelValues("backup")))

	reconcile() // a new worker
	p := ourPod(name)
	require.True(t, e.exists(p))
	e.update(p, func() { p.Status.Phase = corev1.PodRunning })
	reconcile()
	reconcile()
	require.Equal(t, phaseInProgress, get().phase())
	const bad = "snapshot k1 failed verification (metadata) and was deleted: a/b: missing"
	e.update(p, func() { terminated(p, "Error", bad, datapath.ExitVerificationFailed).Status.Phase = corev1.PodFailed })
	reconcile()
	m := get()
	require.Equal(t, phaseFailed, m.phase(), m.message())
	require.Contains(t, m.message(), bad)
	e.requireEvent(ReasonVerificationFailed)
	require.Equal(t, 1.0, testutil.ToFloat64(e.r.Metrics.failures.WithLabelValues("backup", ReasonVerificationFailed)))
}
