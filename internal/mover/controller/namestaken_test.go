package controller

import (
	"context"
	"errors"
	"testing"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"github.com/stretchr/testify/require"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/snapmove/snapmove/internal/naming"
)

// Objects the mover makes are named after their movement, and whoever may create a
// DataUpload or DataDownload picks its name: one named `velero` or `snapmove-mover`, or
// like a PVC in Velero's namespace, must not make the mover run its worker as Velero's
// account, nor delete that account or PVC. An object of the movement's name is the
// movement's only when it carries the movement's UID label.

// foreignMeta is the metadata of someone else's object of the movement name's.
func foreignMeta(namespace, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: namespace, Name: name, UID: types.UID("foreign-" + name), Labels: map[string]string{"app.kubernetes.io/name": "velero"}}
}

// namedObjects are one object of each kind the mover makes for the movement name, with
// meta; the snapshots only for a backup.
func namedObjects(name string, backup bool, meta func(namespace, name string) metav1.ObjectMeta) []client.Object {
	objs := []client.Object{
		&corev1.Pod{ObjectMeta: meta(veleroNS, name)},
		&corev1.PersistentVolumeClaim{ObjectMeta: meta(veleroNS, name)},
		&corev1.ServiceAccount{ObjectMeta: meta(veleroNS, name)},
		&rbacv1.Role{ObjectMeta: meta(veleroNS, name)},
		&rbacv1.RoleBinding{ObjectMeta: meta(veleroNS, name)},
	}
	if backup {
		objs = append(objs, &snapshotv1.VolumeSnapshot{ObjectMeta: meta(veleroNS, name)},
			&snapshotv1.VolumeSnapshotContent{ObjectMeta: meta("", name)})
	}
	return objs
}

// writes records the mover's writes (create, update, patch, delete) of objects other
// than the movements themselves, as "verb Kind name".
type writes struct{ calls []string }

func (w *writes) funcs() *interceptor.Funcs {
	rec := func(verb string, obj client.Object) {
		switch obj.(type) {
		case *velerov2alpha1.DataUpload, *velerov2alpha1.DataDownload:
		default:
			w.calls = append(w.calls, verb+" "+kindOf(obj)+" "+obj.GetName())
		}
	}
	return &interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			rec("create", obj)
			return c.Create(ctx, obj, opts...)
		},
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			rec("update", obj)
			return c.Update(ctx, obj, opts...)
		},
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
			rec("patch", obj)
			return c.Patch(ctx, obj, patch, opts...)
		},
		Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
			rec("delete", obj)
			return c.Delete(ctx, obj, opts...)
		},
	}
}

// touched lists the writes of obj's kind and name other than a (refused) create.
func (w *writes) touched(obj client.Object) []string {
	var out []string
	for _, c := range w.calls {
		for _, verb := range []string{"update ", "patch ", "delete "} {
			if c == verb+kindOf(obj)+" "+obj.GetName() {
				out = append(out, c)
			}
		}
	}
	return out
}

// snapshotOf reads obj's current state, for comparing later.
func (e *env) snapshotOf(obj client.Object) client.Object {
	e.t.Helper()
	cp := obj.DeepCopyObject().(client.Object)
	require.True(e.t, e.exists(cp), "%s %s exists", kindOf(obj), obj.GetName())
	return cp
}

// requireUnchanged: obj (as snapshotOf read it) is still there, as it was.
func (e *env) requireUnchanged(before client.Object, w *writes) {
	e.t.Helper()
	now := before.DeepCopyObject().(client.Object)
	require.True(e.t, e.exists(now), "%s %s is not deleted", kindOf(before), before.GetName())
	require.Equal(e.t, before, now, "%s %s is unchanged", kindOf(before), before.GetName())
	require.Empty(e.t, w.touched(before), "no writes to %s %s", kindOf(before), before.GetName())
}

// TestForeignObjectOfTheMovementsName: someone else's object of any kind the mover makes,
// named like the movement, fails the movement at once naming it (reason NameTaken, with
// an Event), and is neither used, changed nor deleted; nothing is exposed.
func TestForeignObjectOfTheMovementsName(t *testing.T) {
	for _, backup := range []bool{true, false} {
		name := map[bool]string{true: duName, false: ddName}[backup]
		for _, foreign := range namedObjects(name, backup, foreignMeta) {
			kind := map[bool]string{true: "backup", false: "restore"}[backup]
			t.Run(kind+"/"+kindOf(foreign), func(t *testing.T) {
				w := &writes{}
				var e *env
				if backup {
					e = newEnv(t, w.funcs(), append(backupFixtures(dataUpload(velerov2alpha1.DataUploadPhaseAccepted)), foreign)...)
				} else {
					e = newEnv(t, w.funcs(), dataDownload(velerov2alpha1.DataDownloadPhaseAccepted), bsl(), targetPVC("immediate"),
						storageClass("immediate", false), foreign)
				}
				before := e.snapshotOf(foreign)
				var phase, msg string
				if backup {
					e.reconcileDU()
					du := e.du()
					phase, msg = string(du.Status.Phase), du.Status.Message
					require.NotContains(t, du.Finalizers, naming.MoverFinalizer, "cleaned up")
				} else {
					e.reconcileDD()
					dd := e.dd()
					phase, msg = string(dd.Status.Phase), dd.Status.Message
					require.NotContains(t, dd.Finalizers, naming.MoverFinalizer, "cleaned up")
				}
				require.Equal(t, phaseFailed, phase, msg)
				where := describe(foreign.GetNamespace(), name)
				require.Contains(t, msg, kindOf(foreign)+" "+where+" exists and was not made for this movement")
				require.Contains(t, msg, naming.MovementUIDLabel)
				e.requireEvent(ReasonNameTaken)
				e.requireUnchanged(before, w)
				for _, c := range w.calls { // the user's VolumeSnapshot goes with a failed backup, as with Velero's
					require.NotContains(t, c, " "+name, "nothing of the movement's name is created, changed or deleted")
				}
				require.Empty(t, e.repos.verified, "nothing is checked either: the name decides first")
			})
		}
	}
}

// TestOwnObjectsAreAdopted: objects of the movement's name carrying its UID are its own,
// made by an earlier pass (a restarted mover, a retried attempt): used, not refused.
func TestOwnObjectsAreAdopted(t *testing.T) {
	for _, backup := range []bool{true, false} {
		name := map[bool]string{true: duName, false: ddName}[backup]
		for _, own := range namedObjects(name, backup, ourMeta) {
			switch own.(type) {
			case *snapshotv1.VolumeSnapshot, *snapshotv1.VolumeSnapshotContent:
				// An existing snapshot of ours is the taken-over snapshot, whose adoption
				// TestCleanupWaitsForOurSnapshotBinding and the phase tests cover.
				continue
			}
			kind := map[bool]string{true: "backup", false: "restore"}[backup]
			t.Run(kind+"/"+kindOf(own), func(t *testing.T) {
				if backup {
					e := newEnv(t, nil, append(backupFixtures(dataUpload(velerov2alpha1.DataUploadPhaseAccepted)), own)...)
					e.reconcileDU()
					du := e.du()
					require.Equal(t, velerov2alpha1.DataUploadPhaseAccepted, du.Status.Phase, du.Status.Message)
					require.True(t, e.exists(ourPod(duName)), du.Status.Message)
					require.True(t, e.exists(own.DeepCopyObject().(client.Object)))
					return
				}
				e := newEnv(t, nil, dataDownload(velerov2alpha1.DataDownloadPhaseAccepted), bsl(), targetPVC("immediate"), storageClass("immediate", false), own)
				e.reconcileDD()
				dd := e.dd()
				require.Equal(t, velerov2alpha1.DataDownloadPhaseAccepted, dd.Status.Phase, dd.Status.Message)
				require.True(t, e.exists(ourPod(ddName)), dd.Status.Message)
			})
		}
	}
}

// TestCleanupLeavesForeignObjectsAlone: the cleanup of a movement that ends (here a
// canceled one, and a failed one whose cleanup was left to the terminal pass) deletes
// nothing of its name that was not made for it, and does not touch the volume of such a
// PVC.
func TestCleanupLeavesForeignObjectsAlone(t *testing.T) {
	for _, tc := range []struct {
		name   string
		backup bool
		phase  string
	}{
		{"backup canceled", true, phaseAccepted},
		{"backup failed, terminal pass", true, phaseFailed},
		{"restore canceled", false, phaseAccepted},
		{"restore failed, terminal pass", false, phaseFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := map[bool]string{true: duName, false: ddName}[tc.backup]
			objs := namedObjects(name, tc.backup, foreignMeta)
			pvc := objs[1].(*corev1.PersistentVolumeClaim)
			pvc.Spec.VolumeName = "pv-foreign"
			pv := &corev1.PersistentVolume{
				ObjectMeta: metav1.ObjectMeta{Name: "pv-foreign", Labels: map[string]string{naming.DataDownloadLabel: name}},
				Spec: corev1.PersistentVolumeSpec{
					PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
					ClaimRef:                      &corev1.ObjectReference{Namespace: veleroNS, Name: name, UID: pvc.UID},
				},
			}
			objs = append(objs, pv)
			w := &writes{}
			var e *env
			if tc.backup {
				du := dataUpload(velerov2alpha1.DataUploadPhase(tc.phase))
				du.Spec.Cancel = true
				e = newEnv(t, w.funcs(), append(objs, du, bsl())...)
			} else {
				dd := dataDownload(velerov2alpha1.DataDownloadPhase(tc.phase))
				dd.Spec.Cancel = true
				e = newEnv(t, w.funcs(), append(objs, dd, bsl(), targetPVC("immediate"))...)
			}
			var before []client.Object
			for _, obj := range objs {
				before = append(before, e.snapshotOf(obj))
			}
			var phase string
			var finalizers []string
			if tc.backup {
				e.reconcileDU()
				phase, finalizers = string(e.du().Status.Phase), e.du().Finalizers
			} else {
				e.reconcileDD()
				phase, finalizers = string(e.dd().Status.Phase), e.dd().Finalizers
			}
			if tc.phase == phaseAccepted {
				require.Equal(t, phaseCanceled, phase)
			}
			require.NotContains(t, finalizers, naming.MoverFinalizer, "the cleanup is done")
			for _, obj := range before {
				e.requireUnchanged(obj, w)
			}
		})
	}
}

// TestCleanupDeletesOnlyWhatItChecked: an object swapped between the cleanup's read and
// its delete (here: the read still sees ours, the API holds someone else's of the same
// name) is not deleted: the delete carries the UID read as a precondition.
func TestCleanupDeletesOnlyWhatItChecked(t *testing.T) {
	foreign := &corev1.ServiceAccount{ObjectMeta: foreignMeta(veleroNS, duName)}
	stale := &corev1.ServiceAccount{ObjectMeta: ourMeta(veleroNS, duName)}
	stale.UID = "ours-deleted-meanwhile"
	checking := false // the test's own reads below see the API's state
	funcs := &interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			if sa, ok := obj.(*corev1.ServiceAccount); ok && key.Name == duName && !checking {
				stale.DeepCopyInto(sa)
				return nil
			}
			return c.Get(ctx, key, obj, opts...)
		},
		// The API server's UID precondition, which the fake client does not check.
		Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
			do := &client.DeleteOptions{}
			do.ApplyOptions(opts)
			if do.Preconditions != nil && do.Preconditions.UID != nil {
				stored := obj.DeepCopyObject().(client.Object)
				if err := c.Get(ctx, client.ObjectKeyFromObject(obj), stored); err == nil && stored.GetUID() != *do.Preconditions.UID {
					return apierrors.NewConflict(corev1.Resource("serviceaccounts"), obj.GetName(), errors.New("UID precondition failed"))
				}
			}
			return c.Delete(ctx, obj, opts...)
		},
	}
	du := dataUpload(velerov2alpha1.DataUploadPhaseAccepted)
	du.Spec.Cancel = true
	e := newEnv(t, funcs, du, bsl(), foreign)
	e.reconcileDU()
	require.Equal(t, velerov2alpha1.DataUploadPhaseCanceled, e.du().Status.Phase)
	checking = true
	now := &corev1.ServiceAccount{ObjectMeta: foreign.ObjectMeta}
	require.True(t, e.exists(now), "someone else's account is not deleted")
	require.Equal(t, foreign.UID, now.UID)
}

// TestCleanupTouchesOnlyTheVolumeOfOurClaim: our PVC's volume gets reclaim policy Delete
// only when the PV's claimRef names that very claim; a PV our PVC names but which is
// bound elsewhere is left as it is.
func TestCleanupTouchesOnlyTheVolumeOfOurClaim(t *testing.T) {
	for _, tc := range []struct {
		name     string
		claimRef *corev1.ObjectReference
		want     corev1.PersistentVolumeReclaimPolicy
	}{
		{"bound to our claim", &corev1.ObjectReference{Namespace: veleroNS, Name: duName, UID: "our-pvc-uid"}, corev1.PersistentVolumeReclaimDelete},
		{"bound to another claim", &corev1.ObjectReference{Namespace: appNS, Name: "db", UID: "db-uid"}, corev1.PersistentVolumeReclaimRetain},
		{"our claim's name, another UID", &corev1.ObjectReference{Namespace: veleroNS, Name: duName, UID: "older-pvc-uid"}, corev1.PersistentVolumeReclaimRetain},
		{"not bound", nil, corev1.PersistentVolumeReclaimRetain},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pvc := ourPVC(duName)
			pvc.UID = "our-pvc-uid"
			pvc.Spec.VolumeName = "pv-1"
			pv := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-1"},
				Spec: corev1.PersistentVolumeSpec{PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain, ClaimRef: tc.claimRef}}
			du := dataUpload(velerov2alpha1.DataUploadPhaseAccepted)
			du.Spec.Cancel = true
			e := newEnv(t, nil, du, bsl(), pvc, pv)
			e.reconcileDU()
			require.Equal(t, velerov2alpha1.DataUploadPhaseCanceled, e.du().Status.Phase)
			require.False(t, e.exists(ourPVC(duName)), "our PVC is deleted")
			require.True(t, e.exists(pv))
			require.Equal(t, tc.want, pv.Spec.PersistentVolumeReclaimPolicy)
		})
	}
}
