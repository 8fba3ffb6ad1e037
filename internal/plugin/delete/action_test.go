package delete

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pkg/errors"
	logtest "github.com/sirupsen/logrus/hooks/test"
	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	"github.com/vmware-tanzu/velero/pkg/builder"
	"github.com/vmware-tanzu/velero/pkg/plugin/velero"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/snapmove/snapmove/internal/naming"
	"github.com/snapmove/snapmove/internal/testkit"
)

func dataUpload(mover, snapshotID string) *velerov2alpha1.DataUpload {
	return builder.ForDataUpload("velero", "nightly-abc12").DataMover(mover).SnapshotID(snapshotID).
		SourceNamespace("app").SourcePVC("data").BackupStorageLocation("default").Phase(velerov2alpha1.DataUploadPhaseCompleted).Result()
}

func TestNewDeleteRequest(t *testing.T) {
	backup := builder.ForBackup("velero", "nightly").StorageLocation("default").ObjectMeta(builder.WithUID("uid-1")).Result()
	cm := NewDeleteRequest(backup, dataUpload("snapmove", "k0123abcd"))
	require.Equal(t, "velero", cm.Namespace)
	require.Regexp(t, `^snapmove-delete-nightly-abc12-[0-9a-f]{8}$`, cm.Name)
	require.Equal(t, map[string]string{
		"snapmove.io/snapshot-delete-request": "true",
		"velero.io/backup-name":               "nightly",
		"app.kubernetes.io/managed-by":        "snapmove",
	}, cm.Labels)
	require.Equal(t, map[string]string{
		"backup": "nightly", "backupUID": "uid-1", "backupStorageLocation": "default", "sourceNamespace": "app", "sourcePVC": "data", "snapshotID": "k0123abcd",
	}, cm.Data)
	require.Equal(t, cm.Name, NewDeleteRequest(backup, dataUpload("snapmove", "k0123abcd")).Name, "deterministic")
	require.NotEqual(t, cm.Name, NewDeleteRequest(backup, dataUpload("snapmove", "kother")).Name, "one request per snapshot")
}

// mover answers the request on the n-th Get with phase (and message).
type mover struct {
	at      int32
	phase   string
	message string
}

func TestExecute(t *testing.T) {
	backup := builder.ForBackup("velero", "nightly").StorageLocation("default").ObjectMeta(builder.WithUID("uid-1")).Result()
	noUID := builder.ForBackup("velero", "nightly").StorageLocation("default").Result()
	tests := []struct {
		name       string
		du         *velerov2alpha1.DataUpload
		existing   *corev1.ConfigMap
		mover      *mover
		createErr  error
		wantErr    string
		wantNoReq  bool // no request was ever created
		wantLeft   bool // the request stays in place
		wantCreate bool
		backup     *velerov1.Backup // nil: backup
		// wantSnapshotID is the request's snapshot ID when created ("" means k1, "-" none).
		wantSnapshotID string
	}{
		{name: "another mover's DataUpload", du: dataUpload("", "k1"), wantNoReq: true},
		// A canceled or failed upload has no snapshot ID but left checkpoints tagged with
		// the backup: the mover forgets them by the backup's UID (issue #21 item 4).
		{name: "no snapshot ID", du: dataUpload("snapmove", ""), mover: &mover{at: 2, phase: naming.DeleteRequestCompleted}, wantCreate: true, wantSnapshotID: "-"},
		{name: "no snapshot ID, backup without UID", du: dataUpload("snapmove", ""), backup: noUID, wantNoReq: true},
		{name: "mover completes", du: dataUpload("snapmove", "k1"), mover: &mover{at: 3, phase: naming.DeleteRequestCompleted}, wantCreate: true},
		{
			name: "mover fails", du: dataUpload("snapmove", "k1"),
			mover:      &mover{at: 2, phase: naming.DeleteRequestFailed, message: "repository is read-only"},
			wantErr:    `the snapmove mover could not delete the snapshots of PVC app/data \(snapshot ID "k1"\): repository is read-only`,
			wantCreate: true,
		},
		{
			name: "mover not running", du: dataUpload("snapmove", "k1"),
			wantErr:    `^the snapmove mover did not process snapshot delete request velero/snapmove-delete-nightly-abc12-[0-9a-f]{8} within 30ms: is the mover controller running\?`,
			wantLeft:   true,
			wantCreate: true,
		},
		{
			name: "request from an earlier attempt already completed",
			du:   dataUpload("snapmove", "k1"),
			existing: func() *corev1.ConfigMap {
				cm := NewDeleteRequest(backup, dataUpload("snapmove", "k1"))
				cm.Data[naming.DeleteRequestPhaseKey] = naming.DeleteRequestCompleted
				return cm
			}(),
		},
		{name: "create fails", du: dataUpload("snapmove", "k1"), createErr: errors.New("forbidden"), wantErr: "creating snapshot delete request for DataUpload nightly-abc12: forbidden"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var gets atomic.Int32
			var created *corev1.ConfigMap
			b := fake.NewClientBuilder().WithScheme(testkit.Scheme(t)).WithInterceptorFuncs(interceptor.Funcs{
				Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
					if tt.createErr != nil {
						return tt.createErr
					}
					if err := c.Create(ctx, obj, opts...); err != nil {
						return err
					}
					created = obj.(*corev1.ConfigMap).DeepCopy()
					return nil
				},
				Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
					if cm, ok := obj.(*corev1.ConfigMap); ok && tt.mover != nil && gets.Add(1) == tt.mover.at {
						if err := c.Get(ctx, key, cm); err == nil {
							cm.Data[naming.DeleteRequestPhaseKey] = tt.mover.phase
							cm.Data[naming.DeleteRequestMessageKey] = tt.mover.message
							_ = c.Update(ctx, cm)
						}
					}
					return c.Get(ctx, key, obj, opts...)
				},
			})
			if tt.existing != nil {
				b = b.WithObjects(tt.existing)
			}
			c := b.Build()
			logger, _ := logtest.NewNullLogger()
			a := NewAction(c, logger, Options{Timeout: 30 * time.Millisecond, Interval: time.Millisecond})
			m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(tt.du)
			require.NoError(t, err)

			in := backup
			if tt.backup != nil {
				in = tt.backup
			}
			err = a.Execute(&velero.DeleteItemActionExecuteInput{Item: &unstructured.Unstructured{Object: m}, Backup: in})

			if tt.wantErr != "" {
				require.Error(t, err)
				require.Regexp(t, tt.wantErr, err.Error())
			} else {
				require.NoError(t, err)
			}
			if tt.wantCreate {
				require.NotNil(t, created)
				want := map[string]string{"": "k1", "-": ""}[tt.wantSnapshotID]
				require.Equal(t, want, created.Data[naming.DeleteRequestSnapKey])
				require.Equal(t, "uid-1", created.Data[naming.DeleteRequestBackupUIDKey])
				require.Equal(t, "true", created.Labels[naming.DeleteRequestLabel])
			}
			if tt.wantNoReq {
				require.Nil(t, created)
			}
			left := &corev1.ConfigMapList{}
			require.NoError(t, c.List(context.Background(), left))
			if tt.wantLeft {
				require.Len(t, left.Items, 1, "an unprocessed request stays for the mover")
			} else {
				require.Empty(t, left.Items, "a processed request is removed")
			}
		})
	}
}
