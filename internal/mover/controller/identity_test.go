package controller

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/snapmove/snapmove/internal/naming"
)

func identityObjects(name string) (*corev1.ServiceAccount, *rbacv1.Role, *rbacv1.RoleBinding) {
	return &corev1.ServiceAccount{ObjectMeta: ourMeta(veleroNS, name)}, &rbacv1.Role{ObjectMeta: ourMeta(veleroNS, name)},
		&rbacv1.RoleBinding{ObjectMeta: ourMeta(veleroNS, name)}
}

// TestWorkerIdentity: each worker pod runs as its own ServiceAccount, whose Role names
// its movement, its BSL and its repository's secrets only; cleanup deletes all three.
func TestWorkerIdentity(t *testing.T) {
	e := newEnv(t, nil, backupFixtures(dataUpload(velerov2alpha1.DataUploadPhaseAccepted))...)
	e.reconcileDU()
	pod := ourPod(duName)
	require.True(t, e.exists(pod))
	require.Equal(t, duName, pod.Spec.ServiceAccountName)

	sa, role, binding := identityObjects(duName)
	require.True(t, e.exists(sa))
	require.True(t, e.exists(role))
	require.True(t, e.exists(binding))
	require.Equal(t, []rbacv1.PolicyRule{
		{APIGroups: []string{"velero.io"}, Resources: []string{"datauploads"}, ResourceNames: []string{duName}, Verbs: []string{"get"}},
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{duName}, Verbs: []string{"patch"}},
		{APIGroups: []string{"velero.io"}, Resources: []string{"backupstoragelocations"}, ResourceNames: []string{"default"}, Verbs: []string{"get"}},
		{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{"cloud-credentials", "velero-repo-credentials"}, Verbs: []string{"get"}},
	}, role.Rules)
	require.Equal(t, duName, binding.RoleRef.Name)
	require.Equal(t, []rbacv1.Subject{{Kind: "ServiceAccount", Name: duName, Namespace: veleroNS}}, binding.Subjects)
	require.Equal(t, "DataUpload", role.OwnerReferences[0].Kind, "collected with the DataUpload")

	// The pod runs and succeeds: cleanup deletes the identity with the pod.
	e.update(pod, func() { pod.Spec.NodeName, pod.Status.Phase = nodeA, corev1.PodRunning })
	e.reconcileDU()
	e.reconcileDU()
	done := terminated(workerPod(duName, corev1.PodSucceeded), "Completed", `{"snapshotID":"k0123","totalBytes":1000}`, 0)
	require.NoError(t, e.c.Delete(context.Background(), ourPod(duName)))
	e.create(done)
	e.reconcileDU()
	require.Equal(t, velerov2alpha1.DataUploadPhaseCompleted, e.du().Status.Phase, e.du().Status.Message)
	sa, role, binding = identityObjects(duName)
	require.False(t, e.exists(sa))
	require.False(t, e.exists(role))
	require.False(t, e.exists(binding))
}

// TestWorkerIdentityFixedAccount: with --worker-service-account the pod runs as that
// account and no identity is made.
// With --worker-service-account the mover neither creates nor deletes identities: an
// install that runs workers as its own account need not grant it those rules.
func TestWorkerIdentityFixedAccount(t *testing.T) {
	var identityCalls []string
	record := func(obj client.Object, verb string) {
		switch obj.(type) {
		case *corev1.ServiceAccount, *rbacv1.Role, *rbacv1.RoleBinding:
			identityCalls = append(identityCalls, verb+" "+kindOf(obj))
		}
	}
	funcs := &interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			record(obj, "create")
			return c.Create(ctx, obj, opts...)
		},
		Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
			record(obj, "delete")
			return c.Delete(ctx, obj, opts...)
		},
	}
	e := newEnv(t, funcs, backupFixtures(dataUpload(velerov2alpha1.DataUploadPhaseAccepted))...)
	e.r.Options.WorkerServiceAccount = "snapmove-worker"
	e.reconcileDU()
	pod := ourPod(duName)
	require.True(t, e.exists(pod))
	require.Equal(t, "snapmove-worker", pod.Spec.ServiceAccountName)

	du := e.du()
	e.update(du, func() { du.Spec.Cancel = true })
	e.reconcileDU()
	require.Equal(t, velerov2alpha1.DataUploadPhaseCanceled, e.du().Status.Phase)
	require.False(t, e.exists(ourPod(duName)))
	require.Empty(t, identityCalls)
}

// TestWorkerIdentityForbidden: a mover upgraded without its RBAC (examples/mover.yaml's
// serviceaccounts, roles and rolebindings rules) cannot make a worker's identity. No
// retry can help, so the DataUpload fails at once (not after prepareTimeout), saying what
// to grant, and the rest is cleaned up even where the mover may not delete either.
func TestWorkerIdentityForbidden(t *testing.T) {
	forbidden := func(obj client.Object, verb string) error {
		return apierrors.NewForbidden(schema.GroupResource{Group: "rbac.authorization.k8s.io", Resource: kindOf(obj)}, obj.GetName(),
			fmt.Errorf(`User "system:serviceaccount:velero:snapmove-mover" cannot %s resource %q`, verb, kindOf(obj)))
	}
	for _, tc := range []struct {
		name string
		// denied reports whether the mover may not verb obj.
		denied func(obj client.Object, verb string) bool
		want   string
	}{{
		name: "no identity rules at all (the old RBAC)",
		denied: func(obj client.Object, _ string) bool {
			switch obj.(type) {
			case *corev1.ServiceAccount, *rbacv1.Role, *rbacv1.RoleBinding:
				return true
			}
			return false
		},
		want: `cannot get resource "ServiceAccount"`,
	}, {
		name: "identity get denied (the RBAC before objects were checked for the movement's UID)",
		denied: func(obj client.Object, verb string) bool {
			switch obj.(type) {
			case *corev1.ServiceAccount, *rbacv1.Role, *rbacv1.RoleBinding:
				return verb == "get"
			}
			return false
		},
		want: `cannot get resource "ServiceAccount"`,
	}, {
		name: "roles denied (a narrowed install)",
		denied: func(obj client.Object, verb string) bool {
			_, ok := obj.(*rbacv1.Role)
			return ok && verb == "create"
		},
		want: `cannot create resource "Role"`,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			checking := false // the test's own reads below are not the mover's
			funcs := &interceptor.Funcs{
				Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
					if !checking && tc.denied(obj, "get") {
						return forbidden(obj, "get")
					}
					return c.Get(ctx, key, obj, opts...)
				},
				Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
					if tc.denied(obj, "create") {
						return forbidden(obj, "create")
					}
					return c.Create(ctx, obj, opts...)
				},
				Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
					if tc.denied(obj, "delete") {
						return forbidden(obj, "delete")
					}
					return c.Delete(ctx, obj, opts...)
				},
			}
			e := newEnv(t, funcs, backupFixtures(dataUpload(velerov2alpha1.DataUploadPhaseAccepted))...)
			e.reconcileDU()
			checking = true
			du := e.du()
			require.Equal(t, velerov2alpha1.DataUploadPhaseFailed, du.Status.Phase, du.Status.Message)
			for _, want := range []string{"may not create its worker's identity", tc.want, "serviceaccounts, roles and rolebindings in namespace velero", "--worker-service-account"} {
				require.Contains(t, du.Status.Message, want)
			}
			e.requireEvent(ReasonPrepareFailed)
			sa, role, _ := identityObjects(duName)
			require.False(t, e.exists(ourPod(duName)), "no pod without its identity")
			require.False(t, e.exists(sa), "the account created before the Forbidden Role is deleted")
			require.False(t, e.exists(role))
			require.False(t, e.exists(ourPVC(duName)), "no backup PVC")
			require.True(t, e.exists(srcVSC()), "nothing exposed (the identity comes first): the user's snapshot was not taken over")
			require.NotContains(t, du.Finalizers, naming.MoverFinalizer)
		})
	}
}

// TestRestoreWorkerIdentity: a restore worker may read its DataDownload only.
func TestRestoreWorkerIdentity(t *testing.T) {
	e := newEnv(t, nil, dataDownload(velerov2alpha1.DataDownloadPhaseAccepted), bsl(), targetPVC("immediate"), storageClass("immediate", false))
	e.reconcileDD()
	pod := ourPod(ddName)
	require.True(t, e.exists(pod), e.dd().Status.Message)
	require.Equal(t, ddName, pod.Spec.ServiceAccountName)
	_, role, _ := identityObjects(ddName)
	require.True(t, e.exists(role))
	require.Equal(t, []string{"datadownloads"}, role.Rules[0].Resources)
	require.Equal(t, []string{ddName}, role.Rules[0].ResourceNames)
}

// A DataUpload waiting for its CSI snapshot to be ready makes no calls for the worker's
// identity: it is created when the exposure starts (once), not at every pass of a wait
// that a slow driver can make last minutes, for every volume of a backup.
func TestNoIdentityCallsWhileTheSnapshotIsNotReady(t *testing.T) {
	creates := 0
	funcs := &interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			switch obj.(type) {
			case *corev1.ServiceAccount, *rbacv1.Role, *rbacv1.RoleBinding:
				creates++
			}
			return c.Create(ctx, obj, opts...)
		},
	}
	du := dataUpload(velerov2alpha1.DataUploadPhaseAccepted)
	e := newEnv(t, funcs, du, bsl(), storageClass("csi-sc", true), sourcePVC(), sourcePV(), sourceVS(false), sourceVSC())
	for range 3 {
		e.reconcileDU()
	}
	require.Contains(t, e.du().Status.Message, "waiting: ")
	require.Zero(t, creates, "no identity calls while the snapshot is not ready")

	vs := srcVS()
	e.update(vs, func() { vs.Status.ReadyToUse = ptr.To(true) })
	e.reconcileDU()
	sa, _, _ := identityObjects(duName)
	require.True(t, e.exists(sa), e.du().Status.Message)
	pod := ourPod(duName)
	require.True(t, e.exists(pod))
	require.Equal(t, duName, pod.Spec.ServiceAccountName)
}
