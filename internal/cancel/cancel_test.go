package cancel

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	"github.com/vmware-tanzu/velero/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/snapmove/snapmove/internal/testkit"
)

func du(name, pvc string, phase velerov2alpha1.DataUploadPhase) *velerov2alpha1.DataUpload {
	return builder.ForDataUpload("velero", name).Labels(map[string]string{velerov1.BackupNameLabel: "nightly"}).
		SourceNamespace("app").SourcePVC(pvc).Phase(phase).Result()
}

func TestRequest(t *testing.T) {
	backup := builder.ForBackup("velero", "nightly").Phase(velerov1.BackupPhaseWaitingForPluginOperations).Result()
	other := builder.ForDataUpload("velero", "other-1").Labels(map[string]string{velerov1.BackupNameLabel: "other"}).
		Phase(velerov2alpha1.DataUploadPhaseInProgress).Result()
	for _, tc := range []struct {
		name      string
		mover     bool // a mover ends what is canceled
		timeout   time.Duration
		wantEnded bool
	}{
		{name: "no wait", timeout: 0},
		{name: "the mover ends them", mover: true, timeout: 10 * time.Second, wantEnded: true},
		{name: "no mover: the wait ends, the requests stay", timeout: 1500 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := fake.NewClientBuilder().WithScheme(testkit.Scheme(t)).WithObjects(backup, other,
				du("nightly-a", "data", velerov2alpha1.DataUploadPhaseInProgress),
				du("nightly-b", "logs", velerov2alpha1.DataUploadPhaseCompleted),
				du("nightly-c", "cache", ""),
			).WithInterceptorFuncs(interceptor.Funcs{
				Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
					if err := c.Patch(ctx, obj, patch, opts...); err != nil || !tc.mover {
						return err
					}
					d := obj.(*velerov2alpha1.DataUpload)
					d.Status.Phase, d.Status.Message = velerov2alpha1.DataUploadPhaseCanceled, "canceled while moving data"
					return c.Update(ctx, d)
				},
			}).Build()
			var passes []int // ended movements, at each look while waiting
			res, err := Request(context.Background(), c, "velero", Backup, "nightly", tc.timeout, func(r *Result) { passes = append(passes, r.Ended()) })
			require.NoError(t, err)
			require.Equal(t, tc.wantEnded, res.AllEnded)
			switch {
			case tc.timeout == 0:
				require.Empty(t, passes, "no wait, no progress")
			case tc.mover:
				require.Equal(t, []int{3}, passes, "all ended at the first look")
			default:
				require.NotEmpty(t, passes)
				require.Equal(t, 1, passes[len(passes)-1], "only the completed one has ended")
			}
			require.Equal(t, string(velerov1.BackupPhaseWaitingForPluginOperations), res.VeleroPhase)
			byName := map[string]Movement{}
			for _, m := range res.Movements {
				byName[m.Name] = m
			}
			require.Len(t, byName, 3, "only the backup's own movements")
			require.True(t, byName["nightly-a"].Asked)
			require.True(t, byName["nightly-c"].Asked, "a New movement is canceled before it starts")
			require.False(t, byName["nightly-b"].Asked, "an ended movement is never touched")
			require.Equal(t, "app/data", byName["nightly-a"].Volume)
			require.Equal(t, "InProgress", byName["nightly-a"].Before)
			for _, n := range []string{"nightly-a", "nightly-c"} {
				got := &velerov2alpha1.DataUpload{}
				require.NoError(t, c.Get(context.Background(), client.ObjectKey{Namespace: "velero", Name: n}, got))
				require.True(t, got.Spec.Cancel)
			}
			untouched := &velerov2alpha1.DataUpload{}
			require.NoError(t, c.Get(context.Background(), client.ObjectKey{Namespace: "velero", Name: "other-1"}, untouched))
			require.False(t, untouched.Spec.Cancel, "another backup's movement")
			if tc.mover {
				require.Equal(t, "Canceled", byName["nightly-a"].Phase)
			}
		})
	}
}

func TestRequestUnknownBackup(t *testing.T) {
	c := fake.NewClientBuilder().WithScheme(testkit.Scheme(t)).Build()
	_, err := Request(context.Background(), c, "velero", Restore, "nope", 0)
	require.ErrorContains(t, err, `getting restore velero/nope: restores.velero.io "nope" not found`)
}
