package store

import (
	"sync/atomic"

	"github.com/kopia/kopia/repo/blob"
)

// testStorageWrapper, when set, wraps the storage of every connection opened after
// (SetStorageWrapper).
var testStorageWrapper atomic.Pointer[func(blob.Storage) blob.Storage]

// SetStorageWrapper makes every connection opened from now on reach its storage through
// wrap (a storage that fails as a store may), for the tests of the whole data path
// (package kopia's), and returns the function that removes it. Connections already open
// keep their storage.
func SetStorageWrapper(wrap func(blob.Storage) blob.Storage) (undo func()) {
	old := testStorageWrapper.Swap(&wrap)
	return func() { testStorageWrapper.Store(old) }
}
