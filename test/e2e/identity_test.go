//go:build e2e

package e2e

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	crclient "sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/mover/velerosrv"
)

// TestCredentialsAndIdentityAsVeleroRuns (issue #22, items 3 and 4): a
// BackupStorageLocation without spec.credential is opened with the secret Velero's own
// Deployment mounts (the stack's cloud-credentials, found through the Deployment, not
// guessed), by the mover, its worker and the user's commands, which say which secret they
// used. The worker's ServiceAccount carries the workload-identity annotations of Velero's
// ServiceAccount and nothing else of it, and the worker pod its image pull secrets. The
// stack has no cloud identity to give, so the annotation reaches nothing here: what it
// shows is that the worker gets exactly what Velero's server has.
func TestCredentialsAndIdentityAsVeleroRuns(t *testing.T) {
	s := env
	requireSerial(t) // Velero's ServiceAccount is changed while the test runs: every worker beside it would get its annotation

	var deploy appsv1.Deployment
	require.NoError(t, s.c.Get(ctxT(t), crclient.ObjectKey{Namespace: s.veleroNS, Name: "velero"}, &deploy))
	saKey := crclient.ObjectKey{Namespace: s.veleroNS, Name: deploy.Spec.Template.Spec.ServiceAccountName}
	var sa corev1.ServiceAccount
	require.NoError(t, s.c.Get(ctxT(t), saKey, &sa))
	saved := sa.DeepCopy()
	t.Cleanup(func() {
		var now corev1.ServiceAccount
		if err := s.c.Get(context.Background(), saKey, &now); err != nil {
			t.Logf("putting back ServiceAccount %s: %v", saKey, err)
			return
		}
		now.Annotations, now.ImagePullSecrets = saved.Annotations, saved.ImagePullSecrets
		if err := s.c.Update(context.Background(), &now); err != nil {
			t.Logf("putting back ServiceAccount %s: %v", saKey, err)
		}
	})
	const roleARN = "arn:aws:iam::000000000000:role/snapmove-e2e"
	if sa.Annotations == nil {
		sa.Annotations = map[string]string{}
	}
	sa.Annotations["eks.amazonaws.com/role-arn"] = roleARN
	sa.Annotations["example.com/not-an-identity"] = "not copied"
	// A pull secret the image does not need (the stack's images are local): the kubelet
	// warns that it is missing and starts the pod.
	sa.ImagePullSecrets = append(sa.ImagePullSecrets, corev1.LocalObjectReference{Name: "snapmove-e2e-registry"})
	require.NoError(t, s.c.Update(ctxT(t), &sa))
	changed := time.Now()

	var def velerov1.BackupStorageLocation
	require.NoError(t, s.c.Get(ctxT(t), crclient.ObjectKey{Namespace: s.veleroNS, Name: "default"}, &def))
	bsl := &velerov1.BackupStorageLocation{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.veleroNS, Name: "no-credential"},
		Spec:       *def.Spec.DeepCopy(),
	}
	bsl.Spec.Default, bsl.Spec.Credential = false, nil
	bsl.Spec.ObjectStorage.Prefix = "no-credential"
	require.NoError(t, s.c.Create(ctxT(t), bsl))
	t.Cleanup(func() { s.deleteLocation(t, bsl.Name) })
	poll(t, "BackupStorageLocation "+bsl.Name+" to be Available (Velero opens it with its Deployment's credentials)", time.Minute, func(ctx context.Context) (bool, error) {
		err := s.c.Get(ctx, crclient.ObjectKeyFromObject(bsl), bsl)
		return bsl.Status.Phase == velerov1.BackupStorageLocationPhaseAvailable, err
	})

	ns, _ := s.smallVolume(t, "creds")
	// The mover reads Velero's Deployment and ServiceAccount again once its last reading
	// is velerosrv.DefaultTTL old.
	time.Sleep(time.Until(changed.Add(velerosrv.DefaultTTL + time.Second)))
	backup := ns + "-b"
	s.veleroCLI(t, "backup", "create", backup, "--include-namespaces", ns, "--snapshot-move-data", "--storage-location", bsl.Name)
	t.Cleanup(func() { s.deleteBackupAndWait(t, backup) })
	// A 5-byte upload may end within a second of its worker's start: the worker's identity
	// and pod are caught as they appear, not looked for once.
	seen := s.captureWorker(t, backup)
	s.waitBackupDone(t, backup)
	workerSA, pod, role := seen()

	require.Equal(t, roleARN, workerSA.Annotations["eks.amazonaws.com/role-arn"], "Velero's workload identity")
	require.NotContains(t, workerSA.Annotations, "example.com/not-an-identity", "only identity annotations are copied")
	require.Contains(t, pod.Spec.ImagePullSecrets, corev1.LocalObjectReference{Name: "snapmove-e2e-registry"}, "Velero's pull secrets")
	require.Contains(t, strings.Join(pod.Spec.Containers[0].Args, " "), "--default-credentials-secret=cloud-credentials/cloud",
		"the worker is told the secret Velero's Deployment mounts")
	require.True(t, slices.ContainsFunc(role.Rules, func(r rbacv1.PolicyRule) bool {
		return slices.Contains(r.Resources, "secrets") && slices.Contains(r.ResourceNames, "cloud-credentials")
	}), "the worker may read that secret: %+v", role.Rules)

	var b velerov1.Backup
	require.NoError(t, s.c.Get(ctxT(t), crclient.ObjectKey{Namespace: s.veleroNS, Name: backup}, &b))
	require.Equal(t, velerov1.BackupPhaseCompleted, b.Status.Phase)

	out := s.snapmove(t, "list", backup)
	require.Contains(t, out, "credentials: secret velero/cloud-credentials key cloud", "the user's command says which credentials it used")
	require.Contains(t, out, "Deployment velero")
	t.Logf("snapmove list %s:\n%s", backup, out)
	s.requireNoLeftovers(t)
}

// captureWorker records the ServiceAccount, pod and Role of the worker of the first
// DataUpload of backup as soon as each exists (every 100 ms) and returns a function that
// stops and returns them, failing the test if one was never seen.
func (s *stack) captureWorker(t *testing.T, backup string) func() (corev1.ServiceAccount, corev1.Pod, rbacv1.Role) {
	var (
		mu   sync.Mutex
		sa   *corev1.ServiceAccount
		pod  *corev1.Pod
		role *rbacv1.Role
	)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			var l velerov2alpha1.DataUploadList
			if err := s.c.List(ctx, &l, crclient.InNamespace(s.veleroNS), crclient.MatchingLabels{velerov1.BackupNameLabel: backup}); err != nil || len(l.Items) == 0 {
				return false, nil
			}
			key := crclient.ObjectKey{Namespace: s.veleroNS, Name: l.Items[0].Name}
			mu.Lock()
			defer mu.Unlock()
			if o := (&corev1.ServiceAccount{}); sa == nil && s.c.Get(ctx, key, o) == nil {
				sa = o
			}
			if o := (&corev1.Pod{}); pod == nil && s.c.Get(ctx, key, o) == nil {
				pod = o
			}
			if o := (&rbacv1.Role{}); role == nil && s.c.Get(ctx, key, o) == nil {
				role = o
			}
			return sa != nil && pod != nil && role != nil, nil
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	return func() (corev1.ServiceAccount, corev1.Pod, rbacv1.Role) {
		t.Helper()
		cancel()
		<-done
		mu.Lock()
		defer mu.Unlock()
		require.NotNil(t, sa, "the worker's ServiceAccount was never seen")
		require.NotNil(t, pod, "the worker pod was never seen")
		require.NotNil(t, role, "the worker's Role was never seen")
		return *sa, *pod, *role
	}
}

// deleteBackupAndWait deletes backup and waits until Velero has (so that its
// BackupStorageLocation may go next).
func (s *stack) deleteBackupAndWait(t *testing.T, backup string) {
	s.deleteBackup(t, backup)
	err := wait.PollUntilContextTimeout(context.Background(), time.Second, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		err := s.c.Get(ctx, crclient.ObjectKey{Namespace: s.veleroNS, Name: backup}, &velerov1.Backup{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		t.Logf("backup %s is still there after 2 minutes", backup)
	}
}

// deleteLocation deletes a BackupStorageLocation a test made, and the BackupRepositories
// of it.
func (s *stack) deleteLocation(t *testing.T, name string) {
	ctx := context.Background()
	_ = s.c.Delete(ctx, &velerov1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Namespace: s.veleroNS, Name: name}})
	var repos velerov1.BackupRepositoryList
	if err := s.c.List(ctx, &repos, crclient.InNamespace(s.veleroNS)); err != nil {
		t.Logf("listing BackupRepositories: %v", err)
		return
	}
	for i := range repos.Items {
		if repos.Items[i].Spec.BackupStorageLocation == name {
			_ = s.c.Delete(ctx, &repos.Items[i])
		}
	}
}
