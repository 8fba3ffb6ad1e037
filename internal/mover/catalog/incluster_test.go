package catalog

import (
	"context"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pkg/errors"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/snapmove/snapmove/internal/mover/config"
	"github.com/snapmove/snapmove/internal/mover/connect"
	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/mover/expose"
	"github.com/snapmove/snapmove/internal/mover/filestream"
	"github.com/snapmove/snapmove/internal/mover/velerosrv"
	"github.com/snapmove/snapmove/internal/testkit"
)

// writingRepo restores a fixed tree into the target of a file restore.
type writingRepo struct{ fakeRepo }

func (r writingRepo) RestoreFiles(_ context.Context, req datapath.FilesRequest) (datapath.FilesResult, error) {
	if err := os.MkdirAll(filepath.Join(req.Target, "etc"), 0o755); err != nil {
		return datapath.FilesResult{}, err
	}
	err := os.WriteFile(filepath.Join(req.Target, "etc", "app.conf"), []byte("restored"), 0o644)
	return datapath.FilesResult{Matched: req.Paths, Restored: datapath.TreeCounts{Files: 1, Dirs: 1, Bytes: 8}}, err
}

func TestInClusterRestoreFiles(t *testing.T) {
	bsl := &velerov1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Namespace: veleroNS, Name: "default"},
		Spec: velerov1.BackupStorageLocationSpec{Provider: "aws",
			StorageType: velerov1.StorageType{ObjectStorage: &velerov1.ObjectStorageLocation{Bucket: "velero", Prefix: "cluster-a"}}}}
	objects := func() []client.Object {
		return []client.Object{backupObj("b1"), bsl,
			dataUpload("du1", "b1", "app", "data", velerov2alpha1.DataUploadPhaseCompleted, "s1"),
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: veleroNS, Name: "velero-repo-credentials"}, Data: map[string][]byte{"repository-password": []byte("pw")}},
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: veleroNS, Name: "cloud-credentials"}, Data: map[string][]byte{"cloud": []byte("[default]\n")}},
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "other", Name: "the-apps-own"}},
			&corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "other", Name: "live"}, Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound}},
			&corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "other", Name: "pending"}, Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimPending}},
			&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "other", Name: "app"}, Spec: corev1.PodSpec{NodeName: "node-2", Volumes: []corev1.Volume{
				{Name: "v", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "live"}}}}},
				Status: corev1.PodStatus{Phase: corev1.PodRunning}},
		}
	}
	for _, tc := range []struct {
		name   string
		target string
		// podPhase is the phase of the job's pod when it is made (none when empty);
		// attachErr what attaching returns (the stream is received otherwise).
		podPhase  corev1.PodPhase
		attachErr error
		inject    interceptor.Funcs
		wantErr   string
	}{
		{name: "streams into the job's pod on the node where the PVC is in use", target: "live", podPhase: corev1.PodRunning},
		{name: "attach fails", target: "live", podPhase: corev1.PodRunning, attachErr: errors.New("pods/attach forbidden"),
			wantErr: "streaming the files into pod other/snapmove-receive-"},
		{name: "pod ends before the stream", target: "live", podPhase: corev1.PodFailed, wantErr: "ended before the files were sent"},
		{name: "no pod runs", target: "live", wantErr: "no pod ran within 50ms"},
		{name: "target missing", target: "nope", wantErr: "target PVC other/nope not found"},
		{name: "target not bound", target: "pending", wantErr: `target PVC other/pending is not bound (phase "Pending")`},
		{name: "job create fails", target: "live", wantErr: "creating job other/snapmove-receive-", inject: interceptor.Funcs{
			Create: func(ctx context.Context, c client.WithWatch, obj client.Object, o ...client.CreateOption) error {
				if _, ok := obj.(*batchv1.Job); ok {
					return errors.New("quota exceeded")
				}
				return c.Create(ctx, obj, o...)
			}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pvc := t.TempDir() // the live PVC, as the receiver's pod sees it
			var job *batchv1.Job
			var secretsDuring []string
			inject := tc.inject
			if inject.Create == nil {
				inject.Create = func(ctx context.Context, c client.WithWatch, obj client.Object, o ...client.CreateOption) error {
					if err := c.Create(ctx, obj, o...); err != nil {
						return err
					}
					j, ok := obj.(*batchv1.Job)
					if !ok || tc.podPhase == "" {
						return nil
					}
					// The job controller's part: the job's pod.
					job = j.DeepCopy()
					pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: j.Namespace, Name: j.Name + "-abcde",
						Labels: map[string]string{batchv1.ControllerUidLabel: string(j.UID)}},
						Spec: j.Spec.Template.Spec, Status: corev1.PodStatus{Phase: tc.podPhase}}
					if tc.podPhase == corev1.PodFailed {
						pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: expose.ReceiverContainer,
							State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Message: "image pull failed"}}}}
					}
					return c.Create(ctx, pod)
				}
			}
			c := fake.NewClientBuilder().WithScheme(testkit.Scheme(t)).WithObjects(objects()...).WithInterceptorFuncs(inject).Build()
			repos := &fakeRepos{byNS: map[string]fakeRepo{"app": {}}, opened: map[string]int{}}
			cat := &Catalog{Source: Cluster{Client: c, Namespace: veleroNS}, Repos: writingReposOf(repos), Log: logrus.New()}
			attach := func(ctx context.Context, key types.NamespacedName, container string, stdin io.Reader) error {
				secrets := &corev1.SecretList{}
				require.NoError(t, c.List(ctx, secrets, client.InNamespace("other")))
				for _, s := range secrets.Items {
					secretsDuring = append(secretsDuring, s.Name)
				}
				assert.Equal(t, expose.ReceiverContainer, container)
				if tc.attachErr != nil {
					return tc.attachErr
				}
				// The kubelet's part: the container reads its stdin and ends.
				_, err := filestream.Receive(stdin, pvc)
				pod := &corev1.Pod{}
				require.NoError(t, c.Get(ctx, key, pod))
				pod.Status.Phase = corev1.PodSucceeded
				pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: expose.ReceiverContainer,
					State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Message: "received 1 files\n"}}}}
				require.NoError(t, c.Status().Update(ctx, pod))
				return err
			}
			ic := &InCluster{Client: c, Catalog: cat, Namespace: veleroNS, Image: "snapmove:test",
				DefaultCredentials: connect.StaticCredentials{Secret: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cloud-credentials"}, Key: "cloud"}},
				Settings:           config.Default(), Timeout: 50 * time.Millisecond, Interval: 10 * time.Millisecond, Attach: attach, Log: logrus.New()}
			_, res, report, err := ic.RestoreFiles(context.Background(), "b1", "app/data", datapath.FilesRequest{Paths: []string{"etc"}},
				types.NamespacedName{Namespace: "other", Name: tc.target})

			// Whatever happened, the job is gone (with its pod, by garbage collection), and
			// the namespace never held a secret but its own.
			jobs := &batchv1.JobList{}
			require.NoError(t, c.List(context.Background(), jobs, client.InNamespace("other")))
			assert.Empty(t, jobs.Items, "receiver job left")
			secrets := &corev1.SecretList{}
			require.NoError(t, c.List(context.Background(), secrets, client.InNamespace("other")))
			assert.Len(t, secrets.Items, 1, "secrets made")
			for _, s := range secretsDuring {
				assert.Equal(t, "the-apps-own", s, "a secret in the namespace during the stream")
			}
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, "received 1 files\n", report)
			assert.Equal(t, []string{"etc"}, res.Matched)
			got, err := os.ReadFile(filepath.Join(pvc, "etc", "app.conf"))
			require.NoError(t, err)
			assert.Equal(t, "restored", string(got))
			require.NotNil(t, job)
			assert.Equal(t, "node-2", job.Spec.Template.Spec.NodeName, "next to the pod that uses the PVC")
			assert.Equal(t, "live", job.Spec.Template.Spec.Volumes[0].PersistentVolumeClaim.ClaimName)
			assert.Equal(t, int64(0), *job.Spec.ActiveDeadlineSeconds, "the deadline is --timeout (50ms here)")
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
	// How Velero's server runs (velerosrv.Discover): with a secret and a private registry,
	// and with workload identity.
	pullOnly := velerosrv.Server{Namespace: veleroNS, Deployment: "velero", ServiceAccount: "velero-server",
		ImagePullSecrets: []corev1.LocalObjectReference{{Name: "registry"}}}
	identity := velerosrv.Server{Namespace: veleroNS, Deployment: "velero", ServiceAccount: "velero-server",
		Annotations: map[string]string{"azure.workload.identity/client-id": "00000000-0000-0000-0000-000000000001"},
		PodLabels:   map[string]string{velerosrv.AzureUseLabel: "true"}}
	for _, tc := range []struct {
		name     string
		volume   string
		server   *velerosrv.Server // nil: not read
		phase    corev1.PodPhase
		message  string
		wantArgs []string
		// wantAccount is the pod's account: "" (the namespace's default) unless Velero's
		// account carries workload-identity annotations.
		wantAccount string
		wantErr     string
	}{
		{name: "every moved volume of the backup", phase: corev1.PodSucceeded, message: "app/data OK\napp/logs OK\n",
			wantArgs: []string{"verify", "b1", "--level=full", "--snapshot=app/data=s1", "--snapshot=app/logs=s2"}},
		{name: "Velero's server without workload identity: its pull secrets, the default account", server: &pullOnly,
			phase: corev1.PodSucceeded, message: "app/logs OK\n", volume: "app/logs",
			wantArgs: []string{"verify", "b1", "--level=full", "--snapshot=app/logs=s2"}},
		{name: "Velero's server with workload identity: its account and label", server: &identity,
			phase: corev1.PodSucceeded, message: "app/logs OK\n", volume: "app/logs",
			wantArgs:    []string{"verify", "b1", "--level=full", "--snapshot=app/logs=s2"},
			wantAccount: "velero-server"},
		{name: "one volume", volume: "app/logs", phase: corev1.PodSucceeded, message: "app/logs OK\n",
			wantArgs: []string{"verify", "b1", "--level=full", "--snapshot=app/logs=s2"}},
		{name: "a volume fails", phase: corev1.PodFailed, message: "app/data FAILED data/a: content missing\nsnapmove: 1 of 2 volumes failed verification",
			wantErr: "failed: app/data FAILED data/a: content missing\nsnapmove: 1 of 2 volumes failed verification"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var created *corev1.Pod
			c := commandCluster(t, bsl, tc.phase, tc.message, func(p *corev1.Pod) { created = p.DeepCopy() },
				dataUpload("du1", "b1", "app", "data", velerov2alpha1.DataUploadPhaseCompleted, "s1"),
				dataUpload("du2", "b1", "app", "logs", velerov2alpha1.DataUploadPhaseCompleted, "s2"),
				dataUpload("du3", "b1", "app", "cache", velerov2alpha1.DataUploadPhaseCanceled, ""))
			ic := &InCluster{Client: c, Catalog: &Catalog{Source: Cluster{Client: c, Namespace: veleroNS}, Log: logrus.New()},
				Namespace: veleroNS, Image: "snapmove:test", Settings: config.Default(), Timeout: time.Second, Interval: 10 * time.Millisecond, Log: logrus.New()}
			if tc.server != nil {
				ic.UseServer(*tc.server)
			}
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
			assert.Equal(t, tc.wantAccount, created.Spec.ServiceAccountName)
			assert.False(t, *created.Spec.AutomountServiceAccountToken, "no API token, whichever the account")
			if tc.server != nil {
				assert.Equal(t, tc.server.ImagePullSecrets, created.Spec.ImagePullSecrets)
				for k, v := range tc.server.PodLabels {
					assert.Equal(t, v, created.Labels[k])
				}
			}
			pods := &corev1.PodList{}
			require.NoError(t, c.List(context.Background(), pods))
			assert.Empty(t, pods.Items, "the pod is deleted")
		})
	}
}

// commandCluster is a fake cluster with backup b1, its uploads, bsl and the repository
// password, where each command pod created has ended in phase, its container having said
// message; created sees each pod.
func commandCluster(t *testing.T, bsl *velerov1.BackupStorageLocation, phase corev1.PodPhase, message string, created func(*corev1.Pod), uploads ...client.Object) client.Client {
	objs := append([]client.Object{backupObj("b1"), bsl,
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: veleroNS, Name: "velero-repo-credentials"}, Data: map[string][]byte{"repository-password": []byte("pw")}},
	}, uploads...)
	return fake.NewClientBuilder().WithScheme(testkit.Scheme(t)).WithObjects(objs...).WithInterceptorFuncs(interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, o ...client.CreateOption) error {
			if p, ok := obj.(*corev1.Pod); ok {
				p.Status.Phase = phase
				p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: expose.CommandContainer,
					State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Message: message}}}}
				created(p)
			}
			return c.Create(ctx, obj, o...)
		}}).Build()
}

// writingRepos opens writingRepos over repos'.
type writingRepos struct{ *fakeRepos }

func writingReposOf(r *fakeRepos) Repositories { return writingRepos{r} }

func (w writingRepos) Open(ctx context.Context, bsl *velerov1.BackupStorageLocation, ns string) (Repository, error) {
	r, err := w.fakeRepos.Open(ctx, bsl, ns)
	if err != nil {
		return nil, err
	}
	return writingRepo{r.(fakeRepo)}, nil
}

func (r writingRepo) ReadDir(_ context.Context, _, rel string) (datapath.Entry, []datapath.Entry, error) {
	children := map[string][]datapath.Entry{
		"":    {{Name: "etc", Mode: fs.ModeDir | 0o755, UID: 10, GID: 11}, {Name: "var", Mode: fs.ModeDir | 0o755}},
		"etc": {{Name: "app.conf", Mode: 0o644, UID: 999, GID: 998}},
	}[rel]
	return datapath.Entry{Mode: fs.ModeDir | 0o755}, children, nil
}

// TestOwners reads the snapshot's owners of what was restored, by path: a CLI that is
// not root restores files as its own.
func TestOwners(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "etc"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "etc", "app.conf"), nil, 0o644))
	repos := &fakeRepos{byNS: map[string]fakeRepo{"app": {}}, opened: map[string]int{}}
	cat := newClusterCatalog(t, repos)
	cat.Repos = writingReposOf(repos)
	owners, err := cat.Owners(context.Background(), Volume{Namespace: "app", PVC: "data", SnapshotID: "s1", StorageLocation: "default"}, dir)
	require.NoError(t, err)
	for rel, want := range map[string][3]int{"etc": {10, 11, 1}, "etc/app.conf": {999, 998, 1}, "elsewhere": {0, 0, 0}} {
		uid, gid, ok := owners(rel)
		assert.Equal(t, want, [3]int{uid, gid, map[bool]int{true: 1}[ok]}, rel)
	}
	assert.Equal(t, 1, repos.closed, "the repository is closed")
}

// TestInClusterVerifyResults runs the pod with -o json and reads its verifications back,
// failed ones included; a report that is not them (cut short, or the pod's own failure)
// is an error that quotes it.
func TestInClusterVerifyResults(t *testing.T) {
	bsl := &velerov1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Namespace: veleroNS, Name: "default"},
		Spec: velerov1.BackupStorageLocationSpec{Provider: "aws",
			StorageType: velerov1.StorageType{ObjectStorage: &velerov1.ObjectStorageLocation{Bucket: "velero"}}}}
	vs := `[{"volume":{"backup":"b1","namespace":"app","pvc":"data","snapshotID":"s1","phase":"Completed","dataMover":"snapmove",` +
		`"storageLocation":"offline","totalBytes":3000,"incrementalBytes":-1,"files":-1},"ok":false,"summary":"data/a: content missing"}]`
	for _, tc := range []struct {
		name, message string
		phase         corev1.PodPhase
		wantOK        bool
		wantErr       string
	}{
		{name: "all verified", phase: corev1.PodSucceeded, message: strings.Replace(vs, `"ok":false`, `"ok":true`, 1) + "\n", wantOK: true},
		{name: "a volume failed: the pod failed, its report holds it", phase: corev1.PodFailed,
			message: vs + "\nsnapmove: 1 of 1 volumes failed verification"},
		{name: "the pod could not verify", phase: corev1.PodFailed, message: "snapmove: opening the repository: access denied",
			wantErr: "failed: snapmove: opening the repository: access denied"},
		{name: "cut short", phase: corev1.PodSucceeded, message: "..." + vs[100:],
			wantErr: "its report is not the verifications (cut short? verify one volume at a time, or use -o text)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var args []string
			c := commandCluster(t, bsl, tc.phase, tc.message, func(p *corev1.Pod) { args = p.Spec.Containers[0].Args },
				dataUpload("du1", "b1", "app", "data", velerov2alpha1.DataUploadPhaseCompleted, "s1"))
			var waited []string
			ic := &InCluster{Client: c, Catalog: &Catalog{Source: Cluster{Client: c, Namespace: veleroNS}, Log: logrus.New()},
				Namespace: veleroNS, Image: "snapmove:test", Settings: config.Default(), Timeout: time.Second, Interval: 10 * time.Millisecond, Log: logrus.New(),
				OnWait: func(s string) { waited = append(waited, s) }}
			got, err := ic.VerifyResults(context.Background(), "b1", "", "metadata")
			assert.Contains(t, args, "--output=json")
			require.NotEmpty(t, waited)
			assert.Regexp(t, `^pod velero/snapmove-command-\w+: (Succeeded|Failed)$`, waited[len(waited)-1])
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Len(t, got, 1)
			assert.Equal(t, tc.wantOK, got[0].OK)
			assert.Equal(t, "app/data", got[0].Volume.Key())
			assert.Equal(t, "data/a: content missing", got[0].Summary)
		})
	}
}
