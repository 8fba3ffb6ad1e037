//go:build e2e

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	crclient "sigs.k8s.io/controller-runtime/pkg/client"
)

// TestChart: snapmove's chart (charts/snapmove), as a real helm renders and installs it.
//   - The stack's mover is the chart's release (hack/install-mover.sh), so every other test
//     runs on what the chart installs; here: the release is deployed and owns the mover.
//   - examples/mover.yaml and examples/monitoring.yaml are the chart's rendering
//     (hack/render-examples.sh), byte for byte.
//   - helm lint passes, with and without the Prometheus Operator objects.
//   - In another namespace, every object is in it and binds its account there: nothing
//     assumes "velero".
//   - Values that cannot work together fail the install with a message.
func TestChart(t *testing.T) {
	parallel(t)
	s := env
	helm := filepath.Join(os.Getenv("STACK_BIN"), "helm")
	chart := filepath.Join(repoRoot(), "charts", "snapmove")
	helmOut := func(args ...string) (string, error) {
		out, err := exec.CommandContext(ctxT(t), helm, args...).CombinedOutput()
		return string(out), err
	}

	t.Run("the stack's mover is the release", func(t *testing.T) {
		out, err := helmOut("status", "snapmove", "-n", s.veleroNS)
		require.NoError(t, err, out)
		require.Contains(t, out, "STATUS: deployed")
		var d appsv1.Deployment
		require.NoError(t, s.c.Get(ctxT(t), crclient.ObjectKey{Namespace: s.veleroNS, Name: "snapmove-mover"}, &d))
		require.Equal(t, "Helm", d.Labels["app.kubernetes.io/managed-by"])
		require.Equal(t, "snapmove", d.Annotations["meta.helm.sh/release-name"])
	})

	t.Run("examples are its rendering", func(t *testing.T) {
		dir := t.TempDir()
		cmd := exec.CommandContext(ctxT(t), filepath.Join(repoRoot(), "hack", "render-examples.sh"), dir)
		cmd.Env = append(os.Environ(), "HELM="+helm)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, string(out))
		for _, f := range []string{"mover.yaml", "monitoring.yaml"} {
			want, err := os.ReadFile(filepath.Join(dir, f))
			require.NoError(t, err)
			got, err := os.ReadFile(filepath.Join(repoRoot(), "examples", f))
			require.NoError(t, err)
			require.Equal(t, string(want), string(got), "examples/%s is not the chart's rendering: run hack/render-examples.sh", f)
		}
	})

	t.Run("lint", func(t *testing.T) {
		for _, set := range []string{"", "metrics.podMonitor.enabled=true,metrics.prometheusRule.enabled=true", "metrics.serviceMonitor.enabled=true"} {
			args := []string{"lint", "--strict", chart}
			if set != "" {
				args = append(args, "--set", set)
			}
			out, err := helmOut(args...)
			require.NoError(t, err, out)
		}
	})

	t.Run("any namespace", func(t *testing.T) {
		out, err := helmOut("template", "snapmove", chart, "--namespace", "backup-system",
			"--set", "metrics.serviceMonitor.enabled=true,metrics.prometheusRule.enabled=true")
		require.NoError(t, err, out)
		require.NotContains(t, out, "velero\n")
		require.NotContains(t, out, "-n velero")
		require.Contains(t, out, "namespace: backup-system")
		require.Contains(t, out, "name: snapmove-mover-backup-system", "cluster-scoped objects per namespace")
		require.Contains(t, out, "subjects: [{kind: ServiceAccount, name: snapmove-mover, namespace: backup-system}]")
	})

	t.Run("values that cannot work", func(t *testing.T) {
		out, err := helmOut("template", "snapmove", chart, "--set", "metrics.podMonitor.enabled=true,metrics.serviceMonitor.enabled=true")
		require.Error(t, err)
		require.Contains(t, out, "enable one")
		out, err = helmOut("template", "snapmove", chart, "--set", "metrics.serviceMonitor.enabled=true,metrics.service.enabled=false")
		require.Error(t, err)
		require.Contains(t, out, "needs metrics.service.enabled")
		require.True(t, strings.Contains(out, "Error"), out)
	})
}
