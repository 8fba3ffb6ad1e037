package expose

import (
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// IdentityParams describe the identity of one worker pod.
type IdentityParams struct {
	Operation       Operation
	Name, Namespace string // the DataUpload's/DataDownload's; the pod is named after it too
	Owner           metav1.OwnerReference
	// StorageLocation is the BackupStorageLocation the movement uses.
	StorageLocation string
	// Secrets are the secrets opening its repository reads (repository.SecretNames).
	Secrets []string
	// Annotations go onto the ServiceAccount: the workload-identity annotations of
	// Velero's ServiceAccount (velerosrv.IdentityAnnotations), so that the worker gets
	// the cloud identity of Velero's server.
	//
	// A per-movement account name works only with a trust that matches many account
	// names. EKS IRSA: the IAM role's trust policy must match the subject with
	// StringLike, "oidc...:sub" = "system:serviceaccount:velero:*" (EKS Pod Identity
	// associations name one exact account: not supported with per-movement accounts).
	// GKE Workload Identity: grant the role to the namespace's principal set,
	// principalSet://iam.googleapis.com/projects/PROJECT_NUMBER/locations/global/workloadIdentityPools/PROJECT_ID.svc.id.goog/namespace/velero
	// (or, with the iam.gke.io/gcp-service-account annotation, roles/iam.workloadIdentityUser
	// on that Google service account to the same principal set). AKS Workload Identity:
	// a federated identity credential matches one exact subject, so per-movement accounts
	// cannot work: run workers with --worker-service-account set to an account federated
	// once (then nothing is copied: the account is the operator's).
	Annotations map[string]string
	// CBT grants get of VolumeSnapshots in the namespace, the one right a CSI
	// SnapshotMetadata service checks (a SubjectAccessReview for get volumesnapshots in
	// the snapshot's namespace, naming no object: external-snapshot-metadata v1.0.0
	// pkg/internal/authz/sar_authorizer.go), for a block backup that asks it what changed.
	// It cannot be narrowed to the one snapshot: the review names none.
	CBT bool
}

// WorkerIdentity is the ServiceAccount of one worker pod, named after its movement, with
// a Role and RoleBinding that grant only what that worker uses: get of its own
// DataUpload or DataDownload (its spec, its phase and spec.cancel), patch of its progress
// report (ProgressReport, the ConfigMap of the same name), get of its
// BackupStorageLocation and of the secrets its repository needs. A worker cannot read
// another secret, another movement or another location, and cannot write its movement at
// all: with no status subresource, a patch of the movement would rewrite the spec the
// controller acts on. So a compromised worker (a hostile repository, a bug in the data
// path) reaches nothing beyond its own volume, and can change nothing the mover acts on.
// Every object is owned by the movement (garbage collected with it) and carries Labels;
// the ServiceAccount also carries p.Annotations (the cloud identity of Velero's server).
func WorkerIdentity(p IdentityParams) (*corev1.ServiceAccount, *rbacv1.Role, *rbacv1.RoleBinding) {
	meta := metav1.ObjectMeta{
		Name: p.Name, Namespace: p.Namespace, Labels: Labels(p.Operation, p.Name, p.Owner.UID),
		OwnerReferences: []metav1.OwnerReference{p.Owner},
	}
	movement := "datauploads"
	if p.Operation == Restore {
		movement = "datadownloads"
	}
	sa := &corev1.ServiceAccount{ObjectMeta: *meta.DeepCopy()}
	for k, v := range p.Annotations {
		if sa.Annotations == nil {
			sa.Annotations = map[string]string{}
		}
		sa.Annotations[k] = v
	}
	role := &rbacv1.Role{
		ObjectMeta: *meta.DeepCopy(),
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{velerov2alpha1.SchemeGroupVersion.Group}, Resources: []string{movement}, ResourceNames: []string{p.Name}, Verbs: []string{"get"}},
			{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{p.Name}, Verbs: []string{"patch"}},
			{APIGroups: []string{velerov1.SchemeGroupVersion.Group}, Resources: []string{"backupstoragelocations"}, ResourceNames: []string{p.StorageLocation}, Verbs: []string{"get"}},
			{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: p.Secrets, Verbs: []string{"get"}},
		},
	}
	if p.CBT {
		role.Rules = append(role.Rules, rbacv1.PolicyRule{APIGroups: []string{"snapshot.storage.k8s.io"}, Resources: []string{"volumesnapshots"}, Verbs: []string{"get"}})
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: *meta.DeepCopy(),
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: p.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: p.Name, Namespace: p.Namespace}},
	}
	return sa, role, binding
}
