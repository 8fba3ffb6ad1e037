package controller

import (
	"context"
	"sync"
	"time"

	"github.com/pkg/errors"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
)

// Repositories reaches Velero's unified kopia repositories. The controller only checks
// them (before exposing anything) and forgets snapshots; the worker moves the bytes.
// Implementations live outside this package (package mover wires internal/mover/kopia).
type Repositories interface {
	// Verify resolves bsl for sourceNamespace, makes sure the repository password
	// exists, opens the repository (creating it when create is set) and closes it again.
	// It blocks for the whole open. A *PermanentError means the repository cannot be
	// used as configured (wrong password, missing bucket, unreachable endpoint, bad
	// credentials, nothing to restore from); its message names the cause and the
	// location. Any other error may go away on its own.
	Verify(ctx context.Context, bsl *velerov1.BackupStorageLocation, sourceNamespace string, create bool) error
	// DeleteSnapshot forgets snapshotID in the repository of sourceNamespace on bsl. It
	// returns nil when that repository does not exist (nothing to delete). Errors are
	// classified like Verify's.
	DeleteSnapshot(ctx context.Context, bsl *velerov1.BackupStorageLocation, sourceNamespace, snapshotID string) error
}

// PermanentError is a failure that retrying cannot fix. Reason is the CamelCase reason of
// the Event recorded with it.
type PermanentError struct {
	Reason string
	Err    error
}

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent marks err as permanent.
func Permanent(reason string, err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Reason: reason, Err: err}
}

// permanentf is Permanent with a formatted message.
func permanentf(reason, format string, args ...any) error {
	return &PermanentError{Reason: reason, Err: errors.Errorf(format, args...)}
}

// asPermanent reports whether err is (or wraps) a *PermanentError.
func asPermanent(err error) (*PermanentError, bool) {
	var p *PermanentError
	ok := errors.As(err, &p)
	return p, ok
}

// verifier remembers successful verifications for a while, so that fifty volumes of one
// namespace do not open the same repository fifty times, and serializes verifications of
// the same repository (two first backups must not both create it). Losing it (restart)
// only costs one more open.
type verifier struct {
	mu    sync.Mutex
	locks map[string]*sync.Mutex
	ok    map[string]time.Time
}

const verifiedFor = 5 * time.Minute

func newVerifier() *verifier {
	return &verifier{locks: map[string]*sync.Mutex{}, ok: map[string]time.Time{}}
}

func (v *verifier) verify(ctx context.Context, repos Repositories, now func() time.Time, bsl *velerov1.BackupStorageLocation, ns string, create bool) error {
	// The BSL's resourceVersion is part of the key: an edited BSL is checked again.
	k := string(bsl.UID) + "/" + bsl.ResourceVersion + "/" + ns
	v.mu.Lock()
	lock, found := v.locks[k]
	if !found {
		lock = &sync.Mutex{}
		v.locks[k] = lock
	}
	v.mu.Unlock()

	lock.Lock()
	defer lock.Unlock()
	v.mu.Lock()
	at, done := v.ok[k]
	v.mu.Unlock()
	if done && now().Sub(at) < verifiedFor {
		return nil
	}
	if err := repos.Verify(ctx, bsl, ns, create); err != nil {
		return err
	}
	v.mu.Lock()
	v.ok[k] = now()
	for key, t := range v.ok { // forget old entries
		if now().Sub(t) >= verifiedFor {
			delete(v.ok, key)
			delete(v.locks, key)
		}
	}
	v.mu.Unlock()
	return nil
}
