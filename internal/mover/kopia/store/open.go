package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	stderrors "errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/kopia/kopia/repo"
	"github.com/kopia/kopia/repo/blob"
	"github.com/kopia/kopia/repo/content"
	"github.com/kopia/kopia/repo/encryption"
	"github.com/kopia/kopia/repo/format"
	"github.com/kopia/kopia/repo/maintenance"
	"github.com/kopia/kopia/repo/splitter"
	"github.com/pkg/errors"
	"github.com/sirupsen/logrus"
	velerokopia "github.com/vmware-tanzu/velero/pkg/kopia"

	"github.com/snapmove/snapmove/internal/mover/repository"
)

const (
	// udmRepoBlobID is the blob Velero writes next to kopia.repository once it has
	// initialized a repository (velero kopialib/repo_init.go).
	udmRepoBlobID = "udmrepo.Repository"

	// defaultCacheLimitMB is Velero's default client cache (backend.DefaultCacheLimitMB).
	defaultCacheLimitMB = 5000
	listCacheDuration   = 30 * time.Second
	configFileName      = "repository.config"
)

// Options say how to open a repository.
type Options struct {
	// CacheDir is the root of kopia's local cache. Empty: a temporary directory that
	// Close removes.
	CacheDir string
	// CacheLimitMB bounds the local cache, split like Velero's (80% data, 20% metadata).
	// 0 means Velero's default, 5000; a negative value disables the cache, which suits a
	// one-shot restore (every content is read once; a cache only doubles disk writes).
	CacheLimitMB int64
	// Create creates the repository when the location holds none. It never creates a
	// bucket, and refuses a location that holds other data.
	Create bool
	// Hash is the content hash of a repository that Create makes; empty: DefaultHash. An
	// existing repository keeps the hash it was made with.
	Hash string
	// ReadOnly opens the repository without write access; nothing is created or written.
	ReadOnly bool
	// Hostname and Username are the kopia client identity; default "default", as Velero
	// (the maintenance owner is default@default).
	Hostname, Username string
	// Log receives our and kopia's log lines; nil discards them.
	Log logrus.FieldLogger
}

func (o Options) withDefaults() Options {
	if o.Hostname == "" {
		o.Hostname = Host
	}
	if o.Username == "" {
		o.Username = User
	}
	if o.CacheLimitMB == 0 {
		o.CacheLimitMB = defaultCacheLimitMB
	}
	if o.Log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		o.Log = l
	}
	return o
}

// Repository is an open kopia repository. Its methods may be called concurrently; none
// may be called after Close, except Close.
type Repository struct {
	loc    repository.Location
	opts   Options
	rep    repo.DirectRepository
	tmpDir string
	log    logrus.FieldLogger
	// connInfo and password open further connections (uncachedReader).
	connInfo blob.ConnectionInfo
	password string

	closeOnce sync.Once
	closeErr  error
}

// Open connects to the repository at loc, creating it first when opts.Create is set and
// the location holds none. Errors about the storage or the password wrap ErrWrongPassword,
// ErrBucketNotFound, ErrUnreachable, ErrAccessDenied or ErrNotInitialized and name loc.
// The local kopia configuration lives in a temporary directory until Close.
func Open(ctx context.Context, loc repository.Location, password string, opts Options) (*Repository, error) {
	opts = opts.withDefaults()
	if password == "" {
		return nil, errors.Errorf("opening repository at %s: empty password", loc)
	}
	log := opts.Log.WithField("repository", loc.String())
	kctx := velerokopia.SetupKopiaLog(ctx, log)
	create := opts.Create && !opts.ReadOnly

	st, err := openStorage(kctx, loc, create)
	if stderrors.Is(err, errNoRepositoryDir) {
		return nil, newOpenError(ErrNotInitialized, nil, "no kopia repository at %s", loc)
	}
	if err != nil {
		return nil, err
	}
	logCredentialsSource(log, loc, st)
	defer func() {
		if err := st.Close(kctx); err != nil {
			log.WithError(err).Warn("closing repository storage")
		}
	}()

	exists, err := repositoryExists(kctx, st, loc)
	if err != nil {
		return nil, err
	}
	if !exists {
		if !create {
			return nil, newOpenError(ErrNotInitialized, nil, "no kopia repository at %s", loc)
		}
		if err := createRepository(kctx, st, loc, password, opts.Hash, log); err != nil {
			return nil, err
		}
	}

	r := &Repository{loc: loc, opts: opts, log: log}
	if r.tmpDir, err = os.MkdirTemp("", "snapmove-kopia-"); err != nil {
		return nil, errors.Wrap(err, "creating kopia config directory")
	}
	if err := r.connect(kctx, st, password); err != nil {
		_ = os.RemoveAll(r.tmpDir)
		return nil, err
	}
	if !opts.ReadOnly {
		if err := r.ensureInitialized(kctx, st); err != nil {
			_ = r.Close(ctx)
			return nil, err
		}
	}
	return r, nil
}

// DefaultHash is the content hash of the repositories snapmove creates: BLAKE3-256-128,
// which hashes about four times as fast as kopia's default BLAKE2B-256-128 (3.7 against
// 0.9 GB/s on one core of the benchmark machine), the largest part of a backup's CPU.
// Every kopia that Velero has linked since kopia 0.9, the kopia CLI, Velero's node-agent
// and its maintenance Jobs read and write such a repository: the hash is a property of
// the repository's format blob, not of the client. A repository that Velero created first
// keeps Velero's BLAKE2B-256-128.
const DefaultHash = "BLAKE3-256-128"

// createRepository initializes kopia as Velero does (backend.SetupNewRepositoryOptions
// with no options: AES256-GCM-HMAC-SHA256, DYNAMIC-4M-BUZHASH, no ECC, format version 3),
// except for the content hash: hash, or DefaultHash when it is empty.
func createRepository(ctx context.Context, st blob.Storage, loc repository.Location, password, hash string, log logrus.FieldLogger) error {
	if hash == "" {
		hash = DefaultHash
	}
	if err := ensureEmpty(ctx, st, loc); err != nil {
		return err
	}
	uniqueID := make([]byte, format.UniqueIDLengthBytes)
	if _, err := rand.Read(uniqueID); err != nil {
		return errors.Wrap(err, "generating repository unique ID")
	}
	opts := &repo.NewRepositoryOptions{
		UniqueID:     uniqueID,
		BlockFormat:  format.ContentFormat{Hash: hash, Encryption: encryption.DefaultAlgorithm},
		ObjectFormat: format.ObjectFormat{Splitter: splitter.DefaultAlgorithm},
	}
	if err := repo.Initialize(ctx, st, opts, password); err != nil {
		if stderrors.Is(err, repo.ErrAlreadyInitialized) {
			log.Info("repository was created concurrently by another client")
			return nil
		}
		if classified := classifyStorageError(err, loc); classified != nil {
			return classified
		}
		return errors.Wrapf(err, "creating repository at %s", loc)
	}
	log.Info("created repository")
	return nil
}

// connect writes the kopia config for st into the temporary directory and opens it. The
// config is written directly rather than with repo.Connect, which opens the repository
// once to verify it: each open derives the key from the password (scrypt, 64 MiB and a
// noticeable fraction of a second), and one open verifies the password just as well.
func (r *Repository) connect(ctx context.Context, st blob.Storage, password string) error {
	r.connInfo, r.password = st.ConnectionInfo(), password
	rep, err := r.openConnection(ctx, configFileName, r.cachingOptions(), r.opts.ReadOnly)
	if err != nil {
		return err
	}
	r.rep = rep
	return nil
}

// openConnection writes a kopia config named name in the config directory, with caching
// and readOnly, and opens a connection with it.
func (r *Repository) openConnection(ctx context.Context, name string, caching content.CachingOptions, readOnly bool) (repo.DirectRepository, error) {
	configFile := filepath.Join(r.tmpDir, name)
	ci := r.connInfo
	ci = guarded(ci) // a failed write stops the backup (guard.go)
	lc := repo.LocalConfig{
		Storage: &ci,
		Caching: &caching,
		ClientOptions: repo.ClientOptions{
			Hostname:    r.opts.Hostname,
			Username:    r.opts.Username,
			ReadOnly:    readOnly,
			Description: "snapmove data mover",
		},
	}
	b, err := json.MarshalIndent(lc, "", "  ")
	if err != nil {
		return nil, errors.Wrap(err, "encoding kopia config")
	}
	if err := os.WriteFile(configFile, b, 0o600); err != nil {
		return nil, errors.Wrap(err, "writing kopia config")
	}

	rep, err := repo.Open(ctx, configFile, r.password, &repo.Options{
		OnFatalError: func(err error) { r.log.WithError(err).Error("kopia reported a fatal repository error") },
	})
	if err != nil {
		if classified := classifyStorageError(err, r.loc); classified != nil {
			return nil, classified
		}
		return nil, errors.Wrapf(err, "opening repository at %s", r.loc)
	}
	dr, ok := rep.(repo.DirectRepository)
	if !ok {
		_ = rep.Close(ctx)
		return nil, errors.Errorf("opening repository at %s: not a direct repository", r.loc)
	}
	return dr, nil
}

// UncachedReader opens a second, read-only connection without a local cache, for reads
// that must not go through the cache: reading back every content of a snapshot would
// copy all of it into the cache on the way (a full verification through the backup's
// cached connection took five times the backup; `make bench`, verification cost). It
// costs one more key derivation. The caller closes it.
func (r *Repository) UncachedReader(ctx context.Context) (repo.DirectRepository, error) {
	return r.openConnection(ctx, "reader-"+configFileName, content.CachingOptions{}, true)
}

// cachingOptions follow Velero's SetupConnectOptions: 80% of the limit for data and 20%
// for metadata, each with a soft limit at 80% of its hard limit, and a 30 s list cache.
func (r *Repository) cachingOptions() content.CachingOptions {
	if r.opts.CacheLimitMB < 0 {
		return content.CachingOptions{}
	}
	// A subdirectory per location: kopia removes the cache directory when a connection
	// fails, and repositories must not share one.
	dir := filepath.Join(r.tmpDir, "cache")
	if r.opts.CacheDir != "" {
		sum := sha256.Sum256([]byte(r.loc.String()))
		dir = filepath.Join(r.opts.CacheDir, "kopia-"+hex.EncodeToString(sum[:8]))
	}
	limit := r.opts.CacheLimitMB << 20
	data, metadata := limit/5*4, limit/5
	return content.CachingOptions{
		CacheDirectory:              dir,
		ContentCacheSizeBytes:       data / 5 * 4,
		ContentCacheSizeLimitBytes:  data,
		MetadataCacheSizeBytes:      metadata / 5 * 4,
		MetadataCacheSizeLimitBytes: metadata,
		MaxListCacheDuration:        content.DurationSeconds(listCacheDuration.Seconds()),
	}
}

// udmRepoMetadata is the content of the udmrepo.Repository blob.
type udmRepoMetadata struct {
	UniqueID []byte `json:"uniqueID"`
}

// ensureInitialized completes Velero's repository init when the udmrepo.Repository blob
// is missing (a repository we just created, or one created with the kopia CLI): it sets
// the maintenance parameters (owner default@default, quick 1 h, full 24 h) and writes the
// blob. A blob whose unique ID differs from the repository's is what Velero calls a
// corrupted repository; we refuse it too.
func (r *Repository) ensureInitialized(ctx context.Context, st blob.Storage) error {
	var buf byteBuffer
	err := st.GetBlob(ctx, udmRepoBlobID, 0, -1, &buf)
	switch {
	case err == nil:
		var md udmRepoMetadata
		if err := json.Unmarshal(buf.b, &md); err != nil {
			return errors.Wrapf(err, "reading %s of repository at %s", udmRepoBlobID, r.loc)
		}
		if !bytes.Equal(md.UniqueID, r.rep.UniqueID()) {
			return errors.Errorf("repository at %s is inconsistent: the unique ID in %s does not match kopia.repository", r.loc, udmRepoBlobID)
		}
		return nil
	case !stderrors.Is(err, blob.ErrBlobNotFound):
		return errors.Wrapf(err, "reading %s of repository at %s", udmRepoBlobID, r.loc)
	}

	if err := r.writeInitParameters(ctx); err != nil {
		return err
	}
	payload, err := json.Marshal(udmRepoMetadata{UniqueID: r.rep.UniqueID()})
	if err != nil {
		return errors.Wrap(err, "encoding repository metadata")
	}
	if err := st.PutBlob(ctx, udmRepoBlobID, &byteBuffer{b: payload}, blob.PutOptions{}); err != nil {
		return errors.Wrapf(err, "writing %s of repository at %s", udmRepoBlobID, r.loc)
	}
	r.log.Info("initialized repository for Velero")
	return nil
}

// writeInitParameters is Velero's writeInitParameters without the configurable intervals.
func (r *Repository) writeInitParameters(ctx context.Context) error {
	owner := r.rep.ClientOptions().UsernameAtHost()
	params, err := maintenance.GetParams(ctx, r.rep)
	if err != nil {
		return errors.Wrapf(err, "getting maintenance parameters of repository at %s", r.loc)
	}
	if params.Owner == owner {
		return nil
	}
	if params.Owner != "" {
		r.log.WithField("owner", params.Owner).Warn("overwriting the maintenance parameters of the repository")
	}
	err = repo.WriteSession(ctx, r.rep, repo.WriteSessionOptions{Purpose: "set init parameters"},
		func(ctx context.Context, w repo.RepositoryWriter) error {
			p := maintenance.DefaultParams()
			p.Owner = owner
			return maintenance.SetParams(ctx, w, &p)
		})
	return errors.Wrapf(err, "setting maintenance parameters of repository at %s", r.loc)
}

// Direct is kopia's repository, for the rooms that read and write snapshots.
func (r *Repository) Direct() repo.DirectRepository { return r.rep }

// Location is where the repository is; its String names it in errors.
func (r *Repository) Location() repository.Location { return r.loc }

// Log is the repository's logger, with its location as a field.
func (r *Repository) Log() logrus.FieldLogger { return r.log }

// ReadOnly reports whether the repository was opened without write access.
func (r *Repository) ReadOnly() bool { return r.opts.ReadOnly }

// Cached reports whether the connection has a local cache (Options.CacheLimitMB >= 0).
func (r *Repository) Cached() bool { return r.opts.CacheLimitMB >= 0 }

// Close closes the repository and removes the temporary kopia config (and the cache when
// it was temporary). It is idempotent and safe to call concurrently: the first call
// closes, later calls wait for it and return its result.
func (r *Repository) Close(ctx context.Context) error {
	r.closeOnce.Do(func() { r.closeErr = r.close(ctx) })
	return r.closeErr
}

func (r *Repository) close(ctx context.Context) error {
	var err error
	if r.rep != nil {
		err = r.rep.Close(ctx)
	}
	if r.tmpDir != "" {
		if rmErr := os.RemoveAll(r.tmpDir); rmErr != nil && err == nil {
			err = rmErr
		}
	}
	return errors.Wrapf(err, "closing repository at %s", r.loc)
}

// byteBuffer implements blob.Bytes and blob.OutputBuffer over a slice.
type byteBuffer struct{ b []byte }

func (b *byteBuffer) Write(p []byte) (int, error) { b.b = append(b.b, p...); return len(p), nil }
func (b *byteBuffer) Reset()                      { b.b = b.b[:0] }
func (b *byteBuffer) Length() int                 { return len(b.b) }
func (b *byteBuffer) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(b.b)
	return int64(n), err
}
func (b *byteBuffer) Reader() io.ReadSeekCloser { return nopCloser{bytes.NewReader(b.b)} }

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }
