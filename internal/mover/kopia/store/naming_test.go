package store

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSnapshotSourcePath(t *testing.T) {
	require.Equal(t, "snapshot-data-upload-download/kopia/default/data-postgres-0", SourcePath("default", "data-postgres-0"))
}
