//go:build e2e

package e2e

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"github.com/stretchr/testify/require"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	crclient "sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/naming"
)

// namespace creates a fresh namespace and deletes it when the test ends.
func (s *stack) namespace(t *testing.T, prefix string) string {
	t.Helper()
	ns := s.unownedNamespace(t, prefix)
	own(t, ns)
	return ns
}

// unownedNamespace is namespace for a fixture that outlives the test's leftover checks on
// purpose (a movement left waiting while other cases run): the test that checks it calls
// own itself.
func (s *stack) unownedNamespace(t *testing.T, prefix string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}
	require.NoError(t, s.c.Create(ctxT(t), ns))
	t.Cleanup(func() { s.deleteNamespace(t, ns.Name) })
	return ns.Name
}

func (s *stack) deleteNamespace(t *testing.T, name string) {
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := s.c.Delete(ctx, ns); err != nil && !apierrors.IsNotFound(err) {
		t.Logf("deleting namespace %s: %v", name, err)
		return
	}
	_ = wait.PollUntilContextTimeout(ctx, time.Second, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		err := s.c.Get(ctx, crclient.ObjectKey{Name: name}, &corev1.Namespace{})
		return apierrors.IsNotFound(err), nil
	})
}

// pvc creates a PVC of the stack's CSI storage class and waits until it is bound. It
// returns the host directory (filesystem) or image file (block) that backs the volume.
func (s *stack) pvc(t *testing.T, ns, name, size string, mode corev1.PersistentVolumeMode) string {
	t.Helper()
	p := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": name}},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: ptr.To(s.storageClass),
			VolumeMode:       ptr.To(mode),
			Resources: corev1.VolumeResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)},
			},
		},
	}
	require.NoError(t, s.c.Create(ctxT(t), p))
	return s.volumePath(t, ns, name)
}

// volumePath waits for the PVC to be bound and returns where the test CSI driver keeps
// its data on this host.
func (s *stack) volumePath(t *testing.T, ns, name string) string {
	t.Helper()
	var pv corev1.PersistentVolume
	poll(t, "PVC "+ns+"/"+name+" to be bound", 3*time.Minute, func(ctx context.Context) (bool, error) {
		var p corev1.PersistentVolumeClaim
		if err := s.c.Get(ctx, crclient.ObjectKey{Namespace: ns, Name: name}, &p); err != nil {
			return false, crclient.IgnoreNotFound(err)
		}
		if p.Status.Phase != corev1.ClaimBound {
			return false, nil
		}
		return true, s.c.Get(ctx, crclient.ObjectKey{Name: p.Spec.VolumeName}, &pv)
	})
	require.NotNil(t, pv.Spec.CSI, "PV %s is not a CSI volume", pv.Name)
	if pv.Spec.VolumeMode != nil && *pv.Spec.VolumeMode == corev1.PersistentVolumeBlock {
		return filepath.Join(s.csiStateDir, "volumes", pv.Spec.CSI.VolumeHandle+".img")
	}
	return filepath.Join(s.csiStateDir, "volumes", pv.Spec.CSI.VolumeHandle)
}

// app runs a pod that keeps the PVC mounted, as the application using it would.
func (s *stack) app(t *testing.T, ns, pvc string, block bool) {
	t.Helper()
	c := corev1.Container{
		Name: "app", Image: "docker.io/snapmove/busybox:1", ImagePullPolicy: corev1.PullNever,
		Command: []string{"/bin/busybox", "sleep", "3600"},
	}
	if block {
		c.VolumeDevices = []corev1.VolumeDevice{{Name: "data", DevicePath: "/dev/data"}}
	} else {
		c.VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app-" + pvc, Labels: map[string]string{"app": pvc}},
		Spec: corev1.PodSpec{
			HostNetwork:                   true,
			AutomountServiceAccountToken:  ptr.To(false),
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers:                    []corev1.Container{c},
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: pvc}}}},
		},
	}
	require.NoError(t, s.c.Create(ctxT(t), pod))
	poll(t, "pod "+ns+"/"+pod.Name+" to run", 3*time.Minute, func(ctx context.Context) (bool, error) {
		if err := s.c.Get(ctx, crclient.ObjectKeyFromObject(pod), pod); err != nil {
			return false, err
		}
		return pod.Status.Phase == corev1.PodRunning, nil
	})
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	h := sha256.New()
	_, err = io.Copy(h, f)
	require.NoError(t, err)
	return hex.EncodeToString(h.Sum(nil))
}

// smallVolume makes a namespace with a PVC "data" holding a small tree (a file and a
// symlink); it returns the namespace and the volume's host directory.
func (s *stack) smallVolume(t *testing.T, prefix string) (string, string) {
	t.Helper()
	ns := s.namespace(t, prefix)
	dir := s.pvc(t, ns, "data", "256Mi", corev1.PersistentVolumeFilesystem)
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "a", "b"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "a", "b", "file"), []byte(prefix), 0o640))
	require.NoError(t, os.Symlink("a/b/file", filepath.Join(dir, "link")))
	return ns, dir
}

// bigVolume makes a namespace with a PVC holding size bytes of random data, large enough
// that a move takes seconds.
func (s *stack) bigVolume(t *testing.T, prefix string, pvcs ...string) string {
	t.Helper()
	ns := s.namespace(t, prefix)
	for _, p := range pvcs {
		dir := s.pvc(t, ns, p, "2Gi", corev1.PersistentVolumeFilesystem)
		require.NoError(t, writeRandomBlocks(filepath.Join(dir, "big"), 1<<30))
	}
	return ns
}

// writeRandomBlocks writes size bytes of random data (incompressible, undeduplicable) to
// path, or over the start of a block device image.
func writeRandomBlocks(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.CopyN(f, rand.Reader, size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// dataMoverTarget creates the PVC ns/name as Velero's restore makes a data mover's target:
// 256Mi of the stack's storage class, with a selector that no provisioner binds.
func (s *stack) dataMoverTarget(t *testing.T, ns, name string) *corev1.PersistentVolumeClaim {
	t.Helper()
	target := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: ptr.To(s.storageClass),
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("256Mi")}},
			Selector:         &metav1.LabelSelector{MatchLabels: map[string]string{"velero.io/dynamic-pv-restore": ns + "." + name + ".e2e"}},
		},
	}
	require.NoError(t, s.c.Create(ctxT(t), target))
	return target
}

// dataDownloadLikeVelero creates the DataDownload Velero's restore would create for
// datamover snapmove: snapshot snapshotID of sourceNS's repository on the given location,
// into target (see dataMoverTarget). It is deleted when the test ends.
func (s *stack) dataDownloadLikeVelero(t *testing.T, target *corev1.PersistentVolumeClaim, bsl, sourceNS, snapshotID string) *velerov2alpha1.DataDownload {
	t.Helper()
	dd := &velerov2alpha1.DataDownload{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.veleroNS, GenerateName: target.Namespace + "-"},
		Spec: velerov2alpha1.DataDownloadSpec{
			TargetVolume:          velerov2alpha1.TargetVolumeSpec{PVC: target.Name, Namespace: target.Namespace},
			BackupStorageLocation: bsl, DataMover: naming.DataMover, SnapshotID: snapshotID,
			SourceNamespace: sourceNS, OperationTimeout: metav1.Duration{Duration: 10 * time.Minute},
		},
	}
	require.NoError(t, s.c.Create(ctxT(t), dd))
	t.Cleanup(func() { _ = s.c.Delete(context.Background(), dd) })
	return dd
}

// dataUploadLikeVelero snapshots ns/pvc and creates the DataUpload Velero's CSI action
// would create for it, for datamover snapmove, to the given location.
func (s *stack) dataUploadLikeVelero(t *testing.T, ns, pvc, bsl string, opts ...func(*velerov2alpha1.DataUpload)) *velerov2alpha1.DataUpload {
	t.Helper()
	vs := &snapshotv1.VolumeSnapshot{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: pvc + "-snap"},
		Spec: snapshotv1.VolumeSnapshotSpec{
			Source:                  snapshotv1.VolumeSnapshotSource{PersistentVolumeClaimName: ptr.To(pvc)},
			VolumeSnapshotClassName: ptr.To(s.snapClass),
		},
	}
	require.NoError(t, s.c.Create(ctxT(t), vs))
	du := &velerov2alpha1.DataUpload{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.veleroNS, GenerateName: ns + "-"},
		Spec: velerov2alpha1.DataUploadSpec{
			SnapshotType: velerov2alpha1.SnapshotTypeCSI,
			CSISnapshot: &velerov2alpha1.CSISnapshotSpec{
				VolumeSnapshot: vs.Name, StorageClass: s.storageClass, SnapshotClass: s.snapClass,
			},
			SourcePVC: pvc, SourceNamespace: ns, DataMover: naming.DataMover,
			BackupStorageLocation: bsl, OperationTimeout: metav1.Duration{Duration: 10 * time.Minute},
		},
	}
	for _, o := range opts {
		o(du)
	}
	require.NoError(t, s.c.Create(ctxT(t), du))
	t.Cleanup(func() { _ = s.c.Delete(context.Background(), du) })
	return du
}
