package backup

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"github.com/pkg/errors"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	"github.com/vmware-tanzu/velero/pkg/builder"
	"github.com/vmware-tanzu/velero/pkg/kuberesource"
	"github.com/vmware-tanzu/velero/pkg/plugin/velero"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/snapmove/snapmove/internal/naming"
	"github.com/snapmove/snapmove/internal/testkit"
)

const (
	driver   = "hostpath.csi.k8s.io"
	policyCM = "snapmove-policy"
)

func backupFixture() *builder.BackupBuilder {
	return builder.ForBackup("velero", "nightly").ObjectMeta(builder.WithUID("backup-uid")).
		StorageLocation("default").SnapshotMoveData(true).CSISnapshotTimeout(time.Second)
}

func pvcFixture(name string) *builder.PersistentVolumeClaimBuilder {
	return builder.ForPersistentVolumeClaim("app", name).ObjectMeta(builder.WithUID(name+"-uid"), builder.WithLabels("app", "db")).
		StorageClass("csi-sc").VolumeName("pv-" + name).Phase(corev1.ClaimBound)
}

func csiPV(pvc string) *corev1.PersistentVolume {
	return builder.ForPersistentVolume("pv-"+pvc).CSI(driver, "vol-"+pvc).ClaimRef("app", pvc).StorageClass("csi-sc").Result()
}

func policy(yaml string) *corev1.ConfigMap {
	return builder.ForConfigMap("velero", policyCM).Data("policy.yaml", yaml).Result()
}

const (
	customSnapmove = `version: v1
volumePolicies:
- conditions:
    storageClass: [csi-sc]
  action:
    type: custom
    parameters:
      mover: snapmove
`
	customOther = `version: v1
volumePolicies:
- conditions:
    storageClass: [csi-sc]
  action:
    type: custom
    parameters:
      mover: someone-else
`
	skipPolicy = `version: v1
volumePolicies:
- conditions:
    storageClass: [csi-sc]
  action:
    type: skip
`
	fsBackup = `version: v1
volumePolicies:
- conditions:
    storageClass: [csi-sc]
  action:
    type: fs-backup
`
)

func labelledClass(name string) *snapshotv1.VolumeSnapshotClass {
	return builder.ForVolumeSnapshotClass(name).Driver(driver).ObjectMeta(builder.WithLabels("velero.io/csi-volumesnapshot-class", "true")).Result()
}

func toItem(t *testing.T, obj runtime.Object) *unstructured.Unstructured {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	require.NoError(t, err)
	return &unstructured.Unstructured{Object: m}
}

// snapshotControllerFuncs make every new VolumeSnapshot bound to a content with a handle, the
// way the snapshot-controller and the csi-snapshotter sidecar would.
func snapshotControllerFuncs(createErr func(client.Object) error, listErr error) interceptor.Funcs {
	return interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			if createErr != nil {
				if err := createErr(obj); err != nil {
					return err
				}
			}
			if err := c.Create(ctx, obj, opts...); err != nil {
				return err
			}
			vs, ok := obj.(*snapshotv1.VolumeSnapshot)
			if !ok || vs.Labels["test/no-controller"] == "true" {
				return nil
			}
			vsc := builder.ForVolumeSnapshotContent("content-" + vs.Name).Driver(driver).
				DeletionPolicy(snapshotv1.VolumeSnapshotContentRetain).
				Status(&snapshotv1.VolumeSnapshotContentStatus{SnapshotHandle: ptr.To("handle-" + vs.Name)}).Result()
			if err := c.Create(ctx, vsc); err != nil {
				return err
			}
			bound := vs.DeepCopy()
			bound.Status = &snapshotv1.VolumeSnapshotStatus{BoundVolumeSnapshotContentName: ptr.To(vsc.Name)}
			return c.Update(ctx, bound)
		},
		List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
			if _, ok := list.(*snapshotv1.VolumeSnapshotClassList); ok && listErr != nil {
				return listErr
			}
			return c.List(ctx, list, opts...)
		},
	}
}

func TestExecute(t *testing.T) {
	bound := pvcFixture("data")
	tests := []struct {
		name      string
		opts      Options
		backup    *velerov1.Backup
		pvc       *corev1.PersistentVolumeClaim
		objects   []client.Object
		createErr func(client.Object) error
		listErr   error
		wantSkip  bool
		wantLog   string // a logged skip or claim reason
		wantErr   string
		wantDU    string // name of the DataUpload the PVC must point at, "" = the new one
	}{
		{name: "finalizing backup", backup: backupFixture().Phase(velerov1.BackupPhaseFinalizing).Result(), wantSkip: true},
		{name: "finalizing partially failed", backup: backupFixture().Phase(velerov1.BackupPhaseFinalizingPartiallyFailed).Result(), wantSkip: true},
		{
			name: "already snapshotted by Velero's built-in", wantLog: `already snapshotted it (VolumeSnapshot velero-data-x)`,
			pvc:      pvcFixture("data").ObjectMeta(builder.WithAnnotations("velero.io/volume-snapshot-name", "velero-data-x")).Result(),
			wantSkip: true,
		},
		{name: "unbound PVC", wantLog: `PVC is not bound`, pvc: pvcFixture("data").Phase(corev1.ClaimPending).VolumeName("").Result(), wantSkip: true},
		{name: "data movement off", wantLog: `data movement is off`, backup: backupFixture().SnapshotMoveData(false).Result(), wantSkip: true},
		{name: "snapshotMoveData unset, server default off", wantLog: `data movement is off`, backup: unsetMoveData(), wantSkip: true},
		{name: "snapshotMoveData unset, server default on", wantLog: `EnableCSI is off, so snapmove moves every eligible CSI volume`, backup: unsetMoveData(), opts: Options{DefaultSnapshotMoveData: true}},
		{
			name: "not a CSI volume", wantLog: `PV pv-data is not a CSI volume`,
			objects:  []client.Object{builder.ForPersistentVolume("pv-data").AWSEBSVolumeID("vol-1").Result()},
			wantSkip: true,
		},
		{name: "no EnableCSI, no policy: ours", wantLog: `EnableCSI is off, so snapmove moves every eligible CSI volume`},
		{name: "EnableCSI, no policy: Velero's", wantLog: `EnableCSI is on and no volume policy`, opts: Options{EnableCSI: true}, wantSkip: true},
		{name: "EnableCSI, datamover snapmove, no policy: Velero's built-in feeds our mover", wantLog: `hands its DataUpload to the snapmove mover`, opts: Options{EnableCSI: true}, backup: backupFixture().DataMover("snapmove").Result(), wantSkip: true},
		{
			name: "EnableCSI, custom policy for snapmove: ours", wantLog: `action custom, mover snapmove matches it`,
			opts:    Options{EnableCSI: true},
			backup:  backupFixture().ResourcePolicies(policyCM).Result(),
			objects: []client.Object{policy(customSnapmove)},
		},
		{
			name: "custom policy for another mover", wantLog: `parameters map[mover:someone-else] (not mover: snapmove)`,
			backup:   backupFixture().ResourcePolicies(policyCM).Result(),
			objects:  []client.Object{policy(customOther)},
			wantSkip: true,
		},
		{
			name: "fs-backup policy", wantLog: `action fs-backup matches it`,
			backup:   backupFixture().ResourcePolicies(policyCM).Result(),
			objects:  []client.Object{policy(fsBackup)},
			wantSkip: true,
		},
		{
			name: "skip policy", wantLog: `action skip matches it`,
			backup:   backupFixture().ResourcePolicies(policyCM).Result(),
			objects:  []client.Object{policy(skipPolicy)},
			wantSkip: true,
		},
		{
			name:    "policy ConfigMap missing",
			backup:  backupFixture().ResourcePolicies(policyCM).Result(),
			objects: []client.Object{},
			wantErr: "reading the volume policies of backup nightly: failed to get volume policies from backup: fail to get ResourcePolicies velero/snapmove-policy ConfigMap",
		},
		{name: "another data mover requested", wantLog: `backup.spec.datamover is "velero"`, backup: backupFixture().DataMover("velero").Result(), wantSkip: true},
		{name: "datamover snapmove requested", backup: backupFixture().DataMover("snapmove").Result()},
		{
			name: "another data mover requested, but a snapmove policy claims the PVC", wantLog: `action custom, mover snapmove matches it`,
			backup:  backupFixture().DataMover("velero").ResourcePolicies(policyCM).Result(),
			objects: []client.Object{policy(customSnapmove)},
		},
		{name: "snapshotVolumes false", wantLog: `say no snapshot`, backup: backupFixture().SnapshotVolumes(false).Result(), wantSkip: true},
		{
			name:    "two labelled classes",
			objects: []client.Object{labelledClass("a"), labelledClass("b")},
			wantErr: "choosing the VolumeSnapshotClass for PVC app/data: 2 VolumeSnapshotClasses for driver hostpath.csi.k8s.io are labelled velero.io/csi-volumesnapshot-class: a, b; keep the label on one",
		},
		{
			name:    "snapshot CRDs missing",
			listErr: &meta.NoKindMatchError{GroupKind: schema.GroupKind{Group: "snapshot.storage.k8s.io", Kind: "VolumeSnapshotClass"}},
			wantErr: "choosing the VolumeSnapshotClass for PVC app/data: listing VolumeSnapshotClasses: the VolumeSnapshot CRDs are not installed (external-snapshotter)",
		},
		{
			name:    "no storage class",
			pvc:     pvcFixture("data").StorageClass("").Result(),
			objects: []client.Object{builder.ForPersistentVolume("pv-data").CSI(driver, "vol").Result(), labelledClass("csi-snapclass")},
			wantErr: "PVC app/data and its PV pv-data have no storage class",
		},
		{
			name:    "snapshot never bound",
			pvc:     pvcFixture("data").ObjectMeta(builder.WithLabels("test/no-controller", "true")).Result(),
			wantErr: "snapshotting PVC app/data: VolumeSnapshot app/velero-data-",
		},
		{
			name: "DataUpload create fails",
			createErr: func(o client.Object) error {
				if _, ok := o.(*velerov2alpha1.DataUpload); ok {
					return errors.New("admission webhook denied")
				}
				return nil
			},
			wantErr: "creating DataUpload for PVC app/data: admission webhook denied",
		},
		{
			name: "existing DataUpload of the operation is reused",
			objects: []client.Object{
				builder.ForDataUpload("velero", "nightly-old").Labels(map[string]string{
					velerov1.AsyncOperationIDLabel: naming.UploadOperationID("backup-uid", "data-uid"),
				}).CSISnapshot(&velerov2alpha1.CSISnapshotSpec{VolumeSnapshot: "velero-data-old"}).Result(),
			},
			wantDU: "nightly-old",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			backup := tt.backup
			if backup == nil {
				backup = backupFixture().Result()
			}
			pvc := tt.pvc
			if pvc == nil {
				pvc = bound.Result()
			}
			objects := tt.objects
			if objects == nil || !hasPV(objects) {
				objects = append(objects, csiPV("data"))
			}
			if !hasClass(objects) {
				objects = append(objects, labelledClass("csi-snapclass"))
			}
			c := fake.NewClientBuilder().WithScheme(testkit.Scheme(t)).WithObjects(objects...).
				WithInterceptorFuncs(snapshotControllerFuncs(tt.createErr, tt.listErr)).Build()
			opts := tt.opts
			opts.SnapshotInterval = 5 * time.Millisecond
			if tt.name == "snapshot never bound" {
				backup.Spec.CSISnapshotTimeout.Duration = 30 * time.Millisecond
			}
			logger, hook := logtest.NewNullLogger()
			a := NewAction(c, logger, opts)
			item := toItem(t, pvc)

			updated, additional, opID, post, err := a.Execute(item, backup)

			vss := &snapshotv1.VolumeSnapshotList{}
			require.NoError(t, c.List(context.Background(), vss))
			dus := &velerov2alpha1.DataUploadList{}
			require.NoError(t, c.List(context.Background(), dus))
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				require.Empty(t, vss.Items, "a failed PVC leaves no VolumeSnapshot behind")
				return
			}
			require.NoError(t, err)
			require.Empty(t, additional)
			if tt.wantLog != "" {
				var msgs []string
				for _, e := range hook.AllEntries() {
					msgs = append(msgs, e.Message)
				}
				require.Contains(t, strings.Join(msgs, "\n"), tt.wantLog)
			}
			if tt.wantSkip {
				// A skipped PVC is returned unchanged but for the reason, recorded for
				// `snapmove report` on the PVC as the backup stores it.
				got := (&unstructured.Unstructured{Object: updated.UnstructuredContent()}).DeepCopy()
				annotations := got.GetAnnotations()
				reason := annotations[naming.SkippedAnnotation]
				if tt.wantLog != "" {
					require.Contains(t, reason, tt.wantLog)
				} else {
					require.Empty(t, reason, "nothing to say about a PVC of a finalizing backup")
				}
				delete(annotations, naming.SkippedAnnotation)
				if len(annotations) == 0 {
					annotations = nil
				}
				got.SetAnnotations(annotations)
				require.Equal(t, item, runtime.Unstructured(got), "a skipped PVC is returned unchanged but for the reason")
				require.Empty(t, opID)
				require.Empty(t, post)
				require.Empty(t, vss.Items)
				require.Empty(t, dus.Items)
				return
			}

			wantOp := naming.UploadOperationID("backup-uid", "data-uid")
			require.Equal(t, wantOp, opID)
			require.Len(t, dus.Items, 1, "exactly one DataUpload per PVC")
			du := dus.Items[0]
			if tt.wantDU != "" {
				require.Equal(t, tt.wantDU, du.Name)
				require.Empty(t, vss.Items, "a reused DataUpload means no second snapshot")
			} else {
				require.Len(t, vss.Items, 1, "exactly one VolumeSnapshot per PVC")
				vs := vss.Items[0]
				require.Equal(t, "csi-snapclass", *vs.Spec.VolumeSnapshotClassName)
				require.Equal(t, "snapmove", du.Spec.DataMover)
				require.Equal(t, vs.Name, du.Spec.CSISnapshot.VolumeSnapshot)
				require.Equal(t, "csi-snapclass", du.Spec.CSISnapshot.SnapshotClass)
				require.Equal(t, driver, du.Spec.CSISnapshot.Driver)
				require.Equal(t, "csi-sc", du.Spec.CSISnapshot.StorageClass)
				require.Equal(t, wantOp, du.Labels[velerov1.AsyncOperationIDLabel])
			}
			require.Equal(t, []velero.ResourceIdentifier{{GroupResource: kuberesource.DataUploads, Namespace: "velero", Name: du.Name}}, post)
			u := updated.(*unstructured.Unstructured)
			require.Equal(t, "velero/"+du.Name, u.GetAnnotations()["velero.io/data-upload-name"])
			require.Equal(t, du.Spec.CSISnapshot.VolumeSnapshot, u.GetAnnotations()["velero.io/volume-snapshot-name"])
			require.Equal(t, "true", u.GetAnnotations()["backup.velero.io/must-include-additional-items"])
			require.Equal(t, "nightly", u.GetLabels()["velero.io/backup-name"])
		})
	}
}

func unsetMoveData() *velerov1.Backup {
	b := backupFixture().Result()
	b.Spec.SnapshotMoveData = nil
	return b
}

func hasPV(objs []client.Object) bool {
	for _, o := range objs {
		if _, ok := o.(*corev1.PersistentVolume); ok {
			return true
		}
	}
	return false
}

func hasClass(objs []client.Object) bool {
	for _, o := range objs {
		if _, ok := o.(*snapshotv1.VolumeSnapshotClass); ok {
			return true
		}
	}
	return false
}

// Execute runs concurrently for different PVCs in one process (item block workers).
func TestExecuteConcurrent(t *testing.T) {
	const n = 8
	objects := []client.Object{labelledClass("csi-snapclass")}
	for i := 0; i < n; i++ {
		objects = append(objects, csiPV(fmt.Sprintf("data%d", i)))
	}
	c := fake.NewClientBuilder().WithScheme(testkit.Scheme(t)).WithObjects(objects...).
		WithInterceptorFuncs(snapshotControllerFuncs(nil, nil)).Build()
	a := NewAction(c, logrus.New(), Options{SnapshotInterval: time.Millisecond})
	backup := backupFixture().Result()

	var wg sync.WaitGroup
	ops := make([]string, n)
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, _, ops[i], _, errs[i] = a.Execute(toItem(t, pvcFixture(fmt.Sprintf("data%d", i)).Result()), backup)
		}(i)
	}
	wg.Wait()
	seen := map[string]bool{}
	for i := 0; i < n; i++ {
		require.NoError(t, errs[i])
		require.Equal(t, naming.UploadOperationID("backup-uid", fmt.Sprintf("data%d-uid", i)), ops[i])
		seen[ops[i]] = true
	}
	require.Len(t, seen, n)
	dus := &velerov2alpha1.DataUploadList{}
	require.NoError(t, c.List(context.Background(), dus))
	require.Len(t, dus.Items, n)
}

func TestProgressAndCancel(t *testing.T) {
	backup := backupFixture().Result()
	du := builder.ForDataUpload("velero", "nightly-abc").Labels(map[string]string{velerov1.AsyncOperationIDLabel: "du-op"}).
		Phase(velerov2alpha1.DataUploadPhaseFailed).Message("repository unreachable").Result()
	c := fake.NewClientBuilder().WithScheme(testkit.Scheme(t)).WithObjects(du).Build()
	a := NewAction(c, logrus.New(), Options{})

	p, err := a.Progress("du-op", backup)
	require.NoError(t, err)
	require.True(t, p.Completed)
	require.Equal(t, "repository unreachable", p.Err)

	_, err = a.Progress("du-unknown", backup)
	require.EqualError(t, err, "no DataUpload labelled velero.io/async-operation-id=du-unknown in namespace velero")
	_, err = a.Progress("", backup)
	require.EqualError(t, err, "operation ID  is invalid")

	require.NoError(t, a.Cancel("du-op", backup))
	got := &velerov2alpha1.DataUpload{}
	require.NoError(t, c.Get(context.Background(), client.ObjectKeyFromObject(du), got))
	require.True(t, got.Spec.Cancel)
	require.Error(t, a.Cancel("du-unknown", backup))
}
