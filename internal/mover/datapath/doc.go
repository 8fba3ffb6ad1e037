// Package datapath holds the vocabulary that the worker and the kopia data path share:
// what a volume backup or restore is asked to do, what it reports while it runs, and
// what it returns (as Velero's pkg/uploader/types.go does for its uploaders). With these
// types and the Repository interface in one leaf package, *kopia.Repository is the
// worker's repository as it is, with no adapter between them, and connect returns it
// without knowing the worker.
//
// It must stay a leaf: only the standard library, no behaviour beyond the types and their
// error classes, no Kubernetes and no kopia imports.
package datapath
