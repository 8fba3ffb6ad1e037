package expose

import (
	"context"
	"testing"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"github.com/stretchr/testify/require"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	"github.com/vmware-tanzu/velero/pkg/builder"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/snapmove/snapmove/internal/testkit"
)

func duOwner() metav1.OwnerReference {
	du := builder.ForDataUpload("velero", "backup-1-abcde").Result()
	du.UID = types.UID("du-uid")
	return OwnerReference(velerov2alpha1.SchemeGroupVersion.String(), "DataUpload", du)
}

func ddOwner() metav1.OwnerReference {
	dd := builder.ForDataDownload("velero", "restore-1-fghij").Result()
	dd.UID = types.UID("dd-uid")
	return OwnerReference(velerov2alpha1.SchemeGroupVersion.String(), "DataDownload", dd)
}

func sourceContent() *snapshotv1.VolumeSnapshotContent {
	vsc := builder.ForVolumeSnapshotContent("snapcontent-1").
		Driver("hostpath.csi.k8s.io").
		DeletionPolicy(snapshotv1.VolumeSnapshotContentDelete).
		VolumeSnapshotClassName("csi-hostpath-snapclass").
		Status(&snapshotv1.VolumeSnapshotContentStatus{SnapshotHandle: ptr.To("handle-1"), ReadyToUse: ptr.To(true)}).
		Result()
	vsc.Labels = map[string]string{"snapshot.storage.kubernetes.io/managed-by": "node-1", "other": "x"}
	vsc.Annotations = map[string]string{"snapshot.storage.kubernetes.io/deletion-secret-name": "s"}
	vsc.Spec.SourceVolumeMode = ptr.To(corev1.PersistentVolumeFilesystem)
	return vsc
}

func backupPodParams() PodParams {
	return PodParams{
		Operation:       Backup,
		Name:            "backup-1-abcde",
		Namespace:       "velero",
		Owner:           duOwner(),
		Image:           "ghcr.io/snapmove/snapmove:v0.1.0",
		ImagePullPolicy: corev1.PullIfNotPresent,
		ServiceAccount:  "backup-1-abcde",
		PVC:             "backup-1-abcde",
		ReadOnlyClaim:   true,
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("256Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("2Gi")},
		},
		CacheSize: resource.MustParse("6Gi"),
		Args:      WorkerArgs(map[string]string{"default-credentials-secret": "cloud-credentials/cloud", "cache-limit-mb": "4096", "verify": "metadata"}),
		NodeAffinity: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
			MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "topology.hostpath.csi/node", Operator: corev1.NodeSelectorOpIn, Values: []string{"node-1"}}},
		}}},
		Tolerations:       []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "backup", Effect: corev1.TaintEffectNoSchedule}},
		PriorityClassName: "backup-low",
	}
}

func TestGoldenBackup(t *testing.T) {
	p := SnapshotParams{Name: "backup-1-abcde", Namespace: "velero", UID: "du-uid", Source: sourceContent(), SnapshotClass: ptr.To("csi-hostpath-snapclass")}
	testkit.Golden(t, "testdata/backup-vsc.yaml", BackupVolumeSnapshotContent(p))
	testkit.Golden(t, "testdata/backup-vs.yaml", BackupVolumeSnapshot(p))
	testkit.Golden(t, "testdata/backup-pvc.yaml", BackupPVC(BackupPVCParams{
		Name: "backup-1-abcde", Namespace: "velero", Owner: duOwner(), StorageClass: "csi-hostpath-sc",
		AccessMode: corev1.ReadOnlyMany, VolumeMode: corev1.PersistentVolumeFilesystem, Size: resource.MustParse("1Gi"),
	}))
	testkit.Golden(t, "testdata/backup-pod.yaml", WorkerPod(backupPodParams()))
	sa, role, binding := WorkerIdentity(IdentityParams{
		Operation: Backup, Name: "backup-1-abcde", Namespace: "velero", Owner: duOwner(),
		StorageLocation: "default", Secrets: []string{"cloud-credentials", "velero-repo-credentials"},
	})
	testkit.Golden(t, "testdata/backup-identity.yaml", []any{sa, role, binding})
	testkit.Golden(t, "testdata/backup-report.yaml", ProgressReport(ReportParams{
		Operation: Backup, Name: "backup-1-abcde", Namespace: "velero", Owner: duOwner(),
	}))

	block := backupPodParams()
	block.Block, block.ReadOnlyClaim, block.HostNetwork, block.NodeAffinity = true, false, true, nil
	block.Args = WorkerArgs(map[string]string{"default-credentials-secret": "cloud-credentials/cloud", "cbt-address": "snapshot-metadata.csi.example:6443",
		"cbt-snapshot": "backup-1-abcde", "cbt-change-id": "snap-7", "cbt-volume-id": "vol-3"})
	block.CBTAudience, block.CBTCACert = "csi-example-cbt", []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
	testkit.Golden(t, "testdata/backup-block-pod.yaml", WorkerPod(block))
	sa, role, binding = WorkerIdentity(IdentityParams{
		Operation: Backup, Name: "backup-1-abcde", Namespace: "velero", Owner: duOwner(),
		StorageLocation: "default", Secrets: []string{"velero-repo-credentials"}, CBT: true,
	})
	testkit.Golden(t, "testdata/backup-block-identity.yaml", []any{sa, role, binding})
}

func TestGoldenRestore(t *testing.T) {
	target := builder.ForPersistentVolumeClaim("app", "data-0").
		StorageClass("csi-hostpath-sc").
		RequestResource(corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}).
		Result()
	target.Spec.AccessModes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}
	target.Spec.VolumeMode = ptr.To(corev1.PersistentVolumeFilesystem)
	testkit.Golden(t, "testdata/restore-pvc.yaml", RestorePVC(RestorePVCParams{
		Name: "restore-1-fghij", Namespace: "velero", Owner: ddOwner(), Target: target,
		SnapshotSize: 3<<30 + 1, SelectedNode: "node-2",
	}))
	testkit.Golden(t, "testdata/restore-pod.yaml", WorkerPod(PodParams{
		Operation: Restore, Name: "restore-1-fghij", Namespace: "velero", Owner: ddOwner(),
		Image: "ghcr.io/snapmove/snapmove:v0.1.0", ImagePullPolicy: corev1.PullIfNotPresent,
		ServiceAccount: "restore-1-fghij", PVC: "restore-1-fghij", CacheSize: resource.MustParse("6Gi"),
		Args:     WorkerArgs(map[string]string{"default-credentials-secret": "cloud-credentials/cloud", "write-sparse-default": "true"}),
		NodeName: "node-2",
	}))
	_, role, _ := WorkerIdentity(IdentityParams{Operation: Restore, Name: "restore-1-fghij", Namespace: "velero", Owner: ddOwner()})
	require.Equal(t, []string{"datadownloads"}, role.Rules[0].Resources, "a restore worker reads its DataDownload")
	require.Equal(t, []string{"restore-1-fghij"}, role.Rules[0].ResourceNames)
	require.Equal(t, []string{"get"}, role.Rules[0].Verbs, "and may not write it")
	block := WorkerPod(PodParams{Operation: Restore, Name: "r", Namespace: "velero", PVC: "r", Block: true})
	require.Equal(t, TargetDevicePath, block.Spec.Containers[0].VolumeDevices[0].DevicePath)
	require.Contains(t, block.Spec.Containers[0].Command, "--block")
}

func TestRestoreSize(t *testing.T) {
	pvc := func(q string) *corev1.PersistentVolumeClaim {
		p := &corev1.PersistentVolumeClaim{}
		p.Spec.VolumeMode = ptr.To(corev1.PersistentVolumeFilesystem)
		if q != "" {
			p.Spec.Resources.Requests = corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(q)}
		}
		return p
	}
	blockPVC := func(q string) *corev1.PersistentVolumeClaim {
		p := pvc(q)
		p.Spec.VolumeMode = ptr.To(corev1.PersistentVolumeBlock)
		return p
	}
	tests := []struct {
		name     string
		target   *corev1.PersistentVolumeClaim
		snapshot int64
		want     string
	}{
		{"request wins", pvc("10Gi"), 5 << 30, "10Gi"},
		{"filesystem: sparse files larger than the volume", pvc("1Gi"), 3 << 30, "1Gi"},
		{"filesystem: the request as it was", pvc("256Mi"), 100 << 20, "256Mi"},
		{"unknown snapshot size", pvc("500Mi"), 0, "500Mi"},
		{"no request: snapshot rounded up to GiB", pvc(""), 100, "1Gi"},
		{"block: the device size exactly", blockPVC("256Mi"), 256 << 20, "256Mi"},
		{"block: a device larger than the request", blockPVC("256Mi"), 300 << 20, "300Mi"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := RestoreSize(tc.target, tc.snapshot)
			require.Zero(t, got.Cmp(resource.MustParse(tc.want)), "got %s", got.String())
		})
	}
}

func TestParseResult(t *testing.T) {
	r, err := ParseResult(`{"snapshotID":"k123","totalBytes":10,"incrementalBytes":4}`)
	require.NoError(t, err)
	require.Equal(t, Result{SnapshotID: "k123", TotalBytes: 10, IncrementalBytes: 4}, r)
	r, err = ParseResult(`{"snapshotID":"k1","totalBytes":10,"verification":"verified (full): 1 file, 1 directory, 10 B; content of 1 file (10 B) read back in 5ms"}`)
	require.NoError(t, err)
	require.Equal(t, "verified (full): 1 file, 1 directory, 10 B; content of 1 file (10 B) read back in 5ms", r.Verification)
	_, err = ParseResult("boom")
	require.ErrorContains(t, err, `parsing worker result "boom"`)
	_, err = ParseResult(`{"snapshotID":"../k1","totalBytes":10}`)
	require.ErrorContains(t, err, `snapshot ID "../k1", not a kopia manifest ID`)
	_, err = ParseResult(`{"snapshotID":"k1","totalBytes":-10}`)
	require.ErrorContains(t, err, "negative sizes")

	pod := builder.ForPod("velero", "x").Result()
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: WorkerContainer, State: corev1.ContainerState{
		Terminated: &corev1.ContainerStateTerminated{Message: "msg"},
	}}}
	require.Equal(t, "msg", TerminationMessage(pod))
}

// TestCreateAdoptsOnlyItsOwn: an object of the name the mover gives its own counts as
// created only when it carries the movement's UID label (a retried pass); someone else's
// (no label, or another movement's UID) is a NotMadeForError naming it, and stays as it
// was.
func TestCreateAdoptsOnlyItsOwn(t *testing.T) {
	pvc := func() *corev1.PersistentVolumeClaim {
		return BackupPVC(BackupPVCParams{Name: "backup-1-abcde", Namespace: "velero", Owner: duOwner(), AccessMode: corev1.ReadWriteOnce,
			VolumeMode: corev1.PersistentVolumeBlock, Size: resource.MustParse("1Gi")})
	}
	labelled := func(labels map[string]string) *corev1.PersistentVolumeClaim {
		p := builder.ForPersistentVolumeClaim("velero", "backup-1-abcde").Result()
		p.Labels = labels
		return p
	}
	ownedBy := func(owner metav1.OwnerReference, controller bool) *corev1.PersistentVolumeClaim {
		p := labelled(map[string]string{"app": "velero"})
		owner.Controller = ptr.To(controller)
		p.OwnerReferences = []metav1.OwnerReference{owner}
		return p
	}
	for _, tc := range []struct {
		name     string
		existing *corev1.PersistentVolumeClaim
		wantErr  string
	}{
		{name: "nothing there: created"},
		{name: "ours from an earlier pass: adopted", existing: pvc()},
		{name: "someone else's: refused", existing: labelled(map[string]string{"app": "velero"}),
			wantErr: "PersistentVolumeClaim velero/backup-1-abcde exists and was not made for this movement (it has no label snapmove.io/movement-uid=du-uid)"},
		{name: "another movement's of the same name: refused", existing: labelled(Labels(Backup, "backup-1-abcde", "old-uid")),
			wantErr: "was not made for this movement"},
		{name: "ours, made before the label (the movement is its controller owner): adopted", existing: ownedBy(duOwner(), true)},
		{name: "the movement owns it, not as its controller: refused", existing: ownedBy(duOwner(), false),
			wantErr: "was not made for this movement"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := fake.NewClientBuilder()
			if tc.existing != nil {
				b = b.WithObjects(tc.existing)
			}
			c := b.Build()
			var before corev1.PersistentVolumeClaim
			if tc.existing != nil {
				require.NoError(t, c.Get(context.Background(), client.ObjectKeyFromObject(tc.existing), &before))
			}
			err := Create(context.Background(), c, c, pvc())
			if tc.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.wantErr)
			var nm *NotMadeForError
			require.ErrorAs(t, err, &nm)
			var after corev1.PersistentVolumeClaim
			require.NoError(t, c.Get(context.Background(), client.ObjectKeyFromObject(tc.existing), &after))
			require.Equal(t, before, after, "left as it was")
		})
	}
}

func TestGoldenCommandPod(t *testing.T) {
	testkit.Golden(t, "testdata/command-pod.yaml", CommandPod(CommandPodParams{
		Name: "snapmove-command-q9w8e", Namespace: "velero", Image: "ghcr.io/snapmove/snapmove:v0.1.0",
		Args: []string{"verify", "nightly", "--level=full", "--snapshot=app/data=f00d", "--bucket=velero"},
	}))
}

func TestGoldenReceiverJob(t *testing.T) {
	job := ReceiverJob(ReceiverJobParams{
		Name: "snapmove-receive-x7k2p", Namespace: "app", PVC: "data",
		Image: "ghcr.io/snapmove/snapmove:v0.1.0", ImagePullPolicy: corev1.PullIfNotPresent,
		Deadline: 1800, NodeName: "node-1",
	})
	testkit.Golden(t, "testdata/receiver-job.yaml", job)
	// What the issue asks of the pod that writes into a tenant's PVC.
	spec := job.Spec.Template.Spec
	require.False(t, *spec.AutomountServiceAccountToken, "no API token")
	for _, v := range spec.Volumes {
		require.Nil(t, v.Secret, "no secret volume")
		require.Nil(t, v.Projected, "no projected volume")
	}
	for _, c := range append(spec.InitContainers, spec.Containers...) {
		require.Empty(t, c.EnvFrom, "no environment from a secret")
		for _, e := range c.Env {
			require.Nil(t, e.ValueFrom, "no environment from a secret")
		}
	}
	require.NotNil(t, job.Spec.ActiveDeadlineSeconds, "a deadline")
	require.NotNil(t, job.Spec.TTLSecondsAfterFinished, "deleted once ended")
}

// TestGoldenWorkloadIdentity: each cloud's workload identity, as copied from Velero's
// ServiceAccount and pod (velerosrv.Server) onto a worker's ServiceAccount and pod.
func TestGoldenWorkloadIdentity(t *testing.T) {
	identity := func(annotations map[string]string) *corev1.ServiceAccount {
		sa, _, _ := WorkerIdentity(IdentityParams{
			Operation: Backup, Name: "backup-1-abcde", Namespace: "velero", Owner: duOwner(),
			StorageLocation: "default", Secrets: []string{"velero-repo-credentials"}, Annotations: annotations,
		})
		return sa
	}
	// EKS IAM roles for service accounts.
	testkit.Golden(t, "testdata/identity-eks.yaml", identity(map[string]string{
		"eks.amazonaws.com/role-arn":               "arn:aws:iam::111122223333:role/velero",
		"eks.amazonaws.com/sts-regional-endpoints": "true",
	}))
	// GKE Workload Identity.
	testkit.Golden(t, "testdata/identity-gke.yaml", identity(map[string]string{
		"iam.gke.io/gcp-service-account": "velero@my-project.iam.gserviceaccount.com",
	}))
	// AKS Workload Identity: the account's client ID, and the pod label the webhook acts on.
	aks := backupPodParams()
	aks.Labels = map[string]string{"azure.workload.identity/use": "true"}
	testkit.Golden(t, "testdata/identity-aks.yaml", []any{
		identity(map[string]string{
			"azure.workload.identity/client-id": "00000000-0000-0000-0000-000000000001",
			"azure.workload.identity/tenant-id": "00000000-0000-0000-0000-000000000002",
		}),
		WorkerPod(aks),
	})
	// A private registry: the pull secrets of Velero's pod and account.
	pull := []corev1.LocalObjectReference{{Name: "registry"}, {Name: "mirror"}}
	withPull := backupPodParams()
	withPull.ImagePullSecrets = pull
	// ... and how Velero's server reaches the store, which never replaces the worker's own.
	withPull.Env = []corev1.EnvVar{{Name: "HTTPS_PROXY", Value: "http://proxy.corp:3128"}, {Name: "HOME", Value: "/velero"}}
	testkit.Golden(t, "testdata/backup-pod-pull-secrets.yaml", WorkerPod(withPull))
	// A command pod with Velero's workload identity: Velero's account and pod label, and
	// still no API token.
	command := CommandPod(CommandPodParams{
		Name: "snapmove-command-q9w8e", Namespace: "velero", Image: "ghcr.io/snapmove/snapmove:v0.1.0",
		Args:   []string{"verify", "nightly", "--level=full", "--snapshot=app/data=f00d", "--bucket=velero"},
		Labels: map[string]string{"azure.workload.identity/use": "true"}, ImagePullSecrets: pull,
		Env:            []corev1.EnvVar{{Name: "STORAGE_EMULATOR_HOST", Value: "127.0.0.1:4443"}},
		ServiceAccount: "velero-server",
	})
	testkit.Golden(t, "testdata/command-pod-identity.yaml", command)
	require.Equal(t, "velero-server", command.Spec.ServiceAccountName)
	require.False(t, *command.Spec.AutomountServiceAccountToken, "no API token")

	// A label of Velero's pod never replaces one of the worker's own.
	clash := backupPodParams()
	clash.Labels = map[string]string{"app.kubernetes.io/component": "velero"}
	require.Equal(t, "mover-worker", WorkerPod(clash).Labels["app.kubernetes.io/component"])
}
