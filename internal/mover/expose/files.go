package expose

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/snapmove/snapmove/internal/naming"
)

// The pod of `snapmove restore-files --to-pvc`: it mounts the user's live PVC and runs
// `snapmove restore-files` in it against the repository alone (the BSL as flags, its
// credentials and the password from a secret made for it), so it needs no API access.
const (
	// FilesContainer is the container of a files pod.
	FilesContainer = "restore-files"
	// FilesCredentialsKey and FilesPasswordKey are the keys of the files pod's secret.
	FilesCredentialsKey = "cloud"
	FilesPasswordKey    = "repository-password"
	filesSecretPath     = "/snapmove-credentials"
	filesScratchPath    = "/scratch"
	// FilesComponent labels the files pods and secrets (app.kubernetes.io/component).
	FilesComponent = "restore-files"
)

// FilesPodParams describe a files pod.
type FilesPodParams struct {
	// Name is the pod's and its secret's; Namespace and PVC are the target PVC's.
	Name, Namespace, PVC string
	Image                string
	ImagePullPolicy      corev1.PullPolicy
	HostNetwork          bool
	// Args are restore-files' arguments and flags (backup, volume, paths, the BSL); the
	// target, the credentials file (when WithCredentials) and the password file are
	// added.
	Args            []string
	WithCredentials bool
	// NodeName pins the pod to the node where the PVC is in use (a ReadWriteOnce volume
	// mounts on one node).
	NodeName     string
	NodeSelector map[string]string
	Tolerations  []corev1.Toleration
	Resources    corev1.ResourceRequirements
}

// FilesTargetPath is where a files pod mounts the target PVC.
const FilesTargetPath = TargetMountPath

// FilesPod is the pod that restores chosen paths of a backup into a live PVC. Its
// outcome is its termination message: the report restore-files writes to
// /dev/termination-log, or on an error the error (the tail of its log, where it ended
// without writing one).
func FilesPod(p FilesPodParams) *corev1.Pod {
	args := append([]string{"restore-files"}, p.Args...)
	args = append(args, "--to="+FilesTargetPath, "--password-file="+filesSecretPath+"/"+FilesPasswordKey,
		"--report-file="+corev1.TerminationMessagePathDefault)
	if p.WithCredentials {
		args = append(args, "--credentials-file="+filesSecretPath+"/"+FilesCredentialsKey)
	}
	nodeSelector := map[string]string{"kubernetes.io/os": "linux"}
	for k, v := range p.NodeSelector {
		nodeSelector[k] = v
	}
	pod := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name: p.Name, Namespace: p.Namespace,
			Labels: map[string]string{naming.ManagedByLabel: naming.ManagedByLabelVal, "app.kubernetes.io/component": FilesComponent},
		},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			AutomountServiceAccountToken:  ptr.To(false),
			TerminationGracePeriodSeconds: ptr.To(int64(10)),
			HostNetwork:                   p.HostNetwork,
			NodeName:                      p.NodeName,
			NodeSelector:                  nodeSelector,
			Tolerations:                   append([]corev1.Toleration(nil), p.Tolerations...),
			OS:                            &corev1.PodOS{Name: corev1.Linux},
			SecurityContext: &corev1.PodSecurityContext{
				RunAsUser:      ptr.To(int64(0)),
				RunAsGroup:     ptr.To(int64(0)),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Containers: []corev1.Container{{
				Name: FilesContainer, Image: p.Image, ImagePullPolicy: p.ImagePullPolicy,
				Command: []string{WorkerBinary}, Args: args,
				Env: []corev1.EnvVar{
					{Name: "HOME", Value: filesScratchPath},
					{Name: "TMPDIR", Value: filesScratchPath},
				},
				Resources: *p.Resources.DeepCopy(),
				VolumeMounts: []corev1.VolumeMount{
					{Name: dataVolume, MountPath: FilesTargetPath},
					{Name: "credentials", MountPath: filesSecretPath, ReadOnly: true},
					{Name: "scratch", MountPath: filesScratchPath},
				},
				TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
				SecurityContext:          workerSecurityContext(),
			}},
			Volumes: []corev1.Volume{
				{Name: dataVolume, VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: p.PVC}}},
				{Name: "credentials", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: p.Name, DefaultMode: ptr.To(int32(0o400))}}},
				{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			},
		},
	}
	if p.HostNetwork {
		pod.Spec.DNSPolicy = corev1.DNSClusterFirstWithHostNet
	}
	return pod
}
