package store

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/snapmove/snapmove/internal/mover/kopia/kopiatest"
)

func TestCloseConcurrently(t *testing.T) {
	ctx := context.Background()
	r, err := Open(ctx, kopiatest.Location(t), kopiatest.Password, Options{Create: true})
	require.NoError(t, err)
	tmpDir := r.tmpDir
	require.DirExists(t, tmpDir)

	const callers = 8
	errs := make(chan error, callers)
	var start sync.WaitGroup
	start.Add(1)
	for range callers {
		go func() {
			start.Wait()
			errs <- r.Close(ctx)
		}()
	}
	start.Done()
	for range callers {
		require.NoError(t, <-errs)
	}
	require.NoDirExists(t, tmpDir)
	require.NoError(t, r.Close(ctx), "a later Close returns the first one's result")
}
