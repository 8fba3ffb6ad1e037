package catalog

import (
	"context"
	"sort"
	"strings"
	"time"

	"github.com/pkg/errors"
	"github.com/sirupsen/logrus"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/mover/config"
	"github.com/snapmove/snapmove/internal/mover/expose"
	"github.com/snapmove/snapmove/internal/mover/repository"
)

// ToPVC restores chosen paths of a backup into a live PVC: a pod in the PVC's namespace
// mounts it (on the node where it is in use, if it is) and runs `snapmove restore-files`
// there against the repository alone, with the BSL as flags and its credentials and the
// repository password in a secret made for it. Pod and secret are deleted when it ends,
// whatever the outcome; the secret is owned by the pod, so garbage collection removes it
// if this process dies first.
type ToPVC struct {
	Client  client.Client
	Catalog *Catalog
	// Namespace is Velero's: the BSL, the credentials and the password are read there.
	Namespace          string
	DefaultCredentials *corev1.SecretKeySelector
	// Image is the snapmove image the pod runs; Settings place it like a mover worker
	// (host network, node selector, tolerations, pull policy).
	Image    string
	Settings config.Config
	// Timeout bounds the whole restore; Interval is how often the pod is looked at.
	Timeout, Interval time.Duration
	Log               logrus.FieldLogger
}

// Restore restores paths of volume in backup into target and returns the pod's report.
func (t *ToPVC) Restore(ctx context.Context, backup, volume string, paths []string, target types.NamespacedName) (string, error) {
	v, err := t.Catalog.Find(ctx, backup, volume)
	if err != nil {
		return "", err
	}
	bsl, err := t.Catalog.Source.Location(ctx, v)
	if err != nil {
		return "", err
	}
	node, err := t.targetNode(ctx, target)
	if err != nil {
		return "", err
	}
	secret, args, withCreds, err := t.connection(ctx, bsl)
	if err != nil {
		return "", err
	}
	name := "snapmove-files-" + utilrand.String(5)
	args = append([]string{backup, volume}, append(append([]string(nil), paths...), append([]string{"--snapshot-id=" + v.SnapshotID}, args...)...)...)
	pod := expose.FilesPod(expose.FilesPodParams{
		Name: name, Namespace: target.Namespace, PVC: target.Name, Image: t.Image,
		ImagePullPolicy: t.Settings.WorkerImagePullPolicy, HostNetwork: t.Settings.WorkerHostNetwork,
		Args: args, WithCredentials: withCreds, NodeName: node,
		NodeSelector: t.Settings.WorkerNodeSelector, Tolerations: t.Settings.WorkerTolerations,
	})
	secret.ObjectMeta = metav1.ObjectMeta{Namespace: target.Namespace, Name: name, Labels: pod.Labels}

	if err := t.Client.Create(ctx, secret); err != nil {
		return "", errors.Wrapf(err, "creating secret %s/%s for the restore pod", target.Namespace, name)
	}
	defer t.cleanup(ctx, pod, secret)
	if err := t.Client.Create(ctx, pod); err != nil {
		return "", errors.Wrapf(err, "creating pod %s/%s", target.Namespace, name)
	}
	// The secret follows the pod, should this process end before it deletes both.
	secret.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID}}
	if err := t.Client.Update(ctx, secret); err != nil {
		t.Log.WithError(err).Warn("making the restore pod own its secret")
	}
	t.Log.WithFields(logrus.Fields{"pod": client.ObjectKeyFromObject(pod).String(), "node": node}).Info("restoring files in a pod")

	ended, err := t.wait(ctx, pod)
	if err != nil {
		return "", errors.Wrapf(err, "restore pod %s/%s", pod.Namespace, pod.Name)
	}
	report := strings.TrimSpace(terminationMessage(ended))
	if ended.Status.Phase != corev1.PodSucceeded {
		if report == "" {
			report = "no message; see its events"
		}
		return "", errors.Errorf("restore pod %s/%s failed: %s", pod.Namespace, pod.Name, report)
	}
	return report + "\n", nil
}

// terminationMessage is what the files container said when it ended.
func terminationMessage(pod *corev1.Pod) string {
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == expose.FilesContainer && cs.State.Terminated != nil {
			return cs.State.Terminated.Message
		}
	}
	return ""
}

// targetNode checks that target exists and is bound, and returns the node of a running
// pod that mounts it ("" when none does).
func (t *ToPVC) targetNode(ctx context.Context, target types.NamespacedName) (string, error) {
	pvc := &corev1.PersistentVolumeClaim{}
	if err := t.Client.Get(ctx, target, pvc); err != nil {
		if apierrors.IsNotFound(err) {
			return "", errors.Errorf("target PVC %s not found", target)
		}
		return "", errors.Wrapf(err, "getting target PVC %s", target)
	}
	if pvc.Status.Phase != corev1.ClaimBound {
		return "", errors.Errorf("target PVC %s is not bound (phase %q)", target, pvc.Status.Phase)
	}
	pods := &corev1.PodList{}
	if err := t.Client.List(ctx, pods, client.InNamespace(target.Namespace)); err != nil {
		return "", errors.Wrapf(err, "listing the pods of namespace %s", target.Namespace)
	}
	var nodes []string
	for _, p := range pods.Items {
		if p.Spec.NodeName == "" || p.Status.Phase != corev1.PodRunning {
			continue
		}
		for _, vol := range p.Spec.Volumes {
			if vol.PersistentVolumeClaim != nil && vol.PersistentVolumeClaim.ClaimName == target.Name {
				nodes = append(nodes, p.Spec.NodeName)
			}
		}
	}
	sort.Strings(nodes)
	if len(nodes) == 0 {
		return "", nil
	}
	return nodes[0], nil
}

// connection is the secret and the restore-files flags that reach bsl's repository
// without the cluster.
func (t *ToPVC) connection(ctx context.Context, bsl *velerov1.BackupStorageLocation) (*corev1.Secret, []string, bool, error) {
	password, err := repository.Password(ctx, t.Client, t.Namespace)
	if err != nil {
		return nil, nil, false, errors.Wrap(err, "reading the repository password")
	}
	secret := &corev1.Secret{Type: corev1.SecretTypeOpaque, Data: map[string][]byte{expose.FilesPasswordKey: []byte(password)}}
	args := []string{"--provider=" + bsl.Spec.Provider}
	if os := bsl.Spec.ObjectStorage; os != nil {
		args = append(args, "--bucket="+os.Bucket, "--prefix="+os.Prefix)
		if len(os.CACert) > 0 {
			return nil, nil, false, errors.Errorf("BackupStorageLocation %s has a CA certificate: restore-files --to-pvc does not pass it on yet; restore to a local directory instead", bsl.Name)
		}
	}
	keys := make([]string, 0, len(bsl.Spec.Config))
	for k := range bsl.Spec.Config {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, "--config="+k+"="+bsl.Spec.Config[k])
	}
	sel := bsl.Spec.Credential
	if sel == nil {
		sel = t.DefaultCredentials
	}
	if sel == nil {
		return secret, args, false, nil
	}
	creds := &corev1.Secret{}
	if err := t.Client.Get(ctx, client.ObjectKey{Namespace: t.Namespace, Name: sel.Name}, creds); err != nil {
		if apierrors.IsNotFound(err) && bsl.Spec.Credential == nil {
			return secret, args, false, nil // ambient credentials
		}
		return nil, nil, false, errors.Wrapf(err, "getting the credentials of BackupStorageLocation %s", bsl.Name)
	}
	value, ok := creds.Data[sel.Key]
	if !ok {
		return nil, nil, false, errors.Errorf("secret %s/%s has no key %s", t.Namespace, sel.Name, sel.Key)
	}
	secret.Data[expose.FilesCredentialsKey] = value
	return secret, args, true, nil
}

// wait returns the pod once it has ended.
func (t *ToPVC) wait(ctx context.Context, pod *corev1.Pod) (*corev1.Pod, error) {
	p := &corev1.Pod{}
	err := wait.PollUntilContextTimeout(ctx, t.Interval, t.Timeout, true, func(ctx context.Context) (bool, error) {
		if err := t.Client.Get(ctx, client.ObjectKeyFromObject(pod), p); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed, nil
	})
	if wait.Interrupted(err) {
		return nil, errors.Errorf("did not end within %s (phase %q)", t.Timeout, p.Status.Phase)
	}
	return p, err
}

func (t *ToPVC) cleanup(ctx context.Context, pod *corev1.Pod, secret *corev1.Secret) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	for _, obj := range []client.Object{pod, secret} {
		if err := t.Client.Delete(ctx, obj); client.IgnoreNotFound(err) != nil {
			t.Log.WithError(err).WithField("object", client.ObjectKeyFromObject(obj).String()).Warn("deleting what the restore made")
		}
	}
}

// MoverDeployment is the name of the mover's Deployment (examples/mover.yaml).
const MoverDeployment = "snapmove-mover"

// WorkerImage is the image the mover runs its workers with, read from the mover's
// Deployment in namespace: its --worker-image flag, $SNAPMOVE_WORKER_IMAGE, or else its
// own image.
func WorkerImage(ctx context.Context, c client.Reader, namespace string) (string, error) {
	d := &appsv1.Deployment{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: MoverDeployment}, d); err != nil {
		return "", errors.Wrapf(err, "finding the snapmove image in Deployment %s/%s (or give --image)", namespace, MoverDeployment)
	}
	for _, ctr := range d.Spec.Template.Spec.Containers {
		for _, a := range append(append([]string(nil), ctr.Command...), ctr.Args...) {
			if img, ok := strings.CutPrefix(a, "--worker-image="); ok && img != "" {
				return img, nil
			}
		}
		for _, e := range ctr.Env {
			if e.Name == "SNAPMOVE_WORKER_IMAGE" && e.Value != "" {
				return e.Value, nil
			}
		}
	}
	if len(d.Spec.Template.Spec.Containers) == 0 {
		return "", errors.Errorf("Deployment %s/%s has no container", namespace, MoverDeployment)
	}
	return d.Spec.Template.Spec.Containers[0].Image, nil
}
