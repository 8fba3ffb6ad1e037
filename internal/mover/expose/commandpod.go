package expose

import (
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/snapmove/snapmove/internal/naming"
)

// A command pod runs one of the user's repository commands in Velero's namespace
// (`verify --in-cluster`): `snapmove <command>` against the repository alone, with the
// BSL as flags and its credentials and the repository password in a secret made for the
// pod, so it needs no API access. It mounts no PVC: a pod that holds Velero's secrets
// never runs in an application's namespace (a file restore into a live PVC streams
// into a receiver job instead, below). It mounts no API token either, whichever
// account it runs as (CommandPodParams.ServiceAccount).
const (
	// CommandContainer is the container of a command pod.
	CommandContainer = "command"
	// CommandCredentialsKey and CommandPasswordKey are the keys of its secret.
	CommandCredentialsKey = "cloud"
	CommandPasswordKey    = "repository-password"
	commandSecretPath     = "/snapmove-credentials"
	commandScratchPath    = "/scratch"
	// CommandComponent labels command pods and their secrets (app.kubernetes.io/component).
	CommandComponent = "repository-command"
	// CommandTargetPath is where a receiver job's pod mounts its PVC.
	CommandTargetPath = TargetMountPath
)

// CommandPodParams describe a command pod.
type CommandPodParams struct {
	// Name is the pod's and its secret's; Namespace is where it runs (Velero's).
	Name, Namespace string
	Image           string
	ImagePullPolicy corev1.PullPolicy
	HostNetwork     bool
	// Args are the command and its arguments and flags; the password file, the report
	// file and, with WithCredentials, the credentials file are added.
	Args            []string
	WithCredentials bool
	NodeSelector    map[string]string
	Tolerations     []corev1.Toleration
	Resources       corev1.ResourceRequirements
	// Labels, ImagePullSecrets and Env are Velero's server pod's (PodParams).
	Labels           map[string]string
	ImagePullSecrets []corev1.LocalObjectReference
	Env              []corev1.EnvVar
	// ServiceAccount is the pod's account; "" is the namespace's default account.
	// catalog.InCluster sets it to Velero's server account when that account carries
	// workload-identity annotations (velerosrv.Server.Annotations): then Velero's
	// server may have no credentials secret to pass on, and the pod needs Velero's
	// cloud identity, whose trust (an IAM role's trust policy, a federated identity
	// credential) already names that account.
	//
	// The pod still mounts no API token (automountServiceAccountToken: false), so it
	// gets the account's cloud identity and none of its Kubernetes rights. The clouds
	// do not need that token: their webhooks add a projected token volume of their own
	// (EKS's pod identity webhook aws-iam-token, for sts.amazonaws.com by default; Azure
	// Workload Identity's azure-identity-token, for api://AzureADTokenExchange), tokens
	// whose audience the API server does not accept; GKE's metadata server knows the
	// pod by its account, with no token in the pod.
	ServiceAccount string
}

// CommandPod is a command pod. Its outcome is its termination message: what the command
// wrote to --report-file (/dev/termination-log), or the tail of its log where it ended
// without writing one.
func CommandPod(p CommandPodParams) *corev1.Pod {
	args := append(append([]string(nil), p.Args...),
		"--password-file="+commandSecretPath+"/"+CommandPasswordKey, "--report-file="+corev1.TerminationMessagePathDefault)
	if p.WithCredentials {
		args = append(args, "--credentials-file="+commandSecretPath+"/"+CommandCredentialsKey)
	}
	mounts := []corev1.VolumeMount{
		{Name: "credentials", MountPath: commandSecretPath, ReadOnly: true},
		{Name: "scratch", MountPath: commandScratchPath},
	}
	volumes := []corev1.Volume{
		{Name: "credentials", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: p.Name, DefaultMode: ptr.To(int32(0o400))}}},
		{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
	}
	spec := commandPodSpec(p.NodeSelector, p.Tolerations)
	spec.HostNetwork = p.HostNetwork
	if p.HostNetwork {
		spec.DNSPolicy = corev1.DNSClusterFirstWithHostNet
	}
	spec.Volumes = volumes
	spec.ImagePullSecrets = append([]corev1.LocalObjectReference(nil), p.ImagePullSecrets...)
	spec.ServiceAccountName = p.ServiceAccount
	spec.Containers = []corev1.Container{{
		Name: CommandContainer, Image: p.Image, ImagePullPolicy: p.ImagePullPolicy,
		Command: []string{WorkerBinary}, Args: args,
		Env: []corev1.EnvVar{
			{Name: "HOME", Value: commandScratchPath},
			{Name: "TMPDIR", Value: commandScratchPath},
		},
		Resources:                *p.Resources.DeepCopy(),
		VolumeMounts:             mounts,
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		SecurityContext:          workerSecurityContext(),
	}}
	spec.Containers[0].Env = addEnv(spec.Containers[0].Env, p.Env)
	labels := map[string]string{naming.ManagedByLabel: naming.ManagedByLabelVal, "app.kubernetes.io/component": CommandComponent}
	addLabels(labels, p.Labels)
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name: p.Name, Namespace: p.Namespace,
			Labels: labels,
		},
		Spec: spec,
	}
}

// commandPodSpec is what command pods and receiver pods share: Linux nodes (and
// nodeSelector), no restart, no API token, root with the runtime's seccomp profile.
func commandPodSpec(nodeSelector map[string]string, tolerations []corev1.Toleration) corev1.PodSpec {
	selector := map[string]string{"kubernetes.io/os": "linux"}
	for k, v := range nodeSelector {
		selector[k] = v
	}
	return corev1.PodSpec{
		RestartPolicy:                 corev1.RestartPolicyNever,
		AutomountServiceAccountToken:  ptr.To(false),
		TerminationGracePeriodSeconds: ptr.To(int64(10)),
		NodeSelector:                  selector,
		Tolerations:                   append([]corev1.Toleration(nil), tolerations...),
		OS:                            &corev1.PodOS{Name: corev1.Linux},
		SecurityContext: &corev1.PodSecurityContext{
			RunAsUser:      ptr.To(int64(0)),
			RunAsGroup:     ptr.To(int64(0)),
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
	}
}

// A receiver job writes files the CLI restored into a live PVC (`restore-files
// --to-pvc`): its one pod mounts the PVC and runs `snapmove mover receive-files`, which
// reads them as a stream on its stdin (the CLI attaches to it through the API server).
// The pod holds no secret and no API token: whatever reads the repository runs in the
// CLI. The job bounds its own life, so that nothing stays when the CLI dies: the pod
// ends when its stdin closes, or at the deadline, and the job (and its pod with it) is
// deleted soon after it ends.
const (
	// ReceiverContainer is the container of a receiver job's pod.
	ReceiverContainer = "receive"
	// ReceiverComponent labels receiver jobs and their pods (app.kubernetes.io/component).
	ReceiverComponent = "restore-files-receiver"
	// ReceiverTTL is how long an ended receiver job stays before it is deleted: time for
	// the CLI to read its outcome.
	ReceiverTTL = 30
)

// ReceiverJobParams describe a receiver job.
type ReceiverJobParams struct {
	// Name is the job's; Namespace is the PVC's.
	Name, Namespace string
	// PVC is mounted at CommandTargetPath.
	PVC             string
	Image           string
	ImagePullPolicy corev1.PullPolicy
	// Deadline bounds the job's life, from its start (seconds).
	Deadline int64
	// NodeName pins the pod to the node where its PVC is in use (a ReadWriteOnce volume
	// mounts on one node).
	NodeName     string
	NodeSelector map[string]string
	Tolerations  []corev1.Toleration
}

// ReceiverJob is a receiver job. Its outcome is its pod's termination message (what
// receive-files wrote to --report-file).
func ReceiverJob(p ReceiverJobParams) *batchv1.Job {
	labels := map[string]string{naming.ManagedByLabel: naming.ManagedByLabelVal, "app.kubernetes.io/component": ReceiverComponent}
	spec := commandPodSpec(p.NodeSelector, p.Tolerations)
	spec.ActiveDeadlineSeconds = ptr.To(p.Deadline)
	spec.EnableServiceLinks = ptr.To(false)
	spec.NodeName = p.NodeName
	spec.Containers = []corev1.Container{{
		Name: ReceiverContainer, Image: p.Image, ImagePullPolicy: p.ImagePullPolicy,
		Command: []string{WorkerBinary},
		Args: []string{"mover", "receive-files", "--to=" + CommandTargetPath,
			"--report-file=" + corev1.TerminationMessagePathDefault},
		Stdin: true, StdinOnce: true,
		VolumeMounts:             []corev1.VolumeMount{{Name: dataVolume, MountPath: CommandTargetPath}},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		SecurityContext:          workerSecurityContext(),
	}}
	spec.Volumes = []corev1.Volume{{Name: dataVolume, VolumeSource: corev1.VolumeSource{
		PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: p.PVC}}}}
	return &batchv1.Job{
		TypeMeta:   metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"},
		ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, Labels: labels},
		Spec: batchv1.JobSpec{
			BackoffLimit:            ptr.To(int32(0)),
			ActiveDeadlineSeconds:   ptr.To(p.Deadline),
			TTLSecondsAfterFinished: ptr.To(int32(ReceiverTTL)),
			Template:                corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: spec},
		},
	}
}
