// Package velerosrv reads how Velero's server runs, so that the mover runs its workers
// the same way: which secret Velero's Deployment mounts as its object store credentials
// (Discover, Server.CredentialsFor), the workload-identity annotations of its
// ServiceAccount, the pod label Azure Workload Identity acts on, and the image pull
// secrets of its pod (snapmove's image runs as an init container of that pod, so what
// pulls Velero's pod pulls snapmove's image).
//
// It also owns --default-credentials-secret (ParseDefault): "auto" (what Velero's
// Deployment mounts), "none" (ambient credentials) or NAME/KEY, and Credentials, which
// resolves it for a BackupStorageLocation that names no credentials of its own.
//
// It only reads the API (list Deployments, get a ServiceAccount in Velero's namespace):
// it creates nothing, builds no pod and imports no other mover package, so the
// controller, connect and the user's commands can all use it. Discovery is cached for a
// short time by Cache; a failed discovery is never kept.
package velerosrv
