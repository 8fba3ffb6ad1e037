package store

import (
	"context"
	"net"
	"net/url"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/kopia/kopia/repo/blob"
	"github.com/kopia/kopia/repo/blob/filesystem"
	"github.com/pkg/errors"
	"github.com/stretchr/testify/require"
)

// failingPuts is a storage whose writes fail with err.
type failingPuts struct {
	blob.Storage
	err error
}

func (f failingPuts) PutBlob(context.Context, blob.ID, blob.Bytes, blob.PutOptions) error {
	return f.err
}

// A write that fails after kopia's retries for a reason that may pass stops the operation
// (its context ends, with the store's error as the cause); one that cannot pass, or under
// a context without the guard (a delete, maintenance), stops nothing.
func TestGuardedStorageStopsOnStoreFailure(t *testing.T) {
	refused := errors.Wrap(&url.Error{Op: "Put", URL: "http://minio:9000/bkt/p/x", Err: &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}},
		"unable to complete PutBlob(p1) despite 10 retries")
	for _, tc := range []struct {
		name     string
		err      error
		guard    bool
		wantStop bool
	}{
		{name: "store down", err: refused, guard: true, wantStop: true},
		{name: "store down, no guard", err: refused},
		{name: "access denied", err: errors.Wrap(blob.ErrInvalidCredentials, "PutBlob(p1)"), guard: true},
		{name: "written", guard: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			if tc.guard {
				var stop context.CancelCauseFunc
				ctx, stop = StopOnStoreFailure(ctx)
				defer stop(nil)
			}
			st := &guardedStorage{Storage: failingPuts{err: tc.err}, now: time.Now}
			require.Equal(t, tc.err, st.PutBlob(ctx, "p1", nil, blob.PutOptions{}), "the storage's own error")
			if !tc.wantStop {
				require.NoError(t, ctx.Err())
				return
			}
			require.Error(t, ctx.Err())
			cause := context.Cause(ctx)
			require.ErrorContains(t, cause, "the store failed writing p1 after kopia's retries")
			require.True(t, IsTransient(cause), "the worker exits as transient: %v", cause)
		})
	}
}

// failingStore fails every read with err, when err is set.
type failingStore struct {
	blob.Storage
	err *error
}

func (f failingStore) GetBlob(context.Context, blob.ID, int64, int64, blob.OutputBuffer) error {
	return *f.err
}

// A store that fails every call, whatever context the calls carry (kopia reads and writes
// under contexts of its own), stops every guarded operation once it has failed so for
// storeDownAfter; an answer in between starts the count again.
func TestGuardedStorageStopsAllWhenStoreStaysDown(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	var err error = refused
	now := time.Unix(1e9, 0)
	st := &guardedStorage{Storage: failingStore{err: &err}, now: func() time.Time { return now }}
	op, stop := StopOnStoreFailure(context.Background())
	defer stop(nil)
	other := context.Background() // a call kopia makes under a context of its own

	read := func(d time.Duration) {
		now = now.Add(d)
		_ = st.GetBlob(other, "x", 0, -1, nil)
	}
	read(0)
	read(storeDownAfter - time.Second)
	require.NoError(t, op.Err(), "down for less than storeDownAfter")

	err = blob.ErrBlobNotFound // an answer
	read(time.Second)
	err = refused
	read(time.Second)
	read(storeDownAfter - time.Second)
	require.NoError(t, op.Err(), "the store answered in between")

	read(time.Second)
	require.Error(t, op.Err())
	require.ErrorContains(t, context.Cause(op), "every call to the store failed for 1m0s")
	require.True(t, IsTransient(context.Cause(op)))

	stop(nil)
	guardedOps.Lock()
	defer guardedOps.Unlock()
	require.Empty(t, guardedOps.stops, "an ended operation is forgotten")
}

// The guard's configuration names the storage it wraps and survives kopia's JSON (the
// connection's configuration file), and kopia builds the wrapper from it.
func TestGuardedConnectionInfo(t *testing.T) {
	ctx := context.Background()
	inner, err := filesystem.New(ctx, &filesystem.Options{Path: t.TempDir()}, true)
	require.NoError(t, err)
	b, err := guarded(inner.ConnectionInfo()).MarshalJSON()
	require.NoError(t, err)
	var ci blob.ConnectionInfo
	require.NoError(t, ci.UnmarshalJSON(b))
	require.Equal(t, guardedStorageType, ci.Type)
	st, err := blob.NewStorage(ctx, ci, false)
	require.NoError(t, err)
	defer st.Close(ctx)
	g, ok := st.(*guardedStorage)
	require.True(t, ok, "%T", st)
	require.Equal(t, inner.ConnectionInfo().Type, g.ConnectionInfo().Type)
}
