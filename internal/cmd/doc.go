// Package cmd is the snapmove binary's command line: the cobra command tree (root.go:
// NewRoot, Main; main.go only decides between it and the plugin server) and one file per
// subcommand: each declares its flags, builds the objects the command needs and calls into the
// package that does the work. Nothing here decides anything about volumes, phases or
// repositories; flag parsing and wiring only, as Velero's pkg/cmd/cli/datamover.
//
// In plugin mode stdout belongs to go-plugin: no command here writes to stdout unless it
// is a user-facing command whose output is its result.
package cmd
