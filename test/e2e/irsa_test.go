//go:build e2e

package e2e

import (
	"context"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	crclient "sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/mover/velerosrv"
	"github.com/snapmove/snapmove/test/treecheck"
)

// TestWorkloadIdentityIRSA (issue #22, item 4): snapmove moves a volume through a
// BackupStorageLocation without credentials with no static key at all, as on EKS with IAM
// roles for service accounts. The stack (SNAPMOVE_STACK_STORES=irsa) runs EKS's pod
// identity webhook, and MinIO, in AWS STS's place, trusts the API server's
// service-account issuer; Velero's server and the mover have AWS_ENDPOINT_URL_STS, the AWS
// SDK's own variable (users of private STS endpoints set it too), and the workers get it
// from Velero's server. Velero's ServiceAccount carries the role, the mover's too (it
// opens repositories itself), and the mover runs with --default-credentials-secret none,
// what it finds by itself when Velero's Deployment mounts no secret (an IRSA install; the
// stack's Velero keeps its key, so that it is not restarted: a Recreate rollout with the
// chart's 3600 s grace takes ~35 s each way). The worker's account gets the role from
// Velero's, its pod the token from the webhook (made again when the webhook had not seen
// the new account yet). The backup is restored byte-identical. Then the worst day: a
// token STS does not trust (a wrong audience) fails the next movement within minutes,
// saying STS refused which role.
func TestWorkloadIdentityIRSA(t *testing.T) {
	s := env
	requireSerial(t) // Velero's account and the mover are changed while the test runs
	roleARN, sts := os.Getenv("SNAPMOVE_IRSA_ROLE_ARN"), os.Getenv("SNAPMOVE_IRSA_STS_ENDPOINT")
	if roleARN == "" || sts == "" {
		skipWithoutStore(t, "irsa", "the stack runs without workload identity (SNAPMOVE_IRSA_ROLE_ARN is not set): start it with SNAPMOVE_STACK_STORES=irsa (make test does)")
	}

	veleroSA := s.withAnnotation(t, "velero-server", velerosrv.EKSRoleARNAnnotation, roleARN)
	s.withAnnotation(t, "snapmove-mover", velerosrv.EKSRoleARNAnnotation, roleARN)
	s.waitIdentityWebhook(t, "snapmove-mover")
	began := time.Now()
	s.withDeployments(t, map[string]func(*corev1.Container){
		"snapmove-mover": func(c *corev1.Container) {
			c.Args = append(c.Args, "--default-credentials-secret=none")
		},
	})
	t.Logf("the mover rolled out with the identity in %s", time.Since(began).Round(time.Second))

	var def velerov1.BackupStorageLocation
	require.NoError(t, s.c.Get(ctxT(t), crclient.ObjectKey{Namespace: s.veleroNS, Name: "default"}, &def))
	bsl := &velerov1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Namespace: s.veleroNS, Name: "irsa"}, Spec: *def.Spec.DeepCopy()}
	bsl.Spec.Default, bsl.Spec.Credential = false, nil
	bsl.Spec.ObjectStorage.Prefix = "irsa"
	require.NoError(t, s.c.Create(ctxT(t), bsl))
	t.Cleanup(func() { s.deleteLocation(t, bsl.Name) })
	poll(t, "BackupStorageLocation irsa to be Available", 2*time.Minute, func(ctx context.Context) (bool, error) {
		err := s.c.Get(ctx, crclient.ObjectKeyFromObject(bsl), bsl)
		return bsl.Status.Phase == velerov1.BackupStorageLocationPhaseAvailable, err
	})

	ns, dir := s.smallVolume(t, "irsa")
	want, err := treecheck.Manifest(dir)
	require.NoError(t, err)
	st := objectStore{name: "irsa", bsl: bsl.Name, provider: "aws", viaVelero: true}
	seen := s.captureWorker(t, ns+"-b")
	m := movement{ns: ns}
	m.backup, m.du = s.veleroBackup(t, st, ns)
	t.Cleanup(func() { s.deleteBackupAndWait(t, m.backup) })
	workerSA, pod, role := seen()

	require.Equal(t, roleARN, workerSA.Annotations[velerosrv.EKSRoleARNAnnotation], "Velero's role on the worker's account")
	require.Contains(t, strings.Join(pod.Spec.Containers[0].Args, " "), "--default-credentials-secret=none",
		"the worker is given no credentials")
	env := map[string]string{}
	for _, e := range pod.Spec.Containers[0].Env {
		env[e.Name] = e.Value
	}
	require.Equal(t, roleARN, env["AWS_ROLE_ARN"], "the webhook's role in the worker pod")
	require.NotEmpty(t, env["AWS_WEB_IDENTITY_TOKEN_FILE"], "the webhook's token in the worker pod")
	require.Equal(t, sts, env["AWS_ENDPOINT_URL_STS"], "Velero's STS endpoint in the worker pod")
	require.False(t, slices.ContainsFunc(role.Rules, func(r rbacv1.PolicyRule) bool {
		return slices.Contains(r.Resources, "secrets") && slices.Contains(r.ResourceNames, "cloud-credentials")
	}), "the worker may read no credentials secret: %+v", role.Rules)

	t.Logf("backed up through web identity at %s", time.Since(began).Round(time.Second))
	m.restored = s.veleroRestore(t, m)
	got, err := treecheck.Manifest(m.restored)
	require.NoError(t, err)
	require.Empty(t, treecheck.Compare(want, got, treecheck.Options{}))
	s.requireNoLeftovers(t)

	t.Logf("restored through web identity at %s", time.Since(began).Round(time.Second))

	// The worst day: the worker's token is for an audience STS does not trust. Velero's
	// own pod keeps its token (an annotation reaches only new pods).
	veleroSA.Annotations["eks.amazonaws.com/audience"] = "not-" + "sts.amazonaws.com"
	require.NoError(t, s.c.Update(ctxT(t), veleroSA))
	time.Sleep(velerosrv.DefaultTTL + time.Second)
	start := time.Now()
	bad := ns + "-refused"
	b := s.backup(t, bad, "--include-namespaces", ns, "--snapshot-move-data", "--storage-location", bsl.Name)
	t.Cleanup(func() { s.deleteBackupAndWait(t, bad) })
	require.Equal(t, velerov1.BackupPhasePartiallyFailed, b.Status.Phase)
	dus := s.dataUploads(t, bad)
	require.Len(t, dus, 1)
	require.Equal(t, velerov2alpha1.DataUploadPhaseFailed, dus[0].Status.Phase)
	require.Contains(t, dus[0].Status.Message, roleARN, "the message names the role STS refused")
	require.Less(t, time.Since(start), 5*time.Minute, "failed within minutes, not at Velero's timeout")
	t.Logf("refused: %s", dus[0].Status.Message)
	s.requireNoLeftovers(t)
}

// withAnnotation sets an annotation of the ServiceAccount name in Velero's namespace for
// the rest of the test and returns the account as updated.
func (s *stack) withAnnotation(t *testing.T, name, key, value string) *corev1.ServiceAccount {
	requireSerial(t)
	t.Helper()
	var sa corev1.ServiceAccount
	require.NoError(t, s.c.Get(ctxT(t), crclient.ObjectKey{Namespace: s.veleroNS, Name: name}, &sa))
	saved := maps.Clone(sa.Annotations)
	t.Cleanup(func() {
		var now corev1.ServiceAccount
		err := s.c.Get(context.Background(), crclient.ObjectKeyFromObject(&sa), &now)
		if err == nil {
			now.Annotations = saved
			err = s.c.Update(context.Background(), &now)
		}
		if err != nil {
			t.Logf("putting back ServiceAccount %s: %v", name, err)
		}
	})
	if sa.Annotations == nil {
		sa.Annotations = map[string]string{}
	}
	sa.Annotations[key] = value
	require.NoError(t, s.c.Update(ctxT(t), &sa))
	return &sa
}

// waitIdentityWebhook waits until the pod identity webhook gives a pod of the
// ServiceAccount sa its role (it reads accounts from an informer cache), trying with
// server-side dry-run pods, which pass admission and are not stored.
func (s *stack) waitIdentityWebhook(t *testing.T, sa string) {
	t.Helper()
	poll(t, "the pod identity webhook to know ServiceAccount "+sa, time.Minute, func(ctx context.Context) (bool, error) {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: s.veleroNS, GenerateName: "irsa-probe-"},
			Spec:       corev1.PodSpec{ServiceAccountName: sa, Containers: []corev1.Container{{Name: "c", Image: "probe"}}},
		}
		if err := s.c.Create(ctx, pod, crclient.DryRunAll); err != nil {
			return false, err
		}
		return slices.ContainsFunc(pod.Spec.Containers[0].Env, func(e corev1.EnvVar) bool { return e.Name == "AWS_ROLE_ARN" }), nil
	})
}

// withDeployments changes the first container of each named Deployment in Velero's
// namespace for the rest of the test, and waits for the rollouts (of the change, and of
// putting it back), all at once.
func (s *stack) withDeployments(t *testing.T, changes map[string]func(*corev1.Container)) {
	requireSerial(t)
	t.Helper()
	saved := map[crclient.ObjectKey]*corev1.PodTemplateSpec{}
	t.Cleanup(func() {
		for key, tmpl := range saved {
			var now appsv1.Deployment
			err := s.c.Get(context.Background(), key, &now)
			if err == nil {
				now.Spec.Template = *tmpl
				err = s.c.Update(context.Background(), &now)
			}
			if err != nil {
				t.Logf("putting back Deployment %s: %v", key, err)
			}
		}
		for key := range saved {
			s.waitRollout(t, key)
		}
	})
	for name, change := range changes {
		key := crclient.ObjectKey{Namespace: s.veleroNS, Name: name}
		var d appsv1.Deployment
		require.NoError(t, s.c.Get(ctxT(t), key, &d))
		saved[key] = d.Spec.Template.DeepCopy()
		change(&d.Spec.Template.Spec.Containers[0])
		require.NoError(t, s.c.Update(ctxT(t), &d))
	}
	for key := range saved {
		s.waitRollout(t, key)
	}
}

// waitRollout waits until every pod of the Deployment key runs its current template.
func (s *stack) waitRollout(t *testing.T, key crclient.ObjectKey) {
	t.Helper()
	poll(t, "Deployment "+key.String()+" to roll out", 3*time.Minute, func(ctx context.Context) (bool, error) {
		var d appsv1.Deployment
		if err := s.c.Get(ctx, key, &d); err != nil {
			return false, err
		}
		want := int32(1)
		if d.Spec.Replicas != nil {
			want = *d.Spec.Replicas
		}
		st := d.Status
		return st.ObservedGeneration >= d.Generation && st.UpdatedReplicas == want && st.Replicas == want && st.AvailableReplicas == want, nil
	})
}
