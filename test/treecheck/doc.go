// Package treecheck records a directory tree's metadata and content (Manifest) and lists
// the differences between two records (Compare), so tests can assert that a restore
// reproduced a backed-up tree. Sparse reports a file's holes.
//
// Compare's zero Options check exactly what a kopia snapshot stores and what kopia's
// restore (and snapmove's) sets again. Read from Velero's kopia fork
// (project-velero/kopia d946b1e: fs/localfs, snapshot/upload newDirEntry,
// snapshot/restore local_fs_output.go):
//
// Preserved, so compared by default:
//   - entry type (file, directory, symlink) and names (any valid UTF-8; kopia writes
//     directory listings as JSON, so invalid UTF-8 would come back as U+FFFD);
//   - file size and content;
//   - mode: permission bits and setuid, setgid, sticky (fs.ModBits; restore chowns first,
//     then chmods, so chown does not clear setuid/setgid);
//   - owner uid and gid, also of symlinks (lchown);
//   - mtime to the nanosecond, of files, directories (set after their content) and the
//     root; symlink mtimes within 1 µs (see below);
//   - symlink targets, verbatim (relative, absolute, dangling);
//   - empty files and empty directories.
//
// Not preserved, so ignored by default (each has an option to check it anyway):
//   - hard-link identity (CheckHardLinks): the upload sees each path as its own file;
//     content is deduplicated, but restore writes separate inodes (nlink 1);
//   - FIFOs, sockets, device nodes (CheckSpecial): localfs reports them as unknown and the
//     upload skips them (policy ignoreUnknownTypes, default true; snapmove sets it too);
//   - holes / allocation (CheckAllocation): the upload reads holes as zeros; restore fills
//     them unless WriteSparseFiles is set (Velero's default is off; snapmove then
//     allocates zero runs with fallocate, the CLI writes them);
//   - symlink mtime nanoseconds (ExactSymlinkMtime): kopia's restore sets symlink times
//     with lutimes, whose timeval rounds up to the microsecond (snapmove's restore keeps
//     nanoseconds, so its tests can set ExactSymlinkMtime).
//
// Never recorded: atime (restore sets it to the mtime), ctime, birth time, xattrs and
// ACLs (kopia has no field for them), directory sizes and link counts, symlink modes
// (always 0777 on Linux).
//
// It must not import kopia or snapmove packages: it checks restores made by either.
package treecheck
