package repository

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	"github.com/vmware-tanzu/velero/pkg/builder"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

const veleroNS = "velero"

func secret(name string, data map[string]string) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: veleroNS, Name: name}, Data: map[string][]byte{}}
	for k, v := range data {
		s.Data[k] = []byte(v)
	}
	return s
}

func selector(name, key string) *corev1.SecretKeySelector {
	return builder.ForSecretKeySelector(name, key).Result()
}

const awsINI = `
# comment
[default]
aws_access_key_id = AKDEFAULT
aws_secret_access_key = secretdefault

[profile other]
aws_access_key_id=AKOTHER
aws_secret_access_key=secretother
aws_session_token = tok
[roleonly]
role_arn = arn:aws:iam::1:role/x
`

func TestResolveLocation(t *testing.T) {
	cloudCreds := secret("cloud-credentials", map[string]string{"cloud": awsINI})
	bslCreds := secret("bsl-creds", map[string]string{"creds": awsINI})
	gcpCreds := secret("gcp-creds", map[string]string{"cloud": `{"type":"service_account"}`})
	azureCreds := secret("azure-creds", map[string]string{"cloud": "AZURE_STORAGE_KEY=key1\nMY_KEY=\"key2\"\nexport AZURE_TENANT_ID=tenant\nAZURE_CLIENT_ID=client\nAZURE_CLIENT_SECRET='sec'\n# comment\n"})
	azureChina := secret("azure-china", map[string]string{"cloud": "AZURE_CLOUD_NAME=AzureChinaCloud\nAZURE_STORAGE_KEY=k\n"})
	caSecret := secret("ca", map[string]string{"ca.crt": "PEM-FROM-SECRET"})
	defaultCreds := selector("cloud-credentials", "cloud")

	tests := []struct {
		name           string
		bsl            *velerov1.BackupStorageLocation
		defaultCred    *corev1.SecretKeySelector
		emptyNamespace bool
		env            map[string]string // the process's environment (Azure's webhook)
		want           Location
		wantErr        string
	}{
		{
			name: "aws minio over http with default credentials",
			bsl: withConfig(builder.ForBackupStorageLocation(veleroNS, "default").Provider("aws").Bucket("velero").Prefix("backups").Result(),
				map[string]string{"region": "minio", "s3Url": "http://127.0.0.1:9000", "s3ForcePathStyle": "true"}),
			defaultCred: defaultCreds,
			want: Location{Provider: ProviderAWS, Bucket: "velero", Prefix: "backups/kopia/app/",
				Region: "minio", Endpoint: "127.0.0.1:9000", DisableTLS: true,
				AccessKeyID: "AKDEFAULT", SecretAccessKey: "secretdefault"},
		},
		{
			name: "velero.io/aws with bsl credential, profile and https s3Url with port and slash",
			bsl: withConfig(builder.ForBackupStorageLocation(veleroNS, "b").Provider("velero.io/aws").Bucket("/bkt/").
				Credential(selector("bsl-creds", "creds")).Result(),
				map[string]string{"region": "eu-west-1", "s3Url": "https://s3.example.com:8443/", "profile": "other", "insecureSkipTLSVerify": "true", "s3ForcePathStyle": "true"}),
			defaultCred: defaultCreds,
			want: Location{Provider: ProviderAWS, Bucket: "bkt", Prefix: "kopia/app/", Region: "eu-west-1",
				Endpoint: "s3.example.com:8443", InsecureSkipTLSVerify: true,
				AccessKeyID: "AKOTHER", SecretAccessKey: "secretother", SessionToken: "tok"},
		},
		{
			name: "aws without s3Url uses the regional endpoint",
			bsl: withConfig(builder.ForBackupStorageLocation(veleroNS, "b").Provider("aws").Bucket("bkt").Prefix("velero/").Result(),
				map[string]string{"region": "us-east-2"}),
			want: Location{Provider: ProviderAWS, Bucket: "bkt", Prefix: "velero/kopia/app/", Region: "us-east-2",
				Endpoint: "s3-us-east-2.amazonaws.com"},
		},
		{
			name: "aws without s3Url nor region lets the client find the region",
			bsl:  builder.ForBackupStorageLocation(veleroNS, "b").Provider("aws").Bucket("bkt").Prefix("/a/b/").Result(),
			want: Location{Provider: ProviderAWS, Bucket: "bkt", Prefix: "a/b/kopia/app/", Endpoint: "s3.amazonaws.com"},
		},
		{
			name: "s3Url without scheme is https",
			bsl: withConfig(builder.ForBackupStorageLocation(veleroNS, "b").Provider("aws").Bucket("bkt").Result(),
				map[string]string{"s3Url": "minio.local:9000"}),
			want: Location{Provider: ProviderAWS, Bucket: "bkt", Prefix: "kopia/app/", Endpoint: "minio.local:9000"},
		},
		{
			name: "unknown provider with s3Url is S3-compatible; caCert from the BSL",
			bsl: withConfig(builder.ForBackupStorageLocation(veleroNS, "b").Provider("example.com/s3").Bucket("bkt").
				CACert([]byte("PEM")).Result(), map[string]string{"s3Url": "http://10.0.0.1"}),
			want: Location{Provider: ProviderAWS, Bucket: "bkt", Prefix: "kopia/app/", Endpoint: "10.0.0.1",
				DisableTLS: true, CACert: []byte("PEM")},
		},
		{
			name: "caCertRef wins over caCert",
			bsl: withConfig(builder.ForBackupStorageLocation(veleroNS, "b").Provider("aws").Bucket("bkt").
				CACert([]byte("PEM")).CACertRef(selector("ca", "ca.crt")).Result(), map[string]string{"s3Url": "https://h"}),
			want: Location{Provider: ProviderAWS, Bucket: "bkt", Prefix: "kopia/app/", Endpoint: "h",
				CACert: []byte("PEM-FROM-SECRET")},
		},
		{
			name: "profile without keys leaves ambient credentials",
			bsl: withConfig(builder.ForBackupStorageLocation(veleroNS, "b").Provider("aws").Bucket("bkt").Result(),
				map[string]string{"s3Url": "https://h", "profile": "roleonly"}),
			defaultCred: defaultCreds,
			want:        Location{Provider: ProviderAWS, Bucket: "bkt", Prefix: "kopia/app/", Endpoint: "h"},
		},
		{
			name: "missing profile",
			bsl: withConfig(builder.ForBackupStorageLocation(veleroNS, "b").Provider("aws").Bucket("bkt").Result(),
				map[string]string{"s3Url": "https://h", "profile": "nope"}),
			defaultCred: defaultCreds,
			wantErr:     `profile "nope" not found`,
		},
		{
			name: "s3Url with a path",
			bsl: withConfig(builder.ForBackupStorageLocation(veleroNS, "b").Provider("aws").Bucket("bkt").Result(),
				map[string]string{"s3Url": "https://h/bucket"}),
			wantErr: "has a path",
		},
		{
			name: "invalid insecureSkipTLSVerify",
			bsl: withConfig(builder.ForBackupStorageLocation(veleroNS, "b").Provider("aws").Bucket("bkt").Result(),
				map[string]string{"s3Url": "https://h", "insecureSkipTLSVerify": "yes please"}),
			wantErr: "insecureSkipTLSVerify",
		},
		{
			name:    "missing bsl credential secret",
			bsl:     builder.ForBackupStorageLocation(veleroNS, "b").Provider("aws").Bucket("bkt").Credential(selector("absent", "cloud")).Result(),
			wantErr: "getting secret velero/absent",
		},
		{
			name:        "missing key in default credentials",
			bsl:         builder.ForBackupStorageLocation(veleroNS, "b").Provider("aws").Bucket("bkt").Result(),
			defaultCred: selector("cloud-credentials", "other-key"),
			wantErr:     "secret velero/cloud-credentials has no key other-key",
		},
		{
			name: "gcp with service account json",
			bsl: builder.ForBackupStorageLocation(veleroNS, "b").Provider("gcp").Bucket("gbkt").Prefix("p").
				Credential(selector("gcp-creds", "cloud")).Result(),
			want: Location{Provider: ProviderGCP, Bucket: "gbkt", Prefix: "p/kopia/app/",
				GCSCredentialsJSON: []byte(`{"type":"service_account"}`)},
		},
		{
			name: "gcp with workload identity",
			bsl:  builder.ForBackupStorageLocation(veleroNS, "b").Provider("velero.io/gcp").Bucket("gbkt").Result(),
			want: Location{Provider: ProviderGCP, Bucket: "gbkt", Prefix: "kopia/app/"},
		},
		{
			name: "azure with account key and service principal",
			bsl: withConfig(builder.ForBackupStorageLocation(veleroNS, "b").Provider("azure").Bucket("container").Prefix("velero").
				Credential(selector("azure-creds", "cloud")).Result(), map[string]string{"storageAccount": "acct", "resourceGroup": "rg"}),
			want: Location{Provider: ProviderAzure, Bucket: "container", Prefix: "velero/kopia/app/",
				AzureStorageAccount: "acct", AzureStorageKey: "key1", AzureStorageDomain: "blob.core.windows.net",
				AzureTenantID: "tenant", AzureClientID: "client", AzureClientSecret: "sec"},
		},
		{
			name: "azure storageAccountKeyEnvVar and storageAccountURI",
			bsl: withConfig(builder.ForBackupStorageLocation(veleroNS, "b").Provider("azure").Bucket("c").
				Credential(selector("azure-creds", "cloud")).Result(),
				map[string]string{"storageAccount": "acct", "storageAccountKeyEnvVar": "MY_KEY", "storageAccountURI": "https://acct.blob.example.net/"}),
			want: Location{Provider: ProviderAzure, Bucket: "c", Prefix: "kopia/app/",
				AzureStorageAccount: "acct", AzureStorageKey: "key2", AzureStorageDomain: "blob.example.net",
				AzureTenantID: "tenant", AzureClientID: "client", AzureClientSecret: "sec"},
		},
		{
			name: "azure useAAD ignores the account key",
			bsl: withConfig(builder.ForBackupStorageLocation(veleroNS, "b").Provider("azure").Bucket("c").
				Credential(selector("azure-creds", "cloud")).Result(), map[string]string{"storageAccount": "acct", "useAAD": "true"}),
			want: Location{Provider: ProviderAzure, Bucket: "c", Prefix: "kopia/app/",
				AzureStorageAccount: "acct", AzureStorageDomain: "blob.core.windows.net",
				AzureTenantID: "tenant", AzureClientID: "client", AzureClientSecret: "sec"},
		},
		{
			name: "azure china cloud",
			bsl: withConfig(builder.ForBackupStorageLocation(veleroNS, "b").Provider("azure").Bucket("c").Result(),
				map[string]string{"storageAccount": "acct"}),
			defaultCred: selector("azure-china", "cloud"),
			want: Location{Provider: ProviderAzure, Bucket: "c", Prefix: "kopia/app/",
				AzureStorageAccount: "acct", AzureStorageKey: "k", AzureStorageDomain: "blob.core.chinacloudapi.cn"},
		},
		{
			name: "azure key env var missing from credentials",
			bsl: withConfig(builder.ForBackupStorageLocation(veleroNS, "b").Provider("azure").Bucket("c").
				Credential(selector("azure-creds", "cloud")).Result(), map[string]string{"storageAccount": "acct", "storageAccountKeyEnvVar": "NOPE"}),
			wantErr: "key NOPE",
		},
		{
			name: "azure workload identity: the webhook's token, client and tenant when nothing else authenticates",
			bsl: withConfig(builder.ForBackupStorageLocation(veleroNS, "b").Provider("azure").Bucket("c").Result(),
				map[string]string{"storageAccount": "acct", "useAAD": "true"}),
			env: map[string]string{"AZURE_FEDERATED_TOKEN_FILE": "/var/run/secrets/azure/tokens/azure-identity-token",
				"AZURE_CLIENT_ID": "wi-client", "AZURE_TENANT_ID": "wi-tenant"},
			want: Location{Provider: ProviderAzure, Bucket: "c", Prefix: "kopia/app/",
				AzureStorageAccount: "acct", AzureStorageDomain: "blob.core.windows.net",
				AzureTenantID: "wi-tenant", AzureClientID: "wi-client",
				AzureFederatedTokenFile: "/var/run/secrets/azure/tokens/azure-identity-token"},
		},
		{
			name: "azure workload identity is not used when the credentials file has a secret",
			bsl: withConfig(builder.ForBackupStorageLocation(veleroNS, "b").Provider("azure").Bucket("c").
				Credential(selector("azure-creds", "cloud")).Result(), map[string]string{"storageAccount": "acct", "useAAD": "true"}),
			env: map[string]string{"AZURE_FEDERATED_TOKEN_FILE": "/token", "AZURE_CLIENT_ID": "wi-client", "AZURE_TENANT_ID": "wi-tenant"},
			want: Location{Provider: ProviderAzure, Bucket: "c", Prefix: "kopia/app/",
				AzureStorageAccount: "acct", AzureStorageDomain: "blob.core.windows.net",
				AzureTenantID: "tenant", AzureClientID: "client", AzureClientSecret: "sec"},
		},
		{
			name:    "azure without storage account",
			bsl:     builder.ForBackupStorageLocation(veleroNS, "b").Provider("azure").Bucket("c").Result(),
			wantErr: "storageAccount is required",
		},
		{
			name: "filesystem",
			bsl: withConfig(builder.ForBackupStorageLocation(veleroNS, "b").Provider("velero.io/fs").Bucket("ignored").Prefix("x").Result(),
				map[string]string{"fspath": "/srv/repos"}),
			want: Location{Provider: ProviderFilesystem, Bucket: "ignored", Prefix: "x/kopia/app/", Path: "/srv/repos"},
		},
		{
			name: "bucket and prefix from config when objectStorage is absent",
			bsl: &velerov1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Namespace: veleroNS, Name: "b"},
				Spec: velerov1.BackupStorageLocationSpec{Provider: "aws",
					Config: map[string]string{"bucket": "cb", "prefix": "/cp/", "s3Url": "http://h:1"}}},
			want: Location{Provider: ProviderAWS, Bucket: "cb", Prefix: "cp/kopia/app/", Endpoint: "h:1", DisableTLS: true},
		},
		{
			name:    "unknown provider",
			bsl:     builder.ForBackupStorageLocation(veleroNS, "b").Provider("example.com/tape").Bucket("b").Result(),
			wantErr: `unsupported provider "example.com/tape"`,
		},
		{
			name:           "empty namespace",
			bsl:            builder.ForBackupStorageLocation(veleroNS, "b").Provider("aws").Bucket("b").Result(),
			emptyNamespace: true,
			wantErr:        "empty source namespace",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"AZURE_FEDERATED_TOKEN_FILE", "AZURE_CLIENT_ID", "AZURE_TENANT_ID"} {
				t.Setenv(k, tc.env[k])
			}
			c := fake.NewClientBuilder().WithObjects(cloudCreds, bslCreds, gcpCreds, azureCreds, azureChina, caSecret).Build()
			ns := "app"
			if tc.emptyNamespace {
				ns = ""
			}
			rec := &recordingReader{Reader: c}
			got, err := ResolveLocation(context.Background(), rec, tc.bsl, ns, tc.defaultCred)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
			// A worker's Role grants SecretNames only: it must cover every secret read.
			require.Subset(t, SecretNames(tc.bsl, tc.defaultCred), rec.secrets)
		})
	}
}

func withConfig(bsl *velerov1.BackupStorageLocation, config map[string]string) *velerov1.BackupStorageLocation {
	bsl.Spec.Config = config
	return bsl
}

func TestRepositoryPrefix(t *testing.T) {
	tests := []struct{ bslPrefix, want string }{
		{"", "kopia/ns/"},
		{"velero", "velero/kopia/ns/"},
		{"velero/", "velero/kopia/ns/"},
		{"/a/b/", "a/b/kopia/ns/"},
	}
	for _, tc := range tests {
		t.Run(tc.bslPrefix, func(t *testing.T) {
			require.Equal(t, tc.want, RepositoryPrefix(tc.bslPrefix, "ns"))
		})
	}
}

func TestLocationString(t *testing.T) {
	tests := []struct {
		loc  Location
		want string
	}{
		{Location{Provider: ProviderAWS, Bucket: "velero", Prefix: "backups/kopia/default/", Endpoint: "127.0.0.1:9000", SecretAccessKey: "s"}, "s3://velero/backups/kopia/default/ at 127.0.0.1:9000"},
		{Location{Provider: ProviderGCP, Bucket: "b", Prefix: "kopia/ns/", GCSCredentialsJSON: []byte("secret")}, "gs://b/kopia/ns/"},
		{Location{Provider: ProviderAzure, Bucket: "c", Prefix: "kopia/ns/", AzureStorageAccount: "acct", AzureStorageKey: "secret"}, "azure://acct/c/kopia/ns/"},
		{Location{Provider: ProviderFilesystem, Path: "/srv", Prefix: "kopia/ns/"}, "filesystem:/srv/kopia/ns/"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			require.Equal(t, tc.want, tc.loc.String())
			require.NotContains(t, tc.loc.String(), "secret")
		})
	}
}

func TestAWSProfile(t *testing.T) {
	keys, err := awsProfile([]byte(awsINI), "other")
	require.NoError(t, err)
	require.Equal(t, map[string]string{"aws_access_key_id": "AKOTHER", "aws_secret_access_key": "secretother", "aws_session_token": "tok"}, keys)

	_, err = awsProfile([]byte("[default\nx=y"), "default")
	require.ErrorContains(t, err, "malformed section header")
}

// recordingReader records the names of the secrets read through it.
type recordingReader struct {
	client.Reader
	secrets []string
}

func (r *recordingReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if _, ok := obj.(*corev1.Secret); ok {
		r.secrets = append(r.secrets, key.Name)
	}
	return r.Reader.Get(ctx, key, obj, opts...)
}

func TestSecretNames(t *testing.T) {
	bsl := builder.ForBackupStorageLocation(veleroNS, "b").Provider("aws").Bucket("b").Result()
	require.Equal(t, []string{PasswordSecretName}, SecretNames(bsl, nil))
	require.Equal(t, []string{"cloud-credentials", PasswordSecretName}, SecretNames(bsl, selector("cloud-credentials", "cloud")))
	bsl.Spec.Credential = selector("bsl-creds", "creds")
	bsl.Spec.ObjectStorage.CACertRef = selector("ca", "ca.crt")
	require.Equal(t, []string{"bsl-creds", "ca", PasswordSecretName}, SecretNames(bsl, selector("cloud-credentials", "cloud")),
		"the BSL's own credentials replace the default ones")
}
