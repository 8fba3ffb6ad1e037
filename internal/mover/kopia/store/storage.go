package store

import (
	"context"
	stderrors "errors"
	"os"
	"path/filepath"
	"time"

	"github.com/kopia/kopia/repo/blob"
	"github.com/kopia/kopia/repo/blob/azure"
	"github.com/kopia/kopia/repo/blob/filesystem"
	"github.com/kopia/kopia/repo/blob/gcs"
	"github.com/kopia/kopia/repo/blob/s3"
	"github.com/kopia/kopia/repo/format"
	"github.com/pkg/errors"
	"github.com/sirupsen/logrus"

	"github.com/snapmove/snapmove/internal/mover/repository"
)

// Modes of the filesystem backend, as Velero's (backend/file_system.go).
const (
	fsFileMode = 0o600
	fsDirMode  = 0o700
)

// openStorage connects to the blob storage of loc. It never creates a bucket; for the
// filesystem provider, create makes the repository directory under an existing base.
func openStorage(ctx context.Context, loc repository.Location, create bool) (blob.Storage, error) {
	var (
		st  blob.Storage
		err error
	)
	switch loc.Provider {
	case repository.ProviderAWS:
		opts := s3.Options{
			BucketName:      loc.Bucket,
			Prefix:          loc.Prefix,
			Endpoint:        loc.Endpoint,
			DoNotUseTLS:     loc.DisableTLS,
			DoNotVerifyTLS:  loc.InsecureSkipTLSVerify,
			RootCA:          loc.CACert,
			AccessKeyID:     loc.AccessKeyID,
			SecretAccessKey: loc.SecretAccessKey,
			SessionToken:    loc.SessionToken,
			Region:          loc.Region,
		}
		if wi, ok := webIdentityFromEnv(loc, os.Getenv, hostname()); ok {
			st, err = openWebIdentityS3(ctx, webIdentityOptions{S3: opts, WebIdentity: wi}, time.Now)
			break
		}
		st, err = s3.New(ctx, &opts, false)
	case repository.ProviderGCP:
		st, err = gcs.New(ctx, &gcs.Options{
			BucketName:                   loc.Bucket,
			Prefix:                       loc.Prefix,
			ServiceAccountCredentialJSON: loc.GCSCredentialsJSON,
		}, false)
	case repository.ProviderAzure:
		st, err = azure.New(ctx, &azure.Options{
			Container:      loc.Bucket,
			Prefix:         loc.Prefix,
			StorageAccount: loc.AzureStorageAccount,
			StorageKey:     loc.AzureStorageKey,
			SASToken:       loc.AzureSASToken,
			TenantID:       loc.AzureTenantID,
			ClientID:       loc.AzureClientID,
			ClientSecret:   loc.AzureClientSecret,
			StorageDomain:  loc.AzureStorageDomain,
			DoNotUseTLS:    loc.DisableTLS,

			AzureFederatedTokenFile: loc.AzureFederatedTokenFile,
		}, false)
	case repository.ProviderFilesystem:
		st, err = openFilesystem(ctx, loc, create)
	default:
		return nil, errors.Errorf("opening storage at %s: unsupported provider %q", loc, loc.Provider)
	}
	var classified *openError
	switch {
	case err == nil:
		return st, nil
	case stderrors.As(err, &classified): // STS's answer (webidentity.go)
		return nil, err
	}
	if classified := classifyStorageError(err, loc); classified != nil {
		return nil, classified
	}
	return nil, errors.Wrapf(err, "opening storage at %s", loc)
}

// hostname names the STS session of web identity (defaultSessionName).
func hostname() string {
	h, _ := os.Hostname()
	return h
}

// logCredentialsSource logs, once at open, how the S3 storage of loc, opened as st,
// authenticates: web identity (with its STS endpoint and role, never the token), static
// keys, or kopia's default chain. Other providers log nothing.
func logCredentialsSource(log logrus.FieldLogger, loc repository.Location, st blob.Storage) {
	if loc.Provider != repository.ProviderAWS {
		return
	}
	if rs, ok := st.(*refreshingStorage); ok {
		if wi, ok := rs.webIdentity(); ok {
			log.WithFields(logrus.Fields{"credentialsSource": "web identity", "stsEndpoint": wi.STSEndpoint, "roleARN": wi.RoleARN}).
				Info("S3 credentials from web identity, refreshed before they expire")
			return
		}
	}
	source := "static keys"
	if loc.AccessKeyID == "" {
		source = "kopia's default chain (environment, instance role)"
	}
	log.WithField("credentialsSource", source).Info("S3 credentials")
}

// errNoRepositoryDir marks a filesystem location whose repository directory does not
// exist yet: listable, and empty.
var errNoRepositoryDir = stderrors.New("repository directory does not exist")

func openFilesystem(ctx context.Context, loc repository.Location, create bool) (blob.Storage, error) {
	if !filepath.IsAbs(loc.Path) {
		return nil, errors.Errorf("filesystem path %q is not absolute", loc.Path)
	}
	if st, err := os.Stat(loc.Path); err != nil || !st.IsDir() {
		return nil, newOpenError(ErrBucketNotFound, err, "base directory of repository at %s does not exist", loc)
	}
	dir := filepath.Join(loc.Path, loc.Prefix)
	if _, err := os.Stat(dir); os.IsNotExist(err) && !create {
		return nil, errNoRepositoryDir
	}
	return filesystem.New(ctx, &filesystem.Options{Path: dir, FileMode: fsFileMode, DirectoryMode: fsDirMode}, create)
}

// repositoryExists lists the format blob. Listing (rather than reading) makes a missing
// bucket, denied access or a dead endpoint show up as such: S3 reports a missing bucket
// on reads as a missing blob.
func repositoryExists(ctx context.Context, st blob.Storage, loc repository.Location) (bool, error) {
	return blobExists(ctx, st, loc, format.KopiaRepositoryBlobID)
}

// blobExists reports whether blob id exists in st (at loc, for errors).
func blobExists(ctx context.Context, st blob.Storage, loc repository.Location, id blob.ID) (bool, error) {
	found := false
	err := st.ListBlobs(ctx, id, func(m blob.Metadata) error {
		if m.BlobID == id {
			found = true
		}
		return nil
	})
	if err != nil {
		if classified := classifyStorageError(err, loc); classified != nil {
			return false, classified
		}
		return false, errors.Wrapf(err, "listing repository at %s", loc)
	}
	return found, nil
}

// ensureEmpty refuses to create a repository over foreign data (Velero's ensureEmpty).
func ensureEmpty(ctx context.Context, st blob.Storage, loc repository.Location) error {
	errHasData := stderrors.New("has data")
	err := st.ListBlobs(ctx, "", func(blob.Metadata) error { return errHasData })
	switch {
	case stderrors.Is(err, errHasData):
		return errors.Errorf("creating repository at %s: the location holds data but no kopia repository", loc)
	case err != nil:
		if classified := classifyStorageError(err, loc); classified != nil {
			return classified
		}
		return errors.Wrapf(err, "listing repository at %s", loc)
	}
	return nil
}
