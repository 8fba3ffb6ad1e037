// Package archtest holds no code: its tests enforce the rules that the packages' doc.go
// files and the house style (docs/style.md) state in prose, so that review does not have to.
//
//   - imports_test.go: who may import whom (plugin and mover never meet, only
//     internal/mover/kopia imports kopia, leaves stay leaves), as a table of rules, each
//     citing the doc.go that states it, checked against `go list -deps -test -json ./...`
//     (and ./... of the test CSI driver's module).
//   - logmsg_test.go: log messages start with a lower-case letter unless their first word
//     is an identifier or a proper name (DataUpload, PVC, Velero), checked on the syntax
//     tree of every non-test Go file of the module.
//
// A rule is a predicate over the packages that exist: a package that is renamed or added
// is checked by the same rules as the rest. It must not be imported by anything.
package archtest
