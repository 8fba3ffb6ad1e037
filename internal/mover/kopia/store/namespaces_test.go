package store

import (
	"context"
	"sort"
	"strings"
	"testing"

	"github.com/kopia/kopia/repo/blob"
	"github.com/stretchr/testify/require"

	"github.com/snapmove/snapmove/internal/mover/repository"
)

// listingStorage lists blobs as S3 does with a "/" delimiter (delimiter) or as GCS and
// Azure do, every blob below the prefix.
type listingStorage struct {
	blob.Storage
	blobs     []string
	delimiter bool
	err       error
	lists     int
}

func (s *listingStorage) ListBlobs(_ context.Context, prefix blob.ID, cb func(blob.Metadata) error) error {
	s.lists++
	if s.err != nil {
		return s.err
	}
	seen := map[string]bool{}
	for _, b := range s.blobs {
		rest, ok := strings.CutPrefix(b, string(prefix))
		if !ok {
			continue
		}
		id := b
		if i := strings.Index(rest, "/"); s.delimiter && i >= 0 {
			id = string(prefix) + rest[:i+1]
		}
		if seen[id] {
			continue
		}
		seen[id] = true
		if err := cb(blob.Metadata{BlobID: blob.ID(id)}); err != nil {
			return err
		}
	}
	return nil
}

func TestNamespacesListing(t *testing.T) {
	ctx := context.Background()
	blobs := []string{
		"alpha/kopia.repository", "alpha/p0123", "alpha/xn0_1", "alpha/udmrepo.Repository",
		"zeta/kopia.repository", "zeta/q456",
		"empty/p789",
		"beta/kopia.repository.bak",
		"deep/ns/kopia.repository",
		"kopia.repository",
		"stray",
	}
	loc := repository.Location{Provider: repository.ProviderAWS, Bucket: "b", Prefix: "velero/kopia/"}
	for _, delimiter := range []bool{true, false} {
		st := &listingStorage{blobs: blobs, delimiter: delimiter}
		got, err := listNamespaces(ctx, st, loc, "kopia.repository")
		require.NoError(t, err)
		sort.Strings(got)
		require.Equal(t, []string{"alpha", "zeta"}, got)
		if delimiter {
			require.Equal(t, 1+5, st.lists, "one listing, then one per namespace")
		} else {
			require.Equal(t, 1, st.lists)
		}
	}
	_, err := listNamespaces(ctx, &listingStorage{err: blob.ErrInvalidCredentials}, loc, "kopia.repository")
	require.ErrorIs(t, err, ErrAccessDenied)
}

// Velero's backups in the bucket are the directories of <prefix>/backups/ that hold a
// velero-backup.json; a backup whose metadata is gone is not one.
func TestVeleroBackupsListing(t *testing.T) {
	ctx := context.Background()
	blobs := []string{
		"nightly-1/velero-backup.json", "nightly-1/nightly-1.tar.gz",
		"nightly-2/nightly-2-logs.gz", // being deleted: its metadata is gone
		"weekly/velero-backup.json",
	}
	loc := repository.Location{Provider: repository.ProviderAWS, Bucket: "b", Prefix: "velero/backups/"}
	for _, delimiter := range []bool{true, false} {
		got, err := listNamespaces(ctx, &listingStorage{blobs: blobs, delimiter: delimiter}, loc, VeleroBackupMetadata)
		require.NoError(t, err)
		sort.Strings(got)
		require.Equal(t, []string{"nightly-1", "weekly"}, got)
	}
}
