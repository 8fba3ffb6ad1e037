package controller

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	"sigs.k8s.io/controller-runtime/pkg/event"
)

func TestSlotFreed(t *testing.T) {
	up := func(p velerov2alpha1.DataUploadPhase) *velerov2alpha1.DataUpload { return dataUpload(p) }
	tests := []struct {
		name        string
		before, now velerov2alpha1.DataUploadPhase
		mover       string
		want        bool
	}{
		{name: "completed", before: velerov2alpha1.DataUploadPhaseInProgress, now: velerov2alpha1.DataUploadPhaseCompleted, want: true},
		{name: "failed while preparing", before: velerov2alpha1.DataUploadPhaseAccepted, now: velerov2alpha1.DataUploadPhaseFailed, want: true},
		{name: "canceling to canceled", before: velerov2alpha1.DataUploadPhaseCanceling, now: velerov2alpha1.DataUploadPhaseCanceled, want: true},
		{name: "left InProgress (canceling)", before: velerov2alpha1.DataUploadPhaseInProgress, now: velerov2alpha1.DataUploadPhaseCanceling, want: true},
		{name: "claimed", before: velerov2alpha1.DataUploadPhaseNew, now: velerov2alpha1.DataUploadPhaseAccepted},
		{name: "started", before: velerov2alpha1.DataUploadPhasePrepared, now: velerov2alpha1.DataUploadPhaseInProgress},
		{name: "progress only", before: velerov2alpha1.DataUploadPhaseInProgress, now: velerov2alpha1.DataUploadPhaseInProgress},
		{name: "another mover's", before: velerov2alpha1.DataUploadPhaseInProgress, now: velerov2alpha1.DataUploadPhaseCompleted, mover: "acme"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old, cur := up(tt.before), up(tt.now)
			if tt.mover != "" {
				old.Spec.DataMover, cur.Spec.DataMover = tt.mover, tt.mover
			}
			require.Equal(t, tt.want, slotFreed().Update(event.UpdateEvent{ObjectOld: old, ObjectNew: cur}))
		})
	}
	old, cur := up(velerov2alpha1.DataUploadPhaseInProgress), up(velerov2alpha1.DataUploadPhaseInProgress)
	cur.Annotations = map[string]string{annResultRecorded: "true"}
	require.True(t, slotFreed().Update(event.UpdateEvent{ObjectOld: old, ObjectNew: cur}), "result recorded: finishing holds no node slot")
	require.True(t, slotFreed().Delete(event.DeleteEvent{Object: up(velerov2alpha1.DataUploadPhaseInProgress)}))
	require.False(t, slotFreed().Create(event.CreateEvent{Object: up(velerov2alpha1.DataUploadPhaseNew)}))
}

func TestWaitingMovements(t *testing.T) {
	mk := func(name string, p velerov2alpha1.DataUploadPhase) *velerov2alpha1.DataUpload {
		du := dataUpload(p)
		du.Name, du.UID = name, ""
		return du
	}
	dl := dataDownload(velerov2alpha1.DataDownloadPhasePrepared)
	e := newEnv(t, nil, mk("new", velerov2alpha1.DataUploadPhaseNew), mk("unset", ""), mk("prepared", velerov2alpha1.DataUploadPhasePrepared),
		mk("moving", velerov2alpha1.DataUploadPhaseInProgress), mk("done", velerov2alpha1.DataUploadPhaseCompleted), dl)
	var names []string
	for _, r := range e.r.waitingUploads(context.Background(), nil) {
		names = append(names, r.Name)
	}
	require.ElementsMatch(t, []string{"new", "unset", "prepared"}, names)
	downs := e.r.waitingDownloads(context.Background(), nil)
	require.Len(t, downs, 1)
	require.Equal(t, dl.Name, downs[0].Name)
}
