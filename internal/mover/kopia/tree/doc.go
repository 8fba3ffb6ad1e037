// Package tree is how snapmove reads a snapshot's tree, shared by the restore, the
// verification and path selection (browsing, restoring chosen files), as kopia's verifier
// reuses its snapshotfs TreeWalker: reading a directory object with its names decoded
// (ReadDir; a backup stores names that are not UTF-8 encoded, EncodeNames), checking the
// names (SafeName, CheckNames), a file's seek table (Chunks) and a symlink's target
// (ReadObject), paths below the root (Dir, Join, MaxPath), the parallel walk (Walker) and
// selecting paths by exact names or patterns (Reader).
//
// It only reads: it must not write to a repository or to the local filesystem, decide
// what a walk does with what it finds (restore writes, verification checks), open
// repositories, or know about Kubernetes objects, flags or the environment.
package tree
