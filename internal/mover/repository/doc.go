// Package repository turns a Velero BackupStorageLocation into a Location: where one
// volume namespace's kopia repository lives (bucket, prefix "<bsl prefix>/kopia/<ns>/")
// and the credentials to reach it, read the way Velero's unified repository reads them
// (pkg/repository/provider/unified_repo.go getStorageVariables/getStorageCredentials).
// It also reads the repository password secret that Velero shares and creates
// (velero-repo-credentials/repository-password, pkg/repository/keys); it never creates it.
//
// It must not import kopia (only internal/mover/kopia does), must not talk to object
// storage, and reads nothing from the environment: ambient credentials (IRSA, workload
// identity) are left to the storage client by leaving the credential fields empty.
package repository
