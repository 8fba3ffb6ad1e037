package controller

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pkg/errors"
	"github.com/stretchr/testify/require"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
)

// A worker that stops without failing (frozen, hung volume, lost node) is replaced by a
// new attempt within the stall timeout, or fails the movement when none is left, naming
// the cause; for both kinds.
func TestStalledWorker(t *testing.T) {
	node := func(ready corev1.ConditionStatus, since time.Time) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeA}, Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: ready, LastTransitionTime: metav1.NewTime(since), Message: "Kubelet stopped posting node status.",
		}}}}
	}
	for _, k := range kindsUnderTest {
		for _, tc := range []struct {
			name      string
			node      *corev1.Node
			progress  bool // bytesDone changes between the two looks
			attempt   string
			stall     time.Duration
			wait      time.Duration // between the two looks
			wantPhase string
			wantMsg   string
			wantEvent string
		}{
			{name: "moving", progress: true, wait: 16 * time.Minute, wantPhase: phaseInProgress},
			{name: "no progress, within the timeout", wait: 14 * time.Minute, wantPhase: phaseInProgress},
			{name: "no progress: a new attempt", wait: 16 * time.Minute, wantPhase: phaseAccepted,
				wantMsg: "retrying (attempt 2 of 3) after: worker pod velero/<name>: no progress for 16m0s (40 of 100 bytes moved; stallTimeout 15m0s)", wantEvent: ReasonWorkerRetried},
			{name: "no progress at the last attempt: failed", attempt: "3", wait: 16 * time.Minute, wantPhase: phaseFailed,
				wantMsg: "worker pod velero/<name>: no progress for 16m0s (40 of 100 bytes moved; stallTimeout 15m0s) (attempt 3 of 3)", wantEvent: ReasonWorkerStalled},
			{name: "stall detection off", stall: -1, wait: 5 * time.Hour, wantPhase: phaseInProgress},
			{name: "node not Ready past the grace", node: node(corev1.ConditionUnknown, t0), progress: true, wait: 6 * time.Minute, wantPhase: phaseAccepted,
				wantMsg: "retrying (attempt 2 of 3) after: worker pod velero/<name>: its node node-a has not been Ready for 6m0s (Kubelet stopped posting node status.)", wantEvent: ReasonWorkerRetried},
			{name: "node not Ready within the grace", node: node(corev1.ConditionFalse, t0), progress: true, wait: 4 * time.Minute, wantPhase: phaseInProgress},
			{name: "node Ready", node: node(corev1.ConditionTrue, t0), progress: true, wait: time.Hour, wantPhase: phaseInProgress},
		} {
			t.Run(k.name+"/"+tc.name, func(t *testing.T) {
				name := k.objectName()
				obj := k.object(phaseInProgress)
				m := asMovement(obj)
				m.progress().TotalBytes, m.progress().BytesDone = 100, 40
				m.setNode(nodeA)
				m.setStarted(metav1.NewTime(t0))
				if tc.attempt != "" {
					setAnnotation(obj, annAttempt, tc.attempt)
				}
				objs := []client.Object{obj, bsl(), workerPod(name, corev1.PodRunning)}
				if tc.node != nil {
					objs = append(objs, tc.node)
				}
				e := newEnv(t, nil, objs...)
				switch {
				case tc.stall < 0:
					e.cfg.StallTimeout.Duration = 0
				case tc.stall > 0:
					e.cfg.StallTimeout.Duration = tc.stall
				}
				ctx := context.Background()
				_, err := k.reconcile(ctx, e.r)
				require.NoError(t, err)
				if tc.progress { // the worker reports through its report, which the controller copies
					e.create(report(name, obj.GetUID(), map[string]string{"bytesDone": "50", "totalBytes": "100"}))
				}
				e.clock.SetTime(t0.Add(tc.wait))
				_, err = k.reconcile(ctx, e.r)
				require.NoError(t, err)

				got := k.object("")
				require.NoError(t, e.c.Get(ctx, client.ObjectKeyFromObject(obj), got))
				gm := asMovement(got)
				require.Equal(t, tc.wantPhase, gm.phase())
				require.Equal(t, strings.ReplaceAll(tc.wantMsg, "<name>", name), gm.message())
				var reasons []string
				for _, ev := range e.events() {
					reasons = append(reasons, strings.Fields(ev)[1])
				}
				if tc.wantEvent == "" {
					require.Empty(t, reasons)
				} else {
					require.Contains(t, reasons, tc.wantEvent)
					require.False(t, e.exists(ourPod(name)), "the stalled worker is deleted")
				}
			})
		}
	}
}

// Without the right to read nodes (an older install), a running worker is left alone:
// no error loop, the stall timeout still applies.
func TestStallCheckWithoutNodeAccess(t *testing.T) {
	du := inProgress()
	forbidden := &interceptor.Funcs{Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
		if _, ok := obj.(*corev1.Node); ok {
			return apierrors.NewForbidden(corev1.Resource("nodes"), key.Name, errors.New("RBAC"))
		}
		return c.Get(ctx, key, obj, opts...)
	}}
	e := newEnv(t, forbidden, du, bsl(), workerPod(duName, corev1.PodRunning))
	res := e.reconcileDU()
	require.Equal(t, movingRequeue, res.RequeueAfter)
	require.Equal(t, velerov2alpha1.DataUploadPhaseInProgress, e.du().Status.Phase)
}

// The stall check runs on every reconcile of a moving worker; the node is read from the
// API server at most every nodeCheckFor.
func TestStallCheckReadsNodesSparingly(t *testing.T) {
	gets := 0
	counting := &interceptor.Funcs{Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
		if _, ok := obj.(*corev1.Node); ok {
			gets++
		}
		return c.Get(ctx, key, obj, opts...)
	}}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeA}}
	e := newEnv(t, counting, inProgress(), bsl(), workerPod(duName, corev1.PodRunning), node)
	for range 3 {
		e.reconcileDU()
	}
	require.Equal(t, 1, gets)
	e.clock.SetTime(t0.Add(nodeCheckFor + time.Second))
	e.reconcileDU()
	require.Equal(t, 2, gets)
}
