//go:build e2e

package e2e

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"github.com/pkg/errors"
	"github.com/stretchr/testify/require"
	authorizationv1 "k8s.io/api/authorization/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	crclient "sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/naming"
)

// leftovers lists what the mover or plugins may have left behind for a backup or restore:
// worker pods, exposed PVCs, worker identities and progress reports, VolumeSnapshots and
// VolumeSnapshotContents, and the receiver jobs of restore-files --to-pvc.
// It lists only what belongs to one of the given namespaces (see ownedBy), or everything
// when mine is nil.
func (s *stack) leftovers(ctx context.Context, mine func(namespace, name string) bool) ([]string, error) {
	if mine == nil {
		mine = func(string, string) bool { return true }
	}
	var found []string
	ours := []crclient.ListOption{crclient.InNamespace(s.veleroNS), crclient.MatchingLabels{naming.ManagedByLabel: naming.ManagedByLabelVal}}
	for _, l := range []struct {
		kind string
		list crclient.ObjectList
		opts []crclient.ListOption
	}{
		{"pod", &corev1.PodList{}, ours},
		// restore-files --to-pvc: a receiver job (and its pod) in the target's namespace.
		{"job", &batchv1.JobList{}, []crclient.ListOption{crclient.MatchingLabels{naming.ManagedByLabel: naming.ManagedByLabelVal}}},
		{"pod", &corev1.PodList{}, []crclient.ListOption{crclient.MatchingLabels{"app.kubernetes.io/component": "restore-files-receiver"}}},
		{"pvc", &corev1.PersistentVolumeClaimList{}, []crclient.ListOption{crclient.InNamespace(s.veleroNS)}},
		{"serviceaccount", &corev1.ServiceAccountList{}, ours},
		{"role", &rbacv1.RoleList{}, ours},
		{"rolebinding", &rbacv1.RoleBindingList{}, ours},
		{"configmap", &corev1.ConfigMapList{}, []crclient.ListOption{crclient.InNamespace(s.veleroNS), crclient.HasLabels{naming.MovementUIDLabel}}},
		{"volumesnapshot", &snapshotv1.VolumeSnapshotList{}, nil},
	} {
		if err := s.c.List(ctx, l.list, l.opts...); err != nil {
			return nil, errors.Wrapf(err, "listing %ss", l.kind)
		}
		err := meta.EachListItem(l.list, func(o runtime.Object) error {
			m := o.(crclient.Object)
			if mine(m.GetNamespace(), m.GetName()) {
				found = append(found, l.kind+" "+m.GetNamespace()+"/"+m.GetName())
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	// A content belongs to whoever owns the snapshot it was cut for.
	var vscs snapshotv1.VolumeSnapshotContentList
	if err := s.c.List(ctx, &vscs); err != nil {
		return nil, errors.Wrap(err, "listing volumesnapshotcontents")
	}
	for _, v := range vscs.Items {
		if mine(v.Spec.VolumeSnapshotRef.Namespace, v.Spec.VolumeSnapshotRef.Name) {
			found = append(found, "volumesnapshotcontent "+v.Name)
		}
	}
	return found, nil
}

// owned records the namespaces each test made (by test name), so that a test that runs
// beside others checks only its own objects for leftovers.
var owned = struct {
	sync.Mutex
	byTest map[string][]string
}{byTest: map[string][]string{}}

func own(t *testing.T, ns string) {
	owned.Lock()
	defer owned.Unlock()
	owned.byTest[t.Name()] = append(owned.byTest[t.Name()], ns)
}

// ownedBy says whether an object is the test's: it lies in, or is named after, a namespace
// that the test, one of its subtests or one of its parents made. Everything the mover and
// Velero make for a movement is named after it: a backup is "<ns>-b…", its DataUploads
// "<backup>-…" and their worker pods, PVCs and identities after them; a namespace made
// by a restore's mapping is "<ns>-…" too.
func ownedBy(t *testing.T) func(namespace, name string) bool {
	owned.Lock()
	var nss []string
	for test, l := range owned.byTest {
		if test == t.Name() || strings.HasPrefix(test, t.Name()+"/") || strings.HasPrefix(t.Name(), test+"/") {
			nss = append(nss, l...)
		}
	}
	owned.Unlock()
	return func(namespace, name string) bool {
		for _, ns := range nss {
			if strings.HasPrefix(namespace, ns) || strings.HasPrefix(name, ns) {
				return true
			}
		}
		return false
	}
}

// requireNoLeftovers waits briefly for asynchronous cleanup, then fails listing what of the
// test's own remains (other tests may be running beside it; requireNoLeftoversAtAll, at
// the end of the suite, looks at everything).
func (s *stack) requireNoLeftovers(t *testing.T) {
	t.Helper()
	left, err := s.waitNoLeftovers(ctxT(t), ownedBy(t))
	require.NoError(t, err)
	require.Empty(t, left, "objects left behind")
}

// waitNoLeftovers polls leftovers for up to 90 s until none is left, and returns the last list.
func (s *stack) waitNoLeftovers(ctx context.Context, mine func(namespace, name string) bool) ([]string, error) {
	var left []string
	var err error
	_ = wait.PollUntilContextTimeout(ctx, 2*time.Second, 90*time.Second, true, func(context.Context) (bool, error) {
		// The caller's context, not the poll's: a listing cut off by the poll's deadline
		// would report an error instead of what is left.
		left, err = s.leftovers(ctx, mine)
		return err == nil && len(left) == 0, nil
	})
	return left, err
}

// requireWorkerLeastPrivilege asks the API server's authorizer what the worker pod of
// the movement name (resource datauploads or datadownloads) may do: it runs as its own
// ServiceAccount, which may read (never write: issue #21) its own movement, patch its
// progress report and read its repository's secrets, and nothing else.
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
	require.True(t, can("patch", "", "configmaps", name), "progress into its own report")
	require.True(t, can("get", "", "secrets", "velero-repo-credentials"), "the repository password")
	require.True(t, can("get", "", "secrets", "cloud-credentials"), "the object store credentials")
	for _, denied := range []struct{ verb, group, res, obj string }{
		{"get", "", "secrets", "velero-token"},
		{"list", "", "secrets", ""},
		{"get", "velero.io", resource, name + "-other"},
		{"patch", "velero.io", resource, name + "-other"},
		{"patch", "velero.io", resource, name},
		{"update", "velero.io", resource, name},
		{"patch", "", "configmaps", naming.MoverConfigMapName},
		{"update", "", "configmaps", name},
		{"list", "velero.io", resource, ""},
		{"update", "velero.io", "backupstoragelocations", "default"},
		{"create", "", "pods", ""},
	} {
		require.False(t, can(denied.verb, denied.group, denied.res, denied.obj), "a worker may not %s %s %q", denied.verb, denied.res, denied.obj)
	}
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
