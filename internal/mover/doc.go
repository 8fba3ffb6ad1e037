// Package mover holds the entry points of the bundled data mover: RunController (the
// `snapmove mover controller` Deployment) and RunWorker (`snapmove mover worker
// backup|restore`, run in the per-volume worker pods). Each parses its own flags,
// builds its clients and wires the repository: this is the one place where the
// controller and the worker meet internal/mover/repository and internal/mover/kopia.
//
// It holds no logic of its own beyond that wiring and the translation of kopia's errors
// into the controller's permanent/transient classification; the phases live in
// internal/mover/controller, the byte moving in internal/mover/worker.
package mover
