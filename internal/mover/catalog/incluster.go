package catalog

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/pkg/errors"
	"github.com/sirupsen/logrus"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/mover/config"
	"github.com/snapmove/snapmove/internal/mover/connect"
	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/mover/expose"
	"github.com/snapmove/snapmove/internal/mover/filestream"
	"github.com/snapmove/snapmove/internal/mover/repository"
	"github.com/snapmove/snapmove/internal/mover/velerosrv"
)

// InCluster runs repository commands in the cluster, for what a laptop cannot do alone.
//
// A file restore into a live PVC (RestoreFiles) reads the repository here, with Velero's
// credentials, into a temporary directory, and streams the files through the API server
// (pods/attach) into a receiver job in the PVC's namespace (expose.ReceiverJob): its pod
// mounts the PVC and holds no secret and no API token. The job ends when the stream does
// and is deleted by its TTL, or at its deadline should this process die before it
// attaches; this process deletes it too, once it has its outcome.
//
// A verification of a repository the laptop cannot reach (Verify) runs `snapmove verify`
// in a command pod (expose.CommandPod) in Velero's namespace against the repository
// alone, with the BSL as flags and its credentials and the repository password in a
// secret made for the pod. Pod and secret are deleted when it ends, whatever the outcome;
// the secret is owned by the pod, so garbage collection removes it should this process
// die first.
type InCluster struct {
	Client  client.Client
	Catalog *Catalog
	// Namespace is Velero's: the BSL, the credentials and the password are read there,
	// and pods without a PVC run there.
	Namespace string
	// DefaultCredentials finds the credentials of a BSL without spec.credential; nil:
	// none (ambient).
	DefaultCredentials connect.Credentials
	// PodLabels and ImagePullSecrets go onto command pods: those of Velero's server
	// (velerosrv.Server), so that its workload identity's webhook and its registry serve
	// them too. ServiceAccount is the command pods' account ("" for the namespace's
	// default): Velero's server account when it carries workload identity. UseServer
	// sets all three.
	PodLabels        map[string]string
	ImagePullSecrets []corev1.LocalObjectReference
	// Env is how Velero's server reaches the object store (velerosrv.StoreEnv).
	Env            []corev1.EnvVar
	ServiceAccount string
	// Image is the snapmove image the pod runs; Settings place it like a mover worker
	// (host network, node selector, tolerations, pull policy).
	Image    string
	Settings config.Config
	// Timeout bounds the whole command (and is the receiver job's deadline); Interval is
	// how often the pod is looked at.
	Timeout, Interval time.Duration
	// Attach streams into the receiver pod; Rate, when positive, bounds the stream
	// (bytes per second).
	Attach Attach
	Rate   int64
	Log    logrus.FieldLogger
	// OnWait, when set, is told what a command waits for at each look at a pod
	// ("pod velero/snapmove-command-x7k2q: Running"), for a progress line.
	OnWait func(status string)
}

// UseServer has command pods run as Velero's server srv runs: with its pod labels and
// pull secrets and, when its ServiceAccount carries workload-identity annotations
// (srv.Annotations), as that account, so that a pod can reach the repository where
// Velero's server has no credentials secret and reaches it by its cloud identity alone.
// The pod still mounts no API token (expose.CommandPodParams.ServiceAccount says why it
// needs none): it gets the account's cloud identity, not its Kubernetes rights. Without
// such annotations the pods keep the namespace's default account.
func (c *InCluster) UseServer(srv velerosrv.Server) {
	c.PodLabels, c.ImagePullSecrets, c.Env = srv.PodLabels, srv.ImagePullSecrets, srv.Env
	c.ServiceAccount = ""
	if len(srv.Annotations) > 0 {
		c.ServiceAccount = srv.ServiceAccount
	}
}

// RestoreFiles restores the paths of req of volume in backup into the live PVC target
// (on the node where the PVC is in use, if it is): it restores them here into a
// temporary directory and streams them into a receiver job in target's namespace. It
// returns what was restored and the receiver's report.
func (c *InCluster) RestoreFiles(ctx context.Context, backup, volume string, req datapath.FilesRequest, target types.NamespacedName) (Volume, datapath.FilesResult, string, error) {
	node, err := c.targetNode(ctx, target)
	if err != nil {
		return Volume{}, datapath.FilesResult{}, "", err
	}
	tmp, err := os.MkdirTemp("", "snapmove-restore-files-")
	if err != nil {
		return Volume{}, datapath.FilesResult{}, "", errors.Wrap(err, "making a temporary directory for the files")
	}
	defer os.RemoveAll(tmp)
	req.Target = tmp
	v, res, err := c.Catalog.RestoreFiles(ctx, backup, volume, req)
	if err != nil {
		return v, res, "", err
	}
	var owners filestream.Owners
	if os.Geteuid() != 0 {
		// The files here are this user's: send the snapshot's owners.
		if owners, err = c.Catalog.Owners(ctx, v, tmp); err != nil {
			return v, res, "", err
		}
	}
	report, err := c.receive(ctx, tmp, owners, target, node)
	return v, res, report, err
}

// receive streams the tree under dir (with owners) into a receiver job that mounts
// target on node ("" for any), and returns the receiver's report.
func (c *InCluster) receive(ctx context.Context, dir string, owners filestream.Owners, target types.NamespacedName, node string) (string, error) {
	job := expose.ReceiverJob(expose.ReceiverJobParams{
		Name: "snapmove-receive-" + utilrand.String(5), Namespace: target.Namespace, PVC: target.Name,
		Image: c.Image, ImagePullPolicy: c.Settings.WorkerImagePullPolicy, Deadline: int64(c.Timeout.Seconds()),
		NodeName: node, NodeSelector: c.Settings.WorkerNodeSelector, Tolerations: c.Settings.WorkerTolerations,
	})
	if err := c.Client.Create(ctx, job); err != nil {
		return "", errors.Wrapf(err, "creating job %s/%s", job.Namespace, job.Name)
	}
	defer c.cleanup(ctx, job)
	c.Log.WithFields(logrus.Fields{"job": client.ObjectKeyFromObject(job).String(), "node": node}).Info("streaming the files into a receiver job")
	pod, err := c.receiverPod(ctx, job)
	if err != nil {
		return "", errors.Wrapf(err, "job %s/%s", job.Namespace, job.Name)
	}
	stream, w := io.Pipe()
	go func() { _ = w.CloseWithError(filestream.Send(ctx, dir, filestream.Throttle(w, c.Rate), owners)) }()
	attachErr := c.Attach(ctx, client.ObjectKeyFromObject(pod), expose.ReceiverContainer, stream)
	_ = stream.CloseWithError(errors.New("the attach session ended"))
	timeout := c.Timeout
	if attachErr != nil {
		// The pod may have ended and said why (a write failed); if it did not, it waits
		// for a stream that will not come.
		timeout = min(timeout, afterAttachFailed)
	}
	ended, err := c.waitFor(ctx, pod, timeout)
	if err != nil && attachErr != nil {
		return "", errors.Wrapf(attachErr, "streaming the files into pod %s/%s", pod.Namespace, pod.Name)
	}
	if err != nil {
		return "", errors.Wrapf(err, "pod %s/%s", pod.Namespace, pod.Name)
	}
	return outcome(ended, expose.ReceiverContainer)
}

// afterAttachFailed is how long a receiver pod is given to end once its stream broke.
const afterAttachFailed = 15 * time.Second

// receiverPod waits for the pod of job to run, and returns it.
func (c *InCluster) receiverPod(ctx context.Context, job *batchv1.Job) (*corev1.Pod, error) {
	var pod *corev1.Pod
	var last string
	err := wait.PollUntilContextTimeout(ctx, c.Interval, c.Timeout, true, func(ctx context.Context) (bool, error) {
		pods := &corev1.PodList{}
		if err := c.Client.List(ctx, pods, client.InNamespace(job.Namespace), client.MatchingLabels{batchv1.ControllerUidLabel: string(job.UID)}); err != nil {
			return false, errors.Wrap(err, "listing its pods")
		}
		for i := range pods.Items {
			p := &pods.Items[i]
			last = string(p.Status.Phase)
			c.waiting(p, last)
			switch p.Status.Phase {
			case corev1.PodRunning:
				pod = p
				return true, nil
			case corev1.PodFailed, corev1.PodSucceeded:
				return false, errors.Errorf("pod %s ended before the files were sent: %s", p.Name, terminationMessage(p, expose.ReceiverContainer))
			}
		}
		return false, nil
	})
	if wait.Interrupted(err) {
		return nil, errors.Errorf("no pod ran within %s (last phase %q)", c.Timeout, last)
	}
	return pod, err
}

// Verify verifies the moved volumes of backup (only volume, when it is not "") at
// level from a pod in Velero's namespace. It returns the pod's report, and an error
// when a volume failed or the pod could not run.
func (c *InCluster) Verify(ctx context.Context, backup, volume, level string) (string, error) {
	vols, args, err := c.verifyArgs(ctx, backup, volume, level)
	if err != nil {
		return "", err
	}
	ended, err := c.run(ctx, vols[0], args)
	if err != nil {
		return "", err
	}
	return outcome(ended, expose.CommandContainer)
}

// VerifyResults is Verify with the pod's outcome as data (the pod runs verify -o json):
// each volume's Verification, failed ones included; an error only when the pod could
// not run or its report was not the verifications (cut short: a pod's termination
// message holds 4096 bytes, some twelve volumes).
func (c *InCluster) VerifyResults(ctx context.Context, backup, volume, level string) ([]Verification, error) {
	vols, args, err := c.verifyArgs(ctx, backup, volume, level)
	if err != nil {
		return nil, err
	}
	ended, err := c.run(ctx, vols[0], append(args, "--output="+FormatJSON))
	if err != nil {
		return nil, err
	}
	msg := strings.TrimSpace(terminationMessage(ended, expose.CommandContainer))
	var vs []Verification
	// The pod's report is the JSON, then its error when a volume failed.
	if derr := json.NewDecoder(strings.NewReader(msg)).Decode(&vs); derr != nil || vs == nil {
		if ended.Status.Phase != corev1.PodSucceeded {
			return nil, errors.Errorf("pod %s/%s failed: %s", ended.Namespace, ended.Name, orDash(msg))
		}
		return nil, errors.Errorf("pod %s/%s: its report is not the verifications (cut short? verify one volume at a time, or use -o text): %s",
			ended.Namespace, ended.Name, orDash(msg))
	}
	return vs, nil
}

// verifyArgs are the volumes Verify verifies and the command its pod runs.
func (c *InCluster) verifyArgs(ctx context.Context, backup, volume, level string) ([]Volume, []string, error) {
	var vols []Volume
	if volume != "" {
		v, err := c.Catalog.Find(ctx, backup, volume)
		if err != nil {
			return nil, nil, err
		}
		vols = []Volume{v}
	} else {
		all, err := c.Catalog.Source.Volumes(ctx, backup)
		if err != nil {
			return nil, nil, err
		}
		for _, v := range all {
			if v.SnapshotID != "" {
				vols = append(vols, v)
			}
		}
	}
	if len(vols) == 0 {
		return nil, nil, errors.Errorf("backup %s has no moved volume to verify", backup)
	}
	args := []string{"verify", backup, "--level=" + level}
	for _, v := range vols {
		if v.StorageLocation != vols[0].StorageLocation {
			return nil, nil, errors.Errorf("backup %s moved volumes to two BackupStorageLocations (%s, %s): verify them one volume at a time",
				backup, vols[0].StorageLocation, v.StorageLocation)
		}
		args = append(args, "--snapshot="+v.Key()+"="+v.SnapshotID)
	}
	return vols, args, nil
}

// run runs args in a command pod in Velero's namespace that reaches v's repository, and
// returns the pod once it has ended.
func (c *InCluster) run(ctx context.Context, v Volume, args []string) (*corev1.Pod, error) {
	namespace := c.Namespace
	bsl, err := c.Catalog.Source.Location(ctx, v)
	if err != nil {
		return nil, err
	}
	secret, flags, withCreds, err := c.connection(ctx, bsl)
	if err != nil {
		return nil, err
	}
	name := "snapmove-command-" + utilrand.String(5)
	pod := expose.CommandPod(expose.CommandPodParams{
		Name: name, Namespace: namespace, Image: c.Image,
		ImagePullPolicy: c.Settings.WorkerImagePullPolicy, HostNetwork: c.Settings.WorkerHostNetwork,
		Args: append(args, flags...), WithCredentials: withCreds,
		NodeSelector: c.Settings.WorkerNodeSelector, Tolerations: c.Settings.WorkerTolerations,
		Labels: c.PodLabels, ImagePullSecrets: c.ImagePullSecrets, Env: c.Env, ServiceAccount: c.ServiceAccount,
	})
	secret.ObjectMeta = metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: pod.Labels}

	if err := c.Client.Create(ctx, secret); err != nil {
		return nil, errors.Wrapf(err, "creating secret %s/%s for the command pod", namespace, name)
	}
	defer c.cleanup(ctx, pod, secret)
	if err := c.Client.Create(ctx, pod); err != nil {
		return nil, errors.Wrapf(err, "creating pod %s/%s", namespace, name)
	}
	// The secret follows the pod, should this process end before it deletes both.
	secret.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID}}
	if err := c.Client.Update(ctx, secret); err != nil {
		c.Log.WithError(err).Warn("making the command pod own its secret")
	}
	c.Log.WithField("pod", client.ObjectKeyFromObject(pod).String()).Infof("running snapmove %s in a pod", args[0])

	ended, err := c.wait(ctx, pod)
	return ended, errors.Wrapf(err, "pod %s/%s", pod.Namespace, pod.Name)
}

// outcome is what the ended pod's container said: its report when it succeeded, an error
// with it when it failed.
func outcome(ended *corev1.Pod, container string) (string, error) {
	report := strings.TrimSpace(terminationMessage(ended, container))
	if ended.Status.Phase != corev1.PodSucceeded {
		if report == "" {
			report = "no message; see its events"
		}
		return "", errors.Errorf("pod %s/%s failed: %s", ended.Namespace, ended.Name, report)
	}
	return report + "\n", nil
}

// terminationMessage is what container of pod said when it ended.
func terminationMessage(pod *corev1.Pod, container string) string {
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == container && cs.State.Terminated != nil {
			return cs.State.Terminated.Message
		}
	}
	return ""
}

// targetNode checks that target exists and is bound, and returns the node of a running
// pod that mounts it ("" when none does).
func (c *InCluster) targetNode(ctx context.Context, target types.NamespacedName) (string, error) {
	pvc := &corev1.PersistentVolumeClaim{}
	if err := c.Client.Get(ctx, target, pvc); err != nil {
		if apierrors.IsNotFound(err) {
			return "", errors.Errorf("target PVC %s not found", target)
		}
		return "", errors.Wrapf(err, "getting target PVC %s", target)
	}
	if pvc.Status.Phase != corev1.ClaimBound {
		return "", errors.Errorf("target PVC %s is not bound (phase %q)", target, pvc.Status.Phase)
	}
	pods := &corev1.PodList{}
	if err := c.Client.List(ctx, pods, client.InNamespace(target.Namespace)); err != nil {
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
func (c *InCluster) connection(ctx context.Context, bsl *velerov1.BackupStorageLocation) (*corev1.Secret, []string, bool, error) {
	password, err := repository.Password(ctx, c.Client, c.Namespace)
	if err != nil {
		return nil, nil, false, errors.Wrap(err, "reading the repository password")
	}
	secret := &corev1.Secret{Type: corev1.SecretTypeOpaque, Data: map[string][]byte{expose.CommandPasswordKey: []byte(password)}}
	args := []string{"--provider=" + bsl.Spec.Provider}
	if os := bsl.Spec.ObjectStorage; os != nil {
		args = append(args, "--bucket="+os.Bucket, "--prefix="+os.Prefix)
		if len(os.CACert) > 0 {
			return nil, nil, false, errors.Errorf("BackupStorageLocation %s has a CA certificate: commands in the cluster do not pass it on yet; run this one locally", bsl.Name)
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
	var sel *corev1.SecretKeySelector
	if c.DefaultCredentials != nil {
		if sel, err = c.DefaultCredentials.DefaultFor(ctx, bsl); err != nil {
			return nil, nil, false, errors.Wrapf(err, "finding the credentials of BackupStorageLocation %s", bsl.Name)
		}
	}
	if bsl.Spec.Credential != nil {
		sel = bsl.Spec.Credential
	}
	if sel == nil {
		return secret, args, false, nil
	}
	creds := &corev1.Secret{}
	if err := c.Client.Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: sel.Name}, creds); err != nil {
		if apierrors.IsNotFound(err) && bsl.Spec.Credential == nil {
			return secret, args, false, nil // ambient credentials
		}
		return nil, nil, false, errors.Wrapf(err, "getting the credentials of BackupStorageLocation %s", bsl.Name)
	}
	value, ok := creds.Data[sel.Key]
	if !ok {
		return nil, nil, false, errors.Errorf("secret %s/%s has no key %s", c.Namespace, sel.Name, sel.Key)
	}
	secret.Data[expose.CommandCredentialsKey] = value
	return secret, args, true, nil
}

// wait returns the pod once it has ended.
func (c *InCluster) wait(ctx context.Context, pod *corev1.Pod) (*corev1.Pod, error) {
	return c.waitFor(ctx, pod, c.Timeout)
}

// waitFor returns the pod once it has ended, within timeout.
func (c *InCluster) waitFor(ctx context.Context, pod *corev1.Pod, timeout time.Duration) (*corev1.Pod, error) {
	p := &corev1.Pod{}
	err := wait.PollUntilContextTimeout(ctx, c.Interval, timeout, true, func(ctx context.Context) (bool, error) {
		if err := c.Client.Get(ctx, client.ObjectKeyFromObject(pod), p); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		c.waiting(pod, string(p.Status.Phase))
		return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed, nil
	})
	if wait.Interrupted(err) {
		return nil, errors.Errorf("did not end within %s (phase %q)", timeout, p.Status.Phase)
	}
	return p, err
}

// waiting tells OnWait that pod is in phase.
func (c *InCluster) waiting(pod *corev1.Pod, phase string) {
	if c.OnWait != nil {
		c.OnWait("pod " + pod.Namespace + "/" + pod.Name + ": " + orNew(phase))
	}
}

// cleanup deletes objs (with what they own, in the background).
func (c *InCluster) cleanup(ctx context.Context, objs ...client.Object) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	for _, obj := range objs {
		if err := c.Client.Delete(ctx, obj, client.PropagationPolicy(metav1.DeletePropagationBackground)); client.IgnoreNotFound(err) != nil {
			c.Log.WithError(err).WithField("object", client.ObjectKeyFromObject(obj).String()).Warn("deleting what the restore made")
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
