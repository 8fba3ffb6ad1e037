package datapath

import (
	"errors"
	"fmt"
	"strings"
)

// PermanentError is a failure that retrying cannot fix: a wrong repository password, a
// missing bucket, denied access, a snapshot that does not exist. The controller fails the
// movement at once with its message; every other error may go away on its own and is
// retried. Reason is the CamelCase reason of the Event recorded with it ("" lets the
// caller choose).
type PermanentError struct {
	Reason string
	Err    error
}

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent marks err as permanent; nil stays nil.
func Permanent(reason string, err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Reason: reason, Err: err}
}

// ExitTransient is the exit code of a worker whose movement failed with a
// *TransientError: EX_TEMPFAIL of sysexits.h. The controller reads it from the worker
// container's state and retries the movement as a whole, within the mover setting
// moveAttempts; every other non-zero exit fails the movement.
const ExitTransient = 75

// TransientError is a failure of a backup or restore that may pass on its own after
// the data path's and the storage client's own retries gave up: the object store
// unreachable, reset or timed out, a 5xx or throttling. A cancellation, a cause that
// needs a person (PermanentError) and a failure of the volume itself (reading the
// source, writing the target) are never transient.
type TransientError struct{ Err error }

func (e *TransientError) Error() string { return e.Err.Error() }
func (e *TransientError) Unwrap() error { return e.Err }

// ExitCode is ExitTransient: a process that ends with e exits with it.
func (e *TransientError) ExitCode() int { return ExitTransient }

// Transient marks err transient; nil stays nil.
func Transient(err error) error {
	if err == nil {
		return nil
	}
	return &TransientError{Err: err}
}

// IsTransient reports whether err is, or wraps, a *TransientError.
func IsTransient(err error) bool {
	var t *TransientError
	return errors.As(err, &t)
}

// VerificationError says that a snapshot failed verification and what was wrong.
type VerificationError struct {
	// SnapshotID is the snapshot verified; empty for a backup's new snapshot, which
	// is saved only once verified (so one that fails is not saved).
	SnapshotID string
	Mode       VerifyMode
	// Problems are "path: what is wrong", path relative to the volume ("." is its root),
	// sorted; at most a handful, then the verification stopped (Stopped).
	Problems []string
	Stopped  bool
}

// ExitVerificationFailed is the exit code of a worker whose backup failed its
// verification (*VerificationError): EX_PROTOCOL of sysexits.h. The controller fails the
// movement with reason VerificationFailed and counts it apart (it is never retried: the
// data read back is not what was written).
const ExitVerificationFailed = 76

// ExitCode is ExitVerificationFailed: a process that ends with e exits with it.
func (e *VerificationError) ExitCode() int { return ExitVerificationFailed }

func (e *VerificationError) Error() string {
	var b strings.Builder
	if e.SnapshotID == "" { // a backup's, verified before it was saved
		fmt.Fprintf(&b, "the new snapshot failed verification (%s) and was not saved", e.Mode.String())
	} else {
		fmt.Fprintf(&b, "snapshot %s failed verification (%s)", e.SnapshotID, e.Mode.String())
	}
	b.WriteString(": ")
	b.WriteString(strings.Join(e.Problems, "; "))
	if e.Stopped {
		fmt.Fprintf(&b, " (stopped after %d problems)", len(e.Problems))
	}
	return b.String()
}
