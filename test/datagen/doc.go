// Package datagen writes the deterministic data sets that snapmove's tests, demo and
// benchmarks back up and restore. At scale 1 it reproduces byte for byte the data sets of
// the performance study the project's goals come from (perf-anchors: §3 and its
// appendix A generator), so numbers stay comparable:
//
//   - GenPG: a "postgres-like" directory tree of 8 KiB pages, about half random and half
//     compressible text, with skewed file sizes. Scale 1 is 1,148,735,488 bytes in 2,500
//     files and 33 directories; smaller scales keep many files (see GenPG).
//   - GenLarge: one file standing in for a block device: 1 MiB random blocks with zero
//     runs left as real holes (never written), like a thin-provisioned disk image.
//   - MutatePG / MutateLarge: the "5% changed" step between two backups.
//   - GenTricky: a small tree of every awkward case a restore must reproduce (modes,
//     owners, nanosecond mtimes, symlinks, hard links, holes, odd names, a FIFO).
//
// The same seed gives the same bytes on every machine; Version changes whenever the output
// of any generator changes, and a unit test pins the SHA-256 of a small tree so the data
// never changes silently. Ensure* regenerate a data set only when its stamp file does not
// match (GenPG and GenTricky refuse a non-empty directory; EnsurePG suits reruns).
//
// It uses the standard library only, needs Linux (holes, FIFOs, utimensat) and, for
// GenTricky's owners, root. It must not import snapmove or kopia packages: the benchmark
// and the kopia CLI series must read identical data.
package datagen
