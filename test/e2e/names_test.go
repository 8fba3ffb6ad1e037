//go:build e2e

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	crclient "sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/naming"
)

// TestMovementsNamedLikeSomeoneElsesObjects (issue #21, item 2): the mover names what it
// makes for a movement after the movement, and whoever may create a DataUpload picks its
// name. DataUploads named after a PVC in Velero's namespace, after Velero's own identity
// (velero-server: ServiceAccount, Role and RoleBinding, bound to cluster-admin) and after
// the mover's (snapmove-mover) each fail within a couple of minutes naming the object in
// the way, and every one of those objects is left as it was (same UID and
// resourceVersion; the PVC keeps its data and its volume).
//
// Serial: its DataUploads are named after Velero's and the mover's own objects. The test's
// own PVC and a ServiceAccount of its own go first, so that a mover that still adopted or
// deleted by name would fail the test on those before it could reach Velero's or its own
// identity; should one of those go anyway, the test puts it back and restarts the pods
// that ran as it.
func TestMovementsNamedLikeSomeoneElsesObjects(t *testing.T) {
	s := env
	ns := s.namespace(t, "nametaken")

	// Someone else's objects in Velero's namespace, named after the test's namespace.
	dir := s.pvc(t, s.veleroNS, ns, "64Mi", corev1.PersistentVolumeFilesystem)
	pvc := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: s.veleroNS, Name: ns}}
	t.Cleanup(func() { _ = s.c.Delete(context.Background(), pvc) })
	require.NoError(t, os.WriteFile(filepath.Join(dir, "precious"), []byte(ns), 0o644))
	require.NoError(t, s.c.Get(ctxT(t), crclient.ObjectKeyFromObject(pvc), pvc))
	pv := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: pvc.Spec.VolumeName}}
	require.NoError(t, s.c.Get(ctxT(t), crclient.ObjectKeyFromObject(pv), pv))
	canary := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: s.veleroNS, Name: ns + "-sa"}}
	require.NoError(t, s.c.Create(ctxT(t), canary))
	t.Cleanup(func() { _ = s.c.Delete(context.Background(), canary) })

	identity := func(name string) []crclient.Object {
		meta := metav1.ObjectMeta{Namespace: s.veleroNS, Name: name}
		return []crclient.Object{&corev1.ServiceAccount{ObjectMeta: meta}, &rbacv1.Role{ObjectMeta: meta}, &rbacv1.RoleBinding{ObjectMeta: meta}}
	}
	for _, tc := range []struct {
		name, kind string // the DataUpload's name; the kind the mover finds first in the way
		guarded    []crclient.Object
	}{
		{ns, "PersistentVolumeClaim", []crclient.Object{pvc, pv}},
		{canary.Name, "ServiceAccount", []crclient.Object{canary}},
		{"velero-server", "ServiceAccount", identity("velero-server")},
		{"snapmove-mover", "ServiceAccount", identity("snapmove-mover")},
	} {
		s.requireNameTaken(t, ns, tc.name, tc.kind, tc.guarded...)
	}

	got, err := os.ReadFile(filepath.Join(dir, "precious"))
	require.NoError(t, err)
	require.Equal(t, ns, string(got), "the PVC's data is still there")

	require.NoError(t, s.c.Delete(ctxT(t), pvc))
	poll(t, "PVC "+ns+" to be deleted", 2*time.Minute, func(ctx context.Context) (bool, error) {
		err := s.c.Get(ctx, crclient.ObjectKeyFromObject(pvc), &corev1.PersistentVolumeClaim{})
		return apierrors.IsNotFound(err), crclient.IgnoreNotFound(err)
	})
	s.requireNoLeftovers(t)
}

// requireNameTaken creates a DataUpload called name for a volume of ns (whose snapshot
// does not exist: nothing of ns is touched) and requires that it fails within two minutes
// naming kind velero/name as not made for it, with a NameTaken Event, and that each of
// guarded is unchanged (same UID and resourceVersion), also after the DataUpload is
// deleted.
func (s *stack) requireNameTaken(t *testing.T, ns, name, kind string, guarded ...crclient.Object) {
	t.Helper()
	var before []crclient.Object
	for _, obj := range guarded {
		cp := obj.DeepCopyObject().(crclient.Object)
		require.NoError(t, s.c.Get(ctxT(t), crclient.ObjectKeyFromObject(obj), cp))
		before = append(before, cp)
		switch cp.(type) {
		case *corev1.ServiceAccount, *rbacv1.Role, *rbacv1.RoleBinding: // what the stack runs as
			t.Cleanup(func() { s.putBack(t, cp) })
		}
	}
	s.removeDataUpload(t, name) // a leftover of an interrupted run
	du := &velerov2alpha1.DataUpload{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.veleroNS, Name: name},
		Spec: velerov2alpha1.DataUploadSpec{
			SnapshotType: velerov2alpha1.SnapshotTypeCSI,
			CSISnapshot: &velerov2alpha1.CSISnapshotSpec{
				VolumeSnapshot: "no-such-snapshot", StorageClass: s.storageClass, SnapshotClass: s.snapClass,
			},
			SourcePVC: "data", SourceNamespace: ns, DataMover: naming.DataMover,
			BackupStorageLocation: "default", OperationTimeout: metav1.Duration{Duration: 10 * time.Minute},
		},
	}
	start := time.Now()
	require.NoError(t, s.c.Create(ctxT(t), du))
	t.Cleanup(func() { s.removeDataUpload(t, name) })
	poll(t, "DataUpload "+name+" to fail", 2*time.Minute, func(ctx context.Context) (bool, error) {
		err := s.c.Get(ctx, crclient.ObjectKeyFromObject(du), du)
		return naming.MovementEnded(string(du.Status.Phase)), err
	})
	t.Logf("DataUpload %s: %s after %s: %s", name, du.Status.Phase, time.Since(start).Round(time.Second), du.Status.Message)
	require.Equal(t, velerov2alpha1.DataUploadPhaseFailed, du.Status.Phase)
	require.Contains(t, du.Status.Message, kind+" "+s.veleroNS+"/"+name+" exists and was not made for this movement")
	s.requireEventReason(t, du, "NameTaken")
	s.requireUnchanged(t, before)

	s.removeDataUpload(t, name)
	s.requireUnchanged(t, before)
}

// requireUnchanged: each object of before (as read then) is still there, with the same UID
// and resourceVersion.
func (s *stack) requireUnchanged(t *testing.T, before []crclient.Object) {
	t.Helper()
	for _, b := range before {
		now := b.DeepCopyObject().(crclient.Object)
		require.NoError(t, s.c.Get(ctxT(t), crclient.ObjectKeyFromObject(b), now), "%T %s is still there", b, b.GetName())
		require.Equal(t, b.GetUID(), now.GetUID(), "%T %s is the same object", b, b.GetName())
		require.Equal(t, b.GetResourceVersion(), now.GetResourceVersion(), "%T %s is unchanged", b, b.GetName())
		require.Nil(t, now.GetDeletionTimestamp(), "%T %s is not being deleted", b, b.GetName())
	}
}

// requireEventReason waits briefly (Events are recorded asynchronously) for an Event with
// reason on du.
func (s *stack) requireEventReason(t *testing.T, du *velerov2alpha1.DataUpload, reason string) {
	t.Helper()
	found := false
	_ = wait.PollUntilContextTimeout(ctxT(t), 500*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		var evs corev1.EventList
		if err := s.c.List(ctx, &evs, crclient.InNamespace(s.veleroNS)); err != nil {
			return false, nil //nolint:nilerr // retried until the timeout
		}
		for _, e := range evs.Items {
			if e.InvolvedObject.UID == du.UID && e.Reason == reason {
				found = true
			}
		}
		return found, nil
	})
	require.True(t, found, "an Event %s on DataUpload %s", reason, du.Name)
}

// removeDataUpload deletes the DataUpload name and waits until it is gone; a finalizer
// still held after 30 s (a mover that is down) is removed.
func (s *stack) removeDataUpload(t *testing.T, name string) {
	ctx := context.Background()
	du := &velerov2alpha1.DataUpload{ObjectMeta: metav1.ObjectMeta{Namespace: s.veleroNS, Name: name}}
	if err := s.c.Delete(ctx, du); apierrors.IsNotFound(err) {
		return
	} else if err != nil {
		t.Logf("deleting DataUpload %s: %v", name, err)
	}
	gone := func(ctx context.Context) (bool, error) {
		err := s.c.Get(ctx, crclient.ObjectKeyFromObject(du), du)
		return apierrors.IsNotFound(err), nil
	}
	if wait.PollUntilContextTimeout(ctx, time.Second, 30*time.Second, true, gone) == nil {
		return
	}
	t.Logf("DataUpload %s is held by finalizers %v: removing them", name, du.Finalizers)
	du.Finalizers = nil
	if err := s.c.Update(ctx, du); err != nil && !apierrors.IsNotFound(err) {
		t.Logf("removing the finalizers of DataUpload %s: %v", name, err)
	}
	_ = wait.PollUntilContextTimeout(ctx, time.Second, 30*time.Second, true, gone)
}

// putBack re-creates saved, an identity object (as read before the test's DataUpload), if
// it is gone, failing the test: the stack must survive a mover that deletes what is not
// its own. The pods that
// ran as a re-created ServiceAccount are deleted, so that their controllers start them
// with a token of the new account.
func (s *stack) putBack(t *testing.T, saved crclient.Object) {
	ctx := context.Background()
	now := saved.DeepCopyObject().(crclient.Object)
	err := s.c.Get(ctx, crclient.ObjectKeyFromObject(saved), now)
	if err == nil && now.GetUID() == saved.GetUID() {
		return
	}
	t.Errorf("%T %s/%s was deleted or replaced (%v): putting it back", saved, saved.GetNamespace(), saved.GetName(), err)
	if err == nil {
		return // someone made a new one of that name: leave it
	}
	fresh := saved.DeepCopyObject().(crclient.Object)
	fresh.SetUID("")
	fresh.SetResourceVersion("")
	fresh.SetCreationTimestamp(metav1.Time{})
	fresh.SetManagedFields(nil)
	fresh.SetDeletionTimestamp(nil)
	fresh.SetFinalizers(nil)
	if err := s.c.Create(ctx, fresh); err != nil {
		t.Errorf("putting back %T %s: %v", saved, saved.GetName(), err)
		return
	}
	if _, ok := saved.(*corev1.ServiceAccount); !ok {
		return
	}
	var pods corev1.PodList
	if err := s.c.List(ctx, &pods, crclient.InNamespace(saved.GetNamespace())); err != nil {
		t.Errorf("listing the pods of %s: %v", saved.GetNamespace(), err)
		return
	}
	for i := range pods.Items {
		if pods.Items[i].Spec.ServiceAccountName == saved.GetName() {
			_ = s.c.Delete(ctx, &pods.Items[i])
		}
	}
}
