package expose

import (
	"context"
	"fmt"
	"math"
	"reflect"
	"slices"
	"sort"
	"strconv"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"github.com/pkg/errors"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/naming"
)

// The worker pod's contract. The controller builds pods with these; the worker reads them.
const (
	WorkerContainer  = "worker"
	SourceMountPath  = "/data"                // backup, filesystem volume (read-only mount)
	SourceDevicePath = "/dev/snapmove-source" // backup, block volume
	TargetMountPath  = "/data"                // restore, filesystem volume
	TargetDevicePath = "/dev/snapmove-target" // restore, block volume
	CacheMountPath   = "/cache"               // kopia cache, config and temporary files

	EnvCacheDir    = "SNAPMOVE_CACHE_DIR"
	EnvMemoryLimit = "SNAPMOVE_MEMORY_LIMIT" // container memory limit in bytes (downward API)

	// CBTTokenPath is a token of the worker's ServiceAccount for the audience of a CSI
	// SnapshotMetadata service (PodParams.CBTAudience), projected and rotated by the
	// kubelet; EnvCBTCACert holds that service's CA certificate (PEM).
	CBTTokenPath = cbtTokenDir + "/token"
	EnvCBTCACert = "SNAPMOVE_CBT_CA_CERT"
	cbtTokenDir  = "/var/run/secrets/snapmove.io/cbt"

	dataVolume     = "data"
	cacheVolume    = "cache"
	cbtTokenVolume = "cbt-token"

	// cbtTokenSeconds is the lifetime of the projected token: the least the API server
	// allows; the kubelet renews it at 80%.
	cbtTokenSeconds = 600

	// WorkerBinary is the path of the snapmove binary in the worker image.
	WorkerBinary = "/snapmove"
)

// Operation is what a worker pod does.
type Operation string

const (
	Backup  Operation = "backup"
	Restore Operation = "restore"
)

// Labels are put on every object the mover creates for one DataUpload (Backup) or
// DataDownload (Restore) named owner, whose UID is uid (naming.MovementUIDLabel: what
// MadeFor checks).
func Labels(op Operation, owner string, uid types.UID) map[string]string {
	key := naming.DataUploadLabel
	if op == Restore {
		key = naming.DataDownloadLabel
	}
	return map[string]string{naming.ManagedByLabel: naming.ManagedByLabelVal, key: owner, naming.MovementUIDLabel: string(uid)}
}

// MadeFor reports whether obj was made for the movement whose UID is uid: it carries
// naming.MovementUIDLabel with that value, or (made before that label was) the movement
// is its controller owner. Objects are named after their movement, and anyone who may
// create a DataUpload may pick its name: an object of that name is the movement's only
// when MadeFor says so. The UID is the movement's own, made by the API server, so
// whoever could not write obj could not have put it there.
func MadeFor(obj metav1.Object, uid types.UID) bool {
	if uid == "" {
		return false
	}
	if obj.GetLabels()[naming.MovementUIDLabel] == string(uid) {
		return true
	}
	for _, ref := range obj.GetOwnerReferences() {
		if ref.UID == uid && ref.Controller != nil && *ref.Controller {
			return true
		}
	}
	return false
}

// NotMadeForError is an object of the name the mover would give its own that was not made
// for the movement (MadeFor is false): someone else's, used, changed and deleted by no one
// here. No retry can change that, so the movement fails with this message.
type NotMadeForError struct {
	Kind, Namespace, Name string
	UID                   types.UID // the movement's
}

func (e *NotMadeForError) Error() string {
	obj := e.Name
	if e.Namespace != "" {
		obj = e.Namespace + "/" + e.Name
	}
	return fmt.Sprintf("%s %s exists and was not made for this movement (it has no label %s=%s); the mover leaves it alone: "+
		"rename the movement or remove that object", e.Kind, obj, naming.MovementUIDLabel, e.UID)
}

// NotMadeFor is the *NotMadeForError for obj, or nil when obj was made for uid.
func NotMadeFor(obj client.Object, uid types.UID) error {
	if MadeFor(obj, uid) {
		return nil
	}
	return &NotMadeForError{Kind: kindOf(obj), Namespace: obj.GetNamespace(), Name: obj.GetName(), UID: uid}
}

// OwnerReference makes obj (a DataUpload or DataDownload, apiVersion/kind given) the
// controller owner of what is built for it, so garbage collection follows it.
func OwnerReference(apiVersion, kind string, obj metav1.Object) metav1.OwnerReference {
	return metav1.OwnerReference{
		APIVersion:         apiVersion,
		Kind:               kind,
		Name:               obj.GetName(),
		UID:                obj.GetUID(),
		Controller:         ptr.To(true),
		BlockOwnerDeletion: ptr.To(true),
	}
}

// SnapshotParams describe the snapshot a backup takes over.
type SnapshotParams struct {
	Name, Namespace string    // the DataUpload's: the VS lives there, both are named after it
	UID             types.UID // the DataUpload's (MadeFor)
	// Source is the user's VolumeSnapshotContent (bound to the user's VolumeSnapshot).
	Source *snapshotv1.VolumeSnapshotContent
	// SnapshotClass is the user's VolumeSnapshot's class (may be nil).
	SnapshotClass *string
}

// BackupVolumeSnapshotContent is a pre-provisioned content for the same storage snapshot
// as params.Source, bound to BackupVolumeSnapshot, with deletionPolicy Delete: once the
// user's objects are gone, deleting our VolumeSnapshot deletes the storage snapshot.
func BackupVolumeSnapshotContent(p SnapshotParams) *snapshotv1.VolumeSnapshotContent {
	labels := Labels(Backup, p.Name, p.UID)
	// Distributed snapshotting: the snapshotter on a node only handles contents carrying
	// its node's managed-by label (external-snapshotter pkg/utils).
	const managedBy = "snapshot.storage.kubernetes.io/managed-by"
	if v, ok := p.Source.Labels[managedBy]; ok {
		labels[managedBy] = v
	}
	var handle *string
	if p.Source.Status != nil && p.Source.Status.SnapshotHandle != nil {
		handle = ptr.To(*p.Source.Status.SnapshotHandle)
	}
	return &snapshotv1.VolumeSnapshotContent{
		TypeMeta: metav1.TypeMeta{APIVersion: snapshotv1.SchemeGroupVersion.String(), Kind: "VolumeSnapshotContent"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        p.Name,
			Labels:      labels,
			Annotations: copyMap(p.Source.Annotations),
		},
		Spec: snapshotv1.VolumeSnapshotContentSpec{
			VolumeSnapshotRef: corev1.ObjectReference{
				APIVersion: snapshotv1.SchemeGroupVersion.String(),
				Kind:       "VolumeSnapshot",
				Namespace:  p.Namespace,
				Name:       p.Name,
			},
			Source:                  snapshotv1.VolumeSnapshotContentSource{SnapshotHandle: handle},
			DeletionPolicy:          snapshotv1.VolumeSnapshotContentDelete,
			Driver:                  p.Source.Spec.Driver,
			VolumeSnapshotClassName: p.Source.Spec.VolumeSnapshotClassName,
			SourceVolumeMode:        p.Source.Spec.SourceVolumeMode,
		},
	}
}

// BackupVolumeSnapshot is the VolumeSnapshot in Velero's namespace bound to
// BackupVolumeSnapshotContent. It has no owner on purpose: the backup PVC restored from
// it must go first (as in Velero's csi_snapshot.go).
func BackupVolumeSnapshot(p SnapshotParams) *snapshotv1.VolumeSnapshot {
	return &snapshotv1.VolumeSnapshot{
		TypeMeta: metav1.TypeMeta{APIVersion: snapshotv1.SchemeGroupVersion.String(), Kind: "VolumeSnapshot"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      p.Name,
			Namespace: p.Namespace,
			Labels:    Labels(Backup, p.Name, p.UID),
		},
		Spec: snapshotv1.VolumeSnapshotSpec{
			Source:                  snapshotv1.VolumeSnapshotSource{VolumeSnapshotContentName: ptr.To(p.Name)},
			VolumeSnapshotClassName: p.SnapshotClass,
		},
	}
}

// BackupPVCParams describe the PVC a backup restores from the snapshot.
type BackupPVCParams struct {
	Name, Namespace string
	Owner           metav1.OwnerReference
	StorageClass    string
	AccessMode      corev1.PersistentVolumeAccessMode
	VolumeMode      corev1.PersistentVolumeMode
	Size            resource.Quantity
	// Annotations are merged in (e.g. the access-mode fallback marker).
	Annotations map[string]string
}

// BackupPVC is the PVC in Velero's namespace whose data source is BackupVolumeSnapshot.
func BackupPVC(p BackupPVCParams) *corev1.PersistentVolumeClaim {
	pvc := &corev1.PersistentVolumeClaim{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "PersistentVolumeClaim"},
		ObjectMeta: metav1.ObjectMeta{
			Name:            p.Name,
			Namespace:       p.Namespace,
			Labels:          Labels(Backup, p.Name, p.Owner.UID),
			Annotations:     copyMap(p.Annotations),
			OwnerReferences: []metav1.OwnerReference{p.Owner},
		},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{p.AccessMode},
			VolumeMode:  ptr.To(p.VolumeMode),
			DataSource: &corev1.TypedLocalObjectReference{
				APIGroup: ptr.To(snapshotv1.SchemeGroupVersion.Group),
				Kind:     "VolumeSnapshot",
				Name:     p.Name,
			},
			Resources: corev1.VolumeResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceStorage: p.Size},
			},
		},
	}
	if p.StorageClass != "" {
		pvc.Spec.StorageClassName = ptr.To(p.StorageClass)
	}
	return pvc
}

// RestorePVCParams describe the PVC a restore writes, shaped after the target PVC.
type RestorePVCParams struct {
	Name, Namespace string
	Owner           metav1.OwnerReference
	Target          *corev1.PersistentVolumeClaim
	// SnapshotSize is the DataDownload's spec.snapshotSize (bytes; 0: unknown).
	SnapshotSize int64
	// SelectedNode, when set, is the node the target PVC's first consumer was scheduled
	// to (WaitForFirstConsumer): the restore PVC is provisioned there.
	SelectedNode string
}

// SelectedNodeAnnotation is set by the scheduler on a WaitForFirstConsumer PVC.
const SelectedNodeAnnotation = "volume.kubernetes.io/selected-node"

// RestorePVC is the PVC in Velero's namespace the worker restores into: same class,
// access modes and volume mode as the target, sized by RestoreSize.
func RestorePVC(p RestorePVCParams) *corev1.PersistentVolumeClaim {
	size := RestoreSize(p.Target, p.SnapshotSize)
	pvc := &corev1.PersistentVolumeClaim{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "PersistentVolumeClaim"},
		ObjectMeta: metav1.ObjectMeta{
			Name:            p.Name,
			Namespace:       p.Namespace,
			Labels:          Labels(Restore, p.Name, p.Owner.UID),
			OwnerReferences: []metav1.OwnerReference{p.Owner},
		},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      append([]corev1.PersistentVolumeAccessMode(nil), p.Target.Spec.AccessModes...),
			StorageClassName: p.Target.Spec.StorageClassName,
			VolumeMode:       p.Target.Spec.VolumeMode,
			Resources: corev1.VolumeResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceStorage: size},
			},
		},
	}
	if len(pvc.Spec.AccessModes) == 0 {
		pvc.Spec.AccessModes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}
	}
	if p.SelectedNode != "" {
		pvc.Annotations = map[string]string{SelectedNodeAnnotation: p.SelectedNode}
	}
	return pvc
}

// RestoreSize is the size of the volume a restore writes. It is the target PVC's request,
// which Velero restored from the backed-up PVC, so the volume comes back at the size it
// had. The snapshot size only matters where the data cannot fit otherwise:
//   - a block volume's snapshot is the whole device: the volume is at least that large,
//     exactly (a device of another size is another device);
//   - a filesystem snapshot's size is the sum of its files' logical sizes, which sparse
//     files can make larger than the volume that held them, so it only stands in, rounded
//     up to whole GiB, when the target has no request.
func RestoreSize(target *corev1.PersistentVolumeClaim, snapshotSize int64) resource.Quantity {
	req := target.Spec.Resources.Requests[corev1.ResourceStorage]
	block := target.Spec.VolumeMode != nil && *target.Spec.VolumeMode == corev1.PersistentVolumeBlock
	switch {
	case block && snapshotSize > req.Value():
		return *resource.NewQuantity(snapshotSize, resource.BinarySI)
	case req.IsZero() && snapshotSize > 0 && snapshotSize < math.MaxInt64-gib:
		return *resource.NewQuantity((snapshotSize+gib-1)/gib*gib, resource.BinarySI)
	}
	return req.DeepCopy()
}

const gib = int64(1) << 30

// PodParams describe a worker pod.
type PodParams struct {
	Operation       Operation
	Name, Namespace string // the DataUpload's/DataDownload's; the pod and PVC share it
	Owner           metav1.OwnerReference
	Image           string
	ImagePullPolicy corev1.PullPolicy
	ServiceAccount  string
	PVC             string
	Block           bool
	// ReadOnlyClaim mounts the PVC read-only at the volume level (a ReadOnlyMany backup
	// PVC). Backup mounts are read-only in the container either way.
	ReadOnlyClaim bool
	HostNetwork   bool
	Resources     corev1.ResourceRequirements
	CacheSize     resource.Quantity
	// Args are passed after the fixed ones (credentials secret, cache limit, ...).
	Args []string
	// NodeName pins a restore pod to the node chosen for the target PVC (required node
	// affinity on metadata.name: node names need not equal kubernetes.io/hostname).
	NodeName     string
	NodeSelector map[string]string
	// NodeAffinity, when set, is required (the source volume's topology).
	NodeAffinity      *corev1.NodeSelector
	Tolerations       []corev1.Toleration
	PriorityClassName string
	// Labels are added to the pod's (never replacing one of them): those of Velero's
	// server pod that a workload identity's webhook acts on (azure.workload.identity/use).
	Labels map[string]string
	// ImagePullSecrets are those of Velero's server pod and ServiceAccount.
	ImagePullSecrets []corev1.LocalObjectReference
	// Env is added to the worker's environment (never replacing one of its own): how
	// Velero's server reaches the object store (velerosrv.StoreEnv).
	Env []corev1.EnvVar
	// CBTAudience, for a block backup whose CSI driver has a SnapshotMetadata service,
	// is that service's audience: the pod gets a token of its own ServiceAccount for it at
	// CBTTokenPath, and the service's CA (CBTCACert, PEM) in EnvCBTCACert. The worker
	// presents the token to the service, which checks with the API server that the
	// account may get VolumeSnapshots in the pod's namespace (IdentityParams.CBT): no
	// right to create tokens is needed.
	CBTAudience string
	CBTCACert   []byte
}

// WorkerCommand is the worker's command line (without the pod-specific Args).
func WorkerCommand(p PodParams) []string {
	cmd := []string{WorkerBinary, "mover", "worker", string(p.Operation)}
	if p.Operation == Backup {
		cmd = append(cmd, "--data-upload="+p.Name, "--namespace="+p.Namespace, "--source="+VolumePath(p.Operation, p.Block))
	} else {
		cmd = append(cmd, "--data-download="+p.Name, "--namespace="+p.Namespace, "--target="+VolumePath(p.Operation, p.Block))
	}
	if p.Block {
		cmd = append(cmd, "--block")
	}
	return cmd
}

// workerSecurityContext is the container security context of every pod that reads or
// writes a volume: root reads every file (DAC_OVERRIDE) and restores owners and modes
// (CHOWN, FOWNER, FSETID); nothing else is needed.
func workerSecurityContext() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr.To(false),
		ReadOnlyRootFilesystem:   ptr.To(true),
		Capabilities: &corev1.Capabilities{
			Drop: []corev1.Capability{"ALL"},
			Add:  []corev1.Capability{"CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID"},
		},
	}
}

// VolumePath is where the worker finds the volume.
func VolumePath(op Operation, block bool) string {
	switch {
	case op == Backup && block:
		return SourceDevicePath
	case op == Backup:
		return SourceMountPath
	case block:
		return TargetDevicePath
	default:
		return TargetMountPath
	}
}

// WorkerPod is the pod that moves one volume's bytes.
func WorkerPod(p PodParams) *corev1.Pod {
	container := corev1.Container{
		Name:            WorkerContainer,
		Image:           p.Image,
		ImagePullPolicy: p.ImagePullPolicy,
		Command:         WorkerCommand(p),
		Args:            append([]string(nil), p.Args...),
		Env: []corev1.EnvVar{
			{Name: EnvCacheDir, Value: CacheMountPath},
			{Name: "HOME", Value: CacheMountPath},
			{Name: "TMPDIR", Value: CacheMountPath},
			{Name: EnvMemoryLimit, ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{
				ContainerName: WorkerContainer, Resource: "limits.memory", Divisor: resource.MustParse("1"),
			}}},
		},
		Resources:                *p.Resources.DeepCopy(),
		VolumeMounts:             []corev1.VolumeMount{{Name: cacheVolume, MountPath: CacheMountPath}},
		TerminationMessagePath:   corev1.TerminationMessagePathDefault,
		TerminationMessagePolicy: corev1.TerminationMessageReadFile,
		SecurityContext:          workerSecurityContext(),
	}
	container.Env = addEnv(container.Env, p.Env)
	if p.CBTAudience != "" {
		container.Env = addEnv(container.Env, []corev1.EnvVar{{Name: EnvCBTCACert, Value: string(p.CBTCACert)}})
		container.VolumeMounts = append(container.VolumeMounts, corev1.VolumeMount{Name: cbtTokenVolume, MountPath: cbtTokenDir, ReadOnly: true})
	}
	path := VolumePath(p.Operation, p.Block)
	if p.Block {
		container.VolumeDevices = []corev1.VolumeDevice{{Name: dataVolume, DevicePath: path}}
	} else {
		container.VolumeMounts = append([]corev1.VolumeMount{{
			Name: dataVolume, MountPath: path, ReadOnly: p.Operation == Backup,
		}}, container.VolumeMounts...)
	}

	cache := &corev1.EmptyDirVolumeSource{}
	if !p.CacheSize.IsZero() {
		cache.SizeLimit = ptr.To(p.CacheSize.DeepCopy())
	}
	labels := Labels(p.Operation, p.Name, p.Owner.UID)
	labels["app.kubernetes.io/component"] = "mover-worker"
	addLabels(labels, p.Labels)

	nodeSelector := map[string]string{"kubernetes.io/os": "linux"}
	for k, v := range p.NodeSelector {
		nodeSelector[k] = v
	}

	pod := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name:            p.Name,
			Namespace:       p.Namespace,
			Labels:          labels,
			OwnerReferences: []metav1.OwnerReference{p.Owner},
		},
		Spec: corev1.PodSpec{
			ServiceAccountName:            p.ServiceAccount,
			ImagePullSecrets:              append([]corev1.LocalObjectReference(nil), p.ImagePullSecrets...),
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: ptr.To(int64(10)),
			HostNetwork:                   p.HostNetwork,
			NodeSelector:                  nodeSelector,
			Tolerations:                   append([]corev1.Toleration(nil), p.Tolerations...),
			PriorityClassName:             p.PriorityClassName,
			OS:                            &corev1.PodOS{Name: corev1.Linux},
			SecurityContext: &corev1.PodSecurityContext{
				RunAsUser:      ptr.To(int64(0)),
				RunAsGroup:     ptr.To(int64(0)),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Containers: []corev1.Container{container},
			Volumes: []corev1.Volume{
				{Name: dataVolume, VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{
					ClaimName: p.PVC, ReadOnly: p.ReadOnlyClaim,
				}}},
				{Name: cacheVolume, VolumeSource: corev1.VolumeSource{EmptyDir: cache}},
			},
		},
	}
	if p.CBTAudience != "" {
		pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: cbtTokenVolume, VolumeSource: corev1.VolumeSource{
			Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{{
				ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
					Audience: p.CBTAudience, ExpirationSeconds: ptr.To(int64(cbtTokenSeconds)), Path: "token",
				},
			}}},
		}})
	}
	if p.HostNetwork {
		pod.Spec.DNSPolicy = corev1.DNSClusterFirstWithHostNet
	}
	required := p.NodeAffinity.DeepCopy()
	if p.NodeName != "" {
		// Terms are ORed: the node must be added to each of them.
		pin := corev1.NodeSelectorRequirement{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{p.NodeName}}
		if required == nil || len(required.NodeSelectorTerms) == 0 {
			required = &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{}}}
		}
		for i := range required.NodeSelectorTerms {
			required.NodeSelectorTerms[i].MatchFields = append(required.NodeSelectorTerms[i].MatchFields, pin)
		}
	}
	if required != nil && len(required.NodeSelectorTerms) > 0 {
		pod.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: required,
		}}
	}
	return pod
}

// addEnv appends extra to env, keeping the variables env has.
func addEnv(env, extra []corev1.EnvVar) []corev1.EnvVar {
	for _, e := range extra {
		if !slices.ContainsFunc(env, func(have corev1.EnvVar) bool { return have.Name == e.Name }) {
			env = append(env, e)
		}
	}
	return env
}

// addLabels adds extra to labels, keeping those labels has.
func addLabels(labels, extra map[string]string) {
	for k, v := range extra {
		if _, ok := labels[k]; !ok {
			labels[k] = v
		}
	}
}

// WorkerArgs renders the optional worker flags in a stable order.
func WorkerArgs(flags map[string]string) []string {
	keys := make([]string, 0, len(flags))
	for k := range flags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, fmt.Sprintf("--%s=%s", k, flags[k]))
	}
	return out
}

// FormatBool is strconv.FormatBool, for WorkerArgs values.
func FormatBool(b bool) string { return strconv.FormatBool(b) }

// Create creates obj, which carries its movement's naming.MovementUIDLabel (Labels). An
// object of that name that exists already counts as created only when it was made for the
// same movement (a retried pass); otherwise Create returns a *NotMadeForError and the
// object is left as it is. reader reads the existing object (from the API server: a cache
// may not have it yet, and need not watch the kind at all).
func Create(ctx context.Context, c client.Writer, reader client.Reader, obj client.Object) error {
	err := c.Create(ctx, obj)
	if err == nil {
		return nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return errors.Wrapf(err, "creating %s %s", kindOf(obj), describe(obj))
	}
	// A zero object: decoding into a copy of obj would merge obj's labels into the answer.
	existing := reflect.New(reflect.TypeOf(obj).Elem()).Interface().(client.Object)
	if err := reader.Get(ctx, client.ObjectKeyFromObject(obj), existing); err != nil {
		// Gone again (NotFound), or unreadable: the next pass creates or checks it.
		return errors.Wrapf(err, "getting %s %s, which exists already", kindOf(obj), describe(obj))
	}
	return NotMadeFor(existing, types.UID(obj.GetLabels()[naming.MovementUIDLabel]))
}

// kindOf is obj's Kind: typed objects built in Go carry no TypeMeta, and their Go type
// name is their Kind.
func kindOf(obj client.Object) string {
	if kind := obj.GetObjectKind().GroupVersionKind().Kind; kind != "" {
		return kind
	}
	return reflect.TypeOf(obj).Elem().Name()
}

func describe(obj client.Object) string {
	if ns := obj.GetNamespace(); ns != "" {
		return ns + "/" + obj.GetName()
	}
	return obj.GetName()
}

func copyMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
