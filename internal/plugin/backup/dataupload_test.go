package backup

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	"github.com/vmware-tanzu/velero/pkg/builder"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/snapmove/snapmove/internal/naming"
	"github.com/snapmove/snapmove/internal/testkit"
)

func TestNewDataUpload(t *testing.T) {
	tests := []struct {
		name   string
		backup *velerov1.Backup
		golden string
	}{
		{
			name: "full",
			backup: builder.ForBackup("velero", "nightly").ObjectMeta(builder.WithUID("backup-uid"),
				builder.WithAnnotations(naming.VerifyAnnotation, "full", naming.CompressionAnnotation, "zstd", "unrelated", "not copied")).
				StorageLocation("default").CSISnapshotTimeout(5 * time.Minute).ParallelFilesUpload(8).Result(),
			golden: "dataupload.yaml",
		},
		{
			name:   "defaults",
			backup: builder.ForBackup("velero", "a-backup-name-that-is-far-too-long-to-be-a-label-value-as-it-is-indeed").ObjectMeta(builder.WithUID("backup-uid")).Result(),
			golden: "dataupload-defaults.yaml",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pvc := builder.ForPersistentVolumeClaim("app", "data").ObjectMeta(builder.WithUID("pvc-uid")).Result()
			du := NewDataUpload(DataUploadParams{
				Backup: tt.backup, PVC: pvc, StorageClass: "csi-sc", VolumeSnapshot: "velero-data-abcde",
				SnapshotClass: "csi-snapclass", Driver: "hostpath.csi.k8s.io",
				OperationID: naming.UploadOperationID("backup-uid", "pvc-uid"),
			})
			testkit.Golden(t, "testdata/"+tt.golden, du)
		})
	}
}

func TestMarkPVC(t *testing.T) {
	pvc := builder.ForPersistentVolumeClaim("app", "data").ObjectMeta(
		builder.WithLabels("app", "db"), builder.WithAnnotations("keep", "me"),
	).StorageClass("csi-sc").Result()
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(pvc)
	require.NoError(t, err)
	m["x-unknown-field"] = "kept"
	item := &unstructured.Unstructured{Object: m}
	du := NewDataUpload(DataUploadParams{Backup: builder.ForBackup("velero", "nightly").Result(), PVC: pvc, OperationID: "op"})
	du.Name = "nightly-xyz12"

	got := MarkPVC(item, "nightly", "velero-data-abcde", du).(*unstructured.Unstructured)

	require.Equal(t, map[string]string{"app": "db", "velero.io/volume-snapshot-name": "velero-data-abcde", "velero.io/backup-name": "nightly"}, got.GetLabels())
	require.Equal(t, map[string]string{
		"keep":                           "me",
		"velero.io/volume-snapshot-name": "velero-data-abcde",
		"velero.io/data-upload-name":     "velero/nightly-xyz12",
		"backup.velero.io/must-include-additional-items": "true",
	}, got.GetAnnotations())
	require.Equal(t, "kept", got.Object["x-unknown-field"], "fields unknown to the PVC type survive")
	require.Empty(t, item.GetLabels()["velero.io/backup-name"], "the input item is not modified")
	var back corev1.PersistentVolumeClaim
	require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(got.Object, &back))
	require.Equal(t, "csi-sc", *back.Spec.StorageClassName)
}
