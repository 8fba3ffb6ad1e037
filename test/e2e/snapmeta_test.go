//go:build e2e

package e2e

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"io"
	"os"
	"testing"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"github.com/pkg/errors"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
	crclient "sigs.k8s.io/controller-runtime/pkg/client"

	api "github.com/snapmove/snapmove/internal/snapmetaapi"
)

// cbtBlock is the test CSI driver's change-tracking block (test/csidriver/README.md:
// GetMetadataDelta compares 64 KiB block hashes).
const cbtBlock = 64 << 10

// byteRange is one BlockMetadata tuple: [offset, offset+size).
type byteRange struct{ offset, size int64 }

// TestSnapshotMetadataService (issue #25): the stack's csi-snapshot-metadata sidecar serves
// changed block tracking for the test CSI driver as a backup tool reaches it. A client,
// a ServiceAccount with the rights of the sidecar's
// deploy/snapshot-metadata-client-cluster-role.yaml, finds the SnapshotMetadataService
// named after the driver, gets a token for its audience and dials it over TLS: the
// allocated ranges of a block snapshot cover what was written, the delta between two
// snapshots is exactly the changed 64 KiB blocks (adjacent ones merged; a block rewritten
// with the bytes it had is no change), and a token without the right to read
// VolumeSnapshots, or of another audience, is refused.
func TestSnapshotMetadataService(t *testing.T) {
	parallel(t)
	s := env
	ns := s.namespace(t, "cbt")
	img := s.pvc(t, ns, "data", "64Mi", corev1.PersistentVolumeBlock)
	const capacity = 64 << 20

	// Snapshot A: 1 MiB at 0, 256 KiB at 10 MiB, 64 KiB at 20 MiB; the rest is never written.
	written := []byteRange{{0, 1 << 20}, {10 << 20, 256 << 10}, {20 << 20, cbtBlock}}
	for _, w := range written {
		writeRandomAt(t, img, w.offset, w.size)
	}
	a := s.readySnapshot(t, ns, "data", "data-a")

	// Snapshot B: block 2 rewritten, blocks 160-162 (10 MiB on) rewritten, 4 KiB inside the
	// block at 20 MiB, a block at 48 MiB where A has a hole; block 0 rewritten with its own
	// bytes (no change).
	writeRandomAt(t, img, 2*cbtBlock, cbtBlock)
	writeRandomAt(t, img, 10<<20, 3*cbtBlock)
	writeRandomAt(t, img, 20<<20+4096, 4096)
	writeRandomAt(t, img, 48<<20, cbtBlock)
	rewriteSame(t, img, 0, cbtBlock)
	b := s.readySnapshot(t, ns, "data", "data-b")
	wantDelta := []byteRange{{2 * cbtBlock, cbtBlock}, {10 << 20, 3 * cbtBlock}, {20 << 20, cbtBlock}, {48 << 20, cbtBlock}}

	// The client's identity, and one that may not read VolumeSnapshots.
	client := s.cbtClientAccount(t, ns, "cbt-client")
	nobody := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cbt-nobody"}}
	require.NoError(t, s.c.Create(ctxT(t), nobody))

	// As the client: the service's address, audience and CA, and A's snapshot handle.
	kc := s.clientWithToken(t, s.serviceAccountToken(t, ns, client))
	sms := &unstructured.Unstructured{}
	sms.SetGroupVersionKind(schema.GroupVersionKind{Group: "cbt.storage.k8s.io", Version: "v1beta1", Kind: "SnapshotMetadataService"})
	// The API server's RBAC authorizer learns of the new binding through its informer.
	poll(t, "the client's ClusterRoleBinding to take effect", 30*time.Second, func(ctx context.Context) (bool, error) {
		err := kc.Get(ctx, crclient.ObjectKey{Name: s.csiDriver}, sms)
		if apierrors.IsForbidden(err) {
			return false, nil
		}
		return err == nil, errors.Wrap(err, "getting the SnapshotMetadataService named after the driver")
	})
	address, _, _ := unstructured.NestedString(sms.Object, "spec", "address")
	audience, _, _ := unstructured.NestedString(sms.Object, "spec", "audience")
	caCert, _, _ := unstructured.NestedString(sms.Object, "spec", "caCert")
	require.NotEmpty(t, address)
	require.NotEmpty(t, audience)
	var vsc snapshotv1.VolumeSnapshotContent
	require.NoError(t, kc.Get(ctxT(t), crclient.ObjectKey{Name: *a.Status.BoundVolumeSnapshotContentName}, &vsc))
	require.NotNil(t, vsc.Status.SnapshotHandle)
	baseID := *vsc.Status.SnapshotHandle

	sm := dialSnapshotMetadata(t, address, caCert)
	token := s.serviceAccountToken(t, ns, client, audience)

	alloc, typ, size := allocated(t, sm, &api.GetMetadataAllocatedRequest{SecurityToken: token, Namespace: ns, SnapshotName: a.Name})
	require.Equal(t, api.BlockMetadataType_VARIABLE_LENGTH, typ)
	require.EqualValues(t, capacity, size)
	t.Logf("allocated ranges of %s: %v", a.Name, alloc)
	for _, w := range written {
		require.True(t, covered(alloc, w), "written range %v is not in the allocated ranges %v", w, alloc)
	}
	for _, r := range alloc {
		require.True(t, r.offset >= 0 && r.size > 0 && r.offset+r.size <= capacity, "allocated range %v outside the volume", r)
	}

	delta, typ, size := deltaRanges(t, sm, &api.GetMetadataDeltaRequest{
		SecurityToken: token, Namespace: ns, BaseSnapshotId: baseID, TargetSnapshotName: b.Name,
	})
	require.Equal(t, api.BlockMetadataType_VARIABLE_LENGTH, typ)
	require.EqualValues(t, capacity, size)
	require.Equal(t, wantDelta, delta, "changed blocks between %s and %s", a.Name, b.Name)

	// Refused: a token of an account that may not get VolumeSnapshots in ns, and the
	// client's own token for the API server's audience instead of the service's.
	_, err := receiveAllocated(ctxT(t), sm, &api.GetMetadataAllocatedRequest{
		SecurityToken: s.serviceAccountToken(t, ns, nobody.Name, audience), Namespace: ns, SnapshotName: a.Name,
	})
	require.Equal(t, codes.PermissionDenied, status.Code(err), "a token without get volumesnapshots: %v", err)
	_, err = receiveAllocated(ctxT(t), sm, &api.GetMetadataAllocatedRequest{
		SecurityToken: s.serviceAccountToken(t, ns, client), Namespace: ns, SnapshotName: a.Name,
	})
	require.Equal(t, codes.Unauthenticated, status.Code(err), "a token of another audience: %v", err)

	for _, vs := range []*snapshotv1.VolumeSnapshot{a, b} {
		require.NoError(t, s.c.Delete(ctxT(t), vs))
	}
	s.requireNoLeftovers(t)
}

// readySnapshot snapshots ns/pvc as name with the stack's snapshot class and waits until
// it is ready to use; the test's cleanup deletes it if the test has not.
func (s *stack) readySnapshot(t *testing.T, ns, pvc, name string) *snapshotv1.VolumeSnapshot {
	t.Helper()
	vs := &snapshotv1.VolumeSnapshot{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: snapshotv1.VolumeSnapshotSpec{
			Source:                  snapshotv1.VolumeSnapshotSource{PersistentVolumeClaimName: ptr.To(pvc)},
			VolumeSnapshotClassName: ptr.To(s.snapClass),
		},
	}
	require.NoError(t, s.c.Create(ctxT(t), vs))
	t.Cleanup(func() { _ = crclient.IgnoreNotFound(s.c.Delete(context.Background(), vs)) })
	poll(t, "VolumeSnapshot "+ns+"/"+name+" to be ready", 3*time.Minute, func(ctx context.Context) (bool, error) {
		if err := s.c.Get(ctx, crclient.ObjectKeyFromObject(vs), vs); err != nil {
			return false, err
		}
		return vs.Status != nil && ptr.Deref(vs.Status.ReadyToUse, false) && vs.Status.BoundVolumeSnapshotContentName != nil, nil
	})
	return vs
}

// cbtClientAccount makes the ServiceAccount ns/name with the rights of the sidecar's
// deploy/snapshot-metadata-client-cluster-role.yaml (v1.0.0), through a ClusterRole and
// ClusterRoleBinding named after the namespace that the test's cleanup deletes.
func (s *stack) cbtClientAccount(t *testing.T, ns, name string) string {
	t.Helper()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	require.NoError(t, s.c.Create(ctxT(t), sa))
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: ns + "-" + name},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"snapshot.storage.k8s.io"}, Resources: []string{"volumesnapshots", "volumesnapshotcontents"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{"cbt.storage.k8s.io"}, Resources: []string{"snapshotmetadataservices"}, Verbs: []string{"get", "list"}},
			{APIGroups: []string{""}, Resources: []string{"serviceaccounts/token"}, Verbs: []string{"create", "get"}},
		},
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role.Name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: name}},
	}
	for _, o := range []crclient.Object{role, binding} {
		require.NoError(t, s.c.Create(ctxT(t), o))
		t.Cleanup(func() {
			if err := s.c.Delete(context.Background(), o); err != nil && !apierrors.IsNotFound(err) {
				t.Logf("deleting %s: %v", o.GetName(), err)
			}
		})
	}
	return name
}

// dialSnapshotMetadata connects to the sidecar at address over TLS, trusting only the
// PEM CA that the SnapshotMetadataService gives (base64 in spec.caCert).
func dialSnapshotMetadata(t *testing.T, address, caCert string) api.SnapshotMetadataClient {
	t.Helper()
	pem, err := base64.StdEncoding.DecodeString(caCert)
	require.NoError(t, err, "spec.caCert is not base64")
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(pem), "spec.caCert holds no PEM certificate")
	conn, err := grpc.NewClient(address, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return api.NewSnapshotMetadataClient(conn)
}

// metadataResponse is what GetMetadataAllocatedResponse and GetMetadataDeltaResponse share.
type metadataResponse interface {
	GetBlockMetadataType() api.BlockMetadataType
	GetVolumeCapacityBytes() int64
	GetBlockMetadata() []*api.BlockMetadata
}

// allocated calls GetMetadataAllocated and returns its tuples in stream order, the block
// metadata type and the volume capacity (the same in every message).
func allocated(t *testing.T, sm api.SnapshotMetadataClient, req *api.GetMetadataAllocatedRequest) ([]byteRange, api.BlockMetadataType, int64) {
	t.Helper()
	msgs, err := receiveAllocated(ctxT(t), sm, req)
	require.NoError(t, err, "GetMetadataAllocated(%s/%s)", req.Namespace, req.SnapshotName)
	return rangesOf(t, msgs)
}

// deltaRanges is allocated for GetMetadataDelta.
func deltaRanges(t *testing.T, sm api.SnapshotMetadataClient, req *api.GetMetadataDeltaRequest) ([]byteRange, api.BlockMetadataType, int64) {
	t.Helper()
	stream, err := sm.GetMetadataDelta(ctxT(t), req)
	require.NoError(t, err)
	msgs, err := receiveAll(stream.Recv)
	require.NoError(t, err, "GetMetadataDelta(%s, %s/%s)", req.BaseSnapshotId, req.Namespace, req.TargetSnapshotName)
	return rangesOf(t, msgs)
}

func receiveAllocated(ctx context.Context, sm api.SnapshotMetadataClient, req *api.GetMetadataAllocatedRequest) ([]*api.GetMetadataAllocatedResponse, error) {
	stream, err := sm.GetMetadataAllocated(ctx, req)
	if err != nil {
		return nil, err
	}
	return receiveAll(stream.Recv)
}

// receiveAll reads a server stream to its end.
func receiveAll[M any](recv func() (M, error)) ([]M, error) {
	var msgs []M
	for {
		m, err := recv()
		if err == io.EOF {
			return msgs, nil
		}
		if err != nil {
			return msgs, err
		}
		msgs = append(msgs, m)
	}
}

// rangesOf concatenates the messages' tuples; every message must carry the same type and
// capacity, and there is at least one (it carries the capacity even when nothing else).
func rangesOf[M metadataResponse](t *testing.T, msgs []M) ([]byteRange, api.BlockMetadataType, int64) {
	t.Helper()
	require.NotEmpty(t, msgs, "at least one message (it carries the volume's capacity)")
	var out []byteRange
	for _, m := range msgs {
		require.Equal(t, msgs[0].GetBlockMetadataType(), m.GetBlockMetadataType())
		require.Equal(t, msgs[0].GetVolumeCapacityBytes(), m.GetVolumeCapacityBytes())
		for _, b := range m.GetBlockMetadata() {
			out = append(out, byteRange{b.GetByteOffset(), b.GetSizeBytes()})
		}
	}
	return out, msgs[0].GetBlockMetadataType(), msgs[0].GetVolumeCapacityBytes()
}

// covered says whether every byte of w lies in one of the ranges (sorted, as the stream
// sends them).
func covered(ranges []byteRange, w byteRange) bool {
	at, end := w.offset, w.offset+w.size
	for _, r := range ranges {
		if r.offset <= at && at < r.offset+r.size {
			at = r.offset + r.size
		}
		if at >= end {
			return true
		}
	}
	return false
}

// writeRandomAt writes size random bytes at offset into the block volume's image.
func writeRandomAt(t *testing.T, img string, offset, size int64) {
	t.Helper()
	buf := make([]byte, size)
	_, err := rand.Read(buf)
	require.NoError(t, err)
	writeAt(t, img, offset, buf)
}

// rewriteSame writes size bytes at offset over themselves.
func rewriteSame(t *testing.T, img string, offset, size int64) {
	t.Helper()
	f, err := os.Open(img)
	require.NoError(t, err)
	buf := make([]byte, size)
	_, err = f.ReadAt(buf, offset)
	require.NoError(t, f.Close())
	require.NoError(t, err)
	writeAt(t, img, offset, buf)
}

func writeAt(t *testing.T, img string, offset int64, buf []byte) {
	t.Helper()
	f, err := os.OpenFile(img, os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteAt(buf, offset)
	if err == nil {
		err = f.Sync()
	}
	require.NoError(t, f.Close())
	require.NoError(t, err)
}
