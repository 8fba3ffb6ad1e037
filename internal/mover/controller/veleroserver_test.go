package controller

import (
	"context"
	"strings"
	"testing"
	"time"

	logtest "github.com/sirupsen/logrus/hooks/test"
	"github.com/stretchr/testify/require"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/snapmove/snapmove/internal/mover/velerosrv"
)

// veleroServer is Velero's server Deployment as the helm chart renders it (release
// "velero": account velero-server, secret velero), with secret mounted when set, and
// its ServiceAccount with annotations.
func veleroServer(secret string, podLabels, annotations map[string]string) []client.Object {
	c := corev1.Container{Name: "velero", Command: []string{"/velero"}, Args: []string{"server"}}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: veleroNS, Name: "velero"},
		Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: podLabels},
			Spec:       corev1.PodSpec{ServiceAccountName: "velero-server", ImagePullSecrets: []corev1.LocalObjectReference{{Name: "registry"}}},
		}},
	}
	if secret != "" {
		for _, env := range []string{velerosrv.EnvAWS, velerosrv.EnvGCP, velerosrv.EnvAzure, velerosrv.EnvAlibaba} {
			c.Env = append(c.Env, corev1.EnvVar{Name: env, Value: "/credentials/cloud"})
		}
		c.VolumeMounts = []corev1.VolumeMount{{Name: "cloud-credentials", MountPath: "/credentials"}}
		d.Spec.Template.Spec.Volumes = []corev1.Volume{{Name: "cloud-credentials", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: secret}}}}
	}
	d.Spec.Template.Spec.Containers = []corev1.Container{c}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: veleroNS, Name: "velero-server", Annotations: annotations}}
	return []client.Object{d, sa}
}

// TestVeleroServer: with --default-credentials-secret auto the worker gets the secret
// Velero's Deployment mounts (or none), resolved, and Velero's workload identity and pull
// secrets; with --worker-service-account nothing is copied onto that account.
func TestVeleroServer(t *testing.T) {
	irsa := map[string]string{"eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/velero", "owner": "not copied"}
	azure := map[string]string{velerosrv.AzureUseLabel: "true"}
	for _, tc := range []struct {
		name             string
		server           []client.Object
		fixedAccount     string
		wantCreds        string
		wantSecrets      []string
		wantAnnotations  map[string]string
		wantFailedSaying string
	}{{
		name:   "helm chart: the secret named after the release",
		server: veleroServer("velero", nil, nil), wantCreds: "velero/cloud",
		wantSecrets: []string{"velero", "velero-repo-credentials"},
	}, {
		name:   "workload identity: no secret, the account's annotations, Azure's label",
		server: veleroServer("", azure, irsa), wantCreds: "none",
		wantSecrets:     []string{"velero-repo-credentials"},
		wantAnnotations: map[string]string{"eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/velero"},
	}, {
		name:   "--worker-service-account: nothing copied onto the operator's account",
		server: veleroServer("", azure, irsa), fixedAccount: "snapmove-worker", wantCreds: "none",
	}, {
		name:             "no Velero Deployment",
		wantFailedSaying: "--default-credentials-secret NAME/KEY",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil, append(backupFixtures(dataUpload(velerov2alpha1.DataUploadPhaseAccepted)), tc.server...)...)
			cache := &velerosrv.Cache{Reader: e.c, Namespace: veleroNS}
			e.r.Options.DefaultCredentials = velerosrv.Credentials{Default: velerosrv.Default{Auto: true}, Server: cache.Get}
			e.r.Options.VeleroServer = cache.Get
			e.r.Options.WorkerServiceAccount = tc.fixedAccount
			e.reconcileDU()
			if tc.wantFailedSaying != "" {
				require.Equal(t, velerov2alpha1.DataUploadPhaseFailed, e.du().Status.Phase)
				require.Contains(t, e.du().Status.Message, tc.wantFailedSaying)
				return
			}
			pod := ourPod(duName)
			require.True(t, e.exists(pod), e.du().Status.Message)
			require.Contains(t, pod.Spec.Containers[0].Args, "--default-credentials-secret="+tc.wantCreds)
			require.Equal(t, []corev1.LocalObjectReference{{Name: "registry"}}, pod.Spec.ImagePullSecrets)
			if tc.server[0].(*appsv1.Deployment).Spec.Template.Labels != nil {
				require.Equal(t, "true", pod.Labels[velerosrv.AzureUseLabel])
			}
			sa, role, _ := identityObjects(duName)
			if tc.fixedAccount != "" {
				require.Equal(t, tc.fixedAccount, pod.Spec.ServiceAccountName)
				require.False(t, e.exists(sa), "no account made")
				return
			}
			require.True(t, e.exists(sa))
			require.Equal(t, tc.wantAnnotations, sa.Annotations)
			require.True(t, e.exists(role))
			require.Equal(t, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: tc.wantSecrets, Verbs: []string{"get"}}, role.Rules[3])
		})
	}
}

// TestAzurePerMovementWarning: Azure Workload Identity's annotation copied onto
// per-movement accounts, which no federated identity credential matches, is said once per
// process (not per movement), and the movements go on; with --worker-service-account, or
// another cloud's identity, nothing is said.
func TestAzurePerMovementWarning(t *testing.T) {
	azure := map[string]string{velerosrv.AzureClientIDAnnotation: "00000000-0000-0000-0000-000000000001"}
	irsa := map[string]string{"eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/velero"}
	for _, tc := range []struct {
		name         string
		annotations  map[string]string
		fixedAccount string
		wantWarnings int
	}{
		{name: "Azure, per-movement accounts: once for two movements", annotations: azure, wantWarnings: 1},
		{name: "Azure, --worker-service-account", annotations: azure, fixedAccount: "snapmove-worker"},
		{name: "EKS IRSA, per-movement accounts", annotations: irsa},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := append(backupFixtures(dataUpload(velerov2alpha1.DataUploadPhaseAccepted)),
				dataDownload(velerov2alpha1.DataDownloadPhaseAccepted), targetPVC("immediate"), storageClass("immediate", false))
			e := newEnv(t, nil, append(objs, veleroServer("", map[string]string{velerosrv.AzureUseLabel: "true"}, tc.annotations)...)...)
			cache := &velerosrv.Cache{Reader: e.c, Namespace: veleroNS}
			e.r.Options.DefaultCredentials = velerosrv.Credentials{Default: velerosrv.Default{Auto: true}, Server: cache.Get}
			e.r.Options.VeleroServer = cache.Get
			e.r.Options.WorkerServiceAccount = tc.fixedAccount
			log, hook := logtest.NewNullLogger()
			e.r.Log = log

			for range 2 { // the warning is not repeated for the same movement either
				e.reconcileDU()
				e.reconcileDD()
			}
			for _, name := range []string{duName, ddName} {
				require.True(t, e.exists(ourPod(name)), "the movement %s goes on", name)
			}
			warnings := 0
			for _, entry := range hook.AllEntries() {
				if strings.Contains(entry.Message, "federated identity credential") {
					warnings++
					require.Contains(t, entry.Message, "--worker-service-account NAME")
				}
			}
			require.Equal(t, tc.wantWarnings, warnings)
		})
	}
}

// TestIdentityWebhookMissedTheAccount: a worker pod that came back from admission without
// the identity EKS's pod identity webhook injects for its new account (the webhook's cache
// had not seen the account yet) is deleted and made again; once the account is older than
// identityWebhookGrace the pod is kept as it is (the cluster may run no such webhook).
func TestIdentityWebhookMissedTheAccount(t *testing.T) {
	irsa := map[string]string{velerosrv.EKSRoleARNAnnotation: "arn:aws:iam::111122223333:role/velero"}
	for _, tc := range []struct {
		name        string
		misses      int           // pods the webhook lets through unmutated
		accountAge  time.Duration // the account's age when the pod is made
		wantDeleted int
	}{
		{name: "the webhook sees the account in time", misses: 0},
		{name: "the webhook missed the new account once: made again", misses: 1, wantDeleted: 1},
		{name: "no webhook, the account is past the grace: kept", misses: 100, accountAge: identityWebhookGrace},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e *env
			misses, deleted := tc.misses, 0
			funcs := &interceptor.Funcs{
				Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
					switch o := obj.(type) {
					case *corev1.ServiceAccount:
						o.CreationTimestamp = metav1.NewTime(e.clock.Now().Add(-tc.accountAge))
					case *corev1.Pod:
						if misses > 0 {
							misses--
						} else {
							for i := range o.Spec.Containers {
								o.Spec.Containers[i].Env = append(o.Spec.Containers[i].Env, corev1.EnvVar{Name: "AWS_ROLE_ARN", Value: irsa[velerosrv.EKSRoleARNAnnotation]})
							}
						}
					}
					return c.Create(ctx, obj, opts...)
				},
				Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
					if _, ok := obj.(*corev1.Pod); ok {
						deleted++
					}
					return c.Delete(ctx, obj, opts...)
				},
			}
			e = newEnv(t, funcs, append(backupFixtures(dataUpload(velerov2alpha1.DataUploadPhaseAccepted)), veleroServer("", nil, irsa)...)...)
			cache := &velerosrv.Cache{Reader: e.c, Namespace: veleroNS}
			e.r.Options.DefaultCredentials = velerosrv.Credentials{Default: velerosrv.Default{Auto: true}, Server: cache.Get}
			e.r.Options.VeleroServer = cache.Get

			e.reconcileDU()
			if tc.wantDeleted > 0 {
				require.False(t, e.exists(ourPod(duName)))
				require.Contains(t, e.du().Status.Message, "came without AWS_ROLE_ARN")
				e.reconcileDU()
			}
			pod := ourPod(duName)
			require.True(t, e.exists(pod), e.du().Status.Message)
			require.Equal(t, tc.wantDeleted, deleted)
			if tc.misses == 0 || tc.wantDeleted > 0 {
				require.Equal(t, "AWS_ROLE_ARN", pod.Spec.Containers[0].Env[len(pod.Spec.Containers[0].Env)-1].Name)
			}
		})
	}
}
