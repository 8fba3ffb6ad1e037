package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sync"
	"time"

	"github.com/pkg/errors"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"

	"github.com/snapmove/snapmove/internal/mover/datapath"
)

// Repositories reaches Velero's unified kopia repositories. The controller only checks
// them (before exposing anything) and forgets snapshots; the worker moves the bytes.
// Implementations live outside this package (package mover wires internal/mover/kopia).
type Repositories interface {
	// Verify resolves bsl for sourceNamespace, makes sure the repository password
	// exists, opens the repository (creating it when create is set) and closes it again.
	// It blocks for the whole open. A *datapath.PermanentError means the repository cannot be
	// used as configured (wrong password, missing bucket, unreachable endpoint, bad
	// credentials, nothing to restore from); its message names the cause and the
	// location. Any other error may go away on its own.
	Verify(ctx context.Context, bsl *velerov1.BackupStorageLocation, sourceNamespace string, create bool) error
	// DeleteSnapshot forgets snapshotID in the repository of sourceNamespace on bsl. It
	// returns nil when that repository does not exist (nothing to delete). Errors are
	// classified like Verify's.
	DeleteSnapshot(ctx context.Context, bsl *velerov1.BackupStorageLocation, sourceNamespace, snapshotID string) error
}

// permanentf is datapath.Permanent with a formatted message.
func permanentf(reason, format string, args ...any) error {
	return &datapath.PermanentError{Reason: reason, Err: errors.Errorf(format, args...)}
}

// asPermanent reports whether err is (or wraps) a *PermanentError.
func asPermanent(err error) (*datapath.PermanentError, bool) {
	var p *datapath.PermanentError
	ok := errors.As(err, &p)
	return p, ok
}

// verifier remembers successful verifications for a while, so that fifty volumes of one
// namespace do not open the same repository fifty times, and serializes verifications of
// the same repository (two first backups must not both create it). Losing it (restart)
// only costs one more open.
type verifier struct {
	mu    sync.Mutex
	locks map[string]*repoLock
	ok    map[string]time.Time
}

// repoLock serializes the checks of one repository; users counts the callers holding or
// waiting for it, so that it is forgotten when the last one leaves.
type repoLock struct {
	sync.Mutex
	users int
}

const verifiedFor = 5 * time.Minute

func newVerifier() *verifier {
	return &verifier{locks: map[string]*repoLock{}, ok: map[string]time.Time{}}
}

// repoKey identifies the repository of namespace ns on bsl by what decides where it is
// and how it is reached: the BSL's spec, not its resourceVersion, which Velero changes
// at every validation (about once a minute) without changing the repository.
func repoKey(bsl *velerov1.BackupStorageLocation, ns string) string {
	spec, err := json.Marshal(bsl.Spec)
	if err != nil { // cannot happen for this type; never share a key then
		return string(bsl.UID) + "/" + bsl.ResourceVersion + "/" + ns
	}
	sum := sha256.Sum256(spec)
	return bsl.Namespace + "/" + bsl.Name + "/" + hex.EncodeToString(sum[:]) + "/" + ns
}

// verify checks the repository of ns on bsl, unless it passed in the last verifiedFor
// and fresh is not set (a retry after a failed store: the old pass says nothing now).
func (v *verifier) verify(ctx context.Context, repos Repositories, now func() time.Time, bsl *velerov1.BackupStorageLocation, ns string, create, fresh bool) error {
	k := repoKey(bsl, ns)
	v.mu.Lock()
	lock, found := v.locks[k]
	if !found {
		lock = &repoLock{}
		v.locks[k] = lock
	}
	lock.users++
	v.mu.Unlock()
	defer func() {
		v.mu.Lock()
		if lock.users--; lock.users == 0 {
			delete(v.locks, k)
		}
		v.mu.Unlock()
	}()

	lock.Lock()
	defer lock.Unlock()
	v.mu.Lock()
	at, done := v.ok[k]
	v.mu.Unlock()
	if done && !fresh && now().Sub(at) < verifiedFor {
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
		}
	}
	v.mu.Unlock()
	return nil
}
