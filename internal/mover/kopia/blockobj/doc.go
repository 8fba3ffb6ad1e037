// Package blockobj writes a block device's content as one kopia file object made of
// aligned 1 MiB direct objects (one content each, splitter FIXED-1M), so that the next
// backup of the device can reuse the entries of the blocks that did not change without
// reading them. It is the building block of changed-block-tracking (CBT) incrementals:
// given the parent's object and the ranges a CSI SnapshotMetadata service reports as
// changed (GetMetadataDelta), it reads only those blocks; given the allocated ranges
// (GetMetadataAllocated) of a first backup, it reads only those and stores every hole as
// one shared zero object.
//
// The object is an indirect object built by hand, as Velero's block uploader builds it
// (pkg/repository/udmrepo/kopialib/lib_repo.go): the JSON index
// {"stream":"kopia:indirect","entries":[{"s","l","o"}…]} written with prefix "x", its ID
// prefixed with "I". Its length is exactly the device's size (the last entry may be
// short, never padded), so it is a normal file object: put in a snapshot as the one file
// of a block volume's directory, kopia's readers, Velero's restore and package restore
// read it unchanged, and kopia's garbage collection follows its entries.
//
// It is a room of package kopia apart from backup because it works below snapshots: it
// writes one object into an open repository writer and returns its ID and counts. It must
// not open repositories, write snapshot manifests, flush the writer, know about CSI or
// Kubernetes objects, or read the environment or flags; the caller asks the
// SnapshotMetadata service for the ranges, chooses and checks the parent snapshot (tags,
// volume ID) and decides what to do when the parent cannot be used.
package blockobj
