package store

import (
	"context"
	"sync"
	"time"

	"github.com/kopia/kopia/repo/blob"
	"github.com/pkg/errors"
)

// A store that fails a write even after kopia's own retries (about a minute of them) is
// down, and a backup should stop there: kopia's object writer saves such an error for the
// end of the file and goes on writing the file's next chunks, each failing only after its
// own minute of retries, which for a large volume is hours of a worker that looks busy.
// The connections snapmove opens wrap their storage in guardedStorage, which stops the
// backup (StopOnStoreFailure) at the first write that fails for a reason that may pass;
// the worker then exits as transient and the controller retries the move once the store
// answers again.
//
// Not every call carries the backup's context: kopia flushes, writes its own logs and
// refreshes indexes under contexts of its own. So the wrapper also watches the store as
// a whole: when every call has failed for a reason that may pass for storeDownAfter (each
// failure already after kopia's retries, about a minute), it stops every guarded
// operation of the process, whatever context the failing call had.

// guardedStorageType is the kopia storage type of the wrapper, registered with kopia's
// storage registry so that the connections' configuration files can name it. It exists
// only in the worker's temporary kopia configuration, never in the repository.
const guardedStorageType = "snapmove-guarded"

// guardedOptions is the wrapper's configuration: the storage it wraps.
type guardedOptions struct {
	Inner blob.ConnectionInfo `json:"inner"`
}

func init() {
	blob.AddSupportedStorage(guardedStorageType, guardedOptions{}, func(ctx context.Context, o *guardedOptions, isCreate bool) (blob.Storage, error) {
		inner, err := blob.NewStorage(ctx, o.Inner, isCreate)
		if err != nil {
			return nil, err
		}
		if wrap := testStorageWrapper.Load(); wrap != nil {
			inner = (*wrap)(inner)
		}
		return &guardedStorage{Storage: inner, now: time.Now}, nil
	})
}

// guarded is the connection info of inner wrapped in guardedStorage.
func guarded(inner blob.ConnectionInfo) blob.ConnectionInfo {
	return blob.ConnectionInfo{Type: guardedStorageType, Config: &guardedOptions{Inner: inner}}
}

// storeDownAfter is how long every call to a store may fail, after kopia's retries of the
// first, before the guarded operations of the process stop.
const storeDownAfter = time.Minute

type guardedStorage struct {
	blob.Storage
	now func() time.Time

	mu sync.Mutex
	// failingSince is when the current run of failures that may pass began; zero when
	// the store's last answer was an answer (a success, or an error that will not pass).
	failingSince time.Time
}

// storeFailureKey is the context key of the function that stops an operation when the
// store fails (StopOnStoreFailure).
type storeFailureKey struct{}

// guardedOps are the operations under StopOnStoreFailure running in this process.
var guardedOps = struct {
	sync.Mutex
	stops map[*context.CancelCauseFunc]struct{}
}{stops: map[*context.CancelCauseFunc]struct{}{}}

// StopOnStoreFailure returns a context canceled, with the store's error as its cause,
// when a write under it fails for a reason that may pass (IsTransient), or when every
// call to the store has failed so for storeDownAfter. Calling the returned function
// ends the operation's guard.
func StopOnStoreFailure(ctx context.Context) (context.Context, context.CancelCauseFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	key := &cancel
	guardedOps.Lock()
	guardedOps.stops[key] = struct{}{}
	guardedOps.Unlock()
	stop := func(cause error) {
		guardedOps.Lock()
		delete(guardedOps.stops, key)
		guardedOps.Unlock()
		cancel(cause)
	}
	return context.WithValue(ctx, storeFailureKey{}, context.CancelCauseFunc(stop)), stop
}

// stopAllGuarded stops every guarded operation of the process with cause.
func stopAllGuarded(cause error) {
	guardedOps.Lock()
	defer guardedOps.Unlock()
	for stop := range guardedOps.stops {
		(*stop)(cause)
		delete(guardedOps.stops, stop)
	}
}

// observe records the outcome of one call (op, on blob id when there is one): a failure
// that may pass stops the operation of ctx when op writes, and every guarded operation
// when the store has failed so for storeDownAfter. It returns err.
func (g *guardedStorage) observe(ctx context.Context, op string, id blob.ID, write bool, err error) error {
	if ctx.Err() != nil && err != nil {
		return err // our own cancellation, not the store's
	}
	transient := err != nil && IsTransient(err)
	now := g.now()
	g.mu.Lock()
	switch {
	case !transient:
		g.failingSince = time.Time{}
	case g.failingSince.IsZero():
		g.failingSince = now
	}
	since := g.failingSince
	g.mu.Unlock()
	if !transient {
		return err
	}
	what := op
	if id != "" {
		what += " " + string(id)
	}
	cause := errors.Wrapf(err, "the store failed %s after kopia's retries", what)
	if stop, ok := ctx.Value(storeFailureKey{}).(context.CancelCauseFunc); ok && write {
		stop(cause)
	}
	if down := now.Sub(since); down >= storeDownAfter {
		stopAllGuarded(errors.Wrapf(cause, "every call to the store failed for %s", down.Round(time.Second)))
	}
	return err
}

// PutBlob is the wrapped storage's; a failure that may pass stops the operation of ctx.
func (g *guardedStorage) PutBlob(ctx context.Context, id blob.ID, data blob.Bytes, opts blob.PutOptions) error {
	return g.observe(ctx, "writing", id, true, g.Storage.PutBlob(ctx, id, data, opts))
}

// GetBlob is the wrapped storage's, watched (observe).
func (g *guardedStorage) GetBlob(ctx context.Context, id blob.ID, offset, length int64, output blob.OutputBuffer) error {
	return g.observe(ctx, "reading", id, false, g.Storage.GetBlob(ctx, id, offset, length, output))
}

// GetMetadata is the wrapped storage's, watched (observe).
func (g *guardedStorage) GetMetadata(ctx context.Context, id blob.ID) (blob.Metadata, error) {
	m, err := g.Storage.GetMetadata(ctx, id)
	return m, g.observe(ctx, "reading the metadata of", id, false, err)
}

// ListBlobs is the wrapped storage's, watched (observe).
func (g *guardedStorage) ListBlobs(ctx context.Context, prefix blob.ID, cb func(blob.Metadata) error) error {
	return g.observe(ctx, "listing", prefix+"*", false, g.Storage.ListBlobs(ctx, prefix, cb))
}

// DeleteBlob is the wrapped storage's, watched (observe).
func (g *guardedStorage) DeleteBlob(ctx context.Context, id blob.ID) error {
	return g.observe(ctx, "deleting", id, false, g.Storage.DeleteBlob(ctx, id))
}
