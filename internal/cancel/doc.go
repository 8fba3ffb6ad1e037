// Package cancel is what `snapmove cancel backup|restore NAME` does: it asks the mover to
// stop every volume move of one Velero backup or restore, by setting spec.cancel on each
// of its DataUploads or DataDownloads that has not ended (the same field Velero sets when
// an operation times out), and waits until the mover has ended them.
//
// It only talks to the API server: the mover cancels (the worker stops, what was exposed
// is deleted, no snapshot manifest is written for a canceled upload), and Velero ends the
// backup or restore on its own once every operation has ended. It never touches a
// movement that has ended, and never deletes anything.
package cancel
