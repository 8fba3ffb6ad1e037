package repository

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/pkg/errors"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Providers a Location can name.
const (
	ProviderAWS        = "aws"        // S3 and S3-compatible stores
	ProviderGCP        = "gcp"        // Google Cloud Storage
	ProviderAzure      = "azure"      // Azure Blob Storage
	ProviderFilesystem = "filesystem" // a local directory: tests and local use
)

// RepositoryType is the path element Velero puts between the BSL prefix and the volume
// namespace (udmrepo "kopia"); it is also the BackupRepository type.
const RepositoryType = "kopia"

// BSL config keys Velero's object store plugins and unified repository read.
const (
	configBucket                = "bucket"
	configPrefix                = "prefix"
	configRegion                = "region"
	configS3URL                 = "s3Url"
	configInsecureSkipTLSVerify = "insecureSkipTLSVerify"
	configProfile               = "profile"
	configFSPath                = "fspath"
	configStorageAccount        = "storageAccount"
	configStorageAccountKeyEnv  = "storageAccountKeyEnvVar"
	configStorageAccountURI     = "storageAccountURI"
	configUseAAD                = "useAAD"
)

// Keys of the Azure credentials file (a dotenv file; velero pkg/util/azure).
const (
	azureStorageKey   = "AZURE_STORAGE_KEY"
	azureCloudName    = "AZURE_CLOUD_NAME"
	azureTenantID     = "AZURE_TENANT_ID"
	azureClientID     = "AZURE_CLIENT_ID"
	azureClientSecret = "AZURE_CLIENT_SECRET"
)

// envAzureFederatedTokenFile is set by Azure Workload Identity's webhook in pods that use it.
const envAzureFederatedTokenFile = "AZURE_FEDERATED_TOKEN_FILE"

// Location says where one kopia repository lives and how to reach it. It holds no kopia
// types; internal/mover/kopia turns it into a storage. Credential fields left empty mean
// "use the ambient credentials" (instance profile, IRSA, workload identity).
type Location struct {
	Provider string // ProviderAWS, ProviderGCP, ProviderAzure or ProviderFilesystem
	Bucket   string // bucket (aws, gcp) or container (azure); unused for filesystem
	// Prefix is "<bsl prefix>/kopia/<namespace>/", always with a trailing slash, exactly
	// as Velero's getStorageVariables computes it.
	Prefix string

	// aws and S3-compatible stores. Endpoint is host[:port] without scheme. S3 clients
	// address buckets path-style on custom endpoints, so s3ForcePathStyle needs no field.
	Region                string
	Endpoint              string
	DisableTLS            bool // the BSL s3Url was http://
	InsecureSkipTLSVerify bool
	CACert                []byte // PEM bundle from the BSL caCert/caCertRef
	AccessKeyID           string
	SecretAccessKey       string
	SessionToken          string

	// gcp: service account JSON key; empty means workload identity / ADC.
	GCSCredentialsJSON []byte

	// azure: storage account and one way to authenticate: an account key, a SAS token, or
	// a service principal (tenant, client ID, client secret). AzureStorageDomain is the
	// blob endpoint domain, e.g. "blob.core.windows.net".
	AzureStorageAccount string
	AzureStorageKey     string
	AzureSASToken       string
	AzureStorageDomain  string
	AzureTenantID       string
	AzureClientID       string
	AzureClientSecret   string
	// AzureFederatedTokenFile is Azure Workload Identity's projected token (with
	// AzureTenantID and AzureClientID): set when nothing else authenticates and the
	// process runs with the webhook's AZURE_FEDERATED_TOKEN_FILE, as Velero's
	// pkg/util/azure NewCredential chooses it.
	AzureFederatedTokenFile string

	// filesystem: base directory; the repository is in Path/Prefix (as Velero's fs backend).
	Path string
}

// String describes the location for logs and messages. It never contains secrets.
func (l Location) String() string {
	switch l.Provider {
	case ProviderAWS:
		return fmt.Sprintf("s3://%s/%s at %s", l.Bucket, l.Prefix, l.Endpoint)
	case ProviderGCP:
		return fmt.Sprintf("gs://%s/%s", l.Bucket, l.Prefix)
	case ProviderAzure:
		return fmt.Sprintf("azure://%s/%s/%s", l.AzureStorageAccount, l.Bucket, l.Prefix)
	case ProviderFilesystem:
		return "filesystem:" + path.Join(l.Path, l.Prefix) + "/"
	default:
		return fmt.Sprintf("%s://%s/%s", l.Provider, l.Bucket, l.Prefix)
	}
}

// ResolveLocation maps bsl to the location of the kopia repository that holds the volumes
// of sourceNamespace, reading credentials from bsl.spec.credential or, when the BSL has
// none, from defaultCredentials (the install's cloud credentials secret; nil means none).
// Secrets are read from the BSL's namespace.
func ResolveLocation(ctx context.Context, c client.Reader, bsl *velerov1.BackupStorageLocation, sourceNamespace string, defaultCredentials *corev1.SecretKeySelector) (Location, error) {
	if bsl == nil {
		return Location{}, errors.New("resolving repository location: no BackupStorageLocation")
	}
	if sourceNamespace == "" {
		return Location{}, errors.Errorf("resolving repository location in BackupStorageLocation %s/%s: empty source namespace", bsl.Namespace, bsl.Name)
	}
	config := bsl.Spec.Config
	if config == nil {
		config = map[string]string{}
	}
	provider, err := normalizeProvider(bsl.Spec.Provider, config)
	if err != nil {
		return Location{}, errors.Wrapf(err, "resolving repository location of BackupStorageLocation %s/%s", bsl.Namespace, bsl.Name)
	}

	bucket, prefix := strings.Trim(config[configBucket], "/"), strings.Trim(config[configPrefix], "/")
	if bsl.Spec.ObjectStorage != nil {
		bucket = strings.Trim(bsl.Spec.ObjectStorage.Bucket, "/")
		prefix = strings.Trim(bsl.Spec.ObjectStorage.Prefix, "/")
	}
	loc := Location{
		Provider: provider,
		Bucket:   bucket,
		Prefix:   RepositoryPrefix(prefix, sourceNamespace),
	}

	credSelector := bsl.Spec.Credential
	if credSelector == nil {
		credSelector = defaultCredentials
	}
	r := resolver{c: c, namespace: bsl.Namespace}

	switch provider {
	case ProviderAWS:
		err = r.resolveAWS(ctx, &loc, bsl, config, credSelector)
	case ProviderGCP:
		err = r.resolveGCP(ctx, &loc, credSelector)
	case ProviderAzure:
		err = r.resolveAzure(ctx, &loc, config, credSelector)
	case ProviderFilesystem:
		loc.Path = config[configFSPath]
		if loc.Path == "" {
			err = errors.Errorf("config key %s is required for provider %s", configFSPath, bsl.Spec.Provider)
		}
	}
	if err != nil {
		return Location{}, errors.Wrapf(err, "resolving repository location of BackupStorageLocation %s/%s", bsl.Namespace, bsl.Name)
	}
	return loc, nil
}

// SecretNames are the secrets in the BSL's namespace that opening a repository on bsl
// reads: the repository password and what ResolveLocation reads (bsl's credentials, or
// defaultCredentials, and its caCertRef), sorted. A worker's Role grants exactly these.
func SecretNames(bsl *velerov1.BackupStorageLocation, defaultCredentials *corev1.SecretKeySelector) []string {
	names := []string{PasswordSecretName}
	creds := bsl.Spec.Credential
	if creds == nil {
		creds = defaultCredentials
	}
	if creds != nil && creds.Name != "" {
		names = append(names, creds.Name)
	}
	if st := bsl.Spec.ObjectStorage; st != nil && st.CACertRef != nil && st.CACertRef.Name != "" {
		names = append(names, st.CACertRef.Name)
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// RepositoryPrefix is the object prefix of the kopia repository of one volume namespace:
// path.Join(bslPrefix, "kopia", namespace) + "/" (Velero's getStorageVariables).
func RepositoryPrefix(bslPrefix, namespace string) string {
	return path.Join(strings.Trim(bslPrefix, "/"), RepositoryType, namespace) + "/"
}

// normalizeProvider follows Velero's repoconfig.GetBackendType: a provider without a
// domain is "velero.io/<name>", an unknown provider with an s3Url is S3-compatible.
func normalizeProvider(provider string, config map[string]string) (string, error) {
	full := provider
	if !strings.Contains(full, "/") {
		full = "velero.io/" + full
	}
	switch full {
	case "velero.io/aws":
		return ProviderAWS, nil
	case "velero.io/gcp":
		return ProviderGCP, nil
	case "velero.io/azure":
		return ProviderAzure, nil
	case "velero.io/fs", "velero.io/filesystem":
		return ProviderFilesystem, nil
	}
	if config[configS3URL] != "" {
		return ProviderAWS, nil
	}
	return "", errors.Errorf("unsupported provider %q: kopia repositories need aws (or an S3-compatible store with s3Url), gcp or azure", provider)
}

type resolver struct {
	c         client.Reader
	namespace string
}

func (r resolver) resolveAWS(ctx context.Context, loc *Location, bsl *velerov1.BackupStorageLocation, config map[string]string, creds *corev1.SecretKeySelector) error {
	loc.Region = strings.Trim(config[configRegion], "/")
	endpoint, disableTLS, err := s3Endpoint(config[configS3URL], loc.Region)
	if err != nil {
		return err
	}
	loc.Endpoint, loc.DisableTLS = endpoint, disableTLS
	if v := config[configInsecureSkipTLSVerify]; v != "" {
		if loc.InsecureSkipTLSVerify, err = strconv.ParseBool(v); err != nil {
			return errors.Errorf("config key %s: %q is not a boolean", configInsecureSkipTLSVerify, v)
		}
	}
	if loc.CACert, err = r.caCert(ctx, bsl); err != nil {
		return err
	}
	if creds == nil {
		return nil
	}
	file, err := r.secretValue(ctx, creds)
	if err != nil {
		return err
	}
	profile := config[configProfile]
	if profile == "" {
		profile = "default"
	}
	keys, err := awsProfile(file, profile)
	if err != nil {
		return errors.Wrapf(err, "reading AWS credentials from secret %s/%s key %s", r.namespace, creds.Name, creds.Key)
	}
	loc.AccessKeyID = keys["aws_access_key_id"]
	loc.SecretAccessKey = keys["aws_secret_access_key"]
	loc.SessionToken = keys["aws_session_token"]
	return nil
}

// s3Endpoint turns a BSL s3Url into host[:port], as Velero does: the scheme only says
// whether TLS is used, a path is an error. Unlike Velero, a URL without scheme is taken
// as https. Without s3Url the AWS endpoint of the region is used; with no region either,
// the S3 client discovers the bucket's region.
func s3Endpoint(s3URL, region string) (string, bool, error) {
	if s3URL == "" {
		if region == "" {
			return "s3.amazonaws.com", false, nil
		}
		return fmt.Sprintf("s3-%s.amazonaws.com", region), false, nil
	}
	raw := s3URL
	if !strings.Contains(raw, "://") {
		raw = "https://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", false, errors.Wrapf(err, "parsing s3Url %q", s3URL)
	}
	if u.Path != "" && u.Path != "/" {
		return "", false, errors.Errorf("s3Url %q has a path; only scheme://host[:port] is supported", s3URL)
	}
	if u.Host == "" {
		return "", false, errors.Errorf("s3Url %q has no host", s3URL)
	}
	switch u.Scheme {
	case "http":
		return u.Host, true, nil
	case "https":
		return u.Host, false, nil
	default:
		return "", false, errors.Errorf("s3Url %q: scheme must be http or https", s3URL)
	}
}

func (r resolver) caCert(ctx context.Context, bsl *velerov1.BackupStorageLocation) ([]byte, error) {
	objStore := bsl.Spec.ObjectStorage
	switch {
	case objStore == nil:
		return nil, nil
	case objStore.CACertRef != nil:
		v, err := r.secretValue(ctx, objStore.CACertRef)
		if err != nil {
			return nil, errors.Wrap(err, "reading caCertRef")
		}
		return v, nil
	default:
		return objStore.CACert, nil
	}
}

func (r resolver) resolveGCP(ctx context.Context, loc *Location, creds *corev1.SecretKeySelector) error {
	if creds == nil {
		return nil
	}
	v, err := r.secretValue(ctx, creds)
	if err != nil {
		return err
	}
	loc.GCSCredentialsJSON = v
	return nil
}

// resolveAzure follows velero pkg/util/azure NewStorageClient: the account comes from the
// BSL config; the key from the credentials file entry named by storageAccountKeyEnvVar,
// else AZURE_STORAGE_KEY; otherwise the service principal in the file is used directly
// (Velero's useAAD mode: it needs a Storage Blob Data role). Velero's other path, trading
// AAD credentials for an account key through the management API, is not supported.
func (r resolver) resolveAzure(ctx context.Context, loc *Location, config map[string]string, credSelector *corev1.SecretKeySelector) error {
	loc.AzureStorageAccount = config[configStorageAccount]
	if loc.AzureStorageAccount == "" {
		return errors.Errorf("config key %s is required for provider azure", configStorageAccount)
	}
	creds := map[string]string{}
	if credSelector != nil {
		v, err := r.secretValue(ctx, credSelector)
		if err != nil {
			return err
		}
		if creds, err = parseDotenv(v); err != nil {
			return errors.Wrapf(err, "reading Azure credentials from secret %s/%s key %s", r.namespace, credSelector.Name, credSelector.Key)
		}
	}

	useAAD := false
	if v := config[configUseAAD]; v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return errors.Errorf("config key %s: %q is not a boolean", configUseAAD, v)
		}
		useAAD = b
	}
	switch keyName := config[configStorageAccountKeyEnv]; {
	case keyName != "":
		loc.AzureStorageKey = creds[keyName]
		if loc.AzureStorageKey == "" {
			return errors.Errorf("no storage account access key with key %s found in the credentials", keyName)
		}
	case !useAAD:
		loc.AzureStorageKey = creds[azureStorageKey]
	}
	loc.AzureTenantID = creds[azureTenantID]
	loc.AzureClientID = creds[azureClientID]
	loc.AzureClientSecret = creds[azureClientSecret]
	azureWorkloadIdentity(loc)

	if uri := config[configStorageAccountURI]; uri != "" {
		u, err := url.Parse(uri)
		if err != nil || u.Host == "" {
			return errors.Errorf("config key %s: %q is not a URL", configStorageAccountURI, uri)
		}
		domain, ok := strings.CutPrefix(u.Host, loc.AzureStorageAccount+".")
		if !ok {
			return errors.Errorf("config key %s: host %q does not start with the storage account %q", configStorageAccountURI, u.Host, loc.AzureStorageAccount)
		}
		loc.AzureStorageDomain = domain
		loc.DisableTLS = u.Scheme == "http"
		return nil
	}
	domain, err := azureBlobDomain(creds[azureCloudName])
	if err != nil {
		return err
	}
	loc.AzureStorageDomain = domain
	return nil
}

// azureWorkloadIdentity makes loc authenticate with Azure Workload Identity when no key
// or service principal secret does, and the process has the federated token that Azure's
// webhook projects into pods labelled azure.workload.identity/use (with AZURE_CLIENT_ID
// and AZURE_TENANT_ID from the ServiceAccount's annotations). This is Velero's choice in
// v1.18.1 pkg/util/azure/credential.go NewCredential: a secret in the credentials file
// first, then the federated token. Client and tenant in the file win over the webhook's.
func azureWorkloadIdentity(loc *Location) {
	if loc.AzureStorageKey != "" || loc.AzureSASToken != "" || loc.AzureClientSecret != "" {
		return
	}
	token := os.Getenv(envAzureFederatedTokenFile)
	if token == "" {
		return
	}
	loc.AzureFederatedTokenFile = token
	if loc.AzureClientID == "" {
		loc.AzureClientID = os.Getenv(azureClientID)
	}
	if loc.AzureTenantID == "" {
		loc.AzureTenantID = os.Getenv(azureTenantID)
	}
}

// azureBlobDomain is the blob endpoint domain of an Azure cloud (velero pkg/util/azure).
func azureBlobDomain(cloud string) (string, error) {
	switch strings.ToUpper(cloud) {
	case "", "AZURECLOUD", "AZUREPUBLICCLOUD":
		return "blob.core.windows.net", nil
	case "AZURECHINACLOUD":
		return "blob.core.chinacloudapi.cn", nil
	case "AZUREUSGOVERNMENT", "AZUREUSGOVERNMENTCLOUD":
		return "blob.core.usgovcloudapi.net", nil
	default:
		return "", errors.Errorf("unknown Azure cloud %q in %s", cloud, azureCloudName)
	}
}

// secretValue reads one key of a secret in the BSL's namespace.
func (r resolver) secretValue(ctx context.Context, sel *corev1.SecretKeySelector) ([]byte, error) {
	secret := &corev1.Secret{}
	if err := r.c.Get(ctx, client.ObjectKey{Namespace: r.namespace, Name: sel.Name}, secret); err != nil {
		return nil, errors.Wrapf(err, "getting secret %s/%s", r.namespace, sel.Name)
	}
	v, ok := secret.Data[sel.Key]
	if !ok {
		return nil, errors.Errorf("secret %s/%s has no key %s", r.namespace, sel.Name, sel.Key)
	}
	return v, nil
}
