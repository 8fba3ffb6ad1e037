package store

import (
	"context"
	"crypto/x509"
	stderrors "errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/kopia/kopia/repo/blob"
	"github.com/kopia/kopia/repo/blob/s3"
	"github.com/kopia/kopia/repo/logging"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/pkg/errors"

	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/mover/repository"
)

// AWS web identity (EKS IAM roles for service accounts). EKS's webhook gives a pod whose
// account is annotated with a role a projected token (AWS_WEB_IDENTITY_TOKEN_FILE, which
// the kubelet rotates) and the role (AWS_ROLE_ARN). kopia's S3 storage could find them
// itself (minio-go's IAM provider), but it always asks https://sts.<AWS_REGION>.amazonaws.com
// and ignores AWS_ENDPOINT_URL_STS / AWS_ENDPOINT_URL, which Velero's AWS plugin (the AWS
// SDK) honours; and Velero, for its own kopia repository, passes static keys that expire
// with the session (1 h by default) and never refresh. So, when a location has no static
// keys and the process has a web identity, snapmove asks STS itself, at the endpoint the
// AWS SDK would use, hands kopia the session's keys as static ones, and re-opens the S3
// storage with new keys shortly before they expire (refreshingStorage).
//
// The storage is registered with kopia as webIdentityStorageType so that the connections'
// configuration files (which kopia re-opens the storage from) name the web identity rather
// than keys that would expire: no key is written to them.

// webIdentityStorageType is the kopia storage type of S3 reached with web identity. It
// exists only in the worker's temporary kopia configuration, never in the repository.
const webIdentityStorageType = "snapmove-s3-web-identity"

// Environment of AWS web identity and of the AWS SDK's STS endpoint.
const (
	envWebIdentityTokenFile = "AWS_WEB_IDENTITY_TOKEN_FILE"
	envRoleARN              = "AWS_ROLE_ARN"
	envRoleSessionName      = "AWS_ROLE_SESSION_NAME"
	envEndpointURLSTS       = "AWS_ENDPOINT_URL_STS"
	envEndpointURL          = "AWS_ENDPOINT_URL"
	envRegion               = "AWS_REGION"
)

// stsTimeout bounds one call to STS (minio-go's call takes no context).
const stsTimeout = 30 * time.Second

// Credentials are refreshed when less than refreshMargin of their lifetime remains:
// refreshMinMargin or a fifth of the lifetime, whichever is more, but at most half of it
// (a short session must not be refreshed on every call). A refresh that fails while the
// old keys are still valid is tried again after refreshRetry.
const (
	refreshMinMargin = 5 * time.Minute
	refreshRetry     = 30 * time.Second
)

// webIdentity is how to get credentials from STS.
type webIdentity struct {
	STSEndpoint string `json:"stsEndpoint"` // URL, with scheme
	RoleARN     string `json:"roleARN"`
	SessionName string `json:"sessionName"`
	TokenFile   string `json:"tokenFile"`
	// STSRootCA is added to the system roots for STS (stsClient).
	STSRootCA []byte `json:"stsRootCA,omitempty"`
}

// webIdentityOptions is the configuration of webIdentityStorageType: the S3 storage,
// without keys, and the web identity that gets them.
type webIdentityOptions struct {
	S3          s3.Options  `json:"s3"`
	WebIdentity webIdentity `json:"webIdentity"`
}

func init() {
	blob.AddSupportedStorage(webIdentityStorageType, webIdentityOptions{}, func(ctx context.Context, o *webIdentityOptions, _ bool) (blob.Storage, error) {
		return openWebIdentityS3(ctx, *o, time.Now)
	})
}

// webIdentityFromEnv returns the web identity of the process (getenv reads its
// environment) for loc, and false when loc has static keys or the process has no web
// identity. hostname names the STS session when AWS_ROLE_SESSION_NAME does not.
func webIdentityFromEnv(loc repository.Location, getenv func(string) string, hostname string) (webIdentity, bool) {
	if loc.AccessKeyID != "" || getenv(envWebIdentityTokenFile) == "" || getenv(envRoleARN) == "" {
		return webIdentity{}, false
	}
	w := webIdentity{
		STSEndpoint: stsEndpoint(getenv),
		RoleARN:     getenv(envRoleARN),
		SessionName: getenv(envRoleSessionName),
		TokenFile:   getenv(envWebIdentityTokenFile),
	}
	if w.SessionName == "" {
		w.SessionName = defaultSessionName(hostname)
	}
	// The location's CA is for the object store; STS is another service. It is trusted
	// for STS too only when STS is on the same host (S3-compatible stores such as MinIO
	// serve STS themselves). The location's insecureSkipTLSVerify is never applied to
	// STS: its answer is the keys.
	if len(loc.CACert) > 0 && sameHost(w.STSEndpoint, loc.Endpoint) {
		w.STSRootCA = loc.CACert
	}
	return w, true
}

// stsEndpoint is the STS endpoint the AWS SDK would use: AWS_ENDPOINT_URL_STS, else
// AWS_ENDPOINT_URL, else the regional endpoint exactly as minio-go's IAM provider picks
// it (from AWS_REGION only; sts.amazonaws.com without one). An endpoint without scheme
// gets https://.
func stsEndpoint(getenv func(string) string) string {
	for _, name := range []string{envEndpointURLSTS, envEndpointURL} {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			if !strings.Contains(v, "://") {
				v = "https://" + v
			}
			return v
		}
	}
	region := getenv(envRegion)
	switch {
	case region == "":
		return credentials.DefaultSTSRoleEndpoint
	case strings.HasPrefix(region, "cn-"):
		return "https://sts." + region + ".amazonaws.com.cn"
	default:
		return "https://sts." + region + ".amazonaws.com"
	}
}

// defaultSessionName is "snapmove-<hostname>", cut to STS's 64 characters and to the
// characters it accepts ([\w+=,.@-]).
func defaultSessionName(hostname string) string {
	name := []byte("snapmove-" + hostname)
	for i, c := range name {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("_+=,.@-", c) >= 0
		if !ok {
			name[i] = '-'
		}
	}
	if len(name) > 64 {
		name = name[:64]
	}
	return string(name)
}

// sameHost reports whether the URL stsURL and the host[:port] endpoint name one host.
func sameHost(stsURL, endpoint string) bool {
	u, err := url.Parse(stsURL)
	if err != nil || endpoint == "" {
		return false
	}
	host := endpoint
	if h, _, err := net.SplitHostPort(endpoint); err == nil {
		host = h
	}
	return strings.EqualFold(u.Hostname(), host)
}

// stsClient is the HTTP client for STS: Go's default transport, with STSRootCA added to
// the system roots.
func (w webIdentity) stsClient() (*http.Client, error) {
	transport := http.DefaultTransport.(*http.Transport).Clone() //nolint:forcetypeassert
	if len(w.STSRootCA) > 0 {
		roots, err := x509.SystemCertPool()
		if err != nil || roots == nil {
			roots = x509.NewCertPool()
		}
		if !roots.AppendCertsFromPEM(w.STSRootCA) {
			return nil, errors.Errorf("adding the location's CA for STS at %s: no certificate in it", w.STSEndpoint)
		}
		transport.TLSClientConfig.RootCAs = roots
	}
	return &http.Client{Transport: transport, Timeout: stsTimeout}, nil
}

// retrieve asks STS for keys, reading the token file anew (the kubelet rotates it). It
// goes through minio-go's IAM provider, which runs its STSWebIdentity provider with the
// token file, role and session name (STSWebIdentity alone cannot be given a session
// name) at the given endpoint. IAM prefers AWS_WEB_IDENTITY_TOKEN_FILE, AWS_ROLE_ARN and
// AWS_ROLE_SESSION_NAME of the environment to the fields: the values w was made from.
func (w webIdentity) retrieve() (credentials.Value, error) {
	client, err := w.stsClient()
	if err != nil {
		return credentials.Value{}, err
	}
	p := &credentials.IAM{Client: client, Endpoint: w.STSEndpoint}
	p.EKSIdentity.TokenFile = w.TokenFile
	p.EKSIdentity.RoleARN = w.RoleARN
	p.EKSIdentity.RoleSessionName = w.SessionName
	return p.Retrieve()
}

// stsTransientCodes are STS error codes that may pass.
var stsTransientCodes = map[string]bool{
	"IDPCommunicationError": true, "InternalFailure": true, "InternalError": true,
	"ServiceUnavailable": true, "Throttling": true, "ThrottlingException": true, "RequestLimitExceeded": true,
}

// classify maps an error of retrieve to the package's causes: STS refusing (a bad or
// expired token, an issuer the role does not trust, a wrong role) is ErrAccessDenied and
// needs a person; STS unreachable or busy may pass.
func (w webIdentity) classify(err error, loc string) error {
	var sts credentials.ErrorResponse
	switch {
	case stderrors.As(err, &sts) && stsTransientCodes[sts.STSError.Code]:
		return datapath.Transient(newOpenError(ErrUnavailable, err,
			"STS at %s is unavailable for web identity of role %s (repository at %s)", w.STSEndpoint, w.RoleARN, loc))
	case stderrors.As(err, &sts):
		return newOpenError(ErrAccessDenied, err,
			"STS at %s refused the web identity token %s for role %s (repository at %s)", w.STSEndpoint, w.TokenFile, w.RoleARN, loc)
	case isUnreachable(err):
		return datapath.Transient(newOpenError(ErrUnreachable, err,
			"STS at %s is unreachable for web identity of role %s (repository at %s)", w.STSEndpoint, w.RoleARN, loc))
	default:
		return errors.Wrapf(err, "getting web identity credentials of role %s from STS at %s for repository at %s", w.RoleARN, w.STSEndpoint, loc)
	}
}

// openWebIdentityS3 opens the S3 storage of o with keys from STS, re-opened with new keys
// before they expire.
func openWebIdentityS3(ctx context.Context, o webIdentityOptions, now func() time.Time) (*refreshingStorage, error) {
	info := webIdentityInfo(o)
	o = *info.Config.(*webIdentityOptions) //nolint:forcetypeassert
	// where names the location as repository.Location.String does.
	where := "s3://" + o.S3.BucketName + "/" + o.S3.Prefix + " at " + o.S3.Endpoint
	open := func(ctx context.Context) (blob.Storage, time.Time, error) {
		creds, err := o.WebIdentity.retrieve()
		if err != nil {
			return nil, time.Time{}, o.WebIdentity.classify(err, where)
		}
		opts := o.S3
		opts.AccessKeyID, opts.SecretAccessKey, opts.SessionToken = creds.AccessKeyID, creds.SecretAccessKey, creds.SessionToken
		st, err := s3.New(ctx, &opts, false)
		if err != nil {
			return nil, time.Time{}, err
		}
		return st, creds.Expiration, nil
	}
	return newRefreshingStorage(ctx, info, open, now)
}

// webIdentityInfo is the connection info of o, without keys.
func webIdentityInfo(o webIdentityOptions) blob.ConnectionInfo {
	o.S3.AccessKeyID, o.S3.SecretAccessKey, o.S3.SessionToken = "", "", ""
	return blob.ConnectionInfo{Type: webIdentityStorageType, Config: &o}
}

// refreshingStorage is a blob.Storage whose calls go to the storage open returns, opened
// again, under a mutex, when the expiry open reported is near (refreshMargin). A zero
// expiry never is. Calls already under way keep the storage they started with; the
// replaced storage is closed (kopia's S3 storage releases nothing on Close).
type refreshingStorage struct {
	info blob.ConnectionInfo
	open func(ctx context.Context) (blob.Storage, time.Time, error)
	now  func() time.Time

	mu      sync.Mutex
	inner   blob.Storage
	issued  time.Time // when inner was opened
	expires time.Time // when its credentials expire; zero: never
	retryAt time.Time // after a failed refresh, when to try again
}

func newRefreshingStorage(ctx context.Context, info blob.ConnectionInfo, open func(context.Context) (blob.Storage, time.Time, error), now func() time.Time) (*refreshingStorage, error) {
	issued := now()
	inner, expires, err := open(ctx)
	if err != nil {
		return nil, err
	}
	return &refreshingStorage{info: info, open: open, now: now, inner: inner, issued: issued, expires: expires}, nil
}

// refreshMargin is how long before expiry credentials of lifetime are refreshed.
func refreshMargin(lifetime time.Duration) time.Duration {
	margin := max(lifetime/5, refreshMinMargin)
	return min(margin, lifetime/2)
}

// current returns the storage to call, re-opening it first when its credentials are near
// expiry. A refresh that fails while they are still valid keeps the old storage (and is
// tried again after refreshRetry); once they have expired, it is the error.
func (s *refreshingStorage) current(ctx context.Context) (blob.Storage, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if s.expires.IsZero() || now.Before(s.retryAt) || now.Before(s.expires.Add(-refreshMargin(s.expires.Sub(s.issued)))) {
		return s.inner, nil
	}
	inner, expires, err := s.open(ctx)
	if err != nil {
		if now.Before(s.expires) {
			s.retryAt = now.Add(refreshRetry)
			logging.Module("snapmove-web-identity")(ctx).Warnf("refreshing S3 credentials (the current ones expire at %v): %v", s.expires, err)
			return s.inner, nil
		}
		return nil, errors.Wrap(err, "refreshing S3 credentials")
	}
	old := s.inner
	s.inner, s.issued, s.expires, s.retryAt = inner, now, expires, time.Time{}
	_ = old.Close(ctx)
	return inner, nil
}

// webIdentity is the identity the storage was opened with, for the log at open.
func (s *refreshingStorage) webIdentity() (webIdentity, bool) {
	o, ok := s.info.Config.(*webIdentityOptions)
	if !ok {
		return webIdentity{}, false
	}
	return o.WebIdentity, true
}

func (s *refreshingStorage) GetCapacity(ctx context.Context) (blob.Capacity, error) {
	st, err := s.current(ctx)
	if err != nil {
		return blob.Capacity{}, err
	}
	return st.GetCapacity(ctx)
}

func (s *refreshingStorage) ListBlobs(ctx context.Context, prefix blob.ID, cb func(blob.Metadata) error) error {
	st, err := s.current(ctx)
	if err != nil {
		return err
	}
	return st.ListBlobs(ctx, prefix, cb)
}

func (s *refreshingStorage) GetBlob(ctx context.Context, id blob.ID, offset, length int64, output blob.OutputBuffer) error {
	st, err := s.current(ctx)
	if err != nil {
		return err
	}
	return st.GetBlob(ctx, id, offset, length, output)
}

func (s *refreshingStorage) GetMetadata(ctx context.Context, id blob.ID) (blob.Metadata, error) {
	st, err := s.current(ctx)
	if err != nil {
		return blob.Metadata{}, err
	}
	return st.GetMetadata(ctx, id)
}

func (s *refreshingStorage) PutBlob(ctx context.Context, id blob.ID, data blob.Bytes, opts blob.PutOptions) error {
	st, err := s.current(ctx)
	if err != nil {
		return err
	}
	return st.PutBlob(ctx, id, data, opts)
}

func (s *refreshingStorage) DeleteBlob(ctx context.Context, id blob.ID) error {
	st, err := s.current(ctx)
	if err != nil {
		return err
	}
	return st.DeleteBlob(ctx, id)
}

func (s *refreshingStorage) ExtendBlobRetention(ctx context.Context, id blob.ID, opts blob.ExtendOptions) error {
	st, err := s.current(ctx)
	if err != nil {
		return err
	}
	return st.ExtendBlobRetention(ctx, id, opts)
}

func (s *refreshingStorage) FlushCaches(ctx context.Context) error {
	st, err := s.current(ctx)
	if err != nil {
		return err
	}
	return st.FlushCaches(ctx)
}

// ConnectionInfo names the web identity, never keys: re-opening it asks STS again.
func (s *refreshingStorage) ConnectionInfo() blob.ConnectionInfo { return s.info }

func (s *refreshingStorage) DisplayName() string { return s.stored().DisplayName() }

func (s *refreshingStorage) IsReadOnly() bool { return s.stored().IsReadOnly() }

// Close closes the current storage; it needs no fresh credentials.
func (s *refreshingStorage) Close(ctx context.Context) error { return s.stored().Close(ctx) }

// stored is the current storage, without refreshing it.
func (s *refreshingStorage) stored() blob.Storage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inner
}
