package restore

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/pkg/errors"
	logtest "github.com/sirupsen/logrus/hooks/test"
	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	"github.com/vmware-tanzu/velero/pkg/builder"
	"github.com/vmware-tanzu/velero/pkg/label"
	"github.com/vmware-tanzu/velero/pkg/plugin/velero"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/snapmove/snapmove/internal/naming"
	"github.com/snapmove/snapmove/internal/testkit"
)

func result(mover string) *velerov2alpha1.DataUploadResult {
	return &velerov2alpha1.DataUploadResult{
		BackupStorageLocation: "default", DataMover: mover, SnapshotID: "k1a2b3",
		SourceNamespace: "app", SnapshotSize: 1 << 30, NodeOS: velerov2alpha1.NodeOSLinux,
	}
}

func noSnapshot() *velerov2alpha1.DataUploadResult {
	r := result("snapmove")
	r.SnapshotID = ""
	return r
}

func TestNewDataDownload(t *testing.T) {
	restore := builder.ForRestore("velero", "r1").ObjectMeta(builder.WithUID("restore-uid")).Backup("nightly").Result()
	restore.Spec.UploaderConfig = &velerov1.UploaderConfigForRestore{WriteSparseFiles: ptr.To(true), ParallelFilesDownload: 4}
	backup := builder.ForBackup("velero", "nightly").CSISnapshotTimeout(7 * time.Minute).Result()
	dd := NewDataDownload(DataDownloadParams{
		Restore: restore, Backup: backup, Result: result("snapmove"), PVC: "data", TargetNamespace: "app-copy",
		OperationID: naming.DownloadOperationID("restore-uid", "pvc-uid"),
	})
	testkit.Golden(t, "testdata/datadownload.yaml", dd)

	noCfg := builder.ForRestore("velero", "r1").Result()
	dd = NewDataDownload(DataDownloadParams{Restore: noCfg, Backup: builder.ForBackup("velero", "b").Result(), Result: result("snapmove")})
	require.Nil(t, dd.Spec.DataMoverConfig)
	require.Equal(t, 10*time.Minute, dd.Spec.OperationTimeout.Duration)
}

func TestRewritePVC(t *testing.T) {
	pvc := builder.ForPersistentVolumeClaim("app", "data").VolumeName("pv-1").StorageClass("csi-sc").
		DataSource(&corev1.TypedLocalObjectReference{Kind: "VolumeSnapshot", Name: "vs"}).
		DataSourceRef(&corev1.TypedObjectReference{Kind: "VolumeSnapshot", Name: "vs"}).
		Selector(&metav1.LabelSelector{MatchLabels: map[string]string{"tier": "gold"}}).Result()
	item := toItem(t, pvc)

	got := &corev1.PersistentVolumeClaim{}
	require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(RewritePVC(item, "app.data.abcdefgh").UnstructuredContent(), got))

	require.Empty(t, got.Spec.VolumeName)
	require.Nil(t, got.Spec.DataSource)
	require.Nil(t, got.Spec.DataSourceRef)
	require.Equal(t, map[string]string{"tier": "gold", "velero.io/dynamic-pv-restore": "app.data.abcdefgh"}, got.Spec.Selector.MatchLabels)
	require.Equal(t, "csi-sc", *got.Spec.StorageClassName)
	require.Equal(t, "pv-1", item.Object["spec"].(map[string]any)["volumeName"], "the input item is not modified")

	require.Equal(t, "app-copy.data.abcdefgh", DynamicPVRestoreValue("app-copy", "data", "abcdefgh"))
	require.Len(t, DynamicPVRestoreValue("a-very-long-namespace-name-for-sure", "a-very-long-pvc-name-too-yes", "abcdefgh"), 63)
}

func toItem(t *testing.T, obj runtime.Object) *unstructured.Unstructured {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	require.NoError(t, err)
	return &unstructured.Unstructured{Object: m}
}

func resultCM(t *testing.T, ns, pvc, restoreUID string, r *velerov2alpha1.DataUploadResult) *corev1.ConfigMap {
	b, err := json.Marshal(r)
	require.NoError(t, err)
	return builder.ForConfigMap("velero", "nightly-du-"+pvc).ObjectMeta(builder.WithLabels(
		velerov1.RestoreUIDLabel, restoreUID,
		velerov1.PVCNamespaceNameLabel, label.GetValidName(ns+"."+pvc),
		velerov1.ResourceUsageLabel, string(velerov1.VeleroResourceUsageDataUploadResult),
	)).Data(restoreUID, string(b)).Result()
}

func TestExecute(t *testing.T) {
	moved := builder.WithAnnotations(velerov1.DataUploadNameAnnotation, "velero/nightly-abc")
	backedUp := func() *builder.PersistentVolumeClaimBuilder {
		return builder.ForPersistentVolumeClaim("app", "data").ObjectMeta(builder.WithUID("pvc-uid"), moved).
			StorageClass("csi-sc").VolumeName("pv-1").Phase(corev1.ClaimBound)
	}
	restoreB := func() *builder.RestoreBuilder {
		return builder.ForRestore("velero", "r1").ObjectMeta(builder.WithUID("restore-uid")).Backup("nightly")
	}
	backup := builder.ForBackup("velero", "nightly").SnapshotMoveData(true).CSISnapshotTimeout(5 * time.Minute).Result()
	opID := naming.DownloadOperationID("restore-uid", "pvc-uid")
	withSelector := func(b *builder.PersistentVolumeClaimBuilder, v string) *corev1.PersistentVolumeClaim {
		return b.Selector(&metav1.LabelSelector{MatchLabels: map[string]string{velerov1.DynamicPVRestoreLabel: v}}).Result()
	}

	tests := []struct {
		name       string
		restore    *velerov1.Restore
		item       *corev1.PersistentVolumeClaim // default: the backed-up PVC
		fromBackup *corev1.PersistentVolumeClaim
		objects    []client.Object
		createErr  error
		wantSkip   string // logged reason; item returned unchanged, no DataDownload
		wantClear  bool
		wantErr    string
		wantNS     string // DataDownload target namespace
		wantDDs    int
	}{
		{
			name:       "not moved at backup",
			fromBackup: builder.ForPersistentVolumeClaim("app", "data").Result(),
			wantSkip:   "its data was not moved at backup",
		},
		{
			name:     "Velero's built-in already created the DataDownload",
			item:     withSelector(backedUp(), "app.data.xyz12"),
			wantSkip: "already created its DataDownload (selector velero.io/dynamic-pv-restore=app.data.xyz12)",
		},
		{
			name:       "selector left from an earlier restore is not mistaken for the built-in",
			fromBackup: withSelector(backedUp(), "app.data.old00"),
			item:       withSelector(backedUp(), "app.data.old00"),
			wantNS:     "app",
			wantDDs:    1,
		},
		{
			name:     "target PVC exists (namespace mapping applied)",
			restore:  restoreB().NamespaceMappings("app", "app-copy").Result(),
			objects:  []client.Object{builder.ForPersistentVolumeClaim("app-copy", "data").Result()},
			wantSkip: "the PVC already exists in the cluster",
		},
		{
			name:      "restorePVs false",
			restore:   restoreB().RestorePVs(false).Result(),
			wantClear: true,
		},
		{
			name:     "backup did not move data",
			objects:  []client.Object{builder.ForBackup("velero", "nightly").SnapshotMoveData(false).Result()},
			wantSkip: "backup nightly did not move data",
		},
		{
			name:     "moved by another mover",
			objects:  []client.Object{backup, resultCM(t, "app", "data", "restore-uid", result(""))},
			wantSkip: `its data was moved by data mover "", not snapmove`,
		},
		{
			name:    "no DataUploadResult",
			objects: []client.Object{backup},
			wantErr: "no DataUploadResult ConfigMap for PVC app/data in restore r1",
		},
		// A PartiallyFailed backup: Velero turned the Canceled DataUpload into a result
		// without a snapshot ID. The PVC's restore fails, naming why; never an empty volume.
		{
			name: "no snapshot ID: the upload was canceled",
			objects: []client.Object{backup, resultCM(t, "app", "data", "restore-uid", noSnapshot()),
				builder.ForDataUpload("velero", "nightly-x1").Labels(map[string]string{velerov1.BackupNameLabel: "nightly"}).
					SourceNamespace("app").SourcePVC("data").Phase(velerov2alpha1.DataUploadPhaseCanceled).Message("canceled while moving data").Result()},
			wantErr: "PVC app/data of backup nightly has no data to restore: its DataUpload nightly-x1 ended Canceled (canceled while moving data); the PVC is not restored rather than restored empty",
		},
		{
			name:    "no snapshot ID, the DataUpload is gone",
			objects: []client.Object{backup, resultCM(t, "app", "data", "restore-uid", noSnapshot())},
			wantErr: "PVC app/data of backup nightly has no data to restore: its upload did not complete (the backup recorded no snapshot ID)",
		},
		{
			name:    "namespace mapping",
			restore: restoreB().NamespaceMappings("app", "app-copy").Result(),
			objects: []client.Object{builder.ForPersistentVolumeClaim("app", "data").Result()}, // the source still exists
			wantNS:  "app-copy",
			wantDDs: 1,
		},
		{
			name: "existing DataDownload of the operation is reused",
			objects: []client.Object{builder.ForDataDownload("velero", "r1-old").Labels(map[string]string{
				velerov1.AsyncOperationIDLabel: opID,
			}).Result()},
			wantNS:  "app",
			wantDDs: 1,
		},
		{
			name:      "DataDownload create fails",
			createErr: errors.New("quota exceeded"),
			wantErr:   "creating DataDownload for PVC app/data: quota exceeded",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			restore := tt.restore
			if restore == nil {
				restore = restoreB().Result()
			}
			fromBackup := tt.fromBackup
			if fromBackup == nil {
				fromBackup = backedUp().Result()
			}
			item := tt.item
			if item == nil {
				item = fromBackup.DeepCopy()
			}
			objects := tt.objects
			if !hasBackup(objects) {
				objects = append(objects, backup, resultCM(t, "app", "data", "restore-uid", result("snapmove")))
			}
			c := fake.NewClientBuilder().WithScheme(testkit.Scheme(t)).WithObjects(objects...).WithInterceptorFuncs(interceptor.Funcs{
				Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
					if tt.createErr != nil {
						return tt.createErr
					}
					return c.Create(ctx, obj, opts...)
				},
			}).Build()
			logger, hook := logtest.NewNullLogger()
			a := NewAction(c, logger, Options{})
			a.random = func() string { return "abcdefgh" }
			in := toItem(t, item)

			out, err := a.Execute(&velero.RestoreItemActionExecuteInput{Item: in, ItemFromBackup: toItem(t, fromBackup), Restore: restore})

			dds := &velerov2alpha1.DataDownloadList{}
			require.NoError(t, c.List(context.Background(), dds))
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				require.Empty(t, dds.Items)
				return
			}
			require.NoError(t, err)
			if tt.wantSkip != "" || tt.wantClear {
				require.Empty(t, out.OperationID)
				require.Empty(t, dds.Items)
				if tt.wantSkip != "" {
					require.Equal(t, in, out.UpdatedItem)
					require.Contains(t, hook.LastEntry().Message, tt.wantSkip)
					return
				}
				got := &corev1.PersistentVolumeClaim{}
				require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(out.UpdatedItem.UnstructuredContent(), got))
				require.Empty(t, got.Spec.VolumeName)
				require.Nil(t, got.Spec.Selector)
				return
			}

			require.Equal(t, opID, out.OperationID)
			require.Len(t, dds.Items, tt.wantDDs, "exactly one DataDownload per PVC")
			dd := dds.Items[0]
			if dd.Name != "r1-old" {
				require.Equal(t, velerov2alpha1.TargetVolumeSpec{PVC: "data", Namespace: tt.wantNS}, dd.Spec.TargetVolume)
				require.Equal(t, "app", dd.Spec.SourceNamespace)
				require.Equal(t, "snapmove", dd.Spec.DataMover)
				require.Equal(t, "k1a2b3", dd.Spec.SnapshotID)
				require.Equal(t, opID, dd.Labels[velerov1.AsyncOperationIDLabel])
			}
			got := &corev1.PersistentVolumeClaim{}
			require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(out.UpdatedItem.UnstructuredContent(), got))
			require.Empty(t, got.Spec.VolumeName)
			require.Equal(t, tt.wantNS+".data.abcdefgh", got.Spec.Selector.MatchLabels[velerov1.DynamicPVRestoreLabel])
			require.Equal(t, "app", got.Namespace, "Velero maps the namespace itself after the actions")
		})
	}
}

func hasBackup(objs []client.Object) bool {
	for _, o := range objs {
		if _, ok := o.(*velerov1.Backup); ok {
			return true
		}
	}
	return false
}

func TestProgressAndCancel(t *testing.T) {
	restore := builder.ForRestore("velero", "r1").Result()
	dd := builder.ForDataDownload("velero", "r1-abc").Labels(map[string]string{velerov1.AsyncOperationIDLabel: "dd-op"}).
		Phase(velerov2alpha1.DataDownloadPhaseCanceled).Result()
	c := fake.NewClientBuilder().WithScheme(testkit.Scheme(t)).WithObjects(dd).Build()
	logger, _ := logtest.NewNullLogger()
	a := NewAction(c, logger, Options{})

	p, err := a.Progress("dd-op", restore)
	require.NoError(t, err)
	require.True(t, p.Completed)
	require.Equal(t, "DataDownload is canceled", p.Err)
	_, err = a.Progress("dd-unknown", restore)
	require.EqualError(t, err, "no DataDownload labelled velero.io/async-operation-id=dd-unknown in namespace velero")
	_, err = a.Progress("", restore)
	require.Error(t, err)

	require.NoError(t, a.Cancel("dd-op", restore))
	got := &velerov2alpha1.DataDownload{}
	require.NoError(t, c.Get(context.Background(), client.ObjectKeyFromObject(dd), got))
	require.True(t, got.Spec.Cancel)

	ready, err := a.AreAdditionalItemsReady(nil, restore)
	require.NoError(t, err)
	require.True(t, ready)
}

// The backup plugin's record of why a PVC was skipped describes the backup: the restored
// PVC does not carry it, and a PVC without it is returned as it is.
func TestSkipMarkIsNotRestored(t *testing.T) {
	marked := builder.ForPersistentVolumeClaim("app", "data").
		ObjectMeta(builder.WithAnnotations(naming.SkippedAnnotation, "PV pv-1 is not a CSI volume", "keep", "me")).Result()
	item, err := runtime.DefaultUnstructuredConverter.ToUnstructured(marked)
	require.NoError(t, err)
	got := withoutSkipMark(&unstructured.Unstructured{Object: item})
	require.Equal(t, map[string]string{"keep": "me"}, (&unstructured.Unstructured{Object: got.UnstructuredContent()}).GetAnnotations())
	require.Equal(t, "PV pv-1 is not a CSI volume", marked.Annotations[naming.SkippedAnnotation], "the input is not changed")

	plain := &unstructured.Unstructured{Object: map[string]any{"metadata": map[string]any{"name": "x"}}}
	require.Same(t, plain, withoutSkipMark(plain))
}
