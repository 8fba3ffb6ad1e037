package inspect

// SetPartBytes makes a verification read files in parts of n bytes, for the tests of the
// whole data path (package kopia's), and returns the function that puts the size back.
// No verification may run while it is called.
func SetPartBytes(n int64) (undo func()) {
	old := verifyPartBytes
	verifyPartBytes = n
	return func() { verifyPartBytes = old }
}
