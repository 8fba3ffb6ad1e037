package doctor

import (
	"context"
	"errors"
	"testing"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/snapmove/snapmove/internal/naming"
	"github.com/snapmove/snapmove/internal/testkit"
)

const (
	ns     = "velero"
	driver = "rook-ceph.rbd.csi.ceph.com"
)

// fixture is a healthy install, object by object; a case edits or deletes some.
type fixture struct {
	objs map[string]client.Object
	// answer: Velero's server processes ServerStatusRequests, listing plugins.
	answer  bool
	plugins []velerov1.PluginInfo
	funcs   interceptor.Funcs
}

func healthy() *fixture {
	f := &fixture{objs: map[string]client.Object{}, answer: true}
	for _, p := range []string{"volumesnapshots", "volumesnapshotcontents", "volumesnapshotclasses"} {
		f.objs["crd/"+p] = &apiextensionsv1.CustomResourceDefinition{
			ObjectMeta: metav1.ObjectMeta{Name: p + ".snapshot.storage.k8s.io"},
			Spec: apiextensionsv1.CustomResourceDefinitionSpec{Versions: []apiextensionsv1.CustomResourceDefinitionVersion{
				{Name: "v1beta1", Served: false}, {Name: "v1", Served: true, Storage: true},
			}},
		}
	}
	f.objs["csidriver"] = &storagev1.CSIDriver{ObjectMeta: metav1.ObjectMeta{Name: driver}}
	f.objs["sc"] = &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "ceph-block"}, Provisioner: driver}
	f.objs["sc/local"] = &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "local"}, Provisioner: "kubernetes.io/no-provisioner"}
	f.objs["pv"] = &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-1"},
		Spec:   corev1.PersistentVolumeSpec{PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: driver, VolumeHandle: "h"}}},
		Status: corev1.PersistentVolumeStatus{Phase: corev1.VolumeBound}}
	f.objs["vsc"] = &snapshotv1.VolumeSnapshotClass{ObjectMeta: metav1.ObjectMeta{Name: "ceph-block",
		Labels: map[string]string{"velero.io/csi-volumesnapshot-class": "true"}}, Driver: driver, DeletionPolicy: snapshotv1.VolumeSnapshotContentDelete}
	f.objs["velero"] = &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "velero"},
		Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			ServiceAccountName: "velero-server",
			Containers: []corev1.Container{{
				Name: "velero", Image: "velero/velero:v1.18.1", Command: []string{"/velero"},
				Args:         []string{"server", "--uploader-type=kopia", "--features=EnableCSI"},
				Env:          []corev1.EnvVar{{Name: "AWS_SHARED_CREDENTIALS_FILE", Value: "/credentials/cloud"}},
				VolumeMounts: []corev1.VolumeMount{{Name: "cloud-credentials", MountPath: "/credentials"}},
			}},
			Volumes: []corev1.Volume{{Name: "cloud-credentials", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "velero"}}}},
		}}},
		Status: appsv1.DeploymentStatus{AvailableReplicas: 1, Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue}}},
	}
	f.objs["sa/velero"] = &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "velero-server"}}
	f.objs["sa/mover"] = &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: MoverDeployment}}
	f.objs["secret/cloud"] = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "velero"}, Data: map[string][]byte{"cloud": []byte("[default]\n")}}
	f.objs["node-agent"] = &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "node-agent"}}
	f.objs["mover"] = &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: MoverDeployment},
		Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			ServiceAccountName: MoverDeployment,
			Containers: []corev1.Container{{Name: "mover", Image: "ghcr.io/snapmove/snapmove:v0.1.0", Command: []string{"/snapmove", "mover", "controller"},
				Args: []string{"--namespace=$(VELERO_NAMESPACE)", "--worker-image=ghcr.io/snapmove/snapmove:v0.1.0"}}},
		}}},
		Status: appsv1.DeploymentStatus{AvailableReplicas: 1},
	}
	f.objs["bsl"] = &velerov1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"},
		Spec:   velerov1.BackupStorageLocationSpec{Provider: "aws", Default: true},
		Status: velerov1.BackupStorageLocationStatus{Phase: velerov1.BackupStorageLocationPhaseAvailable}}
	f.objs["password"] = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "velero-repo-credentials"},
		Data: map[string][]byte{"repository-password": []byte("static-passw0rd")}}
	f.objs["backup"] = &velerov1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "nightly"}}
	f.plugins = []velerov1.PluginInfo{
		{Name: "velero.io/aws", Kind: "ObjectStore"},
		{Name: naming.BackupActionName, Kind: "BackupItemActionV2"},
		{Name: naming.RestoreActionName, Kind: "RestoreItemActionV2"},
		{Name: naming.DeleteActionName, Kind: "DeleteItemAction"},
	}
	return f
}

// run runs the doctor over f's objects; it also returns the client, to look at what is left.
func (f *fixture) run(t *testing.T) (Report, client.Client) {
	t.Helper()
	s := testkit.Scheme(t)
	require.NoError(t, AddToScheme(s))
	objs := make([]client.Object, 0, len(f.objs))
	for _, o := range f.objs {
		objs = append(objs, o)
	}
	funcs := f.funcs
	userCreate := funcs.Create
	funcs.Create = func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
		if ssr, ok := obj.(*velerov1.ServerStatusRequest); ok && f.answer {
			// Velero's server, at once.
			ssr.Status = velerov1.ServerStatusRequestStatus{Phase: velerov1.ServerStatusRequestPhaseProcessed, Plugins: f.plugins}
		}
		if userCreate != nil {
			return userCreate(ctx, c, obj, opts...)
		}
		return c.Create(ctx, obj, opts...)
	}
	c := fake.NewClientBuilder().WithScheme(s).WithObjects(objs...).WithInterceptorFuncs(funcs).Build()
	r := Run(context.Background(), c, Options{Namespace: ns, PluginTimeout: 50 * time.Millisecond, PluginPoll: 10 * time.Millisecond})
	require.Equal(t, Names(), names(r), "every check runs, in order")
	return r, c
}

func names(r Report) []string {
	out := make([]string, len(r.Checks))
	for i, c := range r.Checks {
		out[i] = c.Name
	}
	return out
}

func find(t *testing.T, r Report, name string) Check {
	t.Helper()
	for _, c := range r.Checks {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no check %s", name)
	return Check{}
}

func TestHealthy(t *testing.T) {
	r, c := healthy().run(t)
	for _, ch := range r.Checks {
		require.Equal(t, OK, ch.Status, "%s: %s", ch.Name, ch.Detail)
		require.Empty(t, ch.Fix, ch.Name)
	}
	require.True(t, r.OK)
	require.Equal(t, "rook-ceph.rbd.csi.ceph.com: ceph-block", find(t, r, "snapshotClasses").Detail)
	require.Equal(t, "Deployment velero Available; --features=EnableCSI; node-agent DaemonSet present", find(t, r, "veleroServer").Detail)
	require.Contains(t, find(t, r, "pluginRegistered").Detail, "snapmove.io/pvc-backupper (BackupItemActionV2)")
	require.Equal(t, "1 of 1 replicas available, image ghcr.io/snapmove/snapmove:v0.1.0, --worker-image ghcr.io/snapmove/snapmove:v0.1.0", find(t, r, "moverReady").Detail)
	require.Equal(t, "default: secret velero/velero key cloud (mounted by Velero's Deployment velero)", find(t, r, "credentials").Detail)
	require.Equal(t, "default (default): Available", find(t, r, "storageLocations").Detail)

	var left velerov1.ServerStatusRequestList
	require.NoError(t, c.List(context.Background(), &left))
	require.Empty(t, left.Items, "the ServerStatusRequest is deleted")
}

func TestChecks(t *testing.T) {
	boom := errors.New("boom")
	failGet := func(match func(client.Object) bool) interceptor.Funcs {
		return interceptor.Funcs{Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			if match(obj) {
				return boom
			}
			return c.Get(ctx, key, obj, opts...)
		}}
	}
	failList := func(match func(client.ObjectList) bool) interceptor.Funcs {
		return interceptor.Funcs{List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
			if match(list) {
				return apierrors.NewForbidden(velerov1.Resource("backupstoragelocations"), "", boom)
			}
			return c.List(ctx, list, opts...)
		}}
	}
	cases := []struct {
		name   string
		edit   func(f *fixture)
		check  string
		status Status
		detail string // substring
		fix    string // substring
	}{{
		name: "a CRD missing", check: "snapshotCRDs", status: Fail,
		edit:   func(f *fixture) { delete(f.objs, "crd/volumesnapshotclasses") },
		detail: "volumesnapshots, volumesnapshotcontents serve snapshot.storage.k8s.io/v1; CRD volumesnapshotclasses.snapshot.storage.k8s.io is not installed",
		fix:    "external-snapshotter",
	}, {
		name: "a CRD without v1", check: "snapshotCRDs", status: Fail,
		edit: func(f *fixture) {
			f.objs["crd/volumesnapshots"].(*apiextensionsv1.CustomResourceDefinition).Spec.Versions = []apiextensionsv1.CustomResourceDefinitionVersion{{Name: "v1beta1", Served: true}}
		},
		detail: "volumesnapshots.snapshot.storage.k8s.io does not serve v1",
	}, {
		name: "API error reading CRDs", check: "snapshotCRDs", status: Fail,
		edit: func(f *fixture) {
			f.funcs = failGet(func(o client.Object) bool { _, ok := o.(*apiextensionsv1.CustomResourceDefinition); return ok })
		},
		detail: "reading CRD volumesnapshots.snapshot.storage.k8s.io: boom",
	}, {
		name: "no class labelled", check: "snapshotClasses", status: Fail,
		edit: func(f *fixture) {
			f.objs["vsc"].SetLabels(nil)
			f.objs["vsc2"] = &snapshotv1.VolumeSnapshotClass{ObjectMeta: metav1.ObjectMeta{Name: "a-first",
				Annotations: map[string]string{}}, Driver: driver}
		},
		detail: "rook-ceph.rbd.csi.ceph.com: none of a-first, ceph-block is labelled velero.io/csi-volumesnapshot-class=true",
		fix:    "kubectl label volumesnapshotclass a-first velero.io/csi-volumesnapshot-class=true",
	}, {
		name: "no class labelled: the default one is suggested", check: "snapshotClasses", status: Fail,
		edit: func(f *fixture) {
			f.objs["vsc"].SetLabels(nil)
			f.objs["vsc"].SetAnnotations(map[string]string{"snapshot.storage.kubernetes.io/is-default-class": "true"})
			f.objs["vsc2"] = &snapshotv1.VolumeSnapshotClass{ObjectMeta: metav1.ObjectMeta{Name: "a-first"}, Driver: driver}
		},
		fix: "kubectl label volumesnapshotclass ceph-block velero.io/csi-volumesnapshot-class=true",
	}, {
		name: "no class of a driver in use by a PV only", check: "snapshotClasses", status: Fail,
		edit: func(f *fixture) {
			f.objs["pv2"] = &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-2"},
				Spec:   corev1.PersistentVolumeSpec{PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: "ebs.csi.aws.com", VolumeHandle: "h"}}},
				Status: corev1.PersistentVolumeStatus{Phase: corev1.VolumeBound}}
		},
		detail: "ebs.csi.aws.com: no VolumeSnapshotClass; rook-ceph.rbd.csi.ceph.com: ceph-block",
		fix:    "create a VolumeSnapshotClass of driver ebs.csi.aws.com",
	}, {
		name: "two classes labelled", check: "snapshotClasses", status: Warn,
		edit: func(f *fixture) {
			f.objs["vsc2"] = &snapshotv1.VolumeSnapshotClass{ObjectMeta: metav1.ObjectMeta{Name: "ceph-block-retain",
				Labels: map[string]string{"velero.io/csi-volumesnapshot-class": "true"}}, Driver: driver}
		},
		detail: "Velero's CSI action takes the first by name, ceph-block; snapmove's actions fail the PVC unless annotation velero.io/csi-volumesnapshot-class on it",
		fix:    "kubectl label volumesnapshotclass ceph-block-retain velero.io/csi-volumesnapshot-class-",
	}, {
		name: "no CSI driver in use", check: "snapshotClasses", status: Warn,
		edit:   func(f *fixture) { delete(f.objs, "pv"); delete(f.objs, "csidriver") },
		detail: "no CSI driver in use",
	}, {
		name: "API error listing PVs", check: "snapshotClasses", status: Fail,
		edit: func(f *fixture) {
			f.funcs = failList(func(l client.ObjectList) bool { _, ok := l.(*corev1.PersistentVolumeList); return ok })
		},
		detail: "listing PersistentVolumes",
	}, {
		name: "no Velero", check: "veleroServer", status: Fail,
		edit:   func(f *fixture) { delete(f.objs, "velero") },
		detail: "no Deployment in namespace velero runs Velero's server",
		fix:    "install Velero into namespace velero",
	}, {
		name: "Velero not Available", check: "veleroServer", status: Fail,
		edit:   func(f *fixture) { f.objs["velero"].(*appsv1.Deployment).Status = appsv1.DeploymentStatus{} },
		detail: "Deployment velero not Available (0 of 1 replicas available)",
		fix:    "kubectl -n velero describe deployment velero",
	}, {
		name: "EnableCSI, no node-agent, no serveVeleroDataMover", check: "veleroServer", status: Warn,
		edit:   func(f *fixture) { delete(f.objs, "node-agent") },
		detail: "--features=EnableCSI; no node-agent DaemonSet; with EnableCSI and no node-agent",
		fix:    `set serveVeleroDataMover: "true" in ConfigMap velero/snapmove-mover`,
	}, {
		name: "EnableCSI, no node-agent, serveVeleroDataMover", check: "veleroServer", status: OK,
		edit: func(f *fixture) {
			delete(f.objs, "node-agent")
			f.objs["settings"] = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: naming.MoverConfigMapName},
				Data: map[string]string{"serveVeleroDataMover": "true"}}
		},
		detail: "serveVeleroDataMover: snapmove serves Velero's built-in data mover",
	}, {
		name: "no EnableCSI, no node-agent", check: "veleroServer", status: OK,
		edit: func(f *fixture) {
			delete(f.objs, "node-agent")
			f.objs["velero"].(*appsv1.Deployment).Spec.Template.Spec.Containers[0].Args = []string{"server"}
		},
		detail: "Deployment velero Available; --features: none; no node-agent DaemonSet",
	}, {
		name: "API error reading node-agent", check: "veleroServer", status: Fail,
		edit: func(f *fixture) {
			f.funcs = failGet(func(o client.Object) bool { _, ok := o.(*appsv1.DaemonSet); return ok })
		},
		detail: "getting DaemonSet velero/node-agent: boom",
	}, {
		name: "plugins missing", check: "pluginRegistered", status: Fail,
		edit:   func(f *fixture) { f.plugins = f.plugins[:1] },
		detail: "Velero's server lists no snapmove.io/ plugin (of 1 plugins)",
		fix:    "examples/velero-values.yaml",
	}, {
		name: "one plugin missing", check: "pluginRegistered", status: Fail,
		edit:   func(f *fixture) { f.plugins = f.plugins[:3] },
		detail: "missing: snapmove.io/dataupload-delete",
	}, {
		name: "Velero's server never answers", check: "pluginRegistered", status: Fail,
		edit:   func(f *fixture) { f.answer = false },
		detail: "Velero's server does not answer: ServerStatusRequest velero/snapmove-doctor-",
	}, {
		name: "creating the request is forbidden", check: "pluginRegistered", status: Fail,
		edit: func(f *fixture) {
			f.funcs.Create = func(context.Context, client.WithWatch, client.Object, ...client.CreateOption) error {
				return apierrors.NewForbidden(velerov1.Resource("serverstatusrequests"), "", boom)
			}
		},
		detail: "creating a ServerStatusRequest in velero",
		fix:    "grant create, get and delete on serverstatusrequests",
	}, {
		name: "no mover", check: "moverReady", status: Fail,
		edit:   func(f *fixture) { delete(f.objs, "mover") },
		detail: "no Deployment velero/snapmove-mover",
		fix:    "kubectl apply -f examples/mover.yaml",
	}, {
		name: "mover not available", check: "moverReady", status: Fail,
		edit:   func(f *fixture) { f.objs["mover"].(*appsv1.Deployment).Status.AvailableReplicas = 0 },
		detail: "no replica available, image ghcr.io/snapmove/snapmove:v0.1.0",
	}, {
		name: "invalid settings", check: "moverReady", status: Fail,
		edit: func(f *fixture) {
			f.objs["settings"] = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: naming.MoverConfigMapName},
				Data: map[string]string{"noSuchKey": "1"}}
		},
		detail: "mover settings ConfigMap velero/snapmove-mover is invalid",
	}, {
		name: "credentials secret missing", check: "credentials", status: Fail,
		edit:   func(f *fixture) { delete(f.objs, "secret/cloud") },
		detail: "default: secret velero/velero key cloud (mounted by Velero's Deployment velero): secret velero/velero does not exist",
		fix:    "kubectl -n velero create secret generic velero --from-file=cloud=CREDENTIALS_FILE",
	}, {
		name: "spec.credential names a missing key", check: "credentials", status: Fail,
		edit: func(f *fixture) {
			f.objs["bsl"].(*velerov1.BackupStorageLocation).Spec.Credential = &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "velero"}, Key: "other"}
		},
		detail: "default: secret velero/velero key other, from the BackupStorageLocation's spec.credential: secret velero/velero has no key other",
	}, {
		name: "ambient credentials", check: "credentials", status: OK,
		edit: func(f *fixture) {
			f.objs["velero"].(*appsv1.Deployment).Spec.Template.Spec.Containers[0].Env = nil
			f.objs["sa/velero"].SetAnnotations(map[string]string{"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/velero"})
			f.objs["sa/mover"].SetAnnotations(map[string]string{"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/velero"})
		},
		detail: "default: none: ambient credentials (Velero's Deployment velero mounts no credentials secret); Velero's ServiceAccount velero-server carries workload identity eks.amazonaws.com/role-arn; the mover's ServiceAccount snapmove-mover carries the same",
	}, {
		name: "the mover lacks Velero's identity", check: "credentials", status: Warn,
		edit: func(f *fixture) {
			f.objs["velero"].(*appsv1.Deployment).Spec.Template.Spec.Containers[0].Env = nil
			f.objs["sa/velero"].SetAnnotations(map[string]string{"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/velero"})
		},
		detail: "the mover's ServiceAccount snapmove-mover lacks eks.amazonaws.com/role-arn=arn:aws:iam::1:role/velero",
		fix:    "kubectl -n velero annotate serviceaccount snapmove-mover --overwrite eks.amazonaws.com/role-arn=arn:aws:iam::1:role/velero",
	}, {
		name: "API error listing BSLs", check: "credentials", status: Fail,
		edit: func(f *fixture) {
			f.funcs = failList(func(l client.ObjectList) bool { _, ok := l.(*velerov1.BackupStorageLocationList); return ok })
		},
		detail: "listing BackupStorageLocations in velero",
	}, {
		name: "no BSL", check: "storageLocations", status: Fail,
		edit:   func(f *fixture) { delete(f.objs, "bsl") },
		detail: "no BackupStorageLocation in velero",
		fix:    "velero backup-location create",
	}, {
		name: "one of two Unavailable", check: "storageLocations", status: Warn,
		edit: func(f *fixture) {
			f.objs["bsl2"] = &velerov1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "offsite"},
				Spec:   velerov1.BackupStorageLocationSpec{Provider: "aws"},
				Status: velerov1.BackupStorageLocationStatus{Phase: velerov1.BackupStorageLocationPhaseUnavailable, Message: "NoSuchBucket"}}
		},
		detail: "default (default): Available; offsite: Unavailable: NoSuchBucket",
		fix:    "velero backup-location get offsite",
	}, {
		name: "none Available", check: "storageLocations", status: Fail,
		edit: func(f *fixture) {
			f.objs["bsl"].(*velerov1.BackupStorageLocation).Status = velerov1.BackupStorageLocationStatus{Phase: velerov1.BackupStorageLocationPhaseUnavailable}
		},
		detail: "default (default): Unavailable: no message; none is Available",
	}, {
		name: "password missing, backups exist", check: "repositoryPassword", status: Fail,
		edit:   func(f *fixture) { delete(f.objs, "password") },
		detail: "secret velero/velero-repo-credentials key repository-password is missing, and backups exist",
	}, {
		name: "password missing, no backup yet", check: "repositoryPassword", status: Warn,
		edit:   func(f *fixture) { delete(f.objs, "password"); delete(f.objs, "backup") },
		detail: "is missing; no backup exists yet",
		fix:    "kubectl -n velero rollout restart deployment/velero",
	}, {
		name: "password key missing", check: "repositoryPassword", status: Fail,
		edit:   func(f *fixture) { f.objs["password"].(*corev1.Secret).Data = map[string][]byte{"x": nil} },
		detail: "secret velero/velero-repo-credentials has no key repository-password",
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := healthy()
			tc.edit(f)
			r, _ := f.run(t)
			got := find(t, r, tc.check)
			require.Equal(t, tc.status, got.Status, "%s: %s", got.Detail, got.Fix)
			require.Contains(t, got.Detail, tc.detail)
			require.Contains(t, got.Fix, tc.fix)
			require.Equal(t, tc.status != Fail, r.OK)
		})
	}
}

func TestPanicIsTheCheckFailure(t *testing.T) {
	r := runOne(context.Background(), &env{}, check{name: "x", run: func(context.Context, *env) Check { panic("bug") }})
	require.Equal(t, Check{Name: "x", Status: Fail, Detail: "the check panicked: bug", Fix: "report this as a bug of snapmove doctor"}, r)
}
