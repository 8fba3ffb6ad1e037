package handover

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/snapmove/snapmove/internal/naming"
	"github.com/snapmove/snapmove/internal/testkit"
)

func dd(name, mover string, phase velerov2alpha1.DataDownloadPhase, cancel bool) *velerov2alpha1.DataDownload {
	return &velerov2alpha1.DataDownload{
		ObjectMeta: metav1.ObjectMeta{Namespace: "velero", Name: name, Labels: map[string]string{velerov1.RestoreNameLabel: "r1"}},
		Spec: velerov2alpha1.DataDownloadSpec{
			DataMover:    mover,
			Cancel:       cancel,
			TargetVolume: velerov2alpha1.TargetVolumeSpec{Namespace: "app", PVC: name},
		},
		Status: velerov2alpha1.DataDownloadStatus{Phase: phase},
	}
}

func TestRestore(t *testing.T) {
	conflictOn := func(name string) interceptor.Funcs {
		return interceptor.Funcs{Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
			if obj.GetName() == name {
				return apierrors.NewConflict(schema.GroupResource{Resource: "datadownloads"}, name, nil)
			}
			return c.Patch(ctx, obj, patch, opts...)
		}}
	}
	tests := []struct {
		name      string
		phase     velerov1.RestorePhase
		dds       []*velerov2alpha1.DataDownload
		funcs     interceptor.Funcs
		wantMover map[string]string
		wantDone  bool
		wantErr   string
	}{
		{
			name:  "unclaimed snapmove moves are handed over, others left",
			phase: velerov1.RestorePhaseWaitingForPluginOperations,
			dds: []*velerov2alpha1.DataDownload{
				dd("new", naming.DataMover, "", false),
				dd("new-phase", naming.DataMover, velerov2alpha1.DataDownloadPhaseNew, false),
				dd("taken", naming.DataMover, velerov2alpha1.DataDownloadPhaseAccepted, false),
				dd("canceled", naming.DataMover, "", true),
				dd("builtin", "", "", false),
				dd("other", "acme", "", false),
			},
			wantMover: map[string]string{"new": "velero", "new-phase": "velero", "taken": naming.DataMover, "canceled": naming.DataMover, "builtin": "", "other": "acme"},
			wantDone:  true,
		},
		{
			name:      "a conflict (the mover took it meanwhile) leaves it",
			phase:     velerov1.RestorePhaseCompleted,
			dds:       []*velerov2alpha1.DataDownload{dd("raced", naming.DataMover, "", false), dd("new", naming.DataMover, "", false)},
			funcs:     conflictOn("raced"),
			wantMover: map[string]string{"raced": naming.DataMover, "new": "velero"},
			wantDone:  true,
		},
		{
			name:      "still restoring items: handed over, not complete within the wait",
			phase:     velerov1.RestorePhaseInProgress,
			dds:       []*velerov2alpha1.DataDownload{dd("new", naming.DataMover, "", false)},
			wantMover: map[string]string{"new": "velero"},
		},
		{
			name: "a patch error other than a conflict is returned",
			dds:  []*velerov2alpha1.DataDownload{dd("new", naming.DataMover, "", false)},
			funcs: interceptor.Funcs{Patch: func(context.Context, client.WithWatch, client.Object, client.Patch, ...client.PatchOption) error {
				return apierrors.NewForbidden(schema.GroupResource{Resource: "datadownloads"}, "new", nil)
			}},
			phase:   velerov1.RestorePhaseCompleted,
			wantErr: "handing DataDownload velero/new to Velero's data mover",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs := []client.Object{&velerov1.Restore{ObjectMeta: metav1.ObjectMeta{Namespace: "velero", Name: "r1"}, Status: velerov1.RestoreStatus{Phase: tt.phase}}}
			for _, d := range tt.dds {
				objs = append(objs, d)
			}
			c := fake.NewClientBuilder().WithScheme(testkit.Scheme(t)).WithObjects(objs...).WithInterceptorFuncs(tt.funcs).Build()
			passes := 0
			res, err := Restore(context.Background(), c, "velero", "r1", 1500*time.Millisecond, func(*Result) { passes++ })
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.wantDone, res.Complete)
			require.NotZero(t, passes, "each pass is reported")
			for name, want := range tt.wantMover {
				var got velerov2alpha1.DataDownload
				require.NoError(t, c.Get(context.Background(), client.ObjectKey{Namespace: "velero", Name: name}, &got))
				require.Equal(t, want, got.Spec.DataMover, name)
			}
			handed := 0
			for _, m := range res.Movements {
				if m.HandedOver {
					handed++
					require.Empty(t, m.Reason, m.Name)
				} else {
					require.NotEmpty(t, m.Reason, m.Name)
				}
			}
			require.Equal(t, handed, res.HandedOver())
			require.Len(t, res.Movements, len(tt.dds))
		})
	}
}

func TestRestoreNotFound(t *testing.T) {
	c := fake.NewClientBuilder().WithScheme(testkit.Scheme(t)).Build()
	_, err := Restore(context.Background(), c, "velero", "nope", time.Second)
	require.ErrorContains(t, err, "getting restore velero/nope")
}
