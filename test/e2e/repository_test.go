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
	return s.kopiaConnectTo(t, nil, "s3", "--bucket", s.bucket, "--prefix", prefix,
		"--endpoint", s.s3Endpoint, "--disable-tls", "--access-key", s.accessKey, "--secret-access-key", s.secretKey)
}

// kopiaConnectTo runs `kopia repository connect STORAGE...` (the storage and its flags) with
// extraEnv, read-only, with the repository password and a config file and cache of its
// own, and returns the args (--config-file) the later kopia commands take.
func (s *stack) kopiaConnectTo(t *testing.T, extraEnv []string, storage ...string) []string {
	t.Helper()
	dir := t.TempDir()
	cfg := []string{"--config-file", filepath.Join(dir, "repo.config")}
	args := append(append([]string{"repository", "connect"}, storage...),
		"--password", s.repoPassword(t), "--cache-directory", filepath.Join(dir, "cache"), "--readonly")
	args = append(args, cfg...)
	out, err := runEnv(extraEnv, s.kopia, args...)
	require.NoError(t, err, "kopia %s:\n%s", strings.Join(args, " "), out)
	return cfg
}

// s3Client talks to the stack's MinIO with its root credentials.
func (s *stack) s3Client(t *testing.T) *minio.Client {
	t.Helper()
	c, err := minio.New(s.s3Endpoint, &minio.Options{Creds: credentials.NewStaticV4(s.accessKey, s.secretKey, "")})
	require.NoError(t, err)
	return c
}
