package controller

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	"github.com/vmware-tanzu/velero/pkg/builder"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/snapmove/snapmove/internal/mover/config"
	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/mover/expose"
	"github.com/snapmove/snapmove/internal/mover/velerosrv"
	"github.com/snapmove/snapmove/internal/naming"
	"github.com/snapmove/snapmove/internal/testkit"
)

const (
	veleroNS = "velero"
	appNS    = "app"
	duName   = "backup-1-abcde"
	ddName   = "restore-1-fghij"
	nodeA    = "node-a"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func testScheme(t *testing.T) *runtime.Scheme {
	return testkit.Scheme(t)
}

// fakeRepos records calls and returns the configured errors.
type fakeRepos struct {
	mu        sync.Mutex
	verifyErr error
	deleteErr error
	verified  []string
	deleted   []string
	owners    []datapath.SnapshotOwner
}

func (f *fakeRepos) Verify(_ context.Context, bsl *velerov1.BackupStorageLocation, ns string, create bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.verified = append(f.verified, bsl.Name+"/"+ns+"/"+map[bool]string{true: "create", false: "open"}[create])
	return f.verifyErr
}

func (f *fakeRepos) DeleteSnapshot(_ context.Context, bsl *velerov1.BackupStorageLocation, owner datapath.SnapshotOwner, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deleted = append(f.deleted, bsl.Name+"/"+owner.Namespace+"/"+id)
	f.owners = append(f.owners, owner)
	return f.deleteErr
}

type env struct {
	t        *testing.T
	c        client.WithWatch
	r        *Reconciler
	clock    *clocktesting.FakePassiveClock
	repos    *fakeRepos
	recorder *record.FakeRecorder
	cfg      config.Config
	cfgErr   error
	registry *prometheus.Registry
}

func newEnv(t *testing.T, funcs *interceptor.Funcs, objs ...client.Object) *env {
	t.Helper()
	b := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(objs...).
		WithIndex(&corev1.Event{}, EventUIDField, func(o client.Object) []string {
			return []string{string(o.(*corev1.Event).InvolvedObject.UID)}
		})
	// The API server gives every object a UID; the fake client does not.
	f := interceptor.Funcs{}
	if funcs != nil {
		f = *funcs
	}
	create := f.Create
	uids := 0
	f.Create = func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
		if obj.GetUID() == "" {
			uids++
			obj.SetUID(types.UID(fmt.Sprintf("uid-%d", uids)))
		}
		if create != nil {
			return create(ctx, c, obj, opts...)
		}
		return c.Create(ctx, obj, opts...)
	}
	b = b.WithInterceptorFuncs(f)
	e := &env{
		t:        t,
		c:        b.Build(),
		clock:    clocktesting.NewFakePassiveClock(t0),
		repos:    &fakeRepos{},
		recorder: record.NewFakeRecorder(100),
		cfg:      config.Default(),
		registry: prometheus.NewRegistry(),
	}
	log := logrus.New()
	log.SetLevel(logrus.DebugLevel)
	e.r = NewReconciler(Reconciler{
		Client: e.c, Reader: e.c, Recorder: e.recorder, Clock: e.clock, Log: log,
		Repos: e.repos, Metrics: NewMetrics(e.registry),
		Options: Options{
			Namespace: veleroNS, WorkerImage: "snapmove:test",
			DefaultCredentials: velerosrv.Credentials{Default: velerosrv.Default{Secret: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cloud-credentials"}, Key: "cloud"}}},
			Identity:           "controller-node",
		},
		Settings: func(context.Context) (config.Config, error) { return e.cfg, e.cfgErr },
	})
	return e
}

func (e *env) reconcileDU() ctrl.Result {
	e.t.Helper()
	res, err := (&DataUploadReconciler{e.r}).Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: veleroNS, Name: duName}})
	require.NoError(e.t, err)
	return res
}

func (e *env) reconcileDD() ctrl.Result {
	e.t.Helper()
	res, err := (&DataDownloadReconciler{e.r}).Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: veleroNS, Name: ddName}})
	require.NoError(e.t, err)
	return res
}

func (e *env) du() *velerov2alpha1.DataUpload {
	e.t.Helper()
	du := &velerov2alpha1.DataUpload{}
	require.NoError(e.t, e.c.Get(context.Background(), client.ObjectKey{Namespace: veleroNS, Name: duName}, du))
	return du
}

func (e *env) dd() *velerov2alpha1.DataDownload {
	e.t.Helper()
	dd := &velerov2alpha1.DataDownload{}
	require.NoError(e.t, e.c.Get(context.Background(), client.ObjectKey{Namespace: veleroNS, Name: ddName}, dd))
	return dd
}

// exists reports whether obj (namespace/name filled in) exists.
func (e *env) exists(obj client.Object) bool {
	e.t.Helper()
	err := e.c.Get(context.Background(), client.ObjectKeyFromObject(obj), obj)
	if apierrors.IsNotFound(err) {
		return false
	}
	require.NoError(e.t, err)
	return true
}

func (e *env) events() []string {
	var out []string
	for {
		select {
		case ev := <-e.recorder.Events:
			out = append(out, ev)
		default:
			return out
		}
	}
}

func (e *env) requireEvent(substr string) {
	e.t.Helper()
	evs := e.events()
	for _, ev := range evs {
		if strings.Contains(ev, substr) {
			return
		}
	}
	e.t.Fatalf("no event containing %q in %v", substr, evs)
}

// update changes obj, status included (core types have a status subresource).
func (e *env) update(obj client.Object, mutate func()) {
	e.t.Helper()
	ctx := context.Background()
	require.NoError(e.t, e.c.Get(ctx, client.ObjectKeyFromObject(obj), obj))
	mutate()
	desired := obj.DeepCopyObject().(client.Object)
	require.NoError(e.t, e.c.Update(ctx, obj))
	desired.SetResourceVersion(obj.GetResourceVersion())
	if err := e.c.Status().Update(ctx, desired); err != nil && !apierrors.IsNotFound(err) {
		require.NoError(e.t, err)
	}
	require.NoError(e.t, e.c.Get(ctx, client.ObjectKeyFromObject(obj), obj))
}

func (e *env) create(obj client.Object) {
	e.t.Helper()
	require.NoError(e.t, e.c.Create(context.Background(), obj))
}

// ---- fixtures ----

func bsl() *velerov1.BackupStorageLocation {
	return builder.ForBackupStorageLocation(veleroNS, "default").Provider("aws").Bucket("bucket").Prefix("velero").Result()
}

func storageClass(name string, wffc bool) *storagev1.StorageClass {
	sc := builder.ForStorageClass(name).Provisioner("hostpath.csi.k8s.io").Result()
	mode := storagev1.VolumeBindingImmediate
	if wffc {
		mode = storagev1.VolumeBindingWaitForFirstConsumer
	}
	sc.VolumeBindingMode = &mode
	return sc
}

func sourcePVC() *corev1.PersistentVolumeClaim {
	pvc := builder.ForPersistentVolumeClaim(appNS, "data").StorageClass("csi-sc").VolumeName("pv-src").
		RequestResource(corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("2Gi")}).Phase(corev1.ClaimBound).Result()
	pvc.Spec.VolumeMode = ptr.To(corev1.PersistentVolumeFilesystem)
	return pvc
}

func sourcePV() *corev1.PersistentVolume {
	return builder.ForPersistentVolume("pv-src").ClaimRef(appNS, "data").NodeAffinityRequired(&corev1.NodeSelector{
		NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{
			Key: "topology.hostpath.csi/node", Operator: corev1.NodeSelectorOpIn, Values: []string{nodeA},
		}}}},
	}).Result()
}

func sourceVS(ready bool) *snapshotv1.VolumeSnapshot {
	b := builder.ForVolumeSnapshot(appNS, "snap-1").SourcePVC("data").VolumeSnapshotClass("csi-snapclass").
		Status().BoundVolumeSnapshotContentName("snapcontent-1").ReadyToUse(ready).RestoreSize("1Gi")
	return b.Result()
}

func sourceVSC() *snapshotv1.VolumeSnapshotContent {
	return builder.ForVolumeSnapshotContent("snapcontent-1").Driver("hostpath.csi.k8s.io").
		DeletionPolicy(snapshotv1.VolumeSnapshotContentDelete).VolumeSnapshotClassName("csi-snapclass").
		VolumeSnapshotRef(appNS, "snap-1", "vs-uid").
		Status(&snapshotv1.VolumeSnapshotContentStatus{SnapshotHandle: ptr.To("handle-1"), ReadyToUse: ptr.To(true)}).Result()
}

func dataUpload(phase velerov2alpha1.DataUploadPhase) *velerov2alpha1.DataUpload {
	du := builder.ForDataUpload(veleroNS, duName).DataMover(naming.DataMover).BackupStorageLocation("default").
		SourceNamespace(appNS).SourcePVC("data").SnapshotType(velerov2alpha1.SnapshotTypeCSI).
		CSISnapshot(&velerov2alpha1.CSISnapshotSpec{VolumeSnapshot: "snap-1", StorageClass: "csi-sc", SnapshotClass: "csi-snapclass"}).
		Phase(phase).Result()
	du.UID = "du-uid"
	if phase != velerov2alpha1.DataUploadPhaseNew && phase != "" {
		du.Finalizers = []string{naming.MoverFinalizer}
		du.Status.AcceptedTimestamp = &metav1.Time{Time: t0}
		du.Status.AcceptedByNode = "controller-node"
	}
	return du
}

// backupFixtures is a cluster with a ready CSI snapshot of app/data.
func backupFixtures(du *velerov2alpha1.DataUpload) []client.Object {
	return []client.Object{du, bsl(), storageClass("csi-sc", true), sourcePVC(), sourcePV(), sourceVS(true), sourceVSC()}
}

// workerPod is the worker pod of name in phase, as the controller would have built it.
func workerPod(name string, phase corev1.PodPhase) *corev1.Pod {
	p := expose.WorkerPod(expose.PodParams{Operation: expose.Backup, Name: name, Namespace: veleroNS, PVC: name, Image: "snapmove:test",
		Owner: metav1.OwnerReference{Name: name, UID: movementUID(name)}})
	p.Spec.NodeName = nodeA
	p.Status.Phase = phase
	return p
}

func terminated(pod *corev1.Pod, reason, message string, code int32) *corev1.Pod {
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{
		Name: expose.WorkerContainer,
		State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			Reason: reason, Message: message, ExitCode: code,
		}},
	}}
	return pod
}

func pvcEvent(uid types.UID, reason, message string) *corev1.Event {
	return &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Namespace: veleroNS, Name: "ev-" + string(uid) + "-" + reason},
		InvolvedObject: corev1.ObjectReference{UID: uid, Namespace: veleroNS},
		Type:           corev1.EventTypeWarning, Reason: reason, Message: message,
		LastTimestamp: metav1.Time{Time: t0},
	}
}

func conflict(obj client.Object) error {
	return apierrors.NewConflict(velerov2alpha1.Resource("datauploads"), obj.GetName(), nil)
}
