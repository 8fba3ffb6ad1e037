// Package restore owns the RestoreItemAction v2 snapmove.io/pvc-restorer: for a PVC whose
// data snapmove moved at backup time, it creates the DataDownload that tells the snapmove
// mover to fill a new volume, and rewrites the PVC so that it binds only to the PV the
// mover will create (selector velero.io/dynamic-pv-restore), exactly like Velero's
// built-in velero.io/csi-pvc-restorer does for its own mover.
//
// Exactly one DataDownload per PVC. Velero runs its built-in actions before plugin
// binaries; with --features=EnableCSI the built-in csi-pvc-restorer handles every PVC
// annotated velero.io/data-upload-name of a snapshotMoveData backup, whatever the mover,
// and creates a DataDownload carrying the mover name from the DataUploadResult (so
// "snapmove" DataDownloads still reach our mover). It marks the PVC with a fresh
// velero.io/dynamic-pv-restore selector value. The rule here: when the incoming PVC's
// selector value for that label differs from the backed-up PVC's, another action already
// created the DataDownload and this action does nothing. Without EnableCSI the built-in
// never runs and this action creates the DataDownload for results whose datamover is
// "snapmove" (and leaves other movers' volumes alone).
//
// Other skips: the backed-up PVC has no velero.io/data-upload-name annotation, the backup
// did not move data, the target PVC already exists. Execute keeps no state; a DataDownload
// that already carries the operation ID is reused. Progress and Cancel read the cluster.
package restore
