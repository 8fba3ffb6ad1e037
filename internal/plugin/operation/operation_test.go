package operation

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/vmware-tanzu/velero/pkg/apis/velero/shared"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	"github.com/vmware-tanzu/velero/pkg/builder"
	"github.com/vmware-tanzu/velero/pkg/plugin/velero"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/snapmove/snapmove/internal/testkit"
)

var (
	started   = metav1.NewTime(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC))
	completed = metav1.NewTime(time.Date(2025, 1, 2, 3, 9, 5, 0, time.UTC))
	bytes     = shared.DataMoveOperationProgress{BytesDone: 40, TotalBytes: 100}
)

func TestProgress(t *testing.T) {
	tests := []struct {
		name  string
		phase string
		msg   string
		want  velero.OperationProgress
	}{
		{name: "empty phase is not started", phase: "", want: velero.OperationProgress{}},
		{name: "New is not started", phase: "New", want: velero.OperationProgress{}},
		{name: "New with a queue message", phase: "New", msg: "waiting for a worker slot", want: velero.OperationProgress{Description: "New: waiting for a worker slot"}},
		{
			name: "Prepared with a diagnostic", phase: "Prepared", msg: "pod pending: 0/3 nodes available",
			want: velero.OperationProgress{Description: "Prepared: pod pending: 0/3 nodes available", OperationUnits: "Bytes", NCompleted: 40, NTotal: 100, Started: started.Time, Updated: completed.Time},
		},
		{
			name: "InProgress", phase: "InProgress",
			want: velero.OperationProgress{Description: "InProgress", OperationUnits: "Bytes", NCompleted: 40, NTotal: 100, Started: started.Time, Updated: completed.Time},
		},
		{
			name: "Completed", phase: "Completed",
			want: velero.OperationProgress{Completed: true, Description: "Completed", OperationUnits: "Bytes", NCompleted: 40, NTotal: 100, Started: started.Time, Updated: completed.Time},
		},
		{
			name: "Failed", phase: "Failed", msg: "kopia: access denied",
			want: velero.OperationProgress{Completed: true, Err: "kopia: access denied", Description: "Failed", OperationUnits: "Bytes", NCompleted: 40, NTotal: 100, Started: started.Time, Updated: completed.Time},
		},
		{
			name: "Failed without a message is still an error", phase: "Failed",
			want: velero.OperationProgress{Completed: true, Err: "%s failed without a message", Description: "Failed", OperationUnits: "Bytes", NCompleted: 40, NTotal: 100, Started: started.Time, Updated: completed.Time},
		},
		{
			name: "Canceled", phase: "Canceled",
			want: velero.OperationProgress{Completed: true, Err: "%s is canceled", Description: "Canceled", OperationUnits: "Bytes", NCompleted: 40, NTotal: 100, Started: started.Time, Updated: completed.Time},
		},
	}
	for _, tt := range tests {
		for _, kind := range []string{"DataUpload", "DataDownload"} {
			t.Run(kind+"/"+tt.name, func(t *testing.T) {
				var got velero.OperationProgress
				if kind == "DataUpload" {
					du := builder.ForDataUpload("velero", "du").Phase(velerov2alpha1.DataUploadPhase(tt.phase)).Message(tt.msg).
						Progress(bytes).StartTimestamp(&started).CompletionTimestamp(&completed).Result()
					got = UploadProgress(du)
				} else {
					dd := builder.ForDataDownload("velero", "dd").Phase(velerov2alpha1.DataDownloadPhase(tt.phase)).Message(tt.msg).
						Progress(bytes).StartTimestamp(&started).CompletionTimestamp(&completed).Result()
					got = DownloadProgress(dd)
				}
				want := tt.want
				if want.Err != "" && want.Err[0] == '%' {
					want.Err = kind + want.Err[2:]
				}
				require.Equal(t, want, got)
			})
		}
	}
}

func TestFindAndCancel(t *testing.T) {
	labelled := func(name, ns, id string) client.Object {
		return builder.ForDataUpload(ns, name).Labels(map[string]string{velerov1.AsyncOperationIDLabel: id}).Result()
	}
	tests := []struct {
		name    string
		objects []client.Object
		want    string
		wantErr string
	}{
		{name: "one", objects: []client.Object{labelled("a", "velero", "du-1"), labelled("b", "velero", "du-2")}, want: "a"},
		{name: "none", objects: []client.Object{labelled("a", "other", "du-1")}, wantErr: "no DataUpload labelled velero.io/async-operation-id=du-1 in namespace velero"},
		{
			name:    "two",
			objects: []client.Object{labelled("a", "velero", "du-1"), labelled("b", "velero", "du-1")},
			wantErr: "2 DataUploads labelled velero.io/async-operation-id=du-1 in namespace velero (a, b): expected one",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := fake.NewClientBuilder().WithScheme(testkit.Scheme(t)).WithObjects(tt.objects...).Build()
			du, err := FindDataUpload(context.Background(), c, "velero", "du-1")
			if tt.wantErr != "" {
				require.EqualError(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, du.Name)

			require.NoError(t, CancelDataUpload(context.Background(), c, du))
			got := &velerov2alpha1.DataUpload{}
			require.NoError(t, c.Get(context.Background(), client.ObjectKeyFromObject(du), got))
			require.True(t, got.Spec.Cancel)
		})
	}

	dd := builder.ForDataDownload("velero", "dd").Labels(map[string]string{velerov1.AsyncOperationIDLabel: "dd-1"}).Result()
	c := fake.NewClientBuilder().WithScheme(testkit.Scheme(t)).WithObjects(dd).Build()
	found, err := FindDataDownload(context.Background(), c, "velero", "dd-1")
	require.NoError(t, err)
	require.NoError(t, CancelDataDownload(context.Background(), c, found))
	got := &velerov2alpha1.DataDownload{}
	require.NoError(t, c.Get(context.Background(), client.ObjectKeyFromObject(dd), got))
	require.True(t, got.Spec.Cancel)
	_, err = FindDataDownload(context.Background(), c, "velero", "dd-2")
	require.EqualError(t, err, "no DataDownload labelled velero.io/async-operation-id=dd-2 in namespace velero")
}
