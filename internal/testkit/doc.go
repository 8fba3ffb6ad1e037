// Package testkit is the shared kit of snapmove's unit tests. It is imported only by
// _test.go files and owns two things:
//
//   - golden files: Golden compares an object's YAML with testdata/, and `go test -update`
//     rewrites the files;
//   - the API scheme of the objects snapmove reads and writes: Scheme registers client-go's
//     built-in types, Velero's v1 and v2alpha1 APIs and the CSI VolumeSnapshot API, for fake
//     clients.
//
// It must stay a leaf: it imports no snapmove package, so that internal/plugin and
// internal/mover, which never import each other, can both use it. It is not a home for
// fixtures; those belong next to the tests that use them.
package testkit
