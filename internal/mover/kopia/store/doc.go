// Package store opens Velero's kopia repositories: the storage of a location
// (filesystem, S3, GCS, Azure), creating a repository with kopia's defaults and Velero's
// init, the connection config and cache, the guard that stops a backup when the store
// fails a write, the classification of storage errors (ErrWrongPassword, ...,
// IsTransient), forgetting snapshots (checked against the backup and volume that ask),
// the namespaces that hold a repository and the backups Velero stored, and the identity Velero's uploader writes (SourcePath, tags). The open
// Repository is what the other rooms (backup, restore, inspect) are handed.
//
// It must not read or write snapshot trees (packages tree, backup, restore, inspect do),
// know about Kubernetes objects, read flags or the environment (but for AWS web identity,
// which kopia's S3 client would read itself: webidentity.go), or run maintenance:
// Velero's maintenance jobs own that (tests use kopiatest/maintain).
package store
