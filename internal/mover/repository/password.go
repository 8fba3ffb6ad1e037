package repository

import (
	"context"
	"strings"

	"github.com/pkg/errors"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The repository password secret Velero shares between all its kopia repositories
// (velero pkg/repository/keys). Stock Velero and snapmove must read the same one, or
// each would refuse the other's repositories.
const (
	PasswordSecretName = "velero-repo-credentials"
	PasswordSecretKey  = "repository-password"
)

// Password returns the repository password from secret velero-repo-credentials (key
// repository-password) in veleroNamespace, trimmed of whitespace as Velero trims it. A
// missing secret is an error for which apierrors.IsNotFound holds.
//
// snapmove never creates the secret: the password is Velero's. Velero's server creates
// it when it starts (pkg/cmd/server/server.go initRepoManager calls
// pkg/repository/keys/keys.go EnsureCommonRepositoryKey, in v1.18.1), with its static
// default; a password made up here would lock out a new cluster's Velero, which would
// make its own, and a disaster recovery from the bucket could never open the
// repositories (issue #21).
func Password(ctx context.Context, c client.Reader, veleroNamespace string) (string, error) {
	return readPassword(ctx, c, veleroNamespace)
}

func readPassword(ctx context.Context, c client.Reader, namespace string) (string, error) {
	secret := &corev1.Secret{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: PasswordSecretName}, secret); err != nil {
		return "", errors.Wrapf(err, "getting secret %s/%s", namespace, PasswordSecretName)
	}
	value, ok := secret.Data[PasswordSecretKey]
	if !ok {
		return "", errors.Errorf("secret %s/%s has no key %s", namespace, PasswordSecretName, PasswordSecretKey)
	}
	password := strings.TrimSpace(string(value))
	if password == "" {
		return "", errors.Errorf("secret %s/%s key %s is empty", namespace, PasswordSecretName, PasswordSecretKey)
	}
	return password, nil
}
