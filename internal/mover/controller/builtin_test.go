package controller

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/naming"
)

// DataUploads of Velero's built-in mover ("" or "velero"): node-agent's when it runs;
// served by snapmove only when asked (serveVeleroDataMover) and node-agent does not run;
// otherwise, after a minute, the object says why nothing moves it (with an Event), so the
// seed's configuration without node-agent never waits silently for Velero's 4 hours.
func TestBuiltInDataMover(t *testing.T) {
	nodeAgent := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: veleroNS, Name: NodeAgentDaemonSet}}
	for _, tc := range []struct {
		name      string
		mover     string
		phase     velerov2alpha1.DataUploadPhase
		claimed   bool // our finalizer (we served it before)
		serve     bool
		nodeAgent bool
		age       time.Duration
		wantPhase velerov2alpha1.DataUploadPhase
		wantMsg   string
		wantEvent bool
	}{
		{name: "young: no notice yet", mover: "velero", age: 30 * time.Second, wantPhase: velerov2alpha1.DataUploadPhaseNew},
		{name: "unserved: says why and what to change", mover: "velero", age: 61 * time.Second, wantPhase: velerov2alpha1.DataUploadPhaseNew,
			wantMsg: `no data mover serves this DataUpload: spec.datamover "velero" is Velero's built-in data mover, which runs in Velero's node-agent, and no DaemonSet velero/node-agent exists`, wantEvent: true},
		{name: "empty datamover is the built-in too", mover: "", age: 5 * time.Minute, wantPhase: velerov2alpha1.DataUploadPhaseNew, wantMsg: `spec.datamover "" is Velero's built-in`, wantEvent: true},
		{name: "node-agent runs: its own, untouched", mover: "velero", nodeAgent: true, age: time.Hour, wantPhase: velerov2alpha1.DataUploadPhaseNew},
		{name: "served when asked", mover: "velero", serve: true, wantPhase: velerov2alpha1.DataUploadPhaseAccepted},
		{name: "asked, but node-agent runs: never race it", mover: "velero", serve: true, nodeAgent: true, wantPhase: velerov2alpha1.DataUploadPhaseNew},
		{name: "claimed by node-agent: untouched", mover: "velero", serve: true, phase: velerov2alpha1.DataUploadPhaseAccepted, wantPhase: velerov2alpha1.DataUploadPhaseAccepted},
		{name: "claimed by us earlier: finished even with the setting off", mover: "velero", phase: velerov2alpha1.DataUploadPhaseAccepted, claimed: true, wantPhase: velerov2alpha1.DataUploadPhaseAccepted,
			wantMsg: "waiting: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			du := dataUpload(tc.phase)
			du.Spec.DataMover = tc.mover
			if !tc.claimed {
				du.Finalizers = nil
			}
			du.CreationTimestamp = metav1.NewTime(t0)
			objs := backupFixtures(du)
			if tc.nodeAgent {
				objs = append(objs, nodeAgent)
			}
			e := newEnv(t, nil, objs...)
			e.cfg.ServeVeleroDataMover = tc.serve
			e.clock.SetTime(t0.Add(tc.age))
			e.reconcileDU()
			got := e.du()
			require.Equal(t, tc.wantPhase, phaseOrDefault(got.Status.Phase))
			if tc.wantMsg == "" {
				require.Empty(t, got.Status.Message)
			} else {
				require.Contains(t, got.Status.Message, tc.wantMsg)
			}
			if tc.wantEvent {
				e.requireEvent(ReasonNoDataMover)
			} else {
				require.Empty(t, e.events())
			}
			require.Equal(t, tc.serve && !tc.nodeAgent && tc.phase == "" || tc.claimed, hasFinalizer(client.Object(got)), "finalizer")
			if tc.phase == "" && !tc.serve {
				require.NotContains(t, got.Finalizers, naming.MoverFinalizer, "never claimed")
			}
		})
	}
}

func phaseOrDefault(p velerov2alpha1.DataUploadPhase) velerov2alpha1.DataUploadPhase {
	if p == "" {
		return velerov2alpha1.DataUploadPhaseNew
	}
	return p
}
