package store

import (
	"context"

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
		return &guardedStorage{Storage: inner}, nil
	})
}

// guarded is the connection info of inner wrapped in guardedStorage.
func guarded(inner blob.ConnectionInfo) blob.ConnectionInfo {
	return blob.ConnectionInfo{Type: guardedStorageType, Config: &guardedOptions{Inner: inner}}
}

type guardedStorage struct {
	blob.Storage
}

// storeFailureKey is the context key of the function that stops an operation when the
// store fails (StopOnStoreFailure).
type storeFailureKey struct{}

// StopOnStoreFailure returns a context canceled, with the store's error as its cause,
// when a write under it fails for a reason that may pass (IsTransient).
func StopOnStoreFailure(ctx context.Context) (context.Context, context.CancelCauseFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	return context.WithValue(ctx, storeFailureKey{}, cancel), cancel
}

// PutBlob is the wrapped storage's; a failure that may pass stops the operation of ctx.
func (g *guardedStorage) PutBlob(ctx context.Context, id blob.ID, data blob.Bytes, opts blob.PutOptions) error {
	err := g.Storage.PutBlob(ctx, id, data, opts)
	if err == nil || ctx.Err() != nil || !IsTransient(err) {
		return err
	}
	if stop, ok := ctx.Value(storeFailureKey{}).(context.CancelCauseFunc); ok {
		stop(errors.Wrapf(err, "the store failed writing %s after kopia's retries", id))
	}
	return err
}
