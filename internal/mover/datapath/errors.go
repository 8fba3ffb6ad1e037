package datapath

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
