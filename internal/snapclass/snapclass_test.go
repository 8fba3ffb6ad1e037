package snapclass

import (
	"context"
	"testing"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"github.com/pkg/errors"
	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	"github.com/vmware-tanzu/velero/pkg/builder"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/snapmove/snapmove/internal/testkit"
)

const driver = "hostpath.csi.k8s.io"

func class(name, drv string, opts ...builder.ObjectMetaOpt) snapshotv1.VolumeSnapshotClass {
	return *builder.ForVolumeSnapshotClass(name).Driver(drv).ObjectMeta(opts...).Result()
}

func TestChoose(t *testing.T) {
	labelled := builder.WithLabels(SelectorLabel, "true")
	isDefault := builder.WithAnnotations(DefaultAnnotation, "true")
	plainPVC := builder.ForPersistentVolumeClaim("ns", "data").Result()
	pvcAnnotated := func(v string) *corev1.PersistentVolumeClaim {
		return builder.ForPersistentVolumeClaim("ns", "data").ObjectMeta(builder.WithAnnotations(PVCAnnotation, v)).Result()
	}
	plainBackup := builder.ForBackup("velero", "b1").Result()
	backupAnnotated := func(v string) *velerov1.Backup {
		return builder.ForBackup("velero", "b1").ObjectMeta(builder.WithAnnotations(BackupAnnotation(driver), v)).Result()
	}

	tests := []struct {
		name       string
		classes    []snapshotv1.VolumeSnapshotClass
		pvc        *corev1.PersistentVolumeClaim
		backup     *velerov1.Backup
		driver     string // default driver
		want       string
		wantReason string
		wantErr    string
	}{
		{
			name:       "PVC annotation wins over label",
			classes:    []snapshotv1.VolumeSnapshotClass{class("a", driver, labelled), class("b", driver)},
			pvc:        pvcAnnotated("b"),
			backup:     backupAnnotated("a"),
			want:       "b",
			wantReason: "PVC annotation velero.io/csi-volumesnapshot-class",
		},
		{
			name:    "PVC annotation names a missing class",
			classes: []snapshotv1.VolumeSnapshotClass{class("a", driver, labelled)},
			pvc:     pvcAnnotated("foo"),
			wantErr: `PVC annotation velero.io/csi-volumesnapshot-class names "foo", which does not exist`,
		},
		{
			name:    "PVC annotation names a class of another driver",
			classes: []snapshotv1.VolumeSnapshotClass{class("a", driver, labelled), class("bar", "other.csi")},
			pvc:     pvcAnnotated("bar"),
			wantErr: `PVC annotation velero.io/csi-volumesnapshot-class names "bar", whose driver is other.csi, not hostpath.csi.k8s.io`,
		},
		{
			name:       "backup annotation wins over label",
			classes:    []snapshotv1.VolumeSnapshotClass{class("a", driver, labelled), class("b", driver)},
			pvc:        plainPVC,
			backup:     backupAnnotated("b"),
			want:       "b",
			wantReason: "backup annotation velero.io/csi-volumesnapshot-class_hostpath.csi.k8s.io",
		},
		{
			name:    "backup annotation names a missing class",
			classes: []snapshotv1.VolumeSnapshotClass{class("a", driver, labelled)},
			pvc:     plainPVC,
			backup:  backupAnnotated("gone"),
			wantErr: `backup annotation velero.io/csi-volumesnapshot-class_hostpath.csi.k8s.io names "gone", which does not exist`,
		},
		{
			name:    "backup annotation names a class of another driver",
			classes: []snapshotv1.VolumeSnapshotClass{class("a", driver, labelled), class("bar", "other.csi")},
			backup:  backupAnnotated("bar"),
			wantErr: `backup annotation velero.io/csi-volumesnapshot-class_hostpath.csi.k8s.io names "bar", whose driver is other.csi, not hostpath.csi.k8s.io`,
		},
		{
			name:       "backup annotation key uses the lower-case driver",
			classes:    []snapshotv1.VolumeSnapshotClass{class("a", "Upper.CSI"), class("b", "Upper.CSI")},
			backup:     builder.ForBackup("velero", "b1").ObjectMeta(builder.WithAnnotations("velero.io/csi-volumesnapshot-class_upper.csi", "b")).Result(),
			driver:     "Upper.CSI",
			want:       "b",
			wantReason: "backup annotation velero.io/csi-volumesnapshot-class_upper.csi",
		},
		{
			name: "the labelled class of the driver",
			classes: []snapshotv1.VolumeSnapshotClass{
				class("other", "other.csi", labelled), class("a", driver, isDefault), class("b", driver, labelled),
			},
			pvc:        plainPVC,
			backup:     plainBackup,
			want:       "b",
			wantReason: "label velero.io/csi-volumesnapshot-class",
		},
		{
			name:    "two labelled classes for the driver",
			classes: []snapshotv1.VolumeSnapshotClass{class("b", driver, labelled), class("a", driver, labelled), class("c", driver)},
			pvc:     plainPVC,
			wantErr: `2 VolumeSnapshotClasses for driver hostpath.csi.k8s.io are labelled velero.io/csi-volumesnapshot-class: a, b; keep the label on one`,
		},
		{
			name:       "label value other than true does not count",
			classes:    []snapshotv1.VolumeSnapshotClass{class("a", driver, builder.WithLabels(SelectorLabel, "false")), class("b", driver, isDefault)},
			want:       "b",
			wantReason: "annotation snapshot.storage.kubernetes.io/is-default-class",
		},
		{
			name:       "the default class of the driver",
			classes:    []snapshotv1.VolumeSnapshotClass{class("a", driver), class("b", driver, isDefault), class("x", "other.csi", isDefault)},
			want:       "b",
			wantReason: "annotation snapshot.storage.kubernetes.io/is-default-class",
		},
		{
			name:    "two default classes for the driver",
			classes: []snapshotv1.VolumeSnapshotClass{class("a", driver, isDefault), class("b", driver, isDefault)},
			wantErr: `2 VolumeSnapshotClasses for driver hostpath.csi.k8s.io are annotated snapshot.storage.kubernetes.io/is-default-class: a, b; label the one to use velero.io/csi-volumesnapshot-class: "true"`,
		},
		{
			name:       "the only class of the driver",
			classes:    []snapshotv1.VolumeSnapshotClass{class("only", driver), class("x", "other.csi", labelled)},
			want:       "only",
			wantReason: "only class of the driver",
		},
		{
			name:    "no class for the driver",
			classes: []snapshotv1.VolumeSnapshotClass{class("x", "other.csi", labelled)},
			wantErr: `no VolumeSnapshotClass for driver hostpath.csi.k8s.io: create one and label it velero.io/csi-volumesnapshot-class: "true"`,
		},
		{
			name:    "several unmarked classes",
			classes: []snapshotv1.VolumeSnapshotClass{class("b", driver), class("a", driver)},
			wantErr: `2 VolumeSnapshotClasses for driver hostpath.csi.k8s.io (a, b) and none is labelled velero.io/csi-volumesnapshot-class: "true": label the one to use`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			drv := driver
			if tt.driver != "" {
				drv = tt.driver
			}
			name, reason, err := Choose(tt.classes, tt.pvc, tt.backup, drv)
			if tt.wantErr != "" {
				require.EqualError(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, name)
			require.Equal(t, tt.wantReason, reason)
		})
	}
}

func TestList(t *testing.T) {
	scheme := testkit.Scheme(t)
	a := class("a", driver)

	tests := []struct {
		name    string
		listErr error
		want    []string
		wantErr string
		is      error
	}{
		{name: "lists classes", want: []string{"a"}},
		{
			name:    "CRDs not installed",
			listErr: &meta.NoKindMatchError{GroupKind: schema.GroupKind{Group: "snapshot.storage.k8s.io", Kind: "VolumeSnapshotClass"}},
			wantErr: "listing VolumeSnapshotClasses: the VolumeSnapshot CRDs are not installed (external-snapshotter)",
			is:      ErrCRDsMissing,
		},
		{name: "API error", listErr: errors.New("boom"), wantErr: "listing VolumeSnapshotClasses: boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(&a).WithInterceptorFuncs(interceptor.Funcs{
				List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
					if tt.listErr != nil {
						return tt.listErr
					}
					return c.List(ctx, list, opts...)
				},
			}).Build()
			got, err := List(context.Background(), c)
			if tt.wantErr != "" {
				require.EqualError(t, err, tt.wantErr)
				if tt.is != nil {
					require.ErrorIs(t, err, tt.is)
				}
				return
			}
			require.NoError(t, err)
			var names []string
			for _, c := range got {
				names = append(names, c.Name)
			}
			require.Equal(t, tt.want, names)
		})
	}
}
