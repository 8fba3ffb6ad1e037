// Package expose builds the objects the mover creates to reach a volume's data without
// touching the user's namespace: for a backup, a VolumeSnapshotContent and
// VolumeSnapshot in Velero's namespace that take over the user's CSI snapshot, the PVC
// restored from them and the worker pod that reads it; for a restore, the PVC the worker
// writes and the worker pod. It also defines the worker pod's contract (command line,
// mount paths, environment, termination-message result).
//
// Builders are pure functions of their parameters (golden-tested in testdata/). Every
// object built for a movement carries Labels, with the movement's UID: MadeFor tells the
// movement's objects from someone else's of the same name. The only API call here is
// Create, which counts an existing object as created only when it was made for the same
// movement, and otherwise returns a *NotMadeForError naming it. The package decides
// nothing about phases, waits for nothing and deletes nothing: that is the controller's.
package expose
