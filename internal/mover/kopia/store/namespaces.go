package store

import (
	"context"
	stderrors "errors"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/kopia/kopia/repo/blob"
	"github.com/kopia/kopia/repo/format"
	"github.com/pkg/errors"

	"github.com/snapmove/snapmove/internal/mover/repository"
)

// Namespaces lists, sorted, the namespaces that hold a kopia repository below loc, whose
// Prefix is the parent of the per-namespace repositories: "<bsl prefix>/kopia/", with
// the trailing slash. A namespace holds one when the blob <ns>/kopia.repository exists
// directly below, as Open finds it. A filesystem location whose directory does not exist
// holds none; storage errors are classified as Open's (ErrBucketNotFound,
// ErrAccessDenied, ErrUnreachable, ...). Nothing is written.
//
// Cost: on S3 one listing request per 1000 entries directly below the prefix (kopia lists
// S3 with a "/" delimiter, so namespaces show as common prefixes), then one small listing
// per namespace; on a filesystem one directory read per namespace. GCS and Azure list
// every blob below the prefix, pack blobs of every repository included, because kopia's
// storage for them lists without a delimiter and the blob.Storage interface offers no
// other way.
func Namespaces(ctx context.Context, loc repository.Location) ([]string, error) {
	return directoriesHolding(ctx, loc, format.KopiaRepositoryBlobID)
}

// VeleroBackupMetadata is the object Velero writes for each backup it stores:
// <bsl prefix>/backups/<name>/velero-backup.json (pkg/persistence/object_store.go).
const VeleroBackupMetadata = "velero-backup.json"

// VeleroBackups lists, sorted, the names of the backups Velero stored below loc, whose
// Prefix is "<bsl prefix>/backups/": the directories that hold VeleroBackupMetadata. It
// costs and fails as Namespaces; nothing is written.
func VeleroBackups(ctx context.Context, loc repository.Location) ([]string, error) {
	return directoriesHolding(ctx, loc, VeleroBackupMetadata)
}

// directoriesHolding lists, sorted, the directories directly below loc that hold the
// blob marker.
func directoriesHolding(ctx context.Context, loc repository.Location, marker string) ([]string, error) {
	st, err := openStorage(ctx, loc, false)
	if stderrors.Is(err, errNoRepositoryDir) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer st.Close(ctx) //nolint:errcheck
	var namespaces []string
	if loc.Provider == repository.ProviderFilesystem {
		namespaces, err = filesystemNamespaces(ctx, loc, marker)
	} else {
		namespaces, err = listNamespaces(ctx, st, loc, marker)
	}
	if err != nil {
		return nil, err
	}
	sort.Strings(namespaces)
	return namespaces, nil
}

// filesystemNamespaces reads the directory of loc: kopia's filesystem storage lists the
// blobs of subdirectories as if they were shards, joining the names without "/" (and
// walks every one), so each subdirectory is checked as Open checks a repository.
func filesystemNamespaces(ctx context.Context, loc repository.Location, marker string) ([]string, error) {
	dir := filepath.Join(loc.Path, loc.Prefix)
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, listError(err, loc)
	}
	var out []string
	for _, e := range entries {
		if st, err := os.Stat(filepath.Join(dir, e.Name())); err != nil || !st.IsDir() {
			continue // not a directory (or gone since)
		}
		sub := loc
		sub.Prefix = path.Join(loc.Prefix, e.Name()) + "/"
		st, err := openStorage(ctx, sub, false)
		if stderrors.Is(err, errNoRepositoryDir) {
			continue
		}
		if err != nil {
			return nil, err
		}
		found, err := blobExists(ctx, st, sub, blob.ID(marker))
		_ = st.Close(ctx)
		if err != nil {
			return nil, err
		}
		if found {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// listNamespaces lists the blobs below st (any depth or, on S3, one level, where a
// common prefix is listed as the blob "<ns>/"): each "<ns>/kopia.repository" names a
// namespace, each "<ns>/" is a namespace to look into.
func listNamespaces(ctx context.Context, st blob.Storage, loc repository.Location, marker string) ([]string, error) {
	found := map[string]bool{}
	var candidates []string
	err := st.ListBlobs(ctx, "", func(m blob.Metadata) error {
		ns, rest, ok := strings.Cut(string(m.BlobID), "/")
		switch {
		case !ok || ns == "":
		case rest == marker:
			found[ns] = true
		case rest == "":
			candidates = append(candidates, ns)
		}
		return nil
	})
	if err != nil {
		return nil, listError(err, loc)
	}
	for _, ns := range candidates {
		if found[ns] {
			continue
		}
		id := blob.ID(ns + "/" + marker)
		err := st.ListBlobs(ctx, id, func(m blob.Metadata) error {
			if m.BlobID == id {
				found[ns] = true
			}
			return nil
		})
		if err != nil {
			return nil, listError(err, loc)
		}
	}
	out := make([]string, 0, len(found))
	for ns := range found {
		out = append(out, ns)
	}
	return out, nil
}

// listError classifies an error listing loc as Open would.
func listError(err error, loc repository.Location) error {
	if classified := classifyStorageError(err, loc); classified != nil {
		return classified
	}
	return errors.Wrapf(err, "listing repositories at %s", loc)
}
