package inspect

import "time"

// SetPartBytes makes a verification read files in parts of n bytes, for the tests of the
// whole data path (package kopia's), and returns the function that puts the size back.
// No verification may run while it is called.
func SetPartBytes(n int64) (undo func()) {
	old := verifyPartBytes
	verifyPartBytes = n
	return func() { verifyPartBytes = old }
}

// SetRetryDelay sets the pause before a verification's second attempt of a read that
// failed for a reason that may pass, and returns the function that puts it back. No
// verification may run while it is called.
func SetRetryDelay(d time.Duration) (undo func()) {
	old := retryDelay
	retryDelay = d
	return func() { retryDelay = old }
}
