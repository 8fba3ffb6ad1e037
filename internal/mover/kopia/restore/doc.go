// Package restore writes a snapshot to a directory or a block device (Restore), or chosen
// paths of it into a directory (Files), walking the snapshot with package tree's walker.
//
// It is our own tree walk over kopia's snapshot API, not kopia's restore package:
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
// openat(O_NOFOLLOW) per component where openat2 is missing). A name that is "", ".",
// ".." or holds "/" or NUL fails the restore before anything of that directory is
// written. A name a snapshot directory holds more than once (names that were not UTF-8,
// collapsed by Velero's node-agent or the kopia CLI) is restored for none of its entries:
// the rest is restored, then the restore fails naming them (tree.CollisionError).
// restore-files writes each file beside the one it replaces and renames it into place.
//
// It must not write to the repository, open one (package store does, and hands it in),
// know about Kubernetes objects, read the environment or flags, or build sentences for
// people: it returns counts and bytes.
package restore
