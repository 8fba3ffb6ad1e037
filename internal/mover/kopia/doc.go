// Package kopia moves volume data into and out of Velero's unified kopia repository. It
// and its packages are the only ones that import kopia (and Velero's kopia-using
// packages). This package is the facade: Open returns a Repository whose methods call the
// rooms below, each with the open repository, so callers (package connect, and through
// it the worker and the user's commands) see one type.
//
// The rooms, by job, around one tree walker:
//
//	store    opening a repository: storage, the write guard, error classification,
//	         Velero's init, deleting a snapshot, namespaces
//	backup   a volume into a snapshot, then its verification (inspect)
//	restore  a snapshot to a directory or block device, and chosen paths (Files)
//	inspect  reading without writing: snapshots, one directory (ReadDir), verification
//	tree     the snapshot tree walker that restore, verify and path selection share
//	blockobj a block device as one file object of aligned 1 MiB blocks that reuses a
//	         parent's unchanged blocks (changed block tracking; not yet used by backup)
//
// Imports go down only: the facade imports the rooms; backup imports inspect; backup,
// restore and inspect import store and tree; tree and blockobj import none of them.
//
// It writes what stock Velero writes, so Velero's own data mover and the kopia CLI read
// our snapshots and we read theirs: repositories are created with kopia's defaults and
// Velero's init (maintenance owner default@default, the udmrepo.Repository blob);
// snapshots use the source default@default:snapshot-data-upload-download/kopia/<ns>/<pvc>,
// Velero's tags, pin and description, and the newest complete snapshot of the same
// source as parent. Block volumes are a directory holding one file, the device bytes.
//
// The data path returns data (counts, bytes, durations, the problems found): sentences
// for people and number formats are the printers' (package catalog).
//
// They must not know about Kubernetes objects, read the environment or flags, run
// repository maintenance (Velero's maintenance jobs own that, as default@default), or
// tune the process (garbage collector target, FreeOSMemory): the controller calls them on
// every repository check, and the worker tunes itself.
package kopia
