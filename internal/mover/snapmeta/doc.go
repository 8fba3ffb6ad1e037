// Package snapmeta is the worker's client of the CSI snapshot metadata sidecar
// (external-snapshot-metadata, KEP-3314 changed block tracking): it asks the sidecar's
// gRPC service, over TLS, which byte ranges of the VolumeSnapshot being backed up hold
// data (GetMetadataAllocated) or changed since a base snapshot (GetMetadataDelta), and
// returns them as datapath.ByteRange lists, coalesced, so that a block backup reads only
// those. *Client is a datapath.BlockChanges.
//
// A call streams the sidecar's answer into memory that grows with the number of separate
// runs, not of tuples; it checks what the stream promises (one block metadata type and
// one volume capacity, ranges in order), resumes from the offset after the last range
// received when the stream breaks with a code that may pass (Unavailable,
// ResourceExhausted, Aborted, DeadlineExceeded of the server's own deadline), at most
// three times, and otherwise fails at once with a one-line error that names the call, the
// snapshot, the base and the gRPC code: the backup shows it to the user as the reason it
// read more.
//
// It gets everything it needs from Config: the service's address and CA (the
// SnapshotMetadataService object) and a projected ServiceAccount token file, read again
// at every call since the kubelet rotates it. Finding the service and getting the token
// is the caller's business: this package makes no Kubernetes API calls (it does not
// import client-go or controller-runtime) and does not import kopia; what it reads of the
// device is decided by the backup, not here.
package snapmeta
