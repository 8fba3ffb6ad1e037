// Package csisnapshot owns the VolumeSnapshots the backup plugin takes: it builds one for a
// PVC, creates it, waits — bounded — until the CSI driver has cut the snapshot (the bound
// VolumeSnapshotContent reports a snapshot handle), and, when that does not happen, deletes
// what it made and says which component to look at.
//
// It waits for the handle, not for readyToUse, exactly like Velero's CSI plugin: once the
// handle exists the point-in-time is fixed and the mover takes over the snapshot.
//
// It must not choose the VolumeSnapshotClass (internal/snapclass does), create DataUploads,
// or touch snapshots it did not create.
package csisnapshot
