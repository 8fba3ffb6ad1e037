package repository

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"strings"

	"github.com/pkg/errors"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The repository password secret Velero shares between all its kopia repositories
// (velero pkg/repository/keys). Stock Velero and snapmove must read the same one, or
// each would refuse the other's repositories.
const (
	PasswordSecretName = "velero-repo-credentials"
	PasswordSecretKey  = "repository-password"
)

// passwordBytes is the entropy of a generated password (base64url: 43 characters).
const passwordBytes = 32

// EnsurePassword returns the repository password from secret velero-repo-credentials
// (key repository-password) in veleroNamespace, trimmed of whitespace as Velero trims it.
// When the secret does not exist it creates one with a random password; when another
// client creates it first, it reads that one. A secret without the key, or with an empty
// value, is an error: replacing it would lock out existing repositories.
func EnsurePassword(ctx context.Context, c client.Client, veleroNamespace string) (string, error) {
	password, err := readPassword(ctx, c, veleroNamespace)
	if err == nil || !apierrors.IsNotFound(errors.Cause(err)) {
		return password, err
	}

	generated, err := randomPassword()
	if err != nil {
		return "", err
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: veleroNamespace, Name: PasswordSecretName},
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{PasswordSecretKey: []byte(generated)},
	}
	err = c.Create(ctx, secret)
	switch {
	case err == nil:
		return generated, nil
	case apierrors.IsAlreadyExists(err):
		return readPassword(ctx, c, veleroNamespace)
	default:
		return "", errors.Wrapf(err, "creating secret %s/%s", veleroNamespace, PasswordSecretName)
	}
}

// Password returns the repository password from secret velero-repo-credentials (key
// repository-password) in veleroNamespace, like EnsurePassword but never creating it: it
// is what paths that only read or forget (restore, check, delete) use, since a password
// made up for them could never open an existing repository. A missing secret is an
// error for which apierrors.IsNotFound holds.
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

func randomPassword() (string, error) {
	b := make([]byte, passwordBytes)
	if _, err := rand.Read(b); err != nil {
		return "", errors.Wrap(err, "generating repository password")
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
