package catalog

import (
	"context"
	"testing"
	"time"

	"github.com/pkg/errors"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/snapmove/snapmove/internal/mover/config"
	"github.com/snapmove/snapmove/internal/mover/expose"
	"github.com/snapmove/snapmove/internal/testkit"
)

func TestInClusterRestoreFiles(t *testing.T) {
	bsl := &velerov1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Namespace: veleroNS, Name: "default"},
		Spec: velerov1.BackupStorageLocationSpec{Provider: "aws", Config: map[string]string{"region": "minio", "s3Url": "http://minio:9000"},
			StorageType: velerov1.StorageType{ObjectStorage: &velerov1.ObjectStorageLocation{Bucket: "velero", Prefix: "cluster-a"}}}}
	objects := func() []client.Object {
		return []client.Object{backupObj("b1"), bsl,
			dataUpload("du1", "b1", "app", "data", velerov2alpha1.DataUploadPhaseCompleted, "s1"),
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: veleroNS, Name: "velero-repo-credentials"}, Data: map[string][]byte{"repository-password": []byte("pw")}},
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: veleroNS, Name: "cloud-credentials"}, Data: map[string][]byte{"cloud": []byte("[default]\n")}},
			&corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "other", Name: "live"}, Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound}},
			&corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "other", Name: "pending"}, Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimPending}},
			&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "other", Name: "app"}, Spec: corev1.PodSpec{NodeName: "node-2", Volumes: []corev1.Volume{
				{Name: "v", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "live"}}}}},
				Status: corev1.PodStatus{Phase: corev1.PodRunning}},
		}
	}
	for _, tc := range []struct {
		name     string
		target   string
		podPhase corev1.PodPhase
		inject   interceptor.Funcs
		wantErr  string
	}{
		{name: "succeeds on the node where the PVC is in use", target: "live", podPhase: corev1.PodSucceeded},
		{name: "pod fails: its log is the error", target: "live", podPhase: corev1.PodFailed, wantErr: "failed: snapmove: no such path"},
		{name: "pod never ends", target: "live", podPhase: corev1.PodPending, wantErr: "did not end within 50ms"},
		{name: "target missing", target: "nope", wantErr: "target PVC other/nope not found"},
		{name: "target not bound", target: "pending", wantErr: `target PVC other/pending is not bound (phase "Pending")`},
		{name: "pod create fails", target: "live", wantErr: "creating pod other/snapmove-command-", inject: interceptor.Funcs{
			Create: func(ctx context.Context, c client.WithWatch, obj client.Object, o ...client.CreateOption) error {
				if _, ok := obj.(*corev1.Pod); ok {
					return errors.New("quota exceeded")
				}
				return c.Create(ctx, obj, o...)
			}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var created *corev1.Pod
			var secret *corev1.Secret
			inject := tc.inject
			if inject.Create == nil {
				inject.Create = func(ctx context.Context, c client.WithWatch, obj client.Object, o ...client.CreateOption) error {
					switch o := obj.(type) {
					case *corev1.Pod:
						// The kubelet's part: the pod ends, its message is the report.
						o.Status.Phase = tc.podPhase
						msg := "restored etc of app/data\n"
						if tc.podPhase == corev1.PodFailed {
							msg = "snapmove: no such path"
						}
						if tc.podPhase != corev1.PodPending {
							o.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: expose.CommandContainer,
								State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Message: msg}}}}
						}
						created = o.DeepCopy()
					case *corev1.Secret:
						secret = o.DeepCopy()
					}
					return c.Create(ctx, obj, o...)
				}
			}
			c := fake.NewClientBuilder().WithScheme(testkit.Scheme(t)).WithObjects(objects()...).WithInterceptorFuncs(inject).Build()
			cat := &Catalog{Source: Cluster{Client: c, Namespace: veleroNS}, Log: logrus.New()}
			tp := &InCluster{Client: c, Catalog: cat, Namespace: veleroNS, Image: "snapmove:test",
				DefaultCredentials: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cloud-credentials"}, Key: "cloud"},
				Settings:           config.Default(), Timeout: 50 * time.Millisecond, Interval: 10 * time.Millisecond, Log: logrus.New()}
			out, err := tp.RestoreFiles(context.Background(), "b1", "app/data", []string{"etc"}, types.NamespacedName{Namespace: "other", Name: tc.target})

			// Whatever happened, nothing is left in the target namespace.
			pods := &corev1.PodList{}
			require.NoError(t, c.List(context.Background(), pods, client.InNamespace("other"), client.MatchingLabels{"app.kubernetes.io/component": expose.CommandComponent}))
			assert.Empty(t, pods.Items, "restore pods left")
			secrets := &corev1.SecretList{}
			require.NoError(t, c.List(context.Background(), secrets, client.InNamespace("other")))
			assert.Empty(t, secrets.Items, "secrets left")
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, "restored etc of app/data\n", out)
			require.NotNil(t, created)
			assert.Equal(t, "node-2", created.Spec.NodeName, "next to the pod that uses the PVC")
			assert.Equal(t, []string{"restore-files", "b1", "app/data", "etc", "--snapshot-id=s1", "--to=/data",
				"--provider=aws", "--bucket=velero", "--prefix=cluster-a", "--config=region=minio", "--config=s3Url=http://minio:9000",
				"--password-file=/snapmove-credentials/repository-password", "--report-file=/dev/termination-log",
				"--credentials-file=/snapmove-credentials/cloud"},
				created.Spec.Containers[0].Args)
			assert.Equal(t, "live", created.Spec.Volumes[0].PersistentVolumeClaim.ClaimName)
			assert.Equal(t, map[string][]byte{"repository-password": []byte("pw"), "cloud": []byte("[default]\n")}, secret.Data)
			for _, a := range created.Spec.Containers[0].Args {
				assert.NotContains(t, a, "pw", "no secret on the command line")
			}
		})
	}
}

func TestWorkerImage(t *testing.T) {
	dep := func(ctr corev1.Container) *appsv1.Deployment {
		return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: veleroNS, Name: MoverDeployment},
			Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{ctr}}}}}
	}
	for name, tc := range map[string]struct {
		ctr  corev1.Container
		want string
	}{
		"flag": {ctr: corev1.Container{Image: "mover:1", Args: []string{"--worker-image=worker:2"}}, want: "worker:2"},
		"env":  {ctr: corev1.Container{Image: "mover:1", Env: []corev1.EnvVar{{Name: "SNAPMOVE_WORKER_IMAGE", Value: "worker:3"}}}, want: "worker:3"},
		"own":  {ctr: corev1.Container{Image: "mover:1"}, want: "mover:1"},
	} {
		t.Run(name, func(t *testing.T) {
			c := fake.NewClientBuilder().WithScheme(testkit.Scheme(t)).WithObjects(dep(tc.ctr)).Build()
			got, err := WorkerImage(context.Background(), c, veleroNS)
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
	_, err := WorkerImage(context.Background(), fake.NewClientBuilder().WithScheme(testkit.Scheme(t)).Build(), veleroNS)
	assert.ErrorContains(t, err, "or give --image")
}

func TestInClusterVerify(t *testing.T) {
	bsl := &velerov1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Namespace: veleroNS, Name: "default"},
		Spec: velerov1.BackupStorageLocationSpec{Provider: "aws",
			StorageType: velerov1.StorageType{ObjectStorage: &velerov1.ObjectStorageLocation{Bucket: "velero"}}}}
	for _, tc := range []struct {
		name     string
		volume   string
		phase    corev1.PodPhase
		message  string
		wantArgs []string
		wantErr  string
	}{
		{name: "every moved volume of the backup", phase: corev1.PodSucceeded, message: "app/data OK\napp/logs OK\n",
			wantArgs: []string{"verify", "b1", "--level=full", "--snapshot=app/data=s1", "--snapshot=app/logs=s2"}},
		{name: "one volume", volume: "app/logs", phase: corev1.PodSucceeded, message: "app/logs OK\n",
			wantArgs: []string{"verify", "b1", "--level=full", "--snapshot=app/logs=s2"}},
		{name: "a volume fails", phase: corev1.PodFailed, message: "app/data FAILED data/a: content missing\nsnapmove: 1 of 2 volumes failed verification",
			wantErr: "failed: app/data FAILED data/a: content missing\nsnapmove: 1 of 2 volumes failed verification"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var created *corev1.Pod
			c := fake.NewClientBuilder().WithScheme(testkit.Scheme(t)).WithObjects(backupObj("b1"), bsl,
				&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: veleroNS, Name: "velero-repo-credentials"}, Data: map[string][]byte{"repository-password": []byte("pw")}},
				dataUpload("du1", "b1", "app", "data", velerov2alpha1.DataUploadPhaseCompleted, "s1"),
				dataUpload("du2", "b1", "app", "logs", velerov2alpha1.DataUploadPhaseCompleted, "s2"),
				dataUpload("du3", "b1", "app", "cache", velerov2alpha1.DataUploadPhaseCanceled, ""),
			).WithInterceptorFuncs(interceptor.Funcs{Create: func(ctx context.Context, c client.WithWatch, obj client.Object, o ...client.CreateOption) error {
				if p, ok := obj.(*corev1.Pod); ok {
					p.Status.Phase = tc.phase
					p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: expose.CommandContainer,
						State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Message: tc.message}}}}
					created = p.DeepCopy()
				}
				return c.Create(ctx, obj, o...)
			}}).Build()
			ic := &InCluster{Client: c, Catalog: &Catalog{Source: Cluster{Client: c, Namespace: veleroNS}, Log: logrus.New()},
				Namespace: veleroNS, Image: "snapmove:test", Settings: config.Default(), Timeout: time.Second, Interval: 10 * time.Millisecond, Log: logrus.New()}
			out, err := ic.Verify(context.Background(), "b1", tc.volume, "full")
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
			} else {
				require.NoError(t, err)
				assert.Equal(t, tc.message, out)
				assert.Equal(t, append(tc.wantArgs, "--provider=aws", "--bucket=velero", "--prefix=",
					"--password-file=/snapmove-credentials/repository-password", "--report-file=/dev/termination-log"), created.Spec.Containers[0].Args)
			}
			require.NotNil(t, created)
			assert.Equal(t, veleroNS, created.Namespace, "no PVC: the pod runs in Velero's namespace")
			assert.Len(t, created.Spec.Volumes, 2, "credentials and scratch, no PVC")
			pods := &corev1.PodList{}
			require.NoError(t, c.List(context.Background(), pods))
			assert.Empty(t, pods.Items, "the pod is deleted")
		})
	}
}
