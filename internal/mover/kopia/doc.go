// Package kopia moves volume data into and out of Velero's unified kopia repository. It is
// the only package that imports kopia (and Velero's kopia-using packages).
//
// It writes what stock Velero writes, so Velero's own data mover and the kopia CLI read
// our snapshots and we read theirs: repositories are created with kopia's defaults and
// Velero's init (maintenance owner default@default, the udmrepo.Repository blob);
// snapshots use the source default@default:snapshot-data-upload-download/kopia/<ns>/<pvc>,
// Velero's tags, pin and description, and the newest complete snapshot of the same
// source as parent. Block volumes are a directory holding one file, the device bytes.
//
// Restore is our own tree walk over kopia's snapshot API, not kopia's restore package:
// files are split at chunk boundaries into ranges written concurrently with pwrite, so a
// single large file restores on every worker; all-zero blocks become holes when asked
// (WriteSparse) and are allocated without writing data otherwise.
//
// It must not know about Kubernetes objects, read the environment or flags, run
// repository maintenance (Velero's maintenance jobs own that, as default@default), or
// tune the process (garbage collector target, FreeOSMemory): the controller calls it on
// every repository check, and the worker tunes itself.
package kopia
