package controller

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/naming"
)

// An upload that ends canceled or failed forgets the checkpoints its backup wrote of the
// volume once its worker is gone, best effort (issue #21 item 4).
func TestUploadWithoutSnapshotForgetsCheckpoints(t *testing.T) {
	owner := datapath.SnapshotOwner{Namespace: appNS, PVC: "data", Backup: "backup-1", BackupUID: "uid-1"}
	tests := []struct {
		name        string
		fail        bool // the worker fails instead of the upload being canceled
		noUID       bool
		stopping    bool // the worker pod takes its time to stop
		deleteErr   error
		later       time.Duration // the second pass, this long after the end
		wantOwners  int           // calls after the first pass
		wantHeld    bool          // our finalizer is kept after the first pass
		wantOwners2 int           // calls after the second pass
	}{
		{name: "canceled", wantOwners: 1},
		{name: "failed", fail: true, wantOwners: 1},
		{name: "not a backup's upload", noUID: true},
		{name: "worker still stopping", stopping: true, wantHeld: true, wantOwners2: 1},
		{name: "store down: retried", deleteErr: errString("connection reset"), wantOwners: 1, wantHeld: true, later: time.Second, wantOwners2: 2},
		{name: "store down: given up after the bound", deleteErr: errString("connection reset"), wantOwners: 1, wantHeld: true, later: forgetCheckpointsBound, wantOwners2: 2},
		{name: "permanent error: given up", deleteErr: datapath.Permanent("", errString("wrong password")), wantOwners: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			du := inProgress()
			du.Labels = map[string]string{velerov1.BackupNameLabel: "backup-1", velerov1.BackupUIDLabel: "uid-1"}
			if tc.noUID {
				delete(du.Labels, velerov1.BackupUIDLabel)
			}
			pod := workerPod(duName, corev1.PodRunning)
			if tc.fail {
				pod = terminated(workerPod(duName, corev1.PodFailed), "Error", "backing up /data: open /data/x: permission denied", 1)
			} else {
				du.Spec.Cancel = true
				du.Status.Phase = velerov2alpha1.DataUploadPhaseCanceling
			}
			if tc.stopping {
				pod.Finalizers = []string{"test/stopping"}
			}
			e := newEnv(t, nil, append(backupFixtures(du), pod)...)
			e.repos.deleteErr = tc.deleteErr
			e.reconcileDU()
			got := e.du()
			want := velerov2alpha1.DataUploadPhaseCanceled
			if tc.fail {
				want = velerov2alpha1.DataUploadPhaseFailed
			}
			require.Equal(t, want, got.Status.Phase, "the end is not held back")
			require.Len(t, e.repos.owners, tc.wantOwners)
			for _, o := range e.repos.owners {
				require.Equal(t, owner, o)
			}
			for _, d := range e.repos.deleted {
				require.Equal(t, "default/app/", d, "no snapshot ID: the backup's checkpoints")
			}
			require.Equal(t, tc.wantHeld, slices.Contains(got.Finalizers, naming.MoverFinalizer))
			if !tc.wantHeld {
				return
			}
			if tc.stopping {
				require.True(t, e.exists(pod), "a stopping pod is waited for")
				require.NoError(t, e.c.Get(context.Background(), client.ObjectKeyFromObject(pod), pod))
				pod.Finalizers = nil
				require.NoError(t, e.c.Update(context.Background(), pod)) // the pod is gone now
			}
			e.clock.SetTime(got.Status.CompletionTimestamp.Add(tc.later))
			e.reconcileDU()
			require.Len(t, e.repos.owners, tc.wantOwners2)
			held := tc.deleteErr != nil && !tc.stopping && tc.later < forgetCheckpointsBound
			require.Equal(t, held, slices.Contains(e.du().Finalizers, naming.MoverFinalizer))
		})
	}
}
