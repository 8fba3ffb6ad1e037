//go:build e2e

package e2e

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	crclient "sigs.k8s.io/controller-runtime/pkg/client"
)

// repoPassword reads the repository password the mover uses (Velero's secret).
func (s *stack) repoPassword(t *testing.T) string {
	t.Helper()
	var sec corev1.Secret
	require.NoError(t, s.c.Get(ctxT(t), crclient.ObjectKey{Namespace: s.veleroNS, Name: "velero-repo-credentials"}, &sec))
	return strings.TrimSpace(string(sec.Data["repository-password"]))
}

// kopiaConnect connects the kopia CLI to the repository of one source namespace, read-only,
// as a user inspecting Velero's repository would, and returns the kopia args prefix.
func (s *stack) kopiaConnect(t *testing.T, ns, prefix string) []string {
	t.Helper()
	dir := t.TempDir()
	cfg := []string{"--config-file", filepath.Join(dir, "repo.config")}
	args := append([]string{"repository", "connect", "s3", "--bucket", s.bucket, "--prefix", prefix,
		"--endpoint", s.s3Endpoint, "--disable-tls", "--access-key", s.accessKey, "--secret-access-key", s.secretKey,
		"--password", s.repoPassword(t), "--cache-directory", filepath.Join(dir, "cache"), "--readonly"}, cfg...)
	run(t, s.kopia, args...)
	return cfg
}

// s3Client talks to the stack's MinIO with its root credentials.
func (s *stack) s3Client(t *testing.T) *minio.Client {
	t.Helper()
	c, err := minio.New(s.s3Endpoint, &minio.Options{Creds: credentials.NewStaticV4(s.accessKey, s.secretKey, "")})
	require.NoError(t, err)
	return c
}
