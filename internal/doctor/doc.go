// Package doctor checks what a snapmove install needs, the way an operator would check it
// by hand, and says how to fix each failure: the snapshot CRDs, a labelled
// VolumeSnapshotClass for each CSI driver in use, Velero's server and its CSI feature
// against node-agent, snapmove's plugins as Velero lists them (`velero plugin get`), the
// mover's Deployment, the credentials of each BackupStorageLocation, the locations'
// phases and the repository password. `snapmove doctor` (internal/cmd) prints its Report.
//
// Each check is one small function of the checks table, run in order; an API error is
// that check's failure, never an abort of the others. Run only reads, except for the one
// ServerStatusRequest it creates (and deletes) to ask Velero's server for its plugins.
//
// It must not import internal/plugin (the plugin process) nor depend on kopia: it reads
// the cluster, never a repository (internal/archtest enforces both).
package doctor
