// Package delete owns the DeleteItemAction snapmove.io/dataupload-delete: when Velero
// deletes a backup, it runs over the backup's DataUploads, and for each one the snapmove
// mover completed (spec.datamover "snapmove", a status.snapshotID) it asks the mover to
// forget that kopia snapshot. Velero's own velero.io/dataupload-delete ignores DataUploads
// of other movers, and the plugin process cannot reach the repository itself (only the
// mover links kopia).
//
// The request is a ConfigMap in Velero's namespace (the backup's namespace) labelled
// naming.DeleteRequestLabel, named after the DataUpload and a hash of the snapshot identity
// so a retried deletion finds its earlier request instead of making a second one. The action
// waits, bounded, for the mover to set data[phase] to Completed or Failed and then deletes
// the request. On timeout it leaves the request in place so the mover still processes it
// later. Velero only logs DeleteItemAction errors; the backup deletion goes on.
//
// It must not delete anything but its own requests.
package delete
