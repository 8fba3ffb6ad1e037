// Package plugin owns snapmove's Velero plugin server: it binds Velero's server flags (the
// ones Velero passes to every plugin binary) plus --features, registers the three actions —
// BackupItemAction v2 snapmove.io/pvc-backupper (package backup), RestoreItemAction v2
// snapmove.io/pvc-restorer (package restore) and DeleteItemAction
// snapmove.io/dataupload-delete (package delete) — and serves them over go-plugin.
//
// Stdout belongs to go-plugin: nothing in this tree may print to it (the framework's logger
// writes to stderr). Handlers are created lazily by the framework on the first call, after
// the flags are parsed, and are shared by concurrent calls: they keep no state.
//
// It must not import internal/mover.
package plugin
