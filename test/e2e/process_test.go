//go:build e2e

package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// run executes a CLI and returns its combined output; it fails the test on a non-zero exit.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := runErr(name, args...)
	require.NoError(t, err, "%s %s:\n%s", filepath.Base(name), strings.Join(args, " "), out)
	return out
}

func runErr(name string, args ...string) (string, error) {
	var b bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &b, &b
	err := cmd.Run()
	return b.String(), err
}

// snapmove runs the snapmove binary that `make build` made (bin/snapmove) against the stack.
func (s *stack) snapmove(t *testing.T, args ...string) string {
	t.Helper()
	return run(t, filepath.Join(repoRoot(), "bin", "snapmove"), args...)
}

func (s *stack) veleroCLI(t *testing.T, args ...string) string {
	t.Helper()
	return run(t, s.velero, append([]string{"-n", s.veleroNS}, args...)...)
}

func runEnv(extraEnv []string, name string, args ...string) (string, error) {
	var b bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), extraEnv...)
	cmd.Stdout, cmd.Stderr = &b, &b
	err := cmd.Run()
	return b.String(), err
}
