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
// (WriteSparse) and are allocated without writing data otherwise. Snapshot names are not
// joined into paths and looked up: every entry is made, replaced and given its owner,
// mode and time by name relative to an open directory of the target (mkdirat, openat with
// O_NOFOLLOW and O_EXCL, symlinkat, fchown/fchmod on the open file, utimensat and
// fchownat with AT_SYMLINK_NOFOLLOW), so no symlink, restored or already there, is
// followed, and one in the way is replaced. Walkers hold the directory they list and
// files being written hold theirs; the final pass over directory attributes reopens each
// one beneath the target with openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS (one
// openat(O_NOFOLLOW) per component where openat2 is missing). A snapshot directory that
// names an entry twice (kopia never does), or a name that is "", ".", ".." or holds "/"
// or NUL, fails the restore before anything of that directory is written.
//
// It must not know about Kubernetes objects, read the environment or flags, run
// repository maintenance (Velero's maintenance jobs own that, as default@default), or
// tune the process (garbage collector target, FreeOSMemory): the controller calls it on
// every repository check, and the worker tunes itself.
package kopia
