package kopia

// The kopia identity, source path, tags, pin and description Velero's uploader writes
// (pkg/uploader/kopia/snapshot.go, pkg/uploader/provider/kopia.go). Writing the same
// makes Velero's data mover and ours each other's parents, and the kopia CLI list our
// snapshots as Velero's.
const (
	snapshotRequester   = "snapshot-data-upload-download"
	snapshotUploader    = "kopia"
	repoUser            = "default"
	repoHost            = "default"
	tagRequester        = "snapshot-requester"
	tagUploader         = "snapshot-uploader"
	snapshotPin         = "velero-pin"
	snapshotDescription = "Kopia Uploader"
)

// snapshotSourcePath is the kopia source path of a moved volume, identical to Velero's
// data mover ("<requester>/kopia/<ns>/<pvc>"), so the kopia CLI lists
// default@default:snapshot-data-upload-download/kopia/<ns>/<pvc> and Velero's and our
// snapshots are each other's parents.
func snapshotSourcePath(namespace, pvc string) string {
	return snapshotRequester + "/kopia/" + namespace + "/" + pvc
}
