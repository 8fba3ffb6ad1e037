//go:build unix

package restore

// Tunables for the tests of the whole data path (package kopia's), which restore small
// files in ranges and walk the target without openat2. They change package state: no
// restore may run while they are called.

// SetSplit makes files of threshold bytes or more restore in ranges of rangeSize, and
// returns the function that puts the sizes back.
func SetSplit(threshold, rangeSize int64) (undo func()) {
	oldSplit, oldRange := splitThreshold, rangeBytes
	splitThreshold, rangeBytes = threshold, rangeSize
	return func() { splitThreshold, rangeBytes = oldSplit, oldRange }
}

// SetOpenat2Missing makes the restore resolve paths beneath the target with its
// per-component openat walk (missing) or openat2 where the kernel has it, and returns the
// function that puts the choice back.
func SetOpenat2Missing(missing bool) (undo func()) {
	old := openat2Missing.Load()
	openat2Missing.Store(missing)
	return func() { openat2Missing.Store(old) }
}
