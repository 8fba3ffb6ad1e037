package snapmeta

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	api "github.com/snapmove/snapmove/internal/snapmetaapi"
)

// This file is the tests' snapshot metadata service: a real gRPC server over TLS on
// 127.0.0.1 that plays scripted answers, one step per call, and records the requests.

// msg is one response message.
type msg struct {
	typ      api.BlockMetadataType
	capacity int64
	tuples   [][2]int64 // offset, size
}

// variable and fixed are messages of each block metadata type.
func variable(capacity int64, tuples ...[2]int64) msg {
	return msg{typ: api.BlockMetadataType_VARIABLE_LENGTH, capacity: capacity, tuples: tuples}
}

func fixed(capacity int64, tuples ...[2]int64) msg {
	return msg{typ: api.BlockMetadataType_FIXED_LENGTH, capacity: capacity, tuples: tuples}
}

func (m msg) blocks() []*api.BlockMetadata {
	var out []*api.BlockMetadata
	for _, t := range m.tuples {
		out = append(out, &api.BlockMetadata{ByteOffset: t[0], SizeBytes: t[1]})
	}
	return out
}

// step is the answer to one call: messages, then err (nil: the end of the stream), or,
// with hold, messages and then waiting until the client goes away.
type step struct {
	msgs []msg
	err  error
	hold bool
}

// request is a request as the service received it.
type request struct {
	call, token, namespace, snapshot, base string
	startingOffset                         int64
	maxResults                             int32
}

type fakeService struct {
	api.UnimplementedSnapshotMetadataServer
	mu    sync.Mutex
	steps []step
	seen  []request
	held  chan struct{} // a hold step sent its messages
	ended chan struct{} // a hold step's handler returned
}

func (f *fakeService) next(r request) (step, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen = append(f.seen, r)
	if len(f.steps) == 0 {
		return step{}, false
	}
	s := f.steps[0]
	f.steps = f.steps[1:]
	return s, true
}

func (f *fakeService) requests() []request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]request(nil), f.seen...)
}

func (f *fakeService) offsets() []int64 {
	var out []int64
	for _, r := range f.requests() {
		out = append(out, r.startingOffset)
	}
	return out
}

func (f *fakeService) GetMetadataAllocated(req *api.GetMetadataAllocatedRequest, s grpc.ServerStreamingServer[api.GetMetadataAllocatedResponse]) error {
	st, ok := f.next(request{call: "GetMetadataAllocated", token: req.SecurityToken, namespace: req.Namespace,
		snapshot: req.SnapshotName, startingOffset: req.StartingOffset, maxResults: req.MaxResults})
	return f.play(s.Context(), st, ok, func(m msg) error {
		return s.Send(&api.GetMetadataAllocatedResponse{BlockMetadataType: m.typ, VolumeCapacityBytes: m.capacity, BlockMetadata: m.blocks()})
	})
}

func (f *fakeService) GetMetadataDelta(req *api.GetMetadataDeltaRequest, s grpc.ServerStreamingServer[api.GetMetadataDeltaResponse]) error {
	st, ok := f.next(request{call: "GetMetadataDelta", token: req.SecurityToken, namespace: req.Namespace,
		snapshot: req.TargetSnapshotName, base: req.BaseSnapshotId, startingOffset: req.StartingOffset, maxResults: req.MaxResults})
	return f.play(s.Context(), st, ok, func(m msg) error {
		return s.Send(&api.GetMetadataDeltaResponse{BlockMetadataType: m.typ, VolumeCapacityBytes: m.capacity, BlockMetadata: m.blocks()})
	})
}

func (f *fakeService) play(ctx context.Context, st step, ok bool, send func(msg) error) error {
	if !ok {
		return status.Error(codes.Internal, "unscripted call")
	}
	for _, m := range st.msgs {
		if err := send(m); err != nil {
			return err
		}
	}
	if st.hold {
		defer func() { f.ended <- struct{}{} }()
		f.held <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	}
	return st.err
}

// testCA is a self-signed CA that signs the server's certificate.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t *testing.T, name string) testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// serverCert is a certificate for 127.0.0.1 signed by ca.
func (ca testCA) serverCert(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "csi-snapshot-metadata"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// service is a started fake service.
type service struct {
	*fakeService
	addr string
	ca   []byte       // the PEM CA of its certificate
	open atomic.Int64 // connections accepted and not closed
}

func startService(t *testing.T, steps ...step) *service {
	t.Helper()
	ca := newCA(t, "test CA")
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &service{
		fakeService: &fakeService{steps: steps, held: make(chan struct{}, 4), ended: make(chan struct{}, 4)},
		addr:        lis.Addr().String(), ca: ca.pem,
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{ca.serverCert(t)}, MinVersion: tls.VersionTLS12})))
	api.RegisterSnapshotMetadataServer(srv, s.fakeService)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(countingListener{Listener: lis, open: &s.open})
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return s
}

type countingListener struct {
	net.Listener
	open *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.open.Add(1)
	return &countedConn{Conn: c, open: l.open}, nil
}

type countedConn struct {
	net.Conn
	once sync.Once
	open *atomic.Int64
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.open.Add(-1) })
	return c.Conn.Close()
}

// testClient is a Client of s for ns1/snap-b with a token file holding "token-1", whose
// backoff waits are recorded instead of slept.
type testClient struct {
	*Client
	tokenFile string
	slept     []time.Duration
}

func newTestClient(t *testing.T, addr string, ca []byte, maxResults int32) *testClient {
	t.Helper()
	tc := &testClient{tokenFile: filepath.Join(t.TempDir(), "token")}
	require.NoError(t, os.WriteFile(tc.tokenFile, []byte("token-1\n"), 0o600))
	c, err := New(Config{Address: addr, CACert: ca, TokenFile: tc.tokenFile, Namespace: "ns1", Snapshot: "snap-b", MaxResults: maxResults})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	c.sleep = func(ctx context.Context, d time.Duration) error {
		tc.slept = append(tc.slept, d)
		return ctx.Err()
	}
	tc.Client = c
	return tc
}
