// Package snapmetaapi is the Kubernetes-side gRPC API of the CSI snapshot metadata
// sidecar (KEP-3314 changed block tracking): the SnapshotMetadata service with
// GetMetadataAllocated and GetMetadataDelta, whose requests name VolumeSnapshots and
// carry a ServiceAccount token. It is the generated pkg/api of
// github.com/kubernetes-csi/external-snapshot-metadata v1.0.0 (Apache-2.0), copied
// unchanged but for the package clause: requiring that module, even for pkg/api alone,
// would lift snapmove's k8s.io modules to v0.35, past what Velero pins.
//
// It holds generated code only: no client logic, no Kubernetes calls. Users find the
// sidecar (the SnapshotMetadataService object of group cbt.storage.k8s.io named after
// the CSI driver), request the token and dial it themselves. To update it, copy
// pkg/api/*.pb.go of a newer release and keep the headers.
package snapmetaapi
