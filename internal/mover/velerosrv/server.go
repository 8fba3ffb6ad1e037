package velerosrv

import (
	"context"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/pkg/errors"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The environment variables through which Velero's server (and its object store plugins)
// find their credentials file, by provider. Both `velero install` and Velero's helm chart
// set all four to the file of the mounted credentials secret (/credentials/cloud), and set
// none when no secret is used (workload identity).
const (
	EnvAWS     = "AWS_SHARED_CREDENTIALS_FILE"
	EnvGCP     = "GOOGLE_APPLICATION_CREDENTIALS"
	EnvAzure   = "AZURE_CREDENTIALS_FILE"
	EnvAlibaba = "ALIBABA_CLOUD_CREDENTIALS_FILE"
)

// credentialEnvs are the variables Discover reads, in a fixed order.
var credentialEnvs = []string{EnvAWS, EnvGCP, EnvAzure, EnvAlibaba}

// IdentityAnnotations are the ServiceAccount annotations of the clouds' workload
// identities that are copied from Velero's ServiceAccount, and nothing else: EKS IAM roles
// for service accounts (IRSA), GKE Workload Identity, Azure Workload Identity.
var IdentityAnnotations = []string{
	EKSRoleARNAnnotation,
	"eks.amazonaws.com/audience",
	"eks.amazonaws.com/sts-regional-endpoints",
	"eks.amazonaws.com/token-expiration",
	"iam.gke.io/gcp-service-account",
	AzureClientIDAnnotation,
	"azure.workload.identity/tenant-id",
	"azure.workload.identity/service-account-token-expiration",
}

// AzureClientIDAnnotation is the ServiceAccount annotation that names the Azure identity
// of Azure Workload Identity. That identity trusts an account only through a federated
// identity credential, which names one exact subject (system:serviceaccount:NS:NAME).
const AzureClientIDAnnotation = "azure.workload.identity/client-id"

// StoreEnv are the environment variables of Velero's server container that say how it
// reaches the object store, and nothing else: its proxy, and the Go GCS client's emulator
// endpoint (cloud.google.com/go/storage honours STORAGE_EMULATOR_HOST in Velero's GCP
// plugin and in kopia alike: a GCS-compatible store that is not Google's). Workers and
// command pods reach the store the same way. Only literal values are copied: a value
// from a secret or a field of Velero's pod means nothing in another pod.
//
// The AWS variables are the AWS SDK's STS endpoint and region, which Velero's AWS plugin
// (aws-sdk-go-v2) honours: with EKS web identity (IRSA) a worker asks STS for the S3 keys
// at the endpoint Velero's server uses (kopia/store's webidentity.go: AWS_ENDPOINT_URL_STS,
// else AWS_ENDPOINT_URL, else the regional endpoint of AWS_REGION). EKS's webhook injects
// the token file and role itself into every pod of the annotated account.
var StoreEnv = []string{
	"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
	"STORAGE_EMULATOR_HOST",
	"AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL", "AWS_STS_REGIONAL_ENDPOINTS", "AWS_REGION", "AWS_DEFAULT_REGION",
}

// AzureUseLabel is the pod label Azure Workload Identity's webhook acts on: it injects
// the projected token and the AZURE_* environment only into pods that carry it.
const AzureUseLabel = "azure.workload.identity/use"

// EKSRoleARNAnnotation is the ServiceAccount annotation of EKS IAM roles for service
// accounts (IRSA): EKS's pod identity webhook gives the pods of such an account the
// role's projected token and AWS_ROLE_ARN.
const EKSRoleARNAnnotation = "eks.amazonaws.com/role-arn"

// InjectedEnv are the environment variables a cloud's pod identity webhook puts into the
// containers of a pod whose ServiceAccount carries annotations (and whose pod carries
// labels): EKS's amazon-eks-pod-identity-webhook sets AWS_ROLE_ARN for
// eks.amazonaws.com/role-arn (pkg/handler/handler.go, getPodSpecPatch), Azure Workload
// Identity's webhook sets AZURE_FEDERATED_TOKEN_FILE for a pod labelled
// azure.workload.identity/use=true whose account has the client-id annotation. GKE's
// identity needs none: its metadata server answers every pod of the account.
func InjectedEnv(annotations, podLabels map[string]string) []string {
	var env []string
	if annotations[EKSRoleARNAnnotation] != "" {
		env = append(env, "AWS_ROLE_ARN")
	}
	if annotations[AzureClientIDAnnotation] != "" && podLabels[AzureUseLabel] == "true" {
		env = append(env, "AZURE_FEDERATED_TOKEN_FILE")
	}
	return env
}

// Server is how Velero's server runs: what Discover found in its Deployment and
// ServiceAccount.
type Server struct {
	// Namespace and Deployment name Velero's server Deployment.
	Namespace, Deployment string
	// ServiceAccount is the account of its pods ("default" when the template names none).
	ServiceAccount string
	// Annotations are the IdentityAnnotations the ServiceAccount carries.
	Annotations map[string]string
	// PodLabels are the labels of its pod template that worker pods need too
	// (AzureUseLabel).
	PodLabels map[string]string
	// ImagePullSecrets are the pod template's and then the ServiceAccount's, without
	// duplicates.
	ImagePullSecrets []corev1.LocalObjectReference
	// Env are the StoreEnv variables its server container sets, in its order.
	Env []corev1.EnvVar
	// Features are the feature flags its server container passes (--features, e.g.
	// EnableCSI), in their order; nil when it passes none.
	Features []string

	// credentials are what each of credentialEnvs leads to; an unset variable is absent.
	credentials map[string]mounted
}

// mounted is where one credentials variable leads.
type mounted struct {
	file   string
	secret *corev1.SecretKeySelector // nil: the file is in no mounted secret
}

// CredentialsFor returns the secret key of the credentials Velero's server reads for
// provider (a BackupStorageLocation's spec.provider: "aws", "velero.io/gcp", ...; any
// other provider is S3-compatible, as the repository treats it, so it reads the AWS
// variable). nil, nil: Velero's Deployment sets no credentials file for it, so Velero
// runs with ambient credentials (workload identity, instance roles). A file that is in
// no mounted secret is an error: snapmove could not give it to its workers.
func (s Server) CredentialsFor(provider string) (*corev1.SecretKeySelector, error) {
	env := providerEnv(provider)
	m, ok := s.credentials[env]
	if !ok {
		return nil, nil
	}
	if m.secret == nil {
		return nil, errors.Errorf("Velero's Deployment %s/%s sets %s=%s, which is in no secret it mounts; "+
			"name the secret with --default-credentials-secret NAME/KEY (or none: ambient credentials)",
			s.Namespace, s.Deployment, env, m.file)
	}
	sel := *m.secret
	return &sel, nil
}

// providerEnv is the credentials variable of provider.
func providerEnv(provider string) string {
	switch strings.TrimPrefix(provider, "velero.io/") {
	case "gcp":
		return EnvGCP
	case "azure":
		return EnvAzure
	case "alibabacloud":
		return EnvAlibaba
	}
	return EnvAWS
}

// Discover finds Velero's server Deployment in namespace (the one whose container runs
// `/velero server`, as `velero install` and Velero's helm chart render it) and its
// ServiceAccount, and returns what the mover takes from them. It only reads. A namespace
// without such a Deployment, or with more than one, is an error that says how to name
// the credentials instead; Forbidden says which rights to grant.
func Discover(ctx context.Context, c client.Reader, namespace string) (Server, error) {
	list := &appsv1.DeploymentList{}
	if err := c.List(ctx, list, client.InNamespace(namespace)); err != nil {
		if apierrors.IsForbidden(err) {
			return Server{}, errors.Wrapf(err, "finding Velero's server Deployment: grant list on deployments (apps) in namespace %s, "+
				"or name the credentials of BackupStorageLocations without spec.credential with --default-credentials-secret NAME/KEY (or none)", namespace)
		}
		return Server{}, errors.Wrapf(err, "listing the Deployments of namespace %s to find Velero's server", namespace)
	}
	var found []*appsv1.Deployment
	for i := range list.Items {
		if serverContainer(&list.Items[i].Spec.Template.Spec) != nil {
			found = append(found, &list.Items[i])
		}
	}
	switch len(found) {
	case 0:
		return Server{}, errors.Errorf("no Deployment in namespace %s runs Velero's server (/velero server); "+
			"is Velero installed there? Name the credentials of BackupStorageLocations without spec.credential "+
			"with --default-credentials-secret NAME/KEY (or none: ambient credentials)", namespace)
	case 1:
	default:
		names := make([]string, 0, len(found))
		for _, d := range found {
			names = append(names, d.Name)
		}
		sort.Strings(names)
		return Server{}, errors.Errorf("Deployments %s in namespace %s all run Velero's server; "+
			"name the credentials with --default-credentials-secret NAME/KEY (or none)", strings.Join(names, ", "), namespace)
	}
	d := found[0]
	spec := &d.Spec.Template.Spec
	s := Server{
		Namespace: namespace, Deployment: d.Name, ServiceAccount: spec.ServiceAccountName,
		credentials: credentials(serverContainer(spec), spec.Volumes),
	}
	if s.ServiceAccount == "" {
		s.ServiceAccount = "default"
	}
	for _, e := range serverContainer(spec).Env {
		if slices.Contains(StoreEnv, e.Name) && e.ValueFrom == nil {
			s.Env = append(s.Env, corev1.EnvVar{Name: e.Name, Value: e.Value})
		}
	}
	s.Features = features(serverContainer(spec))
	if v, ok := d.Spec.Template.Labels[AzureUseLabel]; ok {
		s.PodLabels = map[string]string{AzureUseLabel: v}
	}
	sa := &corev1.ServiceAccount{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: s.ServiceAccount}, sa); err != nil {
		if apierrors.IsForbidden(err) {
			return Server{}, errors.Wrapf(err, "reading Velero's ServiceAccount %s/%s (its workload identity and pull secrets): grant get on serviceaccounts in namespace %s",
				namespace, s.ServiceAccount, namespace)
		}
		return Server{}, errors.Wrapf(err, "getting Velero's ServiceAccount %s/%s (of Deployment %s)", namespace, s.ServiceAccount, d.Name)
	}
	for _, k := range IdentityAnnotations {
		if v, ok := sa.Annotations[k]; ok {
			if s.Annotations == nil {
				s.Annotations = map[string]string{}
			}
			s.Annotations[k] = v
		}
	}
	for _, ref := range append(append([]corev1.LocalObjectReference(nil), spec.ImagePullSecrets...), sa.ImagePullSecrets...) {
		if ref.Name != "" && !slices.Contains(s.ImagePullSecrets, ref) {
			s.ImagePullSecrets = append(s.ImagePullSecrets, ref)
		}
	}
	return s, nil
}

// serverContainer is the container of spec that runs Velero's server: command /velero
// (any path ending in velero) with first argument "server", whether the argument is
// in args or in the command itself.
func serverContainer(spec *corev1.PodSpec) *corev1.Container {
	for i := range spec.Containers {
		c := &spec.Containers[i]
		argv := append(append([]string(nil), c.Command...), c.Args...)
		if len(c.Command) > 0 && len(argv) > 1 && path.Base(argv[0]) == "velero" && argv[1] == "server" {
			return c
		}
	}
	return nil
}

// features are the values of c's --features flags (--features=A,B or --features A,B),
// as Velero's server reads them (a string slice: every occurrence counts).
func features(c *corev1.Container) []string {
	argv := append(append([]string(nil), c.Command...), c.Args...)
	var out []string
	for i := 0; i < len(argv); i++ {
		var v string
		switch a := argv[i]; {
		case strings.HasPrefix(a, "--features="):
			v = strings.TrimPrefix(a, "--features=")
		case a == "--features" && i+1 < len(argv):
			i++
			v = argv[i]
		default:
			continue
		}
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				out = append(out, f)
			}
		}
	}
	return out
}

// credentials follows each credentials variable of c to the mount that holds its file
// and the secret that volume shows.
func credentials(c *corev1.Container, volumes []corev1.Volume) map[string]mounted {
	out := map[string]mounted{}
	for _, env := range c.Env {
		if !slices.Contains(credentialEnvs, env.Name) || env.Value == "" {
			continue
		}
		out[env.Name] = mounted{file: env.Value, secret: secretOf(path.Clean(env.Value), c.VolumeMounts, volumes)}
	}
	return out
}

// secretOf is the secret key whose file is file, in the mounts of a container: the
// deepest mount that holds it, if its volume is a secret.
func secretOf(file string, mounts []corev1.VolumeMount, volumes []corev1.Volume) *corev1.SecretKeySelector {
	var best *corev1.VolumeMount
	rel := ""
	for i := range mounts {
		m := &mounts[i]
		dir := path.Clean(m.MountPath)
		var r string
		switch {
		case m.SubPath != "" && file == dir:
			r = m.SubPath // the mount is the file itself
		case m.SubPath == "" && strings.HasPrefix(file, strings.TrimSuffix(dir, "/")+"/"):
			r = strings.TrimPrefix(file, strings.TrimSuffix(dir, "/")+"/")
		default:
			continue
		}
		if best == nil || len(dir) > len(path.Clean(best.MountPath)) {
			best, rel = m, r
		}
	}
	if best == nil {
		return nil
	}
	for _, v := range volumes {
		if v.Name != best.Name || v.Secret == nil || v.Secret.SecretName == "" {
			continue
		}
		key := rel
		if len(v.Secret.Items) > 0 {
			key = ""
			for _, it := range v.Secret.Items {
				if path.Clean(it.Path) == rel {
					key = it.Key
				}
			}
		}
		if key == "" || strings.Contains(key, "/") {
			return nil
		}
		return &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: v.Secret.SecretName}, Key: key}
	}
	return nil
}

// Describe names sel as the credentials Velero's server reads: for the user's commands,
// which say what they used.
func (s Server) Describe(sel *corev1.SecretKeySelector) string {
	return fmt.Sprintf("secret %s/%s key %s (mounted by Velero's Deployment %s)", s.Namespace, sel.Name, sel.Key, s.Deployment)
}
