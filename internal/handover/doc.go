// Package handover is what `snapmove handover restore NAME` does: it hands the volume moves
// of one Velero restore to Velero's built-in data mover (node-agent), the way back from
// snapmove without it.
//
// A backup that snapmove moved stores DataUploads of datamover "snapmove". On restore,
// Velero copies that datamover into each DataDownload (its dataupload_retrieve_action and
// CSI PVC restore action), and node-agent serves only its own movers ("" or "velero"), so
// with snapmove's mover gone the PVCs would wait for Velero's item operation timeout. The
// repository, its password, the snapshot source names and the snapshot IDs are Velero's own,
// so node-agent can restore them: only the datamover field is in the way. Handover sets it to
// "velero" on every DataDownload of the restore that no mover has taken yet, with an
// optimistic lock so that one snapmove's mover accepts meanwhile is left to it.
//
// It only talks to the API server and never touches a movement that a mover has accepted.
package handover
