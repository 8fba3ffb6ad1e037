// Package orphans finds, and on request forgets, the snapshots in a BackupStorageLocation's
// repositories whose backup no longer exists in the bucket: `snapmove forget-orphans`.
//
// Velero forgets a backup's snapmove snapshots only through snapmove's delete plugin and
// mover. A backup deleted while snapmove was uninstalled, or whose delete request failed
// for good, leaves its snapshots (and checkpoints) in the repository, each a GC root whose
// data maintenance never frees. A snapshot is an orphan when its velero.io/backup-name tag
// names no backup of the bucket (the directories of <bsl prefix>/backups/ that hold a
// velero-backup.json, which is what Velero's backup sync reads) and it is older than a
// minimum age (a running backup's snapshots exist before Velero stores the backup).
// Snapshots without the tag (Velero's own data mover's) are never orphans: this package
// cannot tell whose they are.
//
// It knows neither flags nor the cluster: internal/cmd gives it a Bucket.
package orphans
