// Package connect is the one path from a Velero BackupStorageLocation to an open kopia
// repository: resolve the location and its credentials (internal/mover/repository), read
// the repository password (Velero's server creates it; never snapmove: a missing one is
// waited for), open or create the repository (internal/mover/kopia), and classify what went wrong as
// permanent (datapath.PermanentError) or transient. The controller (repository checks,
// snapshot deletes) and the worker (moving bytes) both connect through it, so they cannot
// drift apart.
//
// Connector.Connect and Reader.Open share one open function (resolve, password, open,
// classify); the worker gets the repository as a datapath.Repository. It sits above
// repository and kopia (kopia imports repository, so this cannot live in either) and
// below worker: it returns datapath.Repository and does not import worker, which sits
// above it. It holds no state between calls and knows nothing of phases or pods.
package connect
