// Package inspect reads a repository without writing to it: the snapshots of moved
// volumes (Snapshots), one directory of a snapshot as `ls -l` shows it (ReadDir), and the
// verification of a saved snapshot (Verify), which walks the tree with package tree's
// walker. It works on a repository opened read-only.
//
// It must not write to the repository or the local filesystem, open repositories
// (package store does), know about Kubernetes objects, read the environment or flags, or
// build sentences for people: Verify returns counts, bytes, a duration and, in a
// *datapath.VerificationError, the first problems found; package catalog prints them.
package inspect
