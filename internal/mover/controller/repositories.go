package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/pkg/errors"
	"github.com/sirupsen/logrus"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/mover/config"
	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/mover/expose"
)

// Repositories reaches Velero's unified kopia repositories. The controller only checks
// them (before exposing anything) and forgets snapshots; the worker moves the bytes.
// It is implemented by internal/mover/connect's Connector, which `snapmove mover
// controller` in internal/cmd passes in (Reconciler.Repos); tests use a fake.
type Repositories interface {
	// Verify resolves bsl for sourceNamespace, makes sure the repository password
	// exists, opens the repository (creating it when create is set) and closes it again.
	// It blocks for the whole open. A *datapath.PermanentError means the repository cannot be
	// used as configured (wrong password, missing bucket, unreachable endpoint, bad
	// credentials, nothing to restore from); its message names the cause and the
	// location. Any other error may go away on its own.
	Verify(ctx context.Context, bsl *velerov1.BackupStorageLocation, sourceNamespace string, create bool) error
	// DeleteSnapshot forgets snapshotID in the repository of owner.Namespace on bsl, when
	// it is a snapshot of owner's PVC whose backup tags name owner's backup; a snapshot of
	// anything else is left alone and the error is a *datapath.PermanentError saying why.
	// Then, when owner.BackupUID is set, it forgets every other snapshot and checkpoint
	// of owner's PVC tagged with owner's backup name and UID (those of a canceled or
	// failed upload); an empty snapshotID does only that. It is idempotent and returns
	// nil when that repository or snapshot does not exist (nothing to delete). Other
	// errors are classified like Verify's.
	DeleteSnapshot(ctx context.Context, bsl *velerov1.BackupStorageLocation, owner datapath.SnapshotOwner, snapshotID string) error
}

// permanentf is datapath.Permanent with a formatted message.
func permanentf(reason, format string, args ...any) error {
	return &datapath.PermanentError{Reason: reason, Err: errors.Errorf(format, args...)}
}

// asPermanent reports whether err is (or wraps) a *PermanentError, or an
// *expose.NotMadeForError (permanent, reason ReasonNameTaken).
func asPermanent(err error) (*datapath.PermanentError, bool) {
	var p *datapath.PermanentError
	if errors.As(err, &p) {
		return p, true
	}
	var taken *expose.NotMadeForError
	if errors.As(err, &taken) {
		return &datapath.PermanentError{Reason: ReasonNameTaken, Err: taken}, true
	}
	return nil, false
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

// The repository gate: no movement exposes anything before its repository was checked
// (verifyRepository); the verifier above saves repeated opens.

// storageLocation gets BSL name in Velero's namespace ns; a missing one is permanent.
func storageLocation(ctx context.Context, reader client.Reader, ns, name string) (*velerov1.BackupStorageLocation, error) {
	bsl := &velerov1.BackupStorageLocation{}
	err := reader.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, bsl)
	if apierrors.IsNotFound(err) {
		return nil, permanentf(ReasonRepositoryError, "BackupStorageLocation %s/%s does not exist", ns, name)
	}
	if err != nil {
		return nil, errors.Wrapf(err, "getting BackupStorageLocation %s/%s", ns, name)
	}
	return bsl, nil
}

// verifyRepository checks the repository of m before anything is exposed, and again,
// uncached, before the worker of a retry (attempt > 1: the last worker may have failed
// because the store went away), and makes it one Velero maintains
// (ensureBackupRepository). A transient
// failure (the store does not answer, a 5xx, an API error reading a secret) becomes a wait
// reason shown in the message, and is retried until repositoryWaitBound has passed since
// m was accepted; then it fails m naming the cause. A permanent failure fails m at once.
func (r *Reconciler) verifyRepository(ctx context.Context, m movement, bslName, sourceNamespace string, create bool, cfg config.Config, log logrus.FieldLogger) (string, error) {
	bsl, err := storageLocation(ctx, r.Reader, r.Options.Namespace, bslName)
	if err != nil {
		return "", err
	}
	err = r.verifier.verify(ctx, r.Repos, r.Clock.Now, bsl, sourceNamespace, create, attempt(m) > 1)
	if err == nil {
		if err := r.storeAnswered(ctx, m, log); err != nil {
			return "", err
		}
		r.ensureBackupRepository(ctx, bslName, sourceNamespace, log)
		return "", nil
	}
	if p, ok := asPermanent(err); ok {
		if p.Reason == "" {
			p.Reason = ReasonRepositoryError
		}
		return "", p
	}
	bound := repositoryWaitBound(m, cfg)
	since := m.object().GetCreationTimestamp().Time
	if at := m.acceptedAt(); at != nil {
		since = at.Time
	}
	if waited := r.Clock.Since(since); waited >= bound {
		return "", permanentf(ReasonRepositoryError, "the kopia repository for namespace %s on BackupStorageLocation %s could not be checked for %s (the bound is the smaller of the operation timeout and the mover's prepareTimeout): %v",
			sourceNamespace, bslName, waited.Round(time.Second), err)
	}
	log.WithError(err).Warn("repository check failed; retrying")
	if _, waiting := m.object().GetAnnotations()[annWaitingForStore]; !waiting {
		now := r.Clock.Now().UTC().Format(time.RFC3339)
		if err := r.write(ctx, m, func(m movement) { setAnnotation(m.object(), annWaitingForStore, now) }); err != nil {
			return "", err
		}
	}
	return fmt.Sprintf("checking the kopia repository for namespace %s on BackupStorageLocation %s: %v", sourceNamespace, bslName, err), nil
}

// storeAnswered ends a wait for the repository (annWaitingForStore): m counts as
// accepted now, so that prepareTimeout, which is for exposing, starts when exposing can
// start, as after a retry. Without it a store back just before the wait's bound left the
// exposure no time at all.
func (r *Reconciler) storeAnswered(ctx context.Context, m movement, log logrus.FieldLogger) error {
	since, waited := m.object().GetAnnotations()[annWaitingForStore]
	if !waited {
		return nil
	}
	now := metav1.NewTime(r.Clock.Now())
	if err := r.write(ctx, m, func(m movement) {
		delete(m.object().GetAnnotations(), annWaitingForStore)
		m.setAccepted(r.Options.Identity, now)
	}); err != nil {
		return err
	}
	log.WithField("waitingSince", since).Info("the repository answers again; preparing")
	return nil
}

// repositoryWaitBound is how long a repository that cannot be checked for a transient
// reason is waited for: the movement's own spec.operationTimeout (Velero's
// csiSnapshotTimeout, 10 minutes by default), at most the mover's prepareTimeout.
func repositoryWaitBound(m movement, cfg config.Config) time.Duration {
	bound := cfg.PrepareTimeout.Duration
	if t := m.operationTimeout(); t > 0 && (bound <= 0 || t < bound) {
		bound = t
	}
	return bound
}
