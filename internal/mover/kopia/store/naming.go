package store

import "strings"

// The kopia identity, source path, tags, pin and description Velero's uploader writes
// (pkg/uploader/kopia/snapshot.go, pkg/uploader/provider/kopia.go). Writing the same
// makes Velero's data mover and ours each other's parents, and the kopia CLI list our
// snapshots as Velero's.
const (
	Requester    = "snapshot-data-upload-download"
	Uploader     = "kopia"
	User         = "default"
	Host         = "default"
	TagRequester = "snapshot-requester"
	TagUploader  = "snapshot-uploader"
	Pin          = "velero-pin"
	Description  = "Kopia Uploader"
)

// The backup tags the worker adds (Velero's labels velerov1.BackupNameLabel and
// BackupUIDLabel, copied from the DataUpload): what a backup wrote is found, and
// forgotten, by them.
const (
	TagBackupName = "velero.io/backup-name"
	TagBackupUID  = "velero.io/backup-uid"
)

// The changed-block-tracking tags of a block volume's snapshot, Velero's names
// (pkg/uploader/types.go on its main branch, the unreleased block data mover): the CSI
// snapshot handle the snapshot was read from, which the next backup asks the changes
// since, and the CSI volume handle it was taken of.
const (
	TagChangeID = "cbt-change-id"
	TagVolumeID = "cbt-volume-id"
)

// SourcePath is the kopia source path of a moved volume, identical to Velero's data
// mover ("<requester>/kopia/<ns>/<pvc>"), so the kopia CLI lists
// default@default:snapshot-data-upload-download/kopia/<ns>/<pvc> and Velero's and our
// snapshots are each other's parents.
func SourcePath(namespace, pvc string) string {
	return Requester + "/kopia/" + namespace + "/" + pvc
}

// ParseSourcePath returns the namespace and PVC of a source path that SourcePath writes,
// and whether it is one.
func ParseSourcePath(p string) (namespace, pvc string, ok bool) {
	prefix := strings.TrimSuffix(SourcePath("", ""), "/") // ".../kopia/"
	rest, ok := strings.CutPrefix(p, prefix)
	if !ok {
		return "", "", false
	}
	namespace, pvc, ok = strings.Cut(rest, "/")
	if !ok || namespace == "" || pvc == "" || strings.Contains(pvc, "/") || SourcePath(namespace, pvc) != p {
		return "", "", false
	}
	return namespace, pvc, true
}
