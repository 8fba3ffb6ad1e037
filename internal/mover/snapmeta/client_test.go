package snapmeta

import (
	"context"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pkg/errors"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/snapmove/snapmove/internal/mover/datapath"
)

const (
	capacity = 64 << 20
	block    = 64 << 10
)

func TestCalls(t *testing.T) {
	unavailable := status.Error(codes.Unavailable, "the CSI driver is not yet ready")
	for _, tc := range []struct {
		name        string
		base        string // "": Allocated, else Delta
		steps       []step
		want        []datapath.ByteRange
		wantOffsets []int64 // the starting_offset of each request
		wantSlept   []time.Duration
		wantErr     string // the whole message
		wantCode    codes.Code
	}{{
		name: "allocated, several messages, adjacent and overlapping tuples coalesced",
		steps: []step{{msgs: []msg{
			variable(capacity, [2]int64{0, 4096}, [2]int64{4096, 4096}),
			variable(capacity, [2]int64{8192, 100}, [2]int64{10000, 5}, [2]int64{10002, 10}),
			variable(capacity, [2]int64{1 << 20, 1 << 20}),
		}}},
		want:        []datapath.ByteRange{{Offset: 0, Length: 8292}, {Offset: 10000, Length: 12}, {Offset: 1 << 20, Length: 1 << 20}},
		wantOffsets: []int64{0},
	}, {
		name: "allocated, FIXED_LENGTH blocks",
		steps: []step{{msgs: []msg{
			fixed(capacity, [2]int64{0, block}, [2]int64{block, block}),
			fixed(capacity, [2]int64{2 * block, block}, [2]int64{5 * block, block}),
		}}},
		want:        []datapath.ByteRange{{Offset: 0, Length: 3 * block}, {Offset: 5 * block, Length: block}},
		wantOffsets: []int64{0},
	}, {
		name:        "delta, nothing changed: one message with the capacity only",
		base:        "handle-a",
		steps:       []step{{msgs: []msg{variable(capacity)}}},
		wantOffsets: []int64{0},
	}, {
		name:        "delta, VARIABLE_LENGTH",
		base:        "handle-a",
		steps:       []step{{msgs: []msg{variable(capacity, [2]int64{2 * block, block}, [2]int64{10 << 20, 3 * block}), variable(capacity, [2]int64{48 << 20, block})}}},
		want:        []datapath.ByteRange{{Offset: 2 * block, Length: block}, {Offset: 10 << 20, Length: 3 * block}, {Offset: 48 << 20, Length: block}},
		wantOffsets: []int64{0},
	}, {
		name:        "ranges cut at the capacity",
		steps:       []step{{msgs: []msg{fixed(10000, [2]int64{0, 4096}, [2]int64{8192, 4096}, [2]int64{16384, 4096})}}},
		want:        []datapath.ByteRange{{Offset: 0, Length: 4096}, {Offset: 8192, Length: 10000 - 8192}},
		wantOffsets: []int64{0},
	}, {
		name: "Unavailable mid-stream: resumed after the last range received",
		base: "handle-a",
		steps: []step{
			{msgs: []msg{variable(capacity, [2]int64{0, 4096}), variable(capacity, [2]int64{8192, 4096})}, err: unavailable},
			{msgs: []msg{variable(capacity, [2]int64{8192, 4096}, [2]int64{16384, 4096})}}, // repeats the last range
		},
		want:        []datapath.ByteRange{{Offset: 0, Length: 4096}, {Offset: 8192, Length: 4096}, {Offset: 16384, Length: 4096}},
		wantOffsets: []int64{0, 12288},
		wantSlept:   []time.Duration{time.Second},
	}, {
		name: "ResourceExhausted, Aborted, DeadlineExceeded: retried",
		steps: []step{
			{err: status.Error(codes.ResourceExhausted, "too many streams")},
			{msgs: []msg{fixed(capacity, [2]int64{0, block})}, err: status.Error(codes.Aborted, "aborted")},
			{msgs: []msg{fixed(capacity, [2]int64{block, block})}, err: status.Error(codes.DeadlineExceeded, "the server's stream deadline")},
			{msgs: []msg{fixed(capacity, [2]int64{3 * block, block})}},
		},
		want:        []datapath.ByteRange{{Offset: 0, Length: 2 * block}, {Offset: 3 * block, Length: block}},
		wantOffsets: []int64{0, 0, block, 2 * block},
		wantSlept:   []time.Duration{time.Second, 2 * time.Second, 4 * time.Second},
	}, {
		name: "Unavailable a fourth time: fails after 3 retries",
		steps: []step{
			{msgs: []msg{variable(capacity, [2]int64{0, 4096})}, err: unavailable},
			{err: unavailable}, {err: unavailable}, {err: unavailable},
		},
		wantOffsets: []int64{0, 4096, 4096, 4096},
		wantSlept:   []time.Duration{time.Second, 2 * time.Second, 4 * time.Second},
		wantErr:     "calling GetMetadataAllocated for VolumeSnapshot ns1/snap-b: Unavailable: the CSI driver is not yet ready (after 3 retries)",
		wantCode:    codes.Unavailable,
	}, {
		name:        "NotFound: fails at once",
		base:        "handle-a",
		steps:       []step{{err: status.Error(codes.NotFound, "snapshot handle-a not found")}},
		wantOffsets: []int64{0},
		wantErr:     "calling GetMetadataDelta for VolumeSnapshot ns1/snap-b since base snapshot handle handle-a: NotFound: snapshot handle-a not found",
		wantCode:    codes.NotFound,
	}, {
		name:        "FailedPrecondition mid-stream: fails at once",
		steps:       []step{{msgs: []msg{variable(capacity, [2]int64{0, 4096})}, err: status.Error(codes.FailedPrecondition, "changed block tracking is off")}},
		wantOffsets: []int64{0},
		wantErr:     "calling GetMetadataAllocated for VolumeSnapshot ns1/snap-b: FailedPrecondition: changed block tracking is off",
		wantCode:    codes.FailedPrecondition,
	}, {
		name:        "InvalidArgument: fails at once",
		base:        "handle-a",
		steps:       []step{{err: status.Error(codes.InvalidArgument, "VolumeSnapshot 'snap-b' does not belong to the CSI driver 'x'")}},
		wantOffsets: []int64{0},
		wantErr:     "calling GetMetadataDelta for VolumeSnapshot ns1/snap-b since base snapshot handle handle-a: InvalidArgument: VolumeSnapshot 'snap-b' does not belong to the CSI driver 'x'",
		wantCode:    codes.InvalidArgument,
	}, {
		name:        "Unauthenticated: fails at once",
		steps:       []step{{err: status.Error(codes.Unauthenticated, "unauthenticated user")}},
		wantOffsets: []int64{0},
		wantErr:     "calling GetMetadataAllocated for VolumeSnapshot ns1/snap-b: Unauthenticated: unauthenticated user",
		wantCode:    codes.Unauthenticated,
	}, {
		name:        "PermissionDenied: fails at once",
		steps:       []step{{err: status.Error(codes.PermissionDenied, "user does not have permissions to perform the operation: no get volumesnapshots")}},
		wantOffsets: []int64{0},
		wantErr:     "calling GetMetadataAllocated for VolumeSnapshot ns1/snap-b: PermissionDenied: user does not have permissions to perform the operation: no get volumesnapshots",
		wantCode:    codes.PermissionDenied,
	}, {
		name:        "Internal: fails at once",
		steps:       []step{{err: status.Error(codes.Internal, "failed to get response from CSI driver:\nboom")}},
		wantOffsets: []int64{0},
		wantErr:     "calling GetMetadataAllocated for VolumeSnapshot ns1/snap-b: Internal: failed to get response from CSI driver: boom",
		wantCode:    codes.Internal,
	}, {
		name:        "capacity changing mid-stream",
		steps:       []step{{msgs: []msg{variable(capacity, [2]int64{0, 4096}), variable(2*capacity, [2]int64{8192, 4096})}}},
		wantOffsets: []int64{0},
		wantErr:     "calling GetMetadataAllocated for VolumeSnapshot ns1/snap-b: the volume capacity changed from 67108864 to 134217728 bytes in message 2",
	}, {
		name: "capacity changing in a resumed stream",
		steps: []step{
			{msgs: []msg{variable(capacity, [2]int64{0, 4096})}, err: status.Error(codes.Unavailable, "")},
			{msgs: []msg{variable(capacity+1, [2]int64{8192, 4096})}},
		},
		wantOffsets: []int64{0, 4096},
		wantSlept:   []time.Duration{time.Second},
		wantErr:     "calling GetMetadataAllocated for VolumeSnapshot ns1/snap-b: the volume capacity changed from 67108864 to 67108865 bytes in message 2",
	}, {
		name:        "block metadata type changing",
		steps:       []step{{msgs: []msg{variable(capacity, [2]int64{0, 4096}), fixed(capacity, [2]int64{8192, 4096})}}},
		wantOffsets: []int64{0},
		wantErr:     "calling GetMetadataAllocated for VolumeSnapshot ns1/snap-b: the block metadata type changed from VARIABLE_LENGTH to FIXED_LENGTH in message 2",
	}, {
		name:        "unknown block metadata type",
		steps:       []step{{msgs: []msg{{capacity: capacity}}}},
		wantOffsets: []int64{0},
		wantErr:     "calling GetMetadataAllocated for VolumeSnapshot ns1/snap-b: unknown block metadata type UNKNOWN",
	}, {
		name:        "no capacity",
		steps:       []step{{msgs: []msg{variable(0)}}},
		wantOffsets: []int64{0},
		wantErr:     "calling GetMetadataAllocated for VolumeSnapshot ns1/snap-b: the service reported a volume capacity of 0 bytes",
	}, {
		name:        "no message at all",
		base:        "handle-a",
		steps:       []step{{}},
		wantOffsets: []int64{0},
		wantErr:     "calling GetMetadataDelta for VolumeSnapshot ns1/snap-b since base snapshot handle handle-a: the service sent no message, not even the volume's capacity",
	}, {
		name:        "FIXED_LENGTH tuples of two sizes",
		steps:       []step{{msgs: []msg{fixed(capacity, [2]int64{0, block}, [2]int64{block, 2 * block})}}},
		wantOffsets: []int64{0},
		wantErr:     "calling GetMetadataAllocated for VolumeSnapshot ns1/snap-b: a FIXED_LENGTH range of 131072 bytes at offset 65536 after ranges of 65536 bytes",
	}, {
		name:        "out of order",
		steps:       []step{{msgs: []msg{variable(capacity, [2]int64{8192, 4096}), variable(capacity, [2]int64{0, 4096})}}},
		wantOffsets: []int64{0},
		wantErr:     "calling GetMetadataAllocated for VolumeSnapshot ns1/snap-b: range at offset 0 after one at offset 8192: out of order",
	}, {
		name:        "empty tuple",
		steps:       []step{{msgs: []msg{variable(capacity, [2]int64{8192, 0})}}},
		wantOffsets: []int64{0},
		wantErr:     "calling GetMetadataAllocated for VolumeSnapshot ns1/snap-b: invalid range of 0 bytes at offset 8192 in message 1",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			s := startService(t, tc.steps...)
			c := newTestClient(t, s.addr, s.ca, 0)
			var got []datapath.ByteRange
			var err error
			if tc.base == "" {
				got, err = c.Allocated(ctxT(t))
			} else {
				got, err = c.Delta(ctxT(t), tc.base)
			}
			require.Equal(t, tc.wantOffsets, s.offsets(), "starting_offset of each request")
			require.Equal(t, tc.wantSlept, c.slept, "backoff")
			if tc.wantErr != "" {
				require.EqualError(t, err, tc.wantErr)
				require.Equal(t, tc.wantCode, codeOf(err), "the gRPC code found through the error")
				require.Zero(t, c.VolumeCapacityBytes())
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
			for _, st := range tc.steps {
				if len(st.msgs) > 0 {
					require.Equal(t, st.msgs[0].capacity, c.VolumeCapacityBytes())
					break
				}
			}
		})
	}
}

// codeOf is the gRPC code in err; OK when there is none.
func codeOf(err error) codes.Code {
	if st, ok := status.FromError(err); ok {
		return st.Code()
	}
	return codes.OK
}

func TestRequests(t *testing.T) {
	s := startService(t, step{msgs: []msg{variable(capacity)}}, step{msgs: []msg{variable(capacity)}})
	c := newTestClient(t, s.addr, s.ca, 256)
	_, err := c.Allocated(ctxT(t))
	require.NoError(t, err)
	_, err = c.Delta(ctxT(t), "handle-a")
	require.NoError(t, err)
	require.Equal(t, []request{
		{call: "GetMetadataAllocated", token: "token-1", namespace: "ns1", snapshot: "snap-b", maxResults: 256},
		{call: "GetMetadataDelta", token: "token-1", namespace: "ns1", snapshot: "snap-b", base: "handle-a", maxResults: 256},
	}, s.requests())
}

func TestToken(t *testing.T) {
	t.Run("read again at every call", func(t *testing.T) {
		s := startService(t, step{msgs: []msg{variable(capacity)}}, step{msgs: []msg{variable(capacity)}})
		c := newTestClient(t, s.addr, s.ca, 0)
		_, err := c.Allocated(ctxT(t))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(c.tokenFile, []byte("token-2"), 0o600))
		_, err = c.Delta(ctxT(t), "handle-a")
		require.NoError(t, err)
		seen := s.requests()
		require.Len(t, seen, 2)
		require.Equal(t, []string{"token-1", "token-2"}, []string{seen[0].token, seen[1].token})
	})
	for _, tc := range []struct {
		name    string
		write   func(path string) error
		wantErr string // %s: the token file
	}{
		{"empty", func(p string) error { return os.WriteFile(p, []byte(" \n"), 0o600) }, "the ServiceAccount token file %s is empty"},
		{"missing", os.Remove, "reading the ServiceAccount token: open %s: no such file or directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startService(t)
			c := newTestClient(t, s.addr, s.ca, 0)
			require.NoError(t, tc.write(c.tokenFile))
			_, err := c.Allocated(ctxT(t))
			require.EqualError(t, err, "calling GetMetadataAllocated for VolumeSnapshot ns1/snap-b: "+strings.ReplaceAll(tc.wantErr, "%s", c.tokenFile))
			require.Empty(t, s.requests())
			require.Empty(t, c.slept)
		})
	}
}

func TestCapacityAcrossCalls(t *testing.T) {
	s := startService(t, step{msgs: []msg{variable(capacity, [2]int64{0, 1})}}, step{msgs: []msg{variable(capacity + block)}})
	c := newTestClient(t, s.addr, s.ca, 0)
	_, err := c.Allocated(ctxT(t))
	require.NoError(t, err)
	require.EqualValues(t, capacity, c.VolumeCapacityBytes())
	_, err = c.Delta(ctxT(t), "handle-a")
	require.EqualError(t, err, "calling GetMetadataDelta for VolumeSnapshot ns1/snap-b since base snapshot handle handle-a: the volume capacity is 67174400 bytes, an earlier call said 67108864")
	require.EqualValues(t, capacity, c.VolumeCapacityBytes())
}

func TestDeltaWithoutBase(t *testing.T) {
	s := startService(t)
	c := newTestClient(t, s.addr, s.ca, 0)
	_, err := c.Delta(ctxT(t), "")
	require.EqualError(t, err, "calling GetMetadataDelta for VolumeSnapshot ns1/snap-b since base snapshot handle : no base snapshot handle")
	require.Empty(t, s.requests())
}

// TestWrongCA: a server whose certificate another CA signed is refused at once: gRPC
// says Unavailable, but no retry can help.
func TestWrongCA(t *testing.T) {
	s := startService(t)
	c := newTestClient(t, s.addr, newCA(t, "another CA").pem, 0)
	_, err := c.Allocated(ctxT(t))
	require.Error(t, err)
	require.Equal(t, codes.Unavailable, codeOf(err))
	require.Contains(t, err.Error(), "calling GetMetadataAllocated for VolumeSnapshot ns1/snap-b: Unavailable: ")
	require.Contains(t, err.Error(), "certificate")
	require.Empty(t, c.slept, "no retry")
	require.Empty(t, s.requests())
	require.LessOrEqual(t, len(err.Error()), maxError)
	t.Log(err)
}

// TestContextEnds: a call whose context ends mid-stream returns the context's error at
// once, without retrying, and the server's handler sees the stream end.
func TestContextEnds(t *testing.T) {
	for _, tc := range []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{"canceled", func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) }, context.Canceled},
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 300*time.Millisecond)
		}, context.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startService(t, step{msgs: []msg{variable(capacity, [2]int64{0, 4096})}, hold: true})
			c := newTestClient(t, s.addr, s.ca, 0)
			ctx, cancel := tc.ctx()
			defer cancel()
			errc := make(chan error, 1)
			go func() {
				_, err := c.Delta(ctx, "handle-a")
				errc <- err
			}()
			receive(t, s.held, "the call to reach the server")
			if tc.want == context.Canceled {
				cancel()
			}
			var err error
			select {
			case err = <-errc:
			case <-time.After(10 * time.Second):
				t.Fatal("the call did not return")
			}
			require.ErrorIs(t, err, tc.want)
			require.EqualError(t, err, "calling GetMetadataDelta for VolumeSnapshot ns1/snap-b since base snapshot handle handle-a: "+tc.want.Error())
			require.Empty(t, c.slept)
			receive(t, s.ended, "the server's handler to return")
		})
	}
}

// TestNoLeaks: failed calls leave no goroutines behind and reuse the one connection;
// Close closes it.
func TestNoLeaks(t *testing.T) {
	unavailable := status.Error(codes.Unavailable, "down")
	s := startService(t,
		step{msgs: []msg{variable(capacity)}},
		step{err: status.Error(codes.PermissionDenied, "no")},
		step{msgs: []msg{variable(capacity, [2]int64{0, 1})}, err: unavailable}, step{err: unavailable}, step{err: unavailable}, step{err: unavailable},
		step{msgs: []msg{variable(capacity, [2]int64{0, 1}), variable(capacity + 1)}, hold: true}, // the client stops reading
		step{msgs: []msg{variable(capacity, [2]int64{0, 1})}, hold: true},
	)
	c := newTestClient(t, s.addr, s.ca, 0)
	_, err := c.Allocated(ctxT(t))
	require.NoError(t, err)
	connected := runtime.NumGoroutine() // the client's and the server's of one connection
	for range 3 {                       // a context that does not end: only the client may end the streams
		_, err := c.Allocated(context.Background())
		require.Error(t, err)
	}
	ctx, cancel := context.WithCancel(ctxT(t))
	errc := make(chan error, 1)
	go func() {
		_, err := c.Allocated(ctx)
		errc <- err
	}()
	receive(t, s.held, "the held stream of the failed call")
	receive(t, s.held, "the held stream of the call to cancel")
	cancel()
	require.ErrorIs(t, <-errc, context.Canceled)
	receive(t, s.ended, "the end of the held stream of the failed call")
	receive(t, s.ended, "the end of the canceled stream")
	requireGoroutines(t, connected, "after the failed calls")
	require.EqualValues(t, 1, s.open.Load(), "connections open while the client is")
	require.NoError(t, c.Close())
	require.Eventually(t, func() bool { return s.open.Load() == 0 }, 10*time.Second, 10*time.Millisecond, "connections open after Close")
	requireGoroutines(t, connected, "after Close")
}

// receive waits for a signal on ch, for 10s at most.
func receive(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("waited 10s for %s", what)
	}
}

// requireGoroutines waits until at most n goroutines run. It polls itself: Eventually
// would count its own goroutine.
func requireGoroutines(t *testing.T, n int, when string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); runtime.NumGoroutine() > n && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if got := runtime.NumGoroutine(); got > n {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines %s, %d before:\n%s", got, when, n, buf[:runtime.Stack(buf, true)])
	}
}

func TestNew(t *testing.T) {
	ca := newCA(t, "test CA").pem
	good := Config{Address: "127.0.0.1:1", CACert: ca, TokenFile: "/token", Namespace: "ns1", Snapshot: "snap-b"}
	for _, tc := range []struct {
		name    string
		change  func(*Config)
		wantErr string
	}{
		{"good", func(*Config) {}, ""},
		{"no address", func(c *Config) { c.Address = "" }, "the snapshot metadata service has no address"},
		{"no token file", func(c *Config) { c.TokenFile = "" }, "no ServiceAccount token file for the snapshot metadata service"},
		{"no snapshot", func(c *Config) { c.Snapshot = "" }, `incomplete VolumeSnapshot name "ns1"/"" for the snapshot metadata service`},
		{"negative max results", func(c *Config) { c.MaxResults = -1 }, "negative MaxResults -1 for the snapshot metadata service"},
		{"no CA", func(c *Config) { c.CACert = []byte("not PEM") }, "the snapshot metadata service's CA certificate holds no PEM certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.change(&cfg)
			c, err := New(cfg)
			if tc.wantErr != "" {
				require.EqualError(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}, c.backoff)
			require.NoError(t, c.Close())
		})
	}
}

// TestErrorLength: a long server message and a long base are cut so that the error
// stays one line of at most maxError characters, and keeps its code.
func TestErrorLength(t *testing.T) {
	long := strings.Repeat("very long message\n", 40)
	s := startService(t, step{err: status.Error(codes.NotFound, long)})
	c := newTestClient(t, s.addr, s.ca, 0)
	_, err := c.Delta(ctxT(t), strings.Repeat("h", 200))
	require.Error(t, err)
	msg := err.Error()
	require.LessOrEqual(t, len(msg), maxError, msg)
	require.NotContains(t, msg, "\n")
	require.Contains(t, msg, "...")
	require.Contains(t, msg, ": NotFound: very long message very long")
	require.Equal(t, codes.NotFound, codeOf(err))
	var g *grpcError
	require.True(t, errors.As(err, &g))
}

func TestSleep(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(t, sleep(ctx, time.Millisecond))
	cancel()
	require.ErrorIs(t, sleep(ctx, time.Hour), context.Canceled)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
