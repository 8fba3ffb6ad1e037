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

// snapmoveOut is snapmove's standard output alone: what a script reads (-o json, a listing),
// without what the commands say on stderr (which credentials they used, warnings). It fails
// the test on a non-zero exit, showing both.
func (s *stack) snapmoveOut(t *testing.T, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(filepath.Join(repoRoot(), "bin", "snapmove"), args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run(), "snapmove %s:\n%s%s", strings.Join(args, " "), stdout.String(), stderr.String())
	return stdout.String()
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
