// Package backup snapshots a volume (a directory, or a block device as a directory
// holding one file) into an open repository as Velero's data mover does: the newest
// complete snapshot of the source as parent, Velero's tags, pin and policy, checkpoints a
// retry resumes from, names that are not UTF-8 stored encoded (tree.EncodeNames); then it
// verifies the saved snapshot (inspect.Verify) and deletes one that fails.
//
// It must not open repositories (package store does), restore, know about Kubernetes
// objects, read the environment or flags, or put results into words: it returns counts,
// bytes and the verification's data.
package backup
