package connect

import (
	"context"
	"fmt"
	"path"
	"strings"

	"github.com/pkg/errors"
	"github.com/sirupsen/logrus"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/mover/kopia"
	"github.com/snapmove/snapmove/internal/mover/repository"
)

// Credentials finds the credentials of a BackupStorageLocation without spec.credential
// (velerosrv.Credentials: --default-credentials-secret auto, none or NAME/KEY).
type Credentials interface {
	// DefaultFor returns the secret key in Velero's namespace that holds the
	// credentials of bsl when it has no spec.credential, or nil, nil for none (ambient
	// credentials). It is also asked for a bsl with spec.credential, which needs no
	// default: it should then look nothing up. It may block on an API
	// call; an API error is returned as one, so that it can be classified.
	DefaultFor(ctx context.Context, bsl *velerov1.BackupStorageLocation) (*corev1.SecretKeySelector, error)
}

// StaticCredentials is Credentials that always names Secret (nil: none).
type StaticCredentials struct{ Secret *corev1.SecretKeySelector }

// DefaultFor returns Secret.
func (s StaticCredentials) DefaultFor(context.Context, *velerov1.BackupStorageLocation) (*corev1.SecretKeySelector, error) {
	return s.Secret, nil
}

// defaultFor is bsl's default credentials from creds (nil: none). It is asked even when
// bsl names its own (ResolveLocation then ignores the default), so that a Credentials
// that reports what it was asked for sees every BSL.
func defaultFor(ctx context.Context, creds Credentials, bsl *velerov1.BackupStorageLocation) (*corev1.SecretKeySelector, error) {
	if creds == nil || bsl == nil {
		return nil, nil
	}
	sel, err := creds.DefaultFor(ctx, bsl)
	return sel, errors.Wrapf(err, "finding the credentials of BackupStorageLocation %s (it has no spec.credential)", bsl.Name)
}

// Connector connects to the repositories of Velero's namespace. The zero value is not
// usable; fill every field that has no stated default.
type Connector struct {
	// Client reads BSL credential secrets and the password secret (never creating it:
	// repository.Password). It should not be a cache: secrets are not watched.
	Client client.Client
	// Namespace is Velero's: where the password secret and credential secrets live.
	Namespace string
	// DefaultCredentials finds the credentials of BSLs that name none; nil: none
	// (ambient credentials).
	DefaultCredentials Credentials
	// CacheDir and CacheLimitMB are kopia's local cache for writes (kopia.Options).
	// Checks, deletes and restores never use a cache.
	CacheDir     string
	CacheLimitMB int64
	Log          logrus.FieldLogger
}

// Connect opens the repository of sourceNamespace on bsl with opts (its Log is set here).
// A missing password secret is a *datapath.TransientError that says Velero creates it:
// the caller waits for it (the controller within its bound, a delete request until it
// exists), and snapmove never makes one up (repository.Password). Errors that retrying
// cannot fix are *datapath.PermanentError with an empty Reason.
func (c *Connector) Connect(ctx context.Context, bsl *velerov1.BackupStorageLocation, sourceNamespace string, opts kopia.Options) (*kopia.Repository, error) {
	opts.Log = c.Log
	password := func(ctx context.Context) (string, string, error) {
		pw, err := c.password(ctx)
		return pw, secretPassword(c.Namespace), err
	}
	repo, err := open(ctx, c.Client, c.DefaultCredentials, bsl, sourceNamespace, password, opts)
	if err != nil {
		return nil, err
	}
	return repo, nil
}

// password reads Velero's repository password; a missing secret is waited for.
func (c *Connector) password(ctx context.Context) (string, error) {
	password, err := repository.Password(ctx, c.Client, c.Namespace)
	if apierrors.IsNotFound(errors.Cause(err)) {
		return "", datapath.Transient(errors.Errorf(
			"Velero's repository password secret %s/%s does not exist yet; Velero creates it when its server starts",
			c.Namespace, repository.PasswordSecretName))
	}
	return password, err
}

// passwordFunc returns the repository password and how errors name it ("the password in
// secret velero/velero-repo-credentials (key repository-password)").
type passwordFunc func(ctx context.Context) (password, from string, err error)

// open is the one way to a repository, for Connector and Reader alike: resolve bsl's
// location for sourceNamespace (credentials read through secrets), get the password,
// open the repository with opts, and classify what went wrong (locationError, classify).
func open(ctx context.Context, secrets client.Reader, creds Credentials, bsl *velerov1.BackupStorageLocation,
	sourceNamespace string, password passwordFunc, opts kopia.Options) (*kopia.Repository, error) {
	defaultCreds, err := defaultFor(ctx, creds, bsl)
	if err != nil {
		return nil, locationError(err)
	}
	loc, err := repository.ResolveLocation(ctx, secrets, bsl, sourceNamespace, defaultCreds)
	if err != nil {
		return nil, locationError(err)
	}
	pw, from, err := password(ctx)
	if err != nil {
		return nil, err
	}
	repo, err := kopia.Open(ctx, loc, pw, opts)
	if err != nil {
		return nil, classify(err, from)
	}
	if opts.Log != nil {
		opts.Log.WithField("repository", loc.String()).Debug("opened the repository")
	}
	return repo, nil
}

// secretPassword names the password of the secret in namespace, for errors.
func secretPassword(namespace string) string {
	return fmt.Sprintf("the password in secret %s/%s (key %s)", namespace, repository.PasswordSecretName, repository.PasswordSecretKey)
}

// classify marks kopia's storage and password errors permanent where retrying cannot
// help: a wrong password (from names it), a missing bucket, denied access, a location
// without a repository. An endpoint that does not answer (refused, reset, timed out,
// DNS), a 5xx or throttling may pass: those stay transient, and the caller retries them
// within its bound (the controller: the operation timeout; kopia's and the storage
// client's own retries inside a move).
func classify(err error, from string) error {
	switch {
	case errors.Is(err, kopia.ErrWrongPassword):
		return datapath.Permanent("", errors.Wrapf(err, "%s does not open it", from))
	case errors.Is(err, kopia.ErrBucketNotFound), errors.Is(err, kopia.ErrAccessDenied), errors.Is(err, kopia.ErrNotInitialized):
		return datapath.Permanent("", err)
	}
	return err
}

// locationError classifies what ResolveLocation returned: a failed API call that may
// pass (a timeout, a 5xx, throttling while reading the credentials secret) is transient;
// everything else (a missing secret or key, an unknown provider, a bad BSL config) is a
// configuration error and permanent.
func locationError(err error) error {
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		switch {
		case apierrors.IsNotFound(err), apierrors.IsForbidden(err), apierrors.IsUnauthorized(err),
			apierrors.IsInvalid(err), apierrors.IsBadRequest(err):
			return datapath.Permanent("", err)
		}
		return err
	}
	return datapath.Permanent("", err)
}

// Verify opens the repository of sourceNamespace on bsl (creating it when create is
// set, read-only otherwise) and closes it again. It implements the controller's
// Repositories; a check reads little, so it uses no local cache.
func (c *Connector) Verify(ctx context.Context, bsl *velerov1.BackupStorageLocation, sourceNamespace string, create bool) error {
	repo, err := c.Connect(ctx, bsl, sourceNamespace, kopia.Options{Create: create, ReadOnly: !create, CacheLimitMB: -1})
	if err != nil {
		return err
	}
	return repo.Close(ctx)
}

// DeleteSnapshot forgets snapshotID, a snapshot of owner, in the repository of owner's
// namespace on bsl, and refuses a snapshot of anything else (kopia.Repository.ForgetSnapshot);
// then, when owner has a backup UID, every other snapshot and checkpoint of owner's
// volume that owner's backup wrote (kopia.Repository.ForgetBackupSnapshots). An empty
// snapshotID does only the latter. A location without a repository has nothing to
// forget. It implements the controller's Repositories.
func (c *Connector) DeleteSnapshot(ctx context.Context, bsl *velerov1.BackupStorageLocation, owner datapath.SnapshotOwner, snapshotID string) error {
	repo, err := c.Connect(ctx, bsl, owner.Namespace, kopia.Options{CacheLimitMB: -1})
	if errors.Is(err, kopia.ErrNotInitialized) {
		return nil
	}
	if err != nil {
		return err
	}
	defer func() {
		if cErr := repo.Close(ctx); cErr != nil {
			c.Log.WithError(cErr).Warn("closing the repository")
		}
	}()
	if snapshotID != "" {
		if err := repo.ForgetSnapshot(ctx, snapshotID, owner); err != nil {
			return err
		}
	}
	forgotten, err := repo.ForgetBackupSnapshots(ctx, owner)
	if len(forgotten) > 0 {
		c.Log.WithFields(logrus.Fields{"backup": owner.Backup, "pvc": owner.Namespace + "/" + owner.PVC}).
			Infof("forgot %d more snapshots and checkpoints of the backup: %s", len(forgotten), strings.Join(forgotten, ", "))
	}
	return err
}

// OpenToForget opens the repository of sourceNamespace on bsl to forget snapshots in it
// (snapmove forget-orphans): writable, never created, without a local cache.
func (c *Connector) OpenToForget(ctx context.Context, bsl *velerov1.BackupStorageLocation, sourceNamespace string) (*kopia.Repository, error) {
	return c.Connect(ctx, bsl, sourceNamespace, kopia.Options{CacheLimitMB: -1})
}

// Open implements the worker's Opener: a backup may create the repository and uses the
// local cache; a restore opens read-only without a cache (it reads every content once,
// so a cache would only double the disk writes). A failure that may pass (the store
// does not answer) is a *datapath.TransientError.
func (c *Connector) Open(ctx context.Context, bsl *velerov1.BackupStorageLocation, sourceNamespace string, forWrite bool) (datapath.Repository, error) {
	opts := kopia.Options{CacheDir: c.CacheDir, CacheLimitMB: c.CacheLimitMB, Create: forWrite, ReadOnly: !forWrite}
	if !forWrite {
		opts.CacheLimitMB = -1
	}
	repo, err := c.Connect(ctx, bsl, sourceNamespace, opts)
	if err != nil && kopia.IsTransient(err) {
		// The store went away between the controller's check and the worker: the
		// controller retries the movement once it answers again.
		return nil, datapath.Transient(err)
	}
	if err != nil {
		return nil, err
	}
	c.Log.WithFields(logrus.Fields{"backupStorageLocation": bsl.Name, "sourceNamespace": sourceNamespace}).Info("opened the repository")
	return repo, nil
}

// Reader opens repositories for reading only: the user's repository commands (list,
// browse, restore files, verify). It only reads secrets, through Secrets, which is the
// API server or, with no cluster at hand, files the user gives; it never creates a
// password, never writes to a repository and uses no local cache.
type Reader struct {
	// Secrets serves the BSL's credentials secret and, unless Password is set, the
	// password secret.
	Secrets client.Reader
	// Namespace is Velero's: where the password secret and credential secrets live.
	Namespace string
	// DefaultCredentials finds the credentials of BSLs that name none; nil: none
	// (ambient credentials).
	DefaultCredentials Credentials
	// Password, when set, is the repository password (instead of the secret's).
	Password string
	Log      logrus.FieldLogger
}

// Open opens the repository of sourceNamespace on bsl read-only. Errors are classified as
// Connector.Connect classifies them; a location without a repository wraps
// kopia.ErrNotInitialized.
func (r *Reader) Open(ctx context.Context, bsl *velerov1.BackupStorageLocation, sourceNamespace string) (*kopia.Repository, error) {
	password := func(ctx context.Context) (string, string, error) {
		if r.Password != "" {
			return r.Password, "the given repository password", nil
		}
		pw, err := repository.Password(ctx, r.Secrets, r.Namespace)
		if apierrors.IsNotFound(errors.Cause(err)) {
			err = datapath.Permanent("", errors.Wrapf(err, "no repository password: secret %s/%s does not exist", r.Namespace, repository.PasswordSecretName))
		}
		return pw, secretPassword(r.Namespace), err
	}
	return open(ctx, r.Secrets, r.DefaultCredentials, bsl, sourceNamespace, password, kopia.Options{ReadOnly: true, CacheLimitMB: -1, Log: r.Log})
}

// Namespaces lists the source namespaces that hold a repository on bsl: the directories
// of <bsl prefix>/kopia/ that hold a kopia repository.
func (r *Reader) Namespaces(ctx context.Context, bsl *velerov1.BackupStorageLocation) ([]string, error) {
	loc, err := r.below(ctx, bsl, repository.RepositoryType)
	if err != nil {
		return nil, err
	}
	ns, err := kopia.Namespaces(ctx, loc)
	return ns, classify(err, secretPassword(r.Namespace))
}

// Backups lists the backups Velero stored on bsl: the directories of
// <bsl prefix>/backups/ that hold a velero-backup.json.
func (r *Reader) Backups(ctx context.Context, bsl *velerov1.BackupStorageLocation) ([]string, error) {
	loc, err := r.below(ctx, bsl, "backups")
	if err != nil {
		return nil, err
	}
	names, err := kopia.VeleroBackups(ctx, loc)
	return names, classify(err, secretPassword(r.Namespace))
}

// below is the location of directory dir of bsl's prefix: bsl resolved as for any
// namespace, then stepped up to the BSL's prefix.
func (r *Reader) below(ctx context.Context, bsl *velerov1.BackupStorageLocation, dir string) (repository.Location, error) {
	defaultCreds, err := defaultFor(ctx, r.DefaultCredentials, bsl)
	if err != nil {
		return repository.Location{}, locationError(err)
	}
	loc, err := repository.ResolveLocation(ctx, r.Secrets, bsl, "_", defaultCreds)
	if err != nil {
		return repository.Location{}, locationError(err)
	}
	// <bsl prefix>/kopia/_/ -> <bsl prefix>/<dir>/
	base := path.Dir(path.Dir(strings.TrimSuffix(loc.Prefix, "/")))
	loc.Prefix = path.Join(base, dir) + "/"
	if base == "." {
		loc.Prefix = dir + "/"
	}
	return loc, nil
}
