package controller

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	"github.com/vmware-tanzu/velero/pkg/label"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/naming"
)

func deleteRequest(data map[string]string) *corev1.ConfigMap {
	d := map[string]string{
		naming.DeleteRequestBackupKey: "backup-1",
		naming.DeleteRequestBSLKey:    "default",
		naming.DeleteRequestNSKey:     appNS,
		naming.DeleteRequestPVCKey:    "data",
		naming.DeleteRequestSnapKey:   "k0123",
	}
	for k, v := range data {
		if v == "-" {
			delete(d, k)
			continue
		}
		d[k] = v
	}
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: veleroNS, Name: "req-1",
			Labels:            map[string]string{naming.DeleteRequestLabel: "true"},
			CreationTimestamp: metav1.Time{Time: t0},
		},
		Data: d,
	}
}

func TestDeleteRequests(t *testing.T) {
	tests := []struct {
		name        string
		data        map[string]string
		noBSL       bool
		backup      *velerov1.Backup
		deleteErr   error
		age         time.Duration
		wantPhase   string
		wantMessage string
		wantErr     bool
		wantGone    bool
		wantCalls   []string
	}{
		{name: "deleted", wantPhase: naming.DeleteRequestCompleted, wantCalls: []string{"default/app/k0123"}},
		{name: "no snapshot ID", data: map[string]string{naming.DeleteRequestSnapKey: "-"}, wantPhase: naming.DeleteRequestCompleted, wantMessage: "no snapshot to delete"},
		// A canceled or failed upload: no snapshot ID, but the backup's UID names what it wrote.
		{name: "no snapshot ID, backup UID", data: map[string]string{naming.DeleteRequestSnapKey: "-", naming.DeleteRequestBackupUIDKey: "uid-1"},
			wantPhase: naming.DeleteRequestCompleted, wantCalls: []string{"default/app/"}},
		// A request for a backup that is not being deleted was not made by Velero's deletion.
		{name: "live backup refused", backup: liveBackup("backup-1", "uid-1", velerov1.BackupPhaseCompleted),
			wantPhase: naming.DeleteRequestFailed, wantMessage: "refusing to delete snapshots of backup backup-1: it exists and is not being deleted (phase Completed)"},
		{name: "backup being deleted", backup: liveBackup("backup-1", "uid-1", velerov1.BackupPhaseDeleting),
			wantPhase: naming.DeleteRequestCompleted, wantCalls: []string{"default/app/k0123"}},
		{name: "a later backup of the same name", data: map[string]string{naming.DeleteRequestBackupUIDKey: "uid-0"}, backup: liveBackup("backup-1", "uid-1", velerov1.BackupPhaseCompleted),
			wantPhase: naming.DeleteRequestCompleted, wantCalls: []string{"default/app/k0123"}},
		{name: "BSL missing", noBSL: true, wantPhase: naming.DeleteRequestFailed, wantMessage: "BackupStorageLocation velero/default does not exist"},
		{name: "permanent repository error", deleteErr: datapath.Permanent(ReasonRepositoryError, errString("wrong repository password for s3://bucket/velero/kopia/app/")),
			wantPhase: naming.DeleteRequestFailed, wantMessage: "wrong repository password for s3://bucket/velero/kopia/app/", wantCalls: []string{"default/app/k0123"}},
		// The repository refuses a snapshot of another backup or volume: recorded, never retried.
		{name: "snapshot of another backup refused", deleteErr: datapath.Permanent("", errString(`refusing to delete snapshot k0123: its tag velero.io/backup-name is "other"`)),
			wantPhase: naming.DeleteRequestFailed, wantMessage: `refusing to delete snapshot k0123: its tag velero.io/backup-name is "other"`, wantCalls: []string{"default/app/k0123"}},
		{name: "transient error is retried", deleteErr: errString("connection reset"), wantErr: true, wantCalls: []string{"default/app/k0123"}},
		// Velero deleted the backup long ago; the store was down all along: still retried.
		{name: "transient error is retried whatever the age", deleteErr: errString("connection reset"), age: 72 * time.Hour,
			wantErr: true, wantCalls: []string{"default/app/k0123"}},
		{name: "answered, kept while the plugin may wait", data: map[string]string{naming.DeleteRequestPhaseKey: naming.DeleteRequestCompleted, deleteRequestAnsweredKey: t0.Format(time.RFC3339)},
			age: naming.DeleteRequestWait, wantPhase: naming.DeleteRequestCompleted},
		{name: "answered, expired", data: map[string]string{naming.DeleteRequestPhaseKey: naming.DeleteRequestCompleted, deleteRequestAnsweredKey: t0.Format(time.RFC3339)},
			age: naming.DeleteRequestWait + completedRequestGrace, wantGone: true},
		// The mover was down while Velero deleted the backup: no plugin waits any more, so
		// the request goes as soon as the snapshot is forgotten.
		{name: "deleted long after the plugin gave up", age: time.Hour, wantGone: true, wantCalls: []string{"default/app/k0123"}},
		{name: "failed, kept a day", data: map[string]string{naming.DeleteRequestPhaseKey: naming.DeleteRequestFailed, naming.DeleteRequestMessageKey: "x", deleteRequestAnsweredKey: t0.Format(time.RFC3339)},
			age: 23 * time.Hour, wantPhase: naming.DeleteRequestFailed, wantMessage: "x"},
		{name: "failed, expired", data: map[string]string{naming.DeleteRequestPhaseKey: naming.DeleteRequestFailed, deleteRequestAnsweredKey: t0.Format(time.RFC3339)},
			age: 25 * time.Hour, wantGone: true},
		{name: "not a request", data: map[string]string{}, wantPhase: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cm := deleteRequest(tc.data)
			if tc.name == "not a request" {
				cm.Labels = nil
			}
			objs := []client.Object{cm}
			if tc.backup != nil {
				objs = append(objs, tc.backup)
			}
			if !tc.noBSL {
				objs = append(objs, bsl())
			}
			e := newEnv(t, nil, objs...)
			e.repos.deleteErr = tc.deleteErr
			e.clock.SetTime(t0.Add(tc.age))
			_, err := e.r.deleteRequests().Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: veleroNS, Name: "req-1"}})
			if tc.wantErr {
				require.Error(t, err)
			} else {
				require.NoError(t, err)
			}
			require.Equal(t, tc.wantCalls, e.repos.deleted)
			got := &corev1.ConfigMap{}
			if tc.wantGone {
				require.True(t, apierrors.IsNotFound(e.c.Get(context.Background(), client.ObjectKeyFromObject(cm), got)))
				return
			}
			require.NoError(t, e.c.Get(context.Background(), client.ObjectKeyFromObject(cm), got))
			require.Equal(t, tc.wantPhase, got.Data[naming.DeleteRequestPhaseKey])
			require.Equal(t, tc.wantMessage, got.Data[naming.DeleteRequestMessageKey])
			if tc.wantPhase == naming.DeleteRequestFailed && tc.data[naming.DeleteRequestPhaseKey] == "" {
				e.requireEvent(ReasonSnapshotDeleteFailed)
			}
			if tc.wantPhase != "" && tc.data[naming.DeleteRequestPhaseKey] == "" {
				require.NotEmpty(t, got.Data[deleteRequestAnsweredKey], "answer time recorded")
			}
		})
	}
	require.True(t, isDeleteRequest(deleteRequest(nil)))
}

func liveBackup(name, uid string, phase velerov1.BackupPhase) *velerov1.Backup {
	b := &velerov1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: veleroNS, Name: name, UID: types.UID(uid)}}
	b.Status.Phase = phase
	return b
}

// The repository is asked to forget the snapshot only for the request's backup and
// volume, the backup's name in the label-safe form the worker tags with.
func TestDeleteRequestNamesOwner(t *testing.T) {
	long := strings.Repeat("b", 70)
	for _, tc := range []struct {
		backup string
		want   datapath.SnapshotOwner
	}{
		{backup: "backup-1", want: datapath.SnapshotOwner{Namespace: appNS, PVC: "data", Backup: "backup-1"}},
		{backup: long, want: datapath.SnapshotOwner{Namespace: appNS, PVC: "data", Backup: label.GetValidName(long)}},
	} {
		e := newEnv(t, nil, deleteRequest(map[string]string{naming.DeleteRequestBackupKey: tc.backup}), bsl())
		_, err := e.r.deleteRequests().Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: veleroNS, Name: "req-1"}})
		require.NoError(t, err)
		require.Equal(t, []datapath.SnapshotOwner{tc.want}, e.repos.owners)
	}
}
