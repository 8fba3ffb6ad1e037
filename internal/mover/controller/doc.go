// Package controller executes Velero DataUploads and DataDownloads whose spec.datamover
// is naming.DataMover (whoever created them: our plugins, or Velero's built-in CSI
// actions run with --data-mover snapmove), and answers snapshot delete requests.
//
// The contract with Velero is its node-agent's: phases New → Accepted → Prepared →
// InProgress → Completed | Failed | Canceled (via Canceling), status.node,
// acceptedByNode/acceptedTimestamp, start/completion timestamps, progress (copied from the
// worker's report, report.go: the worker may not write the object), and for a
// DataUpload snapshotID (the kopia manifest ID), incrementalBytes and nodeOS. The objects
// have no status subresource: the whole object is updated. A New object is claimed with
// one optimistic update (a conflict means someone else won), which also records what the
// mover will act on (claim.go: only the record is acted on); later writes retry on
// conflict after re-reading, and never touch an object that has ended. A finalizer is
// held while an object is claimed and not ended; deleting such an object cancels it.
//
// Reconcile derives everything from the cluster (the object, its worker pod, PVC and
// snapshots), so a restarted controller re-attaches to running workers. Each phase is one
// small method of machine[M] (phases.go), generic over the kind's movement, with no type
// switches; kind-specific steps (expose, record, finish, cleanup, messages) live in
// dataupload.go (our snapshot in uploadsnapshot.go) and datadownload.go behind handler[M].
// reconciler.go holds the wiring and picks the phase; status.go holds every write to a
// movement, and endWith, the one way a movement ends Failed or Canceled. State the phases branch on lives in fields and
// annotations (annResultRecorded), never in status.message. Preparation that cannot finish is
// reported with a diagnosis (PVC events, scheduling conditions, snapshot errors) in
// status.message while waiting and in the failure message, and every failure is also an
// Event on the object.
//
// A worker that failed while moving data for a reason that may pass (exit code
// datapath.ExitTransient) or was killed (OOMKilled, SIGKILL) is retried as a whole, up to
// the mover setting moveAttempts (retry.go): its pod is deleted and the movement goes back
// to Accepted, whose expose creates a new worker pod on what is already exposed; the
// attempt is in the annotation annAttempt, and each retry is a WorkerRetried Event. A
// worker pod that is gone (deleted, evicted) fails the movement at once.
//
// Every object made for a movement is named after it and carries its UID label
// (naming.MovementUIDLabel, expose.MadeFor); whoever creates a DataUpload picks the name.
// An object of that name without the label is someone else's: checkNames (before anything
// is exposed) and expose.Create fail the movement naming it (ReasonNameTaken), and cleanup
// (deleteOurs, deletePVCAndVolume) leaves it, and any volume not bound to our own PVC, alone.
//
// The package moves no bytes and does not import kopia: the repository is reached through
// the Repositories interface (implemented by internal/mover/connect), and the bytes are moved by the worker pod
// (internal/mover/worker). Objects are built by internal/mover/expose.
package controller
