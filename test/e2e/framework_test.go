//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	veleroclient "github.com/vmware-tanzu/velero/pkg/client"
	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	crclient "sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/naming"
	"github.com/snapmove/snapmove/test/treecheck"
)

// stack is what hack/stack/up.sh exported in $STACK_RUN/env.
type stack struct {
	c            crclient.Client
	veleroNS     string
	velero       string // velero CLI
	kopia        string // kopia CLI, same module version snapmove links
	run          string
	csiStateDir  string
	csiDriver    string
	storageClass string
	snapClass    string
	s3Endpoint   string
	bucket       string
	bslPrefix    string
	accessKey    string
	secretKey    string
}

var env *stack

func TestMain(m *testing.M) {
	s, err := newStack()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n(start the stack first: make stack-up; then source $STACK_RUN/env)\n", err)
		os.Exit(2)
	}
	env = s
	os.Exit(m.Run())
}

func newStack() (*stack, error) {
	get := func(k string) (string, error) {
		v := os.Getenv(k)
		if v == "" {
			return "", fmt.Errorf("environment variable %s is not set", k)
		}
		return v, nil
	}
	s := &stack{}
	for k, dst := range map[string]*string{
		"VELERO_NAMESPACE": &s.veleroNS, "VELERO": &s.velero, "KOPIA": &s.kopia, "STACK_RUN": &s.run,
		"CSI_STATEDIR": &s.csiStateDir, "CSI_DRIVER": &s.csiDriver, "STORAGE_CLASS": &s.storageClass, "SNAPSHOT_CLASS": &s.snapClass,
		"S3_ENDPOINT": &s.s3Endpoint, "BUCKET": &s.bucket, "BSL_PREFIX": &s.bslPrefix,
		"AWS_ACCESS_KEY_ID": &s.accessKey, "AWS_SECRET_ACCESS_KEY": &s.secretKey,
	} {
		v, err := get(k)
		if err != nil {
			return nil, err
		}
		*dst = v
	}
	c, err := veleroclient.NewFactory("snapmove-e2e", veleroclient.VeleroConfig{}).KubebuilderClient()
	if err != nil {
		return nil, err
	}
	s.c = c
	return s, nil
}

// testTimeout bounds the API calls of one test; polls have their own, shorter timeouts.
const testTimeout = 20 * time.Minute

var (
	testCtxMu sync.Mutex
	testCtxs  = map[*testing.T]context.Context{}
)

// ctxT returns the test's context: made on the test's first call with testTimeout, the
// same one for every later call (poll loops included), cancelled when the test ends.
// Subtests get their own. Cleanups use context.Background(): they may outlive it.
func ctxT(t *testing.T) context.Context {
	testCtxMu.Lock()
	defer testCtxMu.Unlock()
	if ctx, ok := testCtxs[t]; ok {
		return ctx
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	testCtxs[t] = ctx
	t.Cleanup(func() {
		cancel()
		testCtxMu.Lock()
		delete(testCtxs, t)
		testCtxMu.Unlock()
	})
	return ctx
}

// run executes a CLI and returns its combined output; it fails the test on a non-zero exit.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := runErr(name, args...)
	require.NoError(t, err, "%s %s:\n%s", filepath.Base(name), strings.Join(args, " "), out)
	return out
}

func runErr(name string, args ...string) (string, error) {
	var b bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &b, &b
	err := cmd.Run()
	return b.String(), err
}

// snapmove runs the snapmove binary that `make build` made (bin/snapmove) against the stack.
func (s *stack) snapmove(t *testing.T, args ...string) string {
	t.Helper()
	return run(t, filepath.Join(repoRoot(), "bin", "snapmove"), args...)
}

func (s *stack) veleroCLI(t *testing.T, args ...string) string {
	t.Helper()
	return run(t, s.velero, append([]string{"-n", s.veleroNS}, args...)...)
}

// poll calls cond every interval until it returns true or the timeout passes. cond's error
// ends the wait at once.
func poll(t *testing.T, what string, timeout time.Duration, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	err := wait.PollUntilContextTimeout(ctxT(t), time.Second, timeout, true, cond)
	require.NoError(t, err, "waiting for %s", what)
}

// namespace creates a fresh namespace and deletes it when the test ends.
func (s *stack) namespace(t *testing.T, prefix string) string {
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

// backup runs `velero backup create NAME ARGS... --wait` and returns the finished Backup.
func (s *stack) backup(t *testing.T, name string, args ...string) *velerov1.Backup {
	t.Helper()
	s.veleroCLI(t, append([]string{"backup", "create", name, "--wait"}, args...)...)
	b := &velerov1.Backup{}
	require.NoError(t, s.c.Get(ctxT(t), crclient.ObjectKey{Namespace: s.veleroNS, Name: name}, b))
	t.Cleanup(func() { s.deleteBackup(t, name) })
	return b
}

func (s *stack) deleteBackup(t *testing.T, name string) {
	if _, err := runErr(s.velero, "-n", s.veleroNS, "backup", "delete", name, "--confirm"); err != nil {
		t.Logf("deleting backup %s: %v", name, err)
	}
}

func (s *stack) restore(t *testing.T, name string, args ...string) *velerov1.Restore {
	t.Helper()
	s.veleroCLI(t, append([]string{"restore", "create", name, "--wait"}, args...)...)
	r := &velerov1.Restore{}
	require.NoError(t, s.c.Get(ctxT(t), crclient.ObjectKey{Namespace: s.veleroNS, Name: name}, r))
	t.Cleanup(func() {
		_, _ = runErr(s.velero, "-n", s.veleroNS, "restore", "delete", name, "--confirm")
	})
	return r
}

// waitRestore waits until restore name has ended (Completed, PartiallyFailed, Failed, ...)
// and returns it; its deletion is the caller's cleanup.
func (s *stack) waitRestore(t *testing.T, name string, timeout time.Duration) *velerov1.Restore {
	t.Helper()
	r := &velerov1.Restore{}
	poll(t, "restore "+name+" to end", timeout, func(ctx context.Context) (bool, error) {
		if err := s.c.Get(ctx, crclient.ObjectKey{Namespace: s.veleroNS, Name: name}, r); err != nil {
			return false, err
		}
		switch r.Status.Phase {
		case velerov1.RestorePhaseCompleted, velerov1.RestorePhasePartiallyFailed, velerov1.RestorePhaseFailed, velerov1.RestorePhaseFailedValidation:
			return true, nil
		}
		return false, nil
	})
	return r
}

func (s *stack) dataUploads(t *testing.T, backup string) []velerov2alpha1.DataUpload {
	t.Helper()
	var l velerov2alpha1.DataUploadList
	require.NoError(t, s.c.List(ctxT(t), &l, crclient.InNamespace(s.veleroNS),
		crclient.MatchingLabels{velerov1.BackupNameLabel: backup}))
	return l.Items
}

func (s *stack) dataDownloads(t *testing.T, restore string) []velerov2alpha1.DataDownload {
	t.Helper()
	var l velerov2alpha1.DataDownloadList
	require.NoError(t, s.c.List(ctxT(t), &l, crclient.InNamespace(s.veleroNS),
		crclient.MatchingLabels{velerov1.RestoreNameLabel: restore}))
	return l.Items
}

// leftovers lists what the mover or plugins may have left behind for a backup or restore:
// worker pods, exposed PVCs, VolumeSnapshots and VolumeSnapshotContents it made.
func (s *stack) leftovers(ctx context.Context, t *testing.T) []string {
	t.Helper()
	var found []string
	var pods corev1.PodList
	require.NoError(t, s.c.List(ctx, &pods, crclient.InNamespace(s.veleroNS), crclient.MatchingLabels{naming.ManagedByLabel: naming.ManagedByLabelVal}))
	for _, p := range pods.Items {
		found = append(found, "pod "+p.Name)
	}
	var pvcs corev1.PersistentVolumeClaimList
	require.NoError(t, s.c.List(ctx, &pvcs, crclient.InNamespace(s.veleroNS)))
	for _, p := range pvcs.Items {
		found = append(found, "pvc "+p.Name)
	}
	ours := []crclient.ListOption{crclient.InNamespace(s.veleroNS), crclient.MatchingLabels{naming.ManagedByLabel: naming.ManagedByLabelVal}}
	var sas corev1.ServiceAccountList
	require.NoError(t, s.c.List(ctx, &sas, ours...))
	for _, a := range sas.Items {
		found = append(found, "serviceaccount "+a.Name)
	}
	var roles rbacv1.RoleList
	require.NoError(t, s.c.List(ctx, &roles, ours...))
	for _, r := range roles.Items {
		found = append(found, "role "+r.Name)
	}
	var bindings rbacv1.RoleBindingList
	require.NoError(t, s.c.List(ctx, &bindings, ours...))
	for _, b := range bindings.Items {
		found = append(found, "rolebinding "+b.Name)
	}
	var vss snapshotv1.VolumeSnapshotList
	require.NoError(t, s.c.List(ctx, &vss))
	for _, v := range vss.Items {
		found = append(found, "volumesnapshot "+v.Namespace+"/"+v.Name)
	}
	var vscs snapshotv1.VolumeSnapshotContentList
	require.NoError(t, s.c.List(ctx, &vscs))
	for _, v := range vscs.Items {
		found = append(found, "volumesnapshotcontent "+v.Name)
	}
	return found
}

// requireWorkerLeastPrivilege asks the API server's authorizer what the worker pod of
// the movement name (resource datauploads or datadownloads) may do: it runs as its own
// ServiceAccount, which may read and patch its own movement and read its repository's
// secrets, and nothing else.
func (s *stack) requireWorkerLeastPrivilege(t *testing.T, name, resource string) {
	t.Helper()
	var pod corev1.Pod
	require.NoError(t, s.c.Get(ctxT(t), crclient.ObjectKey{Namespace: s.veleroNS, Name: name}, &pod))
	require.Equal(t, name, pod.Spec.ServiceAccountName, "the worker runs as its own account")
	can := func(verb, group, res, obj string) bool {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User:   "system:serviceaccount:" + s.veleroNS + ":" + name,
			Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + s.veleroNS, "system:authenticated"},
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: s.veleroNS, Verb: verb, Group: group, Resource: res, Name: obj,
			},
		}}
		require.NoError(t, s.c.Create(ctxT(t), sar))
		return sar.Status.Allowed
	}
	require.True(t, can("get", "velero.io", resource, name), "its own %s", resource)
	require.True(t, can("patch", "velero.io", resource, name), "progress on its own %s", resource)
	require.True(t, can("get", "", "secrets", "velero-repo-credentials"), "the repository password")
	require.True(t, can("get", "", "secrets", "cloud-credentials"), "the object store credentials")
	for _, denied := range []struct{ verb, group, res, obj string }{
		{"get", "", "secrets", "velero-token"},
		{"list", "", "secrets", ""},
		{"get", "velero.io", resource, name + "-other"},
		{"patch", "velero.io", resource, name + "-other"},
		{"list", "velero.io", resource, ""},
		{"update", "velero.io", "backupstoragelocations", "default"},
		{"create", "", "pods", ""},
	} {
		require.False(t, can(denied.verb, denied.group, denied.res, denied.obj), "a worker may not %s %s %q", denied.verb, denied.res, denied.obj)
	}
}

// requireNoLeftovers waits briefly for asynchronous cleanup, then fails listing what remains.
func (s *stack) requireNoLeftovers(t *testing.T) {
	t.Helper()
	var left []string
	_ = wait.PollUntilContextTimeout(ctxT(t), 2*time.Second, 90*time.Second, true, func(context.Context) (bool, error) {
		// The test's context, not the poll's: a listing cut off by the poll's deadline
		// would report an error instead of what is left.
		left = s.leftovers(ctxT(t), t)
		return len(left) == 0, nil
	})
	require.Empty(t, left, "objects left behind")
}

// backupLogs returns `velero backup logs NAME`.
func (s *stack) backupLogs(t *testing.T, name string) string {
	t.Helper()
	return s.veleroCLI(t, "backup", "logs", name)
}

// repoPassword reads the repository password the mover uses (Velero's secret).
func (s *stack) repoPassword(t *testing.T) string {
	t.Helper()
	var sec corev1.Secret
	require.NoError(t, s.c.Get(ctxT(t), crclient.ObjectKey{Namespace: s.veleroNS, Name: "velero-repo-credentials"}, &sec))
	return strings.TrimSpace(string(sec.Data["repository-password"]))
}

// kopiaConnect connects the kopia CLI to the repository of one source namespace, read-only,
// as a user inspecting Velero's repository would, and returns the kopia args prefix.
func (s *stack) kopiaConnect(t *testing.T, ns, prefix string) []string {
	t.Helper()
	dir := t.TempDir()
	cfg := []string{"--config-file", filepath.Join(dir, "repo.config")}
	args := append([]string{"repository", "connect", "s3", "--bucket", s.bucket, "--prefix", prefix,
		"--endpoint", s.s3Endpoint, "--disable-tls", "--access-key", s.accessKey, "--secret-access-key", s.secretKey,
		"--password", s.repoPassword(t), "--cache-directory", filepath.Join(dir, "cache"), "--readonly"}, cfg...)
	run(t, s.kopia, args...)
	return cfg
}

// requireDescribeShowsMove checks that `velero backup describe --details` tells the user
// that the PVC's data was moved, and by which action. Velero lists the PVC under its
// backup item operations in every configuration; the per-volume "Data Movement" section
// comes from Velero's volume info, which Velero only writes when it runs with EnableCSI
// (internal/volume/volumes_information.go generateVolumeInfoFromDataUpload).
func (s *stack) requireDescribeShowsMove(t *testing.T, backup, ns, pvc, action string) {
	t.Helper()
	details := s.veleroCLI(t, "backup", "describe", backup, "--details")
	require.Contains(t, details, "Operation for persistentvolumeclaims "+ns+"/"+pvc, details)
	require.Regexp(t, `Backup Item Action Plugin:\s+`+regexp.QuoteMeta(action), details)
	if s.features() == naming.FeatureEnableCSI {
		require.Regexp(t, `Data Mover: `+naming.DataMover, details)
	}
}

// features returns the --features the Velero server currently runs with.
func (s *stack) features() string {
	b, err := os.ReadFile(filepath.Join(s.run, "velero", "features"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func runEnv(extraEnv []string, name string, args ...string) (string, error) {
	var b bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), extraEnv...)
	cmd.Stdout, cmd.Stderr = &b, &b
	err := cmd.Run()
	return b.String(), err
}

// repoRoot is the repository checkout the suite runs from (test/e2e/../..).
func repoRoot() string {
	wd, _ := os.Getwd()
	return filepath.Clean(filepath.Join(wd, "..", ".."))
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

func (s *stack) waitBackupDone(t *testing.T, name string) {
	t.Helper()
	poll(t, "backup "+name+" to finish", 5*time.Minute, func(ctx context.Context) (bool, error) {
		var b velerov1.Backup
		if err := s.c.Get(ctx, crclient.ObjectKey{Namespace: s.veleroNS, Name: name}, &b); err != nil {
			return false, err
		}
		switch b.Status.Phase {
		case velerov1.BackupPhaseCompleted, velerov1.BackupPhasePartiallyFailed, velerov1.BackupPhaseFailed:
			return true, nil
		}
		return false, nil
	})
}

// waitDataUpload waits for a DataUpload of the backup for which cond holds and returns it.
func (s *stack) waitDataUpload(t *testing.T, backup string, what string, cond func(velerov2alpha1.DataUpload) bool) velerov2alpha1.DataUpload {
	t.Helper()
	var found velerov2alpha1.DataUpload
	poll(t, what, 5*time.Minute, func(ctx context.Context) (bool, error) {
		var l velerov2alpha1.DataUploadList
		if err := s.c.List(ctx, &l, crclient.InNamespace(s.veleroNS), crclient.MatchingLabels{velerov1.BackupNameLabel: backup}); err != nil {
			return false, err
		}
		for _, du := range l.Items {
			if cond(du) {
				found = du
				return true, nil
			}
		}
		return false, nil
	})
	return found
}

// waitDataUploadPhase re-reads du until it reaches phase; du is left as last read.
func (s *stack) waitDataUploadPhase(t *testing.T, du *velerov2alpha1.DataUpload, phase velerov2alpha1.DataUploadPhase) {
	t.Helper()
	poll(t, "DataUpload "+du.Name+" to be "+string(phase), 5*time.Minute, func(ctx context.Context) (bool, error) {
		err := s.c.Get(ctx, crclient.ObjectKeyFromObject(du), du)
		return du.Status.Phase == phase, err
	})
}

// requireEvent checks that a Warning Event was recorded on the named DataUpload.
//
// The mover records Events asynchronously (client-go's broadcaster), so one may land a
// moment after the status it goes with: it is waited for, briefly.
func (s *stack) requireEvent(t *testing.T, name string) {
	t.Helper()
	found := false
	_ = wait.PollUntilContextTimeout(ctxT(t), 500*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		var evs corev1.EventList
		if err := s.c.List(ctx, &evs, crclient.InNamespace(s.veleroNS)); err != nil {
			return false, nil //nolint:nilerr // retried until the timeout
		}
		for _, e := range evs.Items {
			if e.InvolvedObject.Name == name && e.Type == corev1.EventTypeWarning {
				found = true
			}
		}
		return found, nil
	})
	if !found {
		t.Fatalf("no Warning Event on DataUpload %s within 30 s", name)
	}
}

// veleroSetup is how the stack's Velero runs: its --features, whether Velero's node-agent
// DaemonSet runs, and whether snapmove's initContainer loads snapmove's plugins.
type veleroSetup struct {
	features       string
	nodeAgent      bool
	snapmovePlugin bool
}

func (s *stack) veleroSetup() veleroSetup {
	read := func(name, def string) string {
		b, err := os.ReadFile(filepath.Join(s.run, "velero", name))
		if err != nil {
			return def
		}
		return strings.TrimSpace(string(b))
	}
	return veleroSetup{features: s.features(), nodeAgent: read("node-agent", "false") == "true", snapmovePlugin: read("snapmove-plugin", "true") == "true"}
}

// withVelero restarts Velero (a rollout of its Deployment, hack/stack/velero.sh) set up as
// want for the rest of the test, and as it was afterwards.
func (s *stack) withVelero(t *testing.T, want veleroSetup) {
	t.Helper()
	before := s.veleroSetup()
	if before == want {
		return
	}
	require.NoError(t, s.setVelero(t, want))
	t.Cleanup(func() { _ = s.setVelero(t, before) })
}

// setVelero restarts Velero set up as v, unless it runs so already.
func (s *stack) setVelero(t *testing.T, v veleroSetup) error {
	if s.veleroSetup() == v {
		return nil
	}
	cmd := filepath.Join(repoRoot(), "hack", "stack", "velero.sh")
	out, err := runEnv([]string{"VELERO_FEATURES=" + v.features, "VELERO_NODE_AGENT=" + strconv.FormatBool(v.nodeAgent),
		"VELERO_SNAPMOVE_PLUGIN=" + strconv.FormatBool(v.snapmovePlugin)}, cmd, "restart")
	if err != nil {
		t.Logf("velero.sh restart: %s", out)
	}
	return err
}

// withVeleroFeatures restarts the Velero server with the given --features for the rest of
// the test and restores the stack's setup afterwards.
func (s *stack) withVeleroFeatures(t *testing.T, features string) {
	t.Helper()
	v := s.veleroSetup()
	v.features = features
	s.withVelero(t, v)
}

// scaleMover sets the replicas of the mover's Deployment and waits until that many mover
// pods run (or none is left); scaling back up is the caller's cleanup.
func (s *stack) scaleMover(t *testing.T, replicas int32) {
	t.Helper()
	key := crclient.ObjectKey{Namespace: s.veleroNS, Name: "snapmove-mover"}
	var d appsv1.Deployment
	require.NoError(t, s.c.Get(ctxT(t), key, &d))
	patch := crclient.MergeFrom(d.DeepCopy())
	d.Spec.Replicas = ptr.To(replicas)
	require.NoError(t, s.c.Patch(ctxT(t), &d, patch))
	if replicas == 0 {
		t.Cleanup(func() {
			var cur appsv1.Deployment
			if err := s.c.Get(context.Background(), key, &cur); err == nil && cur.Spec.Replicas != nil && *cur.Spec.Replicas == 0 {
				p := crclient.MergeFrom(cur.DeepCopy())
				cur.Spec.Replicas = ptr.To[int32](1)
				_ = s.c.Patch(context.Background(), &cur, p)
			}
		})
	}
	poll(t, fmt.Sprintf("%d mover pods to run", replicas), 3*time.Minute, func(ctx context.Context) (bool, error) {
		var pods corev1.PodList
		if err := s.c.List(ctx, &pods, crclient.InNamespace(s.veleroNS), crclient.MatchingLabels{"app.kubernetes.io/name": "snapmove-mover"}); err != nil {
			return false, err
		}
		running := 0
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
				running++
			}
		}
		return running == int(replicas) && (replicas > 0 || len(pods.Items) == 0), nil
	})
}

// withMoverSettings changes keys of the mover's settings ConfigMap for the rest of the test.
func (s *stack) withMoverSettings(t *testing.T, data map[string]string) {
	t.Helper()
	key := crclient.ObjectKey{Namespace: s.veleroNS, Name: naming.MoverConfigMapName}
	var cm corev1.ConfigMap
	require.NoError(t, s.c.Get(ctxT(t), key, &cm))
	before := map[string]string{}
	for k, v := range cm.Data {
		before[k] = v
	}
	for k, v := range data {
		cm.Data[k] = v
	}
	require.NoError(t, s.c.Update(ctxT(t), &cm))
	t.Cleanup(func() {
		var cur corev1.ConfigMap
		if err := s.c.Get(context.Background(), key, &cur); err == nil {
			cur.Data = before
			_ = s.c.Update(context.Background(), &cur)
		}
	})
}

// snapshotCounter records every VolumeSnapshot that appears in a namespace while it runs,
// by UID, so a test can prove a backup cut exactly one snapshot per PVC even though the
// mover deletes the snapshot before the backup completes.
type snapshotCounter struct {
	mu   sync.Mutex
	uids map[types.UID]string
	stop context.CancelFunc
	done chan struct{}
}

func (s *stack) countSnapshots(t *testing.T, ns string) *snapshotCounter {
	ctx, cancel := context.WithCancel(context.Background())
	c := &snapshotCounter{uids: map[types.UID]string{}, stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		_ = wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			var l snapshotv1.VolumeSnapshotList
			if err := s.c.List(ctx, &l, crclient.InNamespace(ns)); err == nil {
				c.mu.Lock()
				for _, vs := range l.Items {
					c.uids[vs.UID] = vs.Name
				}
				c.mu.Unlock()
			}
			return false, nil
		})
	}()
	t.Cleanup(c.close)
	return c
}

func (c *snapshotCounter) close() { c.stop(); <-c.done }

func (c *snapshotCounter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.uids)
}

// movedRoundTrip backs up namespace ns (one PVC "data" already filled at dir), deletes the
// namespace, restores it and checks the bytes and the VolumeSnapshot/DataUpload counts.
// It returns the DataUpload for further checks.
func (s *stack) movedRoundTrip(t *testing.T, ns, dir string, backupArgs []string, wantAction string) velerov2alpha1.DataUpload {
	t.Helper()
	want, err := treecheck.Manifest(dir)
	require.NoError(t, err)
	counter := s.countSnapshots(t, ns)

	name := ns + "-b"
	b := s.backup(t, name, append([]string{"--include-namespaces", ns, "--snapshot-move-data"}, backupArgs...)...)
	require.Equal(t, velerov1.BackupPhaseCompleted, b.Status.Phase, s.backupLogs(t, name))
	counter.close()
	require.Equal(t, 1, counter.count(), "VolumeSnapshots cut in %s during the backup", ns)
	dus := s.dataUploads(t, name)
	require.Len(t, dus, 1, "DataUploads of the backup")
	require.Equal(t, naming.DataMover, dus[0].Spec.DataMover)
	require.Equal(t, velerov2alpha1.DataUploadPhaseCompleted, dus[0].Status.Phase, dus[0].Status.Message)
	require.Contains(t, dus[0].Status.Message, "verified (metadata): ", "every backup is read back before it is Completed")
	require.Equal(t, dus[0].Status.Message, dus[0].Annotations["snapmove.io/verification"])
	s.requireDescribeShowsMove(t, name, ns, "data", wantAction)
	s.requireNoLeftovers(t)

	s.deleteNamespace(t, ns)
	rname := ns + "-r"
	r := s.restore(t, rname, "--from-backup", name)
	require.Equal(t, velerov1.RestorePhaseCompleted, r.Status.Phase)
	dds := s.dataDownloads(t, rname)
	require.Len(t, dds, 1, "DataDownloads of the restore")
	require.Equal(t, velerov2alpha1.DataDownloadPhaseCompleted, dds[0].Status.Phase, dds[0].Status.Message)
	got, err := treecheck.Manifest(s.volumePath(t, ns, "data"))
	require.NoError(t, err)
	require.Empty(t, treecheck.Compare(want, got, treecheck.Options{}))
	s.requireNoLeftovers(t)
	return dus[0]
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

// s3Client talks to the stack's MinIO with its root credentials.
func (s *stack) s3Client(t *testing.T) *minio.Client {
	t.Helper()
	c, err := minio.New(s.s3Endpoint, &minio.Options{Creds: credentials.NewStaticV4(s.accessKey, s.secretKey, "")})
	require.NoError(t, err)
	return c
}
