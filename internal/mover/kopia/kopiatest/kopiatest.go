// Package kopiatest holds what the tests of package kopia and its rooms share: a
// repository location in a temporary directory, its password and a backup request. It is
// imported only by _test.go files.
package kopiatest

import (
	"testing"

	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/mover/repository"
)

// Password is the password of the tests' repositories.
const Password = "test-password"

// Location is a filesystem repository location in a temporary directory of t, as Velero
// lays out the repository of namespace app.
func Location(t testing.TB) repository.Location {
	return repository.Location{
		Provider: repository.ProviderFilesystem,
		Path:     t.TempDir(),
		Prefix:   repository.RepositoryPrefix("velero", "app"),
	}
}

// BackupRequest backs up path as PVC app/data.
func BackupRequest(path string) datapath.BackupRequest {
	return datapath.BackupRequest{SourceNamespace: "app", SourcePVC: "data", Path: path}
}
