//go:build e2e

package e2e

import (
	"testing"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	crclient "sigs.k8s.io/controller-runtime/pkg/client"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/client/config"

	"github.com/snapmove/snapmove/internal/naming"
)

// TestWorkerTokenCannotRewriteItsMovement (issue #21, item 1): a worker taken over (a
// hostile repository, a bug in the data path) holds its ServiceAccount's token. With that
// token, it tries to point its running DataUpload at another namespace's VolumeSnapshot
// and PVC, which the mover's cleanup would then delete: the API server refuses (the
// worker's Role grants only get of its movement), the upload completes, and the other
// namespace's snapshot and claim are still there. The same token may not touch the
// mover's settings either.
func TestWorkerTokenCannotRewriteItsMovement(t *testing.T) {
	parallel(t)
	s := env
	ns, _ := s.smallVolume(t, "wtoken")
	victimNS := s.namespace(t, "wtoken-victim")
	s.pvc(t, victimNS, "victim", "256Mi", corev1.PersistentVolumeFilesystem)
	victimVS := &snapshotv1.VolumeSnapshot{
		ObjectMeta: metav1.ObjectMeta{Namespace: victimNS, Name: "victim-snap"},
		Spec: snapshotv1.VolumeSnapshotSpec{
			Source:                  snapshotv1.VolumeSnapshotSource{PersistentVolumeClaimName: ptr.To("victim")},
			VolumeSnapshotClassName: ptr.To(s.snapClass),
		},
	}
	require.NoError(t, s.c.Create(ctxT(t), victimVS))

	backup := ns + "-b"
	s.veleroCLI(t, "backup", "create", backup, "--include-namespaces", ns, "--snapshot-move-data")
	t.Cleanup(func() { s.deleteBackup(t, backup) })
	// The worker is slowed from its start: the movement is still running, and its
	// account exists, while the test uses the account's token.
	duName, release := s.throttleUploadOf(t, backup, "data")

	worker := s.clientAs(t, duName)
	key := crclient.ObjectKey{Namespace: s.veleroNS, Name: duName}
	var du velerov2alpha1.DataUpload
	require.NoError(t, worker.Get(ctxT(t), key, &du), "a worker reads its own DataUpload")
	rewrite := crclient.RawPatch(types.MergePatchType, []byte(`{"spec":{"sourceNamespace":"`+victimNS+
		`","sourcePVC":"victim","csiSnapshot":{"volumeSnapshot":"victim-snap"}}}`))
	err := worker.Patch(ctxT(t), &velerov2alpha1.DataUpload{ObjectMeta: metav1.ObjectMeta{Namespace: s.veleroNS, Name: duName}}, rewrite)
	require.True(t, apierrors.IsForbidden(err), "patching its DataUpload's spec: %v", err)
	du.Spec.SourceNamespace, du.Spec.SourcePVC, du.Spec.CSISnapshot.VolumeSnapshot = victimNS, "victim", "victim-snap"
	err = worker.Update(ctxT(t), &du)
	require.True(t, apierrors.IsForbidden(err), "updating its DataUpload: %v", err)
	// Dry run: were it allowed, the settings of the tests running beside this one stay.
	settings := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: s.veleroNS, Name: naming.MoverConfigMapName}}
	err = worker.Patch(ctxT(t), settings, crclient.RawPatch(types.MergePatchType, []byte(`{"data":{"maxConcurrent":"1"}}`)), crclient.DryRunAll)
	require.True(t, apierrors.IsForbidden(err), "patching the mover's settings: %v", err)

	release()
	s.waitBackupDone(t, backup)
	var b velerov1.Backup
	require.NoError(t, s.c.Get(ctxT(t), crclient.ObjectKey{Namespace: s.veleroNS, Name: backup}, &b))
	require.Equal(t, velerov1.BackupPhaseCompleted, b.Status.Phase, "backup %s: %v", backup, b.Status.ValidationErrors)
	require.NoError(t, s.c.Get(ctxT(t), key, &du))
	require.Equal(t, velerov2alpha1.DataUploadPhaseCompleted, du.Status.Phase, du.Status.Message)
	require.Equal(t, ns, du.Spec.SourceNamespace, "the spec is as Velero wrote it")
	require.Equal(t, "data", du.Spec.SourcePVC)

	got := &snapshotv1.VolumeSnapshot{}
	require.NoError(t, s.c.Get(ctxT(t), crclient.ObjectKeyFromObject(victimVS), got), "the other namespace's VolumeSnapshot is still there")
	require.Nil(t, got.DeletionTimestamp, "and not being deleted")
	pvc := &corev1.PersistentVolumeClaim{}
	require.NoError(t, s.c.Get(ctxT(t), crclient.ObjectKey{Namespace: victimNS, Name: "victim"}, pvc), "the other namespace's PVC is still there")
	require.Nil(t, pvc.DeletionTimestamp)

	require.NoError(t, s.c.Delete(ctxT(t), victimVS)) // the test's own, not a leftover of the mover's
	s.requireNoLeftovers(t)
}

// clientAs is a client of the API server authenticated as the ServiceAccount sa in
// Velero's namespace (a TokenRequest, as a worker pod's projected token), with nothing
// of the test's own credentials.
func (s *stack) clientAs(t *testing.T, sa string) crclient.Client {
	t.Helper()
	return s.clientWithToken(t, s.serviceAccountToken(t, s.veleroNS, sa))
}

// serviceAccountToken requests a 10-minute token of the ServiceAccount ns/sa for the given
// audiences (none: the API server's own).
func (s *stack) serviceAccountToken(t *testing.T, ns, sa string, audiences ...string) string {
	t.Helper()
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		Audiences: audiences, ExpirationSeconds: ptr.To(int64(600)),
	}}
	account := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sa}}
	require.NoError(t, s.c.SubResource("token").Create(ctxT(t), account, tr), "requesting a token of ServiceAccount %s/%s", ns, sa)
	return tr.Status.Token
}

// clientWithToken is a client of the API server that authenticates with the bearer token
// only, with nothing of the test's own credentials.
func (s *stack) clientWithToken(t *testing.T, token string) crclient.Client {
	t.Helper()
	admin, err := ctrlconfig.GetConfig() // $KUBECONFIG
	require.NoError(t, err)
	cfg := rest.AnonymousClientConfig(admin)
	cfg.BearerToken = token
	cfg.Timeout = 30 * time.Second
	c, err := crclient.New(cfg, crclient.Options{Scheme: s.c.Scheme()})
	require.NoError(t, err)
	return c
}
