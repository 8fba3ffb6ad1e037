// Package catalog is what a user sees of the volume data in their backups, and how they
// get part of it back, without a full restore: the `snapmove` commands list (moved
// volumes per backup; with --watch the volumes moving now, DataUploads and DataDownloads,
// and their bytes), ls (a directory of a volume in a backup), restore-files (chosen
// paths to a local directory or into a live PVC), verify (read a backup back from the
// repository) and report (what protection each PVC of a backup got, or with --restore
// what each DataDownload of a restore did). Its printers write times in RFC 3339 with
// their zone (FormatTime).
//
// A volume is found from the cluster (Backups, DataUploads, the BackupStorageLocation and
// the password secret, through the API server) or, for the day the cluster is gone, from
// a BackupStorageLocation described by flags plus the credentials and password files:
// then the repository's own snapshot manifests say which backup each snapshot belongs
// to (snapmove tags them with the backup's name).
//
// It only reads: repositories are opened read-only through connect.Reader (never with
// kopia directly), and nothing in the cluster is changed except what a file restore into
// a PVC creates and removes again (a pod and a secret in the PVC's namespace), and the
// DownloadRequest through which Velero hands out a backup's contents. It never prints a
// password or a credential.
package catalog
