package velerosrv

import (
	"context"
	"testing"
	"time"

	"github.com/pkg/errors"
	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
)

const ns = "velero"

var credentialEnv = []corev1.EnvVar{
	{Name: "VELERO_NAMESPACE", Value: ns},
	{Name: EnvAWS, Value: "/credentials/cloud"},
	{Name: EnvGCP, Value: "/credentials/cloud"},
	{Name: EnvAzure, Value: "/credentials/cloud"},
	{Name: EnvAlibaba, Value: "/credentials/cloud"},
}

// deployment is a Velero server Deployment as the helm chart (hack/stack/velero.yaml)
// and `velero install` render it: /velero server, the secret mounted at /credentials.
func deployment(name, sa, secret string, env []corev1.EnvVar) *appsv1.Deployment {
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app.kubernetes.io/name": "velero"}},
			Spec: corev1.PodSpec{
				ServiceAccountName: sa,
				Containers: []corev1.Container{{
					Name: "velero", Image: "velero/velero:v1.17.0",
					Command: []string{"/velero"}, Args: []string{"server", "--uploader-type=kopia"},
					Env: env,
					VolumeMounts: []corev1.VolumeMount{
						{Name: "plugins", MountPath: "/plugins"},
						{Name: "scratch", MountPath: "/scratch"},
					},
				}},
				Volumes: []corev1.Volume{
					{Name: "plugins", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
					{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				},
			},
		}},
	}
	if secret != "" {
		spec := &d.Spec.Template.Spec
		spec.Containers[0].VolumeMounts = append(spec.Containers[0].VolumeMounts, corev1.VolumeMount{Name: "cloud-credentials", MountPath: "/credentials"})
		spec.Volumes = append(spec.Volumes, corev1.Volume{Name: "cloud-credentials", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: secret}}})
	}
	return d
}

func serviceAccount(name string, annotations map[string]string, pull ...string) *corev1.ServiceAccount {
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: annotations}}
	for _, p := range pull {
		sa.ImagePullSecrets = append(sa.ImagePullSecrets, corev1.LocalObjectReference{Name: p})
	}
	return sa
}

func sel(name, key string) *corev1.SecretKeySelector {
	return &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: key}
}

func newClient(t *testing.T, funcs *interceptor.Funcs, objs ...client.Object) client.Client {
	t.Helper()
	s := runtime.NewScheme()
	require.NoError(t, clientgoscheme.AddToScheme(s))
	b := fake.NewClientBuilder().WithScheme(s).WithObjects(objs...)
	if funcs != nil {
		b = b.WithInterceptorFuncs(*funcs)
	}
	return b.Build()
}

func TestDiscover(t *testing.T) {
	forbidden := func(resource string) *interceptor.Funcs {
		return &interceptor.Funcs{
			List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
				if resource == "deployments" {
					return apierrors.NewForbidden(appsv1.Resource("deployments"), "", errors.New("RBAC"))
				}
				return c.List(ctx, list, opts...)
			},
			Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
				if _, ok := obj.(*corev1.ServiceAccount); ok && resource == "serviceaccounts" {
					return apierrors.NewForbidden(corev1.Resource("serviceaccounts"), key.Name, errors.New("RBAC"))
				}
				return c.Get(ctx, key, obj, opts...)
			},
		}
	}
	type want struct {
		deployment, serviceAccount string
		// creds by provider; nil: ambient
		creds       map[string]*corev1.SecretKeySelector
		annotations map[string]string
		labels      map[string]string
		pull        []corev1.LocalObjectReference
		env         []corev1.EnvVar
		err         string // substring; "" no error
	}
	cases := []struct {
		name  string
		funcs *interceptor.Funcs
		objs  []client.Object
		want  want
	}{{
		name: "helm chart: the secret is named after the release",
		objs: []client.Object{deployment("velero", "velero-server", "velero", credentialEnv), serviceAccount("velero-server", nil)},
		want: want{deployment: "velero", serviceAccount: "velero-server", creds: map[string]*corev1.SecretKeySelector{
			"aws": sel("velero", "cloud"), "velero.io/gcp": sel("velero", "cloud"), "azure": sel("velero", "cloud"), "example.com/s3": sel("velero", "cloud"),
		}},
	}, {
		name: "velero install: cloud-credentials, account velero",
		objs: []client.Object{deployment("velero", "velero", "cloud-credentials", credentialEnv), serviceAccount("velero", nil)},
		want: want{deployment: "velero", serviceAccount: "velero", creds: map[string]*corev1.SecretKeySelector{"aws": sel("cloud-credentials", "cloud")}},
	}, {
		name: "items map a file to another key; each provider its own file",
		objs: func() []client.Object {
			d := deployment("velero", "", "", []corev1.EnvVar{{Name: EnvAWS, Value: "/creds/aws/credentials"}, {Name: EnvGCP, Value: "/creds/gcp.json"}})
			c := &d.Spec.Template.Spec.Containers[0]
			c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "aws", MountPath: "/creds/aws"}, corev1.VolumeMount{Name: "gcp", MountPath: "/creds"})
			d.Spec.Template.Spec.Volumes = append(d.Spec.Template.Spec.Volumes,
				corev1.Volume{Name: "aws", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "s3-keys", Items: []corev1.KeyToPath{{Key: "aws-ini", Path: "credentials"}}}}},
				corev1.Volume{Name: "gcp", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "gcs-key"}}})
			return []client.Object{d, serviceAccount("default", nil)}
		}(),
		want: want{deployment: "velero", serviceAccount: "default", creds: map[string]*corev1.SecretKeySelector{
			"aws": sel("s3-keys", "aws-ini"), "gcp": sel("gcs-key", "gcp.json"), "azure": nil,
		}},
	}, {
		name: "a subPath mount is the file itself",
		objs: func() []client.Object {
			d := deployment("velero", "velero", "", []corev1.EnvVar{{Name: EnvAzure, Value: "/etc/azure.env"}})
			c := &d.Spec.Template.Spec.Containers[0]
			c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "az", MountPath: "/etc/azure.env", SubPath: "env"})
			d.Spec.Template.Spec.Volumes = append(d.Spec.Template.Spec.Volumes,
				corev1.Volume{Name: "az", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "azure-creds"}}})
			return []client.Object{d, serviceAccount("velero", nil)}
		}(),
		want: want{deployment: "velero", serviceAccount: "velero", creds: map[string]*corev1.SecretKeySelector{"azure": sel("azure-creds", "env"), "aws": nil}},
	}, {
		name: "workload identity: no secret, the account's annotations, Azure's pod label, pull secrets",
		objs: func() []client.Object {
			d := deployment("velero", "velero-server", "", []corev1.EnvVar{{Name: "VELERO_NAMESPACE", Value: ns}})
			d.Spec.Template.Labels[AzureUseLabel] = "true"
			d.Spec.Template.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "registry"}, {Name: "mirror"}}
			sa := serviceAccount("velero-server", map[string]string{
				"eks.amazonaws.com/role-arn":                       "arn:aws:iam::111122223333:role/velero",
				"azure.workload.identity/client-id":                "00000000-0000-0000-0000-000000000001",
				"kubectl.kubernetes.io/last-applied-configuration": "{}",
			}, "mirror", "private")
			return []client.Object{d, sa}
		}(),
		want: want{
			deployment: "velero", serviceAccount: "velero-server",
			creds: map[string]*corev1.SecretKeySelector{"aws": nil, "gcp": nil, "azure": nil},
			annotations: map[string]string{
				"eks.amazonaws.com/role-arn":        "arn:aws:iam::111122223333:role/velero",
				"azure.workload.identity/client-id": "00000000-0000-0000-0000-000000000001",
			},
			labels: map[string]string{AzureUseLabel: "true"},
			pull:   []corev1.LocalObjectReference{{Name: "registry"}, {Name: "mirror"}, {Name: "private"}},
		},
	}, {
		name: "how Velero reaches the store: its proxy, a GCS emulator, AWS's STS endpoint and region, literal values only",
		objs: []client.Object{deployment("velero", "velero", "cloud-credentials", append([]corev1.EnvVar{
			{Name: "HTTPS_PROXY", Value: "http://proxy.corp:3128"},
			{Name: "NO_PROXY", Value: "10.0.0.0/8,.svc"},
			{Name: "http_proxy", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: sel("proxy", "url")}},
			{Name: "STORAGE_EMULATOR_HOST", Value: "127.0.0.1:4443"},
			{Name: "AWS_REGION", Value: "eu-west-1"},
			{Name: "AWS_ENDPOINT_URL_STS", Value: "http://minio.velero.svc:9000"},
			{Name: "AWS_ROLE_ARN", Value: "arn:aws:iam::111122223333:role/velero"},
			{Name: "AWS_DEFAULT_REGION", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: sel("aws", "region")}},
		}, credentialEnv...)), serviceAccount("velero", nil)},
		want: want{deployment: "velero", serviceAccount: "velero", creds: map[string]*corev1.SecretKeySelector{"aws": sel("cloud-credentials", "cloud")},
			env: []corev1.EnvVar{{Name: "HTTPS_PROXY", Value: "http://proxy.corp:3128"}, {Name: "NO_PROXY", Value: "10.0.0.0/8,.svc"},
				{Name: "STORAGE_EMULATOR_HOST", Value: "127.0.0.1:4443"}, {Name: "AWS_REGION", Value: "eu-west-1"},
				{Name: "AWS_ENDPOINT_URL_STS", Value: "http://minio.velero.svc:9000"}}},
	}, {
		name: "a file in no mounted secret",
		objs: []client.Object{deployment("velero", "velero", "", credentialEnv), serviceAccount("velero", nil)},
		want: want{deployment: "velero", serviceAccount: "velero", creds: map[string]*corev1.SecretKeySelector{"aws": nil}, err: "in no secret it mounts"},
	}, {
		name: "no Deployment",
		objs: []client.Object{serviceAccount("velero", nil)},
		want: want{err: "no Deployment in namespace velero runs Velero's server"},
	}, {
		name: "two Deployments, only one runs the server",
		objs: func() []client.Object {
			other := deployment("velero-ui", "velero", "ui-secret", credentialEnv)
			other.Spec.Template.Spec.Containers[0].Command = []string{"/velero-ui"}
			other.Spec.Template.Spec.Containers[0].Args = []string{"serve"}
			return []client.Object{other, deployment("backup", "velero", "cloud-credentials", credentialEnv), serviceAccount("velero", nil)}
		}(),
		want: want{deployment: "backup", serviceAccount: "velero", creds: map[string]*corev1.SecretKeySelector{"aws": sel("cloud-credentials", "cloud")}},
	}, {
		name: "two servers",
		objs: []client.Object{deployment("a", "velero", "x", credentialEnv), deployment("b", "velero", "y", credentialEnv), serviceAccount("velero", nil)},
		want: want{err: "Deployments a, b in namespace velero all run Velero's server"},
	}, {
		name:  "Forbidden to list Deployments",
		funcs: forbidden("deployments"),
		objs:  []client.Object{deployment("velero", "velero", "cloud-credentials", credentialEnv), serviceAccount("velero", nil)},
		want:  want{err: "grant list on deployments (apps) in namespace velero"},
	}, {
		name:  "Forbidden to get the ServiceAccount",
		funcs: forbidden("serviceaccounts"),
		objs:  []client.Object{deployment("velero", "velero", "cloud-credentials", credentialEnv), serviceAccount("velero", nil)},
		want:  want{err: "grant get on serviceaccounts in namespace velero"},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv, err := Discover(context.Background(), newClient(t, tc.funcs, tc.objs...), ns)
			if tc.want.deployment == "" {
				require.ErrorContains(t, err, tc.want.err)
				if tc.funcs != nil {
					require.True(t, apierrors.IsForbidden(errors.Cause(err)), "the API error stays one")
				}
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want.deployment, srv.Deployment)
			require.Equal(t, tc.want.serviceAccount, srv.ServiceAccount)
			require.Equal(t, tc.want.annotations, srv.Annotations)
			require.Equal(t, tc.want.labels, srv.PodLabels)
			require.Equal(t, tc.want.pull, srv.ImagePullSecrets)
			require.Equal(t, tc.want.env, srv.Env)
			for provider, want := range tc.want.creds {
				got, err := srv.CredentialsFor(provider)
				if tc.want.err != "" {
					require.ErrorContains(t, err, tc.want.err)
					continue
				}
				require.NoError(t, err)
				require.Equal(t, want, got, provider)
			}
		})
	}
}

func TestParseDefault(t *testing.T) {
	for _, tc := range []struct {
		in, out string
		err     bool
	}{
		{in: "auto", out: "auto"}, {in: "none", out: "none"}, {in: "", out: "none"},
		{in: "velero/cloud", out: "velero/cloud"}, {in: "cloud-credentials", out: "cloud-credentials/cloud"},
		{in: "/cloud", err: true}, {in: "a/b/c", err: true}, {in: "a/", err: true},
	} {
		d, err := ParseDefault(tc.in)
		if tc.err {
			require.Error(t, err, tc.in)
			continue
		}
		require.NoError(t, err)
		require.Equal(t, tc.out, d.String(), tc.in)
	}
}

func TestCredentials(t *testing.T) {
	bsl := &velerov1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"}, Spec: velerov1.BackupStorageLocationSpec{Provider: "aws"}}
	srv := func(context.Context) (Server, error) {
		return Discover(context.Background(), newClient(t, nil, deployment("velero", "velero", "velero", credentialEnv), serviceAccount("velero", nil)), ns)
	}
	broken := func(context.Context) (Server, error) { return Server{}, errors.New("no Deployment") }

	got, err := Credentials{Default: Default{Auto: true}, Server: srv}.DefaultFor(context.Background(), bsl)
	require.NoError(t, err)
	require.Equal(t, sel("velero", "cloud"), got)
	how, err := Credentials{Default: Default{Auto: true}, Server: srv}.Describe(context.Background(), bsl)
	require.NoError(t, err)
	require.Equal(t, "secret velero/velero key cloud (mounted by Velero's Deployment velero)", how)

	_, err = Credentials{Default: Default{Auto: true}, Server: broken}.DefaultFor(context.Background(), bsl)
	require.ErrorContains(t, err, "no Deployment")

	// An explicit value never discovers.
	got, err = Credentials{Default: Default{Secret: sel("mine", "k")}, Server: broken}.DefaultFor(context.Background(), bsl)
	require.NoError(t, err)
	require.Equal(t, sel("mine", "k"), got)
	got, err = Credentials{Server: broken}.DefaultFor(context.Background(), bsl)
	require.NoError(t, err)
	require.Nil(t, got)

	withCred := bsl.DeepCopy()
	withCred.Spec.Credential = sel("bsl-secret", "cloud")
	how, err = Credentials{Default: Default{Auto: true}, Server: broken}.Describe(context.Background(), withCred)
	require.NoError(t, err)
	require.Equal(t, "secret velero/bsl-secret key cloud, from the BackupStorageLocation's spec.credential", how)
}

func TestCache(t *testing.T) {
	lists := 0
	funcs := &interceptor.Funcs{List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
		lists++
		return c.List(ctx, list, opts...)
	}}
	c := newClient(t, funcs, serviceAccount("velero", nil))
	clk := clocktesting.NewFakePassiveClock(time.Unix(1000, 0))
	cache := &Cache{Reader: c, Namespace: ns, Clock: clk}
	ctx := context.Background()

	_, err := cache.Get(ctx)
	require.Error(t, err, "no Deployment yet")
	require.NoError(t, c.Create(ctx, deployment("velero", "velero", "cloud-credentials", credentialEnv)))
	s, err := cache.Get(ctx)
	require.NoError(t, err, "a failed discovery is not kept")
	require.Equal(t, "velero", s.Deployment)
	require.Equal(t, 2, lists)

	clk.SetTime(clk.Now().Add(DefaultTTL - time.Second))
	_, err = cache.Get(ctx)
	require.NoError(t, err)
	require.Equal(t, 2, lists, "kept for DefaultTTL")
	clk.SetTime(clk.Now().Add(2 * time.Second))
	_, err = cache.Get(ctx)
	require.NoError(t, err)
	require.Equal(t, 3, lists, "discovered again after DefaultTTL")
}

func TestFeatures(t *testing.T) {
	for _, tc := range []struct {
		name    string
		command []string
		args    []string
		want    []string
	}{
		{name: "none", command: []string{"/velero"}, args: []string{"server"}},
		{name: "helm chart", command: []string{"/velero"}, args: []string{"server", "--uploader-type=kopia", "--features=EnableCSI"}, want: []string{"EnableCSI"}},
		{name: "separate value, several", command: []string{"/velero", "server"}, args: []string{"--features", "EnableCSI, EnableAPIGroupVersions"}, want: []string{"EnableCSI", "EnableAPIGroupVersions"}},
		{name: "repeated", command: []string{"/velero"}, args: []string{"server", "--features=A", "--features=B"}, want: []string{"A", "B"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, features(&corev1.Container{Command: tc.command, Args: tc.args}))
		})
	}
}
