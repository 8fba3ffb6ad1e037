package csisnapshot

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"github.com/pkg/errors"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"
	"github.com/vmware-tanzu/velero/pkg/builder"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/snapmove/snapmove/internal/testkit"
)

const driver = "hostpath.csi.k8s.io"

func request() Request {
	pvc := builder.ForPersistentVolumeClaim("app", "data").ObjectMeta(builder.WithLabels("app", "db")).Result()
	return Request{PVC: pvc, BackupName: "nightly", ClassName: "csi-snap", Driver: driver}
}

func TestNew(t *testing.T) {
	vs := New(request())
	require.Equal(t, "velero-data-", vs.GenerateName)
	require.Equal(t, "app", vs.Namespace)
	require.Equal(t, map[string]string{"app": "db", "velero.io/backup-name": "nightly"}, vs.Labels)
	require.Equal(t, "data", *vs.Spec.Source.PersistentVolumeClaimName)
	require.Equal(t, "csi-snap", *vs.Spec.VolumeSnapshotClassName)

	long := request()
	long.BackupName = "a-very-long-backup-name-that-is-longer-than-sixty-three-characters-in-total"
	require.Len(t, New(long).Labels["velero.io/backup-name"], 63, "label values are shortened like Velero's")
}

// snapshotController simulates the snapshot-controller and the csi-snapshotter sidecar: on
// the n-th Get of a VolumeSnapshot (counting from 1) it lets step mutate what the API returns
// and persist it.
type snapshotController func(n int, c client.Client, vs *snapshotv1.VolumeSnapshot)

// bindAt binds the VolumeSnapshot at the n-th look, with a content that has a handle
// unless handle is empty.
func bindAt(at int, handle string, policy snapshotv1.DeletionPolicy) snapshotController {
	return func(n int, c client.Client, vs *snapshotv1.VolumeSnapshot) {
		if n != at {
			return
		}
		vsc := builder.ForVolumeSnapshotContent("snapcontent-1").Driver(driver).DeletionPolicy(policy).Result()
		if handle != "" {
			vsc.Status = &snapshotv1.VolumeSnapshotContentStatus{SnapshotHandle: ptr.To(handle)}
		} else {
			vsc.Status = &snapshotv1.VolumeSnapshotContentStatus{Error: &snapshotv1.VolumeSnapshotError{Message: ptr.To("rpc error: driver busy")}}
		}
		_ = c.Create(context.Background(), vsc)
		vs.Status = &snapshotv1.VolumeSnapshotStatus{BoundVolumeSnapshotContentName: ptr.To(vsc.Name)}
		_ = c.Update(context.Background(), vs)
	}
}

func errorFrom(from, to int, msg string, then snapshotController) snapshotController {
	return func(n int, c client.Client, vs *snapshotv1.VolumeSnapshot) {
		switch {
		case n >= from && n < to:
			vs.Status = &snapshotv1.VolumeSnapshotStatus{Error: &snapshotv1.VolumeSnapshotError{Message: ptr.To(msg)}}
			_ = c.Update(context.Background(), vs)
		case n == to:
			vs.Status = nil
			_ = c.Update(context.Background(), vs)
		}
		if then != nil {
			then(n, c, vs)
		}
	}
}

func TestSnapshot(t *testing.T) {
	tests := []struct {
		name       string
		controller snapshotController
		createErr  error
		timeout    time.Duration
		grace      time.Duration
		wantErr    string // regexp
		wantPolicy snapshotv1.DeletionPolicy
	}{
		{name: "handle reported", controller: bindAt(3, "snap-123", snapshotv1.VolumeSnapshotContentRetain), timeout: time.Second},
		{
			name:    "never bound",
			timeout: 50 * time.Millisecond,
			wantErr: `^VolumeSnapshot app/velero-data-\w+ was not bound to a VolumeSnapshotContent within 50ms: is the snapshot-controller running\?$`,
		},
		{
			name:       "bound without handle",
			controller: bindAt(1, "", snapshotv1.VolumeSnapshotContentRetain),
			timeout:    50 * time.Millisecond,
			wantErr:    `^VolumeSnapshot app/velero-data-\w+ is bound to VolumeSnapshotContent snapcontent-1, but the csi-snapshotter sidecar of driver hostpath.csi.k8s.io did not report a snapshot handle within 50ms: is it running\? Last error: rpc error: driver busy$`,
			wantPolicy: snapshotv1.VolumeSnapshotContentDelete,
		},
		{
			name:       "persistent VolumeSnapshot error",
			controller: errorFrom(2, 1000, "Failed to check and update snapshot content: bad parameters", nil),
			timeout:    time.Second,
			grace:      30 * time.Millisecond,
			wantErr:    `^VolumeSnapshot app/velero-data-\w+ failed: Failed to check and update snapshot content: bad parameters$`,
		},
		{
			name:       "transient VolumeSnapshot error clears",
			controller: errorFrom(1, 3, "transient", bindAt(4, "snap-9", snapshotv1.VolumeSnapshotContentDelete)),
			timeout:    time.Second,
			grace:      time.Second,
		},
		{
			name:      "create fails",
			createErr: apierrors.NewForbidden(snapshotv1.Resource("volumesnapshots"), "", errors.New("denied")),
			timeout:   time.Second,
			wantErr:   `^creating VolumeSnapshot for PVC app/data: volumesnapshots.snapshot.storage.k8s.io is forbidden: denied$`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var gets atomic.Int32
			c := fake.NewClientBuilder().WithScheme(testkit.Scheme(t)).WithInterceptorFuncs(interceptor.Funcs{
				Create: func(ctx context.Context, cl client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
					if _, ok := obj.(*snapshotv1.VolumeSnapshot); ok && tt.createErr != nil {
						return tt.createErr
					}
					return cl.Create(ctx, obj, opts...)
				},
				Get: func(ctx context.Context, cl client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
					if vs, ok := obj.(*snapshotv1.VolumeSnapshot); ok && tt.controller != nil {
						if err := cl.Get(ctx, key, vs); err == nil {
							tt.controller(int(gets.Add(1)), cl, vs)
						}
					}
					return cl.Get(ctx, key, obj, opts...)
				},
			}).Build()
			s := &Snapshotter{Client: c, Log: logrus.New(), Interval: 5 * time.Millisecond, ErrorGrace: tt.grace}

			vs, vsc, err := s.Snapshot(context.Background(), request(), tt.timeout)

			var left snapshotv1.VolumeSnapshotList
			require.NoError(t, c.List(context.Background(), &left))
			if tt.wantErr != "" {
				require.Error(t, err)
				require.Regexp(t, tt.wantErr, err.Error())
				require.Empty(t, left.Items, "a failed snapshot leaves no VolumeSnapshot behind")
				if tt.wantPolicy != "" {
					got := &snapshotv1.VolumeSnapshotContent{}
					require.NoError(t, c.Get(context.Background(), client.ObjectKey{Name: "snapcontent-1"}, got))
					require.Equal(t, tt.wantPolicy, got.Spec.DeletionPolicy, "the storage snapshot is deleted with it")
				}
				return
			}
			require.NoError(t, err)
			require.Len(t, left.Items, 1)
			require.Equal(t, left.Items[0].Name, vs.Name)
			require.Equal(t, "snapcontent-1", vsc.Name)
			require.NotEmpty(t, *vsc.Status.SnapshotHandle)
		})
	}
}

func TestCleanup(t *testing.T) {
	vs := builder.ForVolumeSnapshot("app", "vs1").Status().BoundVolumeSnapshotContentName("vsc1").Result()
	vsc := builder.ForVolumeSnapshotContent("vsc1").DeletionPolicy(snapshotv1.VolumeSnapshotContentRetain).Result()
	c := fake.NewClientBuilder().WithScheme(testkit.Scheme(t)).WithObjects(vs, vsc).Build()
	s := &Snapshotter{Client: c, Log: logrus.New()}

	require.NoError(t, s.Cleanup(context.Background(), vs))
	require.True(t, apierrors.IsNotFound(c.Get(context.Background(), client.ObjectKeyFromObject(vs), &snapshotv1.VolumeSnapshot{})))
	got := &snapshotv1.VolumeSnapshotContent{}
	require.NoError(t, c.Get(context.Background(), client.ObjectKey{Name: "vsc1"}, got))
	require.Equal(t, snapshotv1.VolumeSnapshotContentDelete, got.Spec.DeletionPolicy)

	require.NoError(t, s.Cleanup(context.Background(), vs), "already gone is fine")
}
