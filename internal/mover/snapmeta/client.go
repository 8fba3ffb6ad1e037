package snapmeta

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkg/errors"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/snapmove/snapmove/internal/mover/datapath"
	api "github.com/snapmove/snapmove/internal/snapmetaapi"
)

// Config is where the snapshot metadata service is and what to ask it about.
type Config struct {
	// Address is the service's host:port (the SnapshotMetadataService's spec.address).
	Address string
	// CACert is the PEM CA that signed the service's certificate (spec.caCert); it is
	// the only root trusted.
	CACert []byte
	// TokenFile holds a projected ServiceAccount token for the service's audience
	// (spec.audience). It is read at every call: the kubelet rotates it.
	TokenFile string
	// Namespace and Snapshot name the VolumeSnapshot being backed up.
	Namespace, Snapshot string
	// MaxResults is the most tuples per message; 0 lets the server choose.
	MaxResults int32
	// Log gets a line per retry; nil logs nothing.
	Log logrus.FieldLogger
}

// defaultBackoff is the wait before each retry of a broken call; its length is the most
// retries of one call.
var defaultBackoff = []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}

// Client asks one snapshot metadata service about one VolumeSnapshot. Its methods are
// safe for concurrent use; Close it when done.
type Client struct {
	cfg   Config
	log   logrus.FieldLogger
	conn  *grpc.ClientConn
	api   api.SnapshotMetadataClient
	creds *verifyRecorder

	backoff []time.Duration
	sleep   func(context.Context, time.Duration) error

	mu       sync.Mutex
	capacity int64 // what the last complete answer reported; 0 before
}

var _ datapath.BlockChanges = (*Client)(nil)

// New checks cfg and makes the client. It does not connect: the connection (TLS, with
// cfg.CACert as the only root, TLS 1.2 at least) is made at the first call and kept for
// the next ones, so New does no I/O beyond parsing the CA.
func New(cfg Config) (*Client, error) {
	switch {
	case cfg.Address == "":
		return nil, errors.New("the snapshot metadata service has no address")
	case cfg.TokenFile == "":
		return nil, errors.New("no ServiceAccount token file for the snapshot metadata service")
	case cfg.Namespace == "" || cfg.Snapshot == "":
		return nil, errors.Errorf("incomplete VolumeSnapshot name %q/%q for the snapshot metadata service", cfg.Namespace, cfg.Snapshot)
	case cfg.MaxResults < 0:
		return nil, errors.Errorf("negative MaxResults %d for the snapshot metadata service", cfg.MaxResults)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(cfg.CACert) {
		return nil, errors.New("the snapshot metadata service's CA certificate holds no PEM certificate")
	}
	creds := &verifyRecorder{
		TransportCredentials: credentials.NewTLS(&tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}),
		failed:               new(atomic.Bool),
	}
	conn, err := grpc.NewClient(cfg.Address, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, errors.Wrapf(err, "creating the gRPC client of the snapshot metadata service at %s", cfg.Address)
	}
	log := cfg.Log
	if log == nil {
		discard := logrus.New()
		discard.SetOutput(io.Discard)
		log = discard
	}
	return &Client{
		cfg: cfg, conn: conn, api: api.NewSnapshotMetadataClient(conn), creds: creds,
		log:     log.WithFields(logrus.Fields{"volumeSnapshot": cfg.Namespace + "/" + cfg.Snapshot, "address": cfg.Address}),
		backoff: defaultBackoff, sleep: sleep,
	}, nil
}

// Close closes the connection. Calls in progress fail.
func (c *Client) Close() error {
	return errors.Wrap(c.conn.Close(), "closing the connection to the snapshot metadata service")
}

// VolumeCapacityBytes is the volume capacity that the service reported in the last
// Allocated or Delta call that succeeded (the same in every message, and in every call
// of a Client, or the call fails); 0 before one has. A backup checks it against the size
// of the device it reads.
func (c *Client) VolumeCapacityBytes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.capacity
}

// Allocated returns the ranges of the snapshot that hold data, in order, coalesced and
// within the volume's capacity. It blocks until the whole stream is in, retrying a broken
// stream from where it broke; an answer with no message at all is an error.
func (c *Client) Allocated(ctx context.Context) ([]datapath.ByteRange, error) {
	return c.run(ctx, rpc{
		name: "GetMetadataAllocated",
		open: func(ctx context.Context, token string, from int64) (func() (response, error), error) {
			s, err := c.api.GetMetadataAllocated(ctx, &api.GetMetadataAllocatedRequest{
				SecurityToken: token, Namespace: c.cfg.Namespace, SnapshotName: c.cfg.Snapshot,
				StartingOffset: from, MaxResults: c.cfg.MaxResults,
			})
			return receiver(s, err)
		},
	})
}

// Delta returns the ranges that changed since the snapshot whose CSI snapshot handle is
// base, as Allocated does; an empty list means nothing changed.
func (c *Client) Delta(ctx context.Context, base string) ([]datapath.ByteRange, error) {
	k := rpc{
		name: "GetMetadataDelta", base: base,
		open: func(ctx context.Context, token string, from int64) (func() (response, error), error) {
			s, err := c.api.GetMetadataDelta(ctx, &api.GetMetadataDeltaRequest{
				SecurityToken: token, Namespace: c.cfg.Namespace, BaseSnapshotId: base, TargetSnapshotName: c.cfg.Snapshot,
				StartingOffset: from, MaxResults: c.cfg.MaxResults,
			})
			return receiver(s, err)
		},
	}
	if base == "" {
		return nil, c.fail(k, errors.New("no base snapshot handle"))
	}
	return c.run(ctx, k)
}

// response is what GetMetadataAllocatedResponse and GetMetadataDeltaResponse share.
type response interface {
	GetBlockMetadataType() api.BlockMetadataType
	GetVolumeCapacityBytes() int64
	GetBlockMetadata() []*api.BlockMetadata
}

// rpc is one of the two calls: its name and base for errors and logs, and how to open its
// stream from an offset.
type rpc struct {
	name string
	base string // GetMetadataDelta only
	open func(ctx context.Context, token string, from int64) (recv func() (response, error), err error)
}

// receiver adapts a call's stream to recv.
func receiver[M any, P interface {
	*M
	response
}](s grpc.ServerStreamingClient[M], err error) (func() (response, error), error) {
	if err != nil {
		return nil, err
	}
	return func() (response, error) {
		m, err := s.Recv()
		if err != nil {
			return nil, err
		}
		return P(m), nil
	}, nil
}

// run makes the call k, resuming a broken stream, and records the capacity.
func (c *Client) run(ctx context.Context, k rpc) ([]datapath.ByteRange, error) {
	r := &ranges{}
	for retry := 0; ; retry++ {
		err := c.attempt(ctx, k, r)
		if err == nil {
			break
		}
		if err := ended(ctx); err != nil {
			return nil, c.fail(k, err)
		}
		if !c.retryable(err) || retry == len(c.backoff) {
			return nil, c.fail(k, retried(err, retry))
		}
		c.log.WithFields(logrus.Fields{"call": k.name, "startingOffset": r.next, "retry": retry + 1}).WithError(err).
			Warnf("resuming %s in %s", k.name, c.backoff[retry])
		if err := c.sleep(ctx, c.backoff[retry]); err != nil {
			return nil, c.fail(k, err)
		}
	}
	if r.messages == 0 {
		return nil, c.fail(k, errors.New("the service sent no message, not even the volume's capacity"))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.capacity != 0 && c.capacity != r.capacity {
		return nil, c.fail(k, errors.Errorf("the volume capacity is %d bytes, an earlier call said %d", r.capacity, c.capacity))
	}
	c.capacity = r.capacity
	return r.out, nil
}

// attempt opens k's stream at the offset after the last range received and adds what it
// sends to r. The stream's context ends with it, so that nothing outlives a failed attempt.
func (c *Client) attempt(ctx context.Context, k rpc, r *ranges) error {
	token, err := c.token()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	recv, err := k.open(ctx, token, r.next)
	if err != nil {
		return err
	}
	for {
		m, err := recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := r.add(m); err != nil {
			return err
		}
	}
}

// token reads the ServiceAccount token file.
func (c *Client) token() (string, error) {
	b, err := os.ReadFile(c.cfg.TokenFile)
	if err != nil {
		return "", errors.Wrap(err, "reading the ServiceAccount token")
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return "", errors.Errorf("the ServiceAccount token file %s is empty", c.cfg.TokenFile)
	}
	return token, nil
}

// retryable says whether a failed attempt may succeed if resumed: the codes of a broken
// connection, an overloaded or restarted server, or the server's own stream deadline
// (run has checked that the caller's context is live). A connection refused because the
// server's certificate does not verify is Unavailable too, but waiting will not fix it.
func (c *Client) retryable(err error) bool {
	st, ok := status.FromError(err)
	if !ok {
		return false
	}
	switch st.Code() {
	case codes.Unavailable:
		return !c.creds.failed.Load()
	case codes.ResourceExhausted, codes.DeadlineExceeded, codes.Aborted:
		return true
	}
	return false
}

// maxError is about the longest error message: the backup shows it to the user.
const maxError = 300

// fail wraps err with the call, the snapshot and the base, on one line of at most about
// maxError characters, shortening the server's message (and a long base) to fit.
func (c *Client) fail(k rpc, err error) error {
	prefix := fmt.Sprintf("calling %s for VolumeSnapshot %s/%s", k.name, c.cfg.Namespace, c.cfg.Snapshot)
	if k.name == "GetMetadataDelta" {
		prefix += " since base snapshot handle " + shorten(k.base, 80)
	}
	if g, ok := errors.Cause(err).(*grpcError); ok {
		g.max = max(maxError-len(prefix)-2, 60)
	}
	return errors.Wrap(err, prefix)
}

// grpcError is a gRPC status as users read it: "Unavailable: the CSI driver is not yet
// ready (after 3 retries)". status.Code and errors.As find the status through it.
type grpcError struct {
	st      *status.Status
	retries int
	max     int // the longest Error(); 0: maxError
}

// retried makes err, a status error, a *grpcError; other errors stay.
func retried(err error, retries int) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	return &grpcError{st: st, retries: retries}
}

func (e *grpcError) Error() string {
	var suffix string
	if e.retries > 0 {
		suffix = fmt.Sprintf(" (after %d retries)", e.retries)
	}
	limit := e.max
	if limit == 0 {
		limit = maxError
	}
	head := e.st.Code().String() + ": "
	return head + shorten(e.st.Message(), limit-len(head)-len(suffix)) + suffix
}

func (e *grpcError) GRPCStatus() *status.Status { return e.st }

// shorten puts s on one line and cuts its middle to keep it at most n bytes (never less
// than 20).
func shorten(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	n = max(n, 20)
	if len(s) <= n {
		return s
	}
	const dots = "..."
	keep := n - len(dots)
	return s[:keep-keep/3] + dots + s[len(s)-keep/3:]
}

// ended is ctx.Err(), or DeadlineExceeded once ctx's deadline has passed: gRPC fails a
// call at the deadline, a little before the context's own timer says so.
func ended(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return context.DeadlineExceeded
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// verifyRecorder is the client's TLS credentials, remembering whether the last handshake
// failed because the server's certificate did not verify: gRPC reports that as
// Unavailable, like a server that is down, but it is no reason to retry.
type verifyRecorder struct {
	credentials.TransportCredentials
	failed *atomic.Bool
}

func (v *verifyRecorder) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := v.TransportCredentials.ClientHandshake(ctx, authority, raw)
	var verr *tls.CertificateVerificationError
	v.failed.Store(errors.As(err, &verr))
	return conn, info, err
}

func (v *verifyRecorder) Clone() credentials.TransportCredentials {
	return &verifyRecorder{TransportCredentials: v.TransportCredentials.Clone(), failed: v.failed}
}
