// Package backup owns the BackupItemAction v2 snapmove.io/pvc-backupper: for a PVC it
// claims, it takes a CSI VolumeSnapshot (via internal/snapclass and internal/csisnapshot),
// hands the snapshot to the snapmove mover as a DataUpload (spec.datamover "snapmove"),
// annotates the PVC exactly like Velero's built-in velero.io/csi-pvc-backupper, and reports
// the DataUpload's progress back to Velero.
//
// Which PVCs it claims (never two snapshots of one PVC):
//   - it skips items of a Finalizing backup, PVCs Velero's built-in action already
//     snapshotted (annotation velero.io/volume-snapshot-name), unbound PVCs, non-CSI volumes
//     and backups without data movement (spec.snapshotMoveData, defaulted from the server
//     flag --default-snapshot-move-data);
//   - a volume policy `action: {type: custom, parameters: {mover: snapmove}}` always claims
//     the PVC (Velero's built-in skips PVCs matched by custom policies), whatever
//     spec.datamover says;
//   - any other matching volume policy other than `snapshot` (skip, fs-backup, a custom
//     policy for another mover) leaves the PVC alone;
//   - spec.datamover other than "" or "snapmove" means the user asked for another mover:
//     left alone;
//   - with --features=EnableCSI, Velero's built-in action handles every PVC not claimed by
//     policy (with spec.datamover snapmove it hands its DataUpload to our mover), so this
//     action stands back;
//   - without EnableCSI it moves every remaining PVC Velero's volume helper would snapshot
//     (no fs-backup opt-in, spec.snapshotVolumes not false).
//
// Execute keeps no state and may run concurrently for different PVCs. A DataUpload that
// already carries the operation ID (a retried Execute) is reused, not duplicated.
// Progress and Cancel read everything from the cluster.
package backup
