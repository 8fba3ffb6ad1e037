package cmd

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/require"

	"github.com/snapmove/snapmove/internal/doctor"
)

// run is Main with args; it returns the exit status, stdout and stderr.
func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := Main(context.Background(), args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestCommandTree(t *testing.T) {
	root := NewRoot(&bytes.Buffer{}, &bytes.Buffer{})
	for _, tc := range []struct {
		path   string
		hidden bool
	}{
		{path: "list"}, {path: "ls"}, {path: "restore-files"}, {path: "verify"}, {path: "report"},
		{path: "forget-orphans"}, {path: "cancel"}, {path: "handover"}, {path: "doctor"}, {path: "install"},
		{path: "version"}, {path: "help"},
		{path: "completion"}, {path: "completion bash"}, {path: "completion zsh"}, {path: "completion fish"}, {path: "completion powershell"},
		{path: "mover", hidden: true}, {path: "mover controller", hidden: true}, {path: "mover worker", hidden: true},
		{path: "mover receive-files", hidden: true},
	} {
		t.Run(tc.path, func(t *testing.T) {
			c, _, err := root.Find(strings.Fields(tc.path))
			require.NoError(t, err)
			require.Equal(t, "snapmove "+tc.path, c.CommandPath())
			require.Equal(t, tc.hidden, c.Hidden)
		})
	}
}

// TestFlagShapes parses the command lines the e2e suite, the command pods
// (catalog.InCluster, expose.CommandPod) and the docs run, without running them.
func TestFlagShapes(t *testing.T) {
	offline := []string{"--provider", "azure", "--bucket", "b", "--prefix", "p/", "--credentials-file", "/c", "--password-file", "/p",
		"--config", "resourceGroup=rg", "--config", "storageAccount=sa"}
	for _, tc := range []struct {
		args    []string
		want    map[string]string // flag: value after parsing
		wantErr string            // of flag parsing or argument validation
	}{
		{args: []string{"list", "nightly"}, want: map[string]string{"namespace": "velero", "output": "text", "files": "true"}},
		{args: []string{"list", "nightly", "-o", "json"}, want: map[string]string{"output": "json"}},
		{args: []string{"list", "nightly", "-o", "yaml", "-n", "backups", "--context", "prod"}, want: map[string]string{"output": "yaml", "namespace": "backups", "context": "prod"}},
		{args: []string{"list", "nightly", "--namespace=backups"}, want: map[string]string{"namespace": "backups"}},
		{args: []string{"list", "nightly", "--namespace", "backups", "--kubeconfig", "/k"}, want: map[string]string{"namespace": "backups", "kubeconfig": "/k"}},
		{args: append([]string{"list", "nightly", "-o", "json"}, offline...), want: map[string]string{"provider": "azure", "bucket": "b", "prefix": "p/",
			"credentials-file": "/c", "password-file": "/p", "config": "[resourceGroup=rg,storageAccount=sa]"}},
		{args: []string{"list", "a", "b"}, wantErr: "usage: snapmove list [BACKUP]"},
		{args: []string{"list", "-w"}, want: map[string]string{"watch": "true", "output": "text"}},
		{args: []string{"list", "nightly", "--watch", "-o", "json"}, want: map[string]string{"watch": "true", "output": "json"}},
		{args: []string{"list", "-o", "xml"}, wantErr: `-o "xml": want text, json or yaml`},
		{args: []string{"ls", "nightly", "app/data", "dir07"}, want: map[string]string{"output": "text"}},
		{args: []string{"ls", "nightly", "app/data", "names", "-o", "json"}, want: map[string]string{"output": "json"}},
		{args: append([]string{"ls", "no-backup", "app/data", "a/b", "--snapshot-id", "k1"}, offline...), want: map[string]string{"snapshot-id": "k1", "bucket": "b"}},
		{args: []string{"ls", "nightly"}, wantErr: "usage: snapmove ls BACKUP NAMESPACE/PVC"},
		{args: []string{"restore-files", "nightly", "app/data", "gen", "--to", "/out"}, want: map[string]string{"to": "/out", "sparse": "true"}},
		{args: []string{"restore-files", "nightly", "app/data", "dir07/f03", "dir12", "--to", "/out"}, want: map[string]string{"to": "/out"}},
		{args: append([]string{"restore-files", "nightly", "app/data", "dir07/f0*", "--to", "/out"}, offline...), want: map[string]string{"to": "/out"}},
		{args: []string{"restore-files", "nightly", "app/data", "dir12", "dir07/f03", "--to-pvc", "ns2/live"}, want: map[string]string{"to-pvc": "ns2/live"}},
		{args: []string{"restore-files", "nightly", "app/data", "dir12", "--to-pvc", "ns2/live", "--rate", "4096", "--timeout", "60s"},
			want: map[string]string{"rate": "4096", "timeout": "1m0s"}},
		{args: append([]string{"restore-files", "no-backup", "app/data", "a/b/file", "--to", "/out", "--snapshot-id", "k1"}, offline...), want: map[string]string{"snapshot-id": "k1"}},
		{args: []string{"restore-files", "nightly", "app/data"}, wantErr: "usage: snapmove restore-files"},
		{args: []string{"verify", "nightly", "--level", "full"}, want: map[string]string{"level": "full", "in-cluster": "false"}},
		{args: []string{"verify", "nightly", "--level", "full", "--in-cluster"}, want: map[string]string{"in-cluster": "true"}},
		{args: append([]string{"verify", "no-backup", "--level", "full", "--snapshot", "app/data=k1"}, offline...), want: map[string]string{"snapshot": "[app/data=k1]"}},
		// a command pod's verify (catalog.InCluster.Verify, expose.CommandPod)
		{args: []string{"verify", "nightly", "--level=sample:10", "--snapshot=app/data=k1", "--snapshot=app/logs=k2", "--provider=aws", "--bucket=b",
			"--config=region=minio,s3Url=http://minio:9000", "--password-file=/secret/repository-password", "--report-file=/dev/termination-log",
			"--credentials-file=/secret/cloud"},
			want: map[string]string{"level": "sample:10", "snapshot": "[app/data=k1,app/logs=k2]", "config": "[region=minio,s3Url=http://minio:9000]", "report-file": "/dev/termination-log"}},
		// the same for verify --in-cluster -o json (catalog.InCluster.VerifyResults)
		{args: []string{"verify", "nightly", "--level=full", "--snapshot=app/data=k1", "--output=json", "--provider=aws", "--bucket=b",
			"--password-file=/secret/repository-password", "--report-file=/dev/termination-log"}, want: map[string]string{"output": "json"}},
		{args: []string{"verify", "a", "b", "c"}, wantErr: "usage: snapmove verify"},
		{args: []string{"report", "nightly"}, want: map[string]string{"output": "text", "timeout": "1m0s"}},
		{args: []string{"report", "nightly", "-o", "json"}, want: map[string]string{"output": "json"}},
		{args: []string{"report"}, wantErr: "usage: snapmove report BACKUP"},
		{args: []string{"report", "--restore", "r1", "-o", "yaml"}, want: map[string]string{"restore": "r1", "output": "yaml"}},
		{args: []string{"report", "nightly", "--restore", "r1"}, wantErr: "usage: snapmove report BACKUP | snapmove report --restore RESTORE"},
		{args: []string{"report", "--restore", "r1", "-o", "xml"}, wantErr: `-o "xml": want text, json or yaml`},
		{args: []string{"forget-orphans"}, want: map[string]string{"confirm": "false", "backup-location": "default", "min-age": "24h0m0s"}},
		{args: []string{"forget-orphans", "--confirm", "-o", "yaml", "-n", "v"}, want: map[string]string{"confirm": "true", "output": "yaml", "namespace": "v"}},
		{args: []string{"forget-orphans", "x"}, wantErr: "usage: snapmove forget-orphans"},
		{args: []string{"cancel", "backup", "nightly", "--wait", "2m"}, want: map[string]string{"wait": "2m0s", "output": "text", "namespace": "velero"}},
		{args: []string{"cancel", "restore", "nightly-r", "--wait", "2m", "-o", "json"}, want: map[string]string{"wait": "2m0s", "output": "json"}},
		{args: []string{"cancel"}, wantErr: "usage: snapmove cancel backup|restore NAME"},
		{args: []string{"cancel", "schedule", "x"}, wantErr: "usage: snapmove cancel backup|restore NAME"},
		{args: []string{"handover", "restore", "r1"}, want: map[string]string{"wait": "10m0s"}},
		{args: []string{"handover", "restore", "r1", "--wait", "3m", "--context", "c", "-o", "yaml"}, want: map[string]string{"wait": "3m0s", "context": "c", "output": "yaml"}},
		{args: []string{"handover", "backup", "b"}, wantErr: "usage: snapmove handover restore NAME"},
		{args: []string{"doctor"}, want: map[string]string{"output": "text", "namespace": "velero"}},
		{args: []string{"doctor", "-o", "json"}, want: map[string]string{"output": "json"}},
		{args: []string{"doctor", "-n", "backups", "--kubeconfig", "/k", "--context", "c", "-o", "yaml"}, want: map[string]string{"namespace": "backups", "kubeconfig": "/k", "context": "c"}},
		{args: []string{"doctor", "extra"}, wantErr: "usage: snapmove doctor"},
		{args: []string{"doctor", "--no-such-flag"}, wantErr: "unknown flag: --no-such-flag"},
		{args: []string{"version", "-o", "json"}, want: map[string]string{"output": "json"}},
		{args: []string{"version", "-o", "table"}, want: map[string]string{"output": "text"}}, // velero's name
		{args: []string{"list", "-o", "table"}, want: map[string]string{"output": "text"}},
		{args: []string{"install", "/target"}, want: map[string]string{}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Setenv("VELERO_NAMESPACE", "")
			root := NewRoot(&bytes.Buffer{}, &bytes.Buffer{})
			c, rest, err := root.Find(tc.args)
			require.NoError(t, err)
			require.Equal(t, tc.args[0], c.Name())
			err = c.ParseFlags(rest)
			if err == nil {
				err = c.ValidateArgs(c.Flags().Args())
			}
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			for name, want := range tc.want {
				f := c.Flags().Lookup(name)
				require.NotNil(t, f, "flag --%s", name)
				require.Equal(t, want, f.Value.String(), "--%s", name)
			}
		})
	}
}

// TestClusterFlags: --kubeconfig, --context and -n reach the rest config and the namespace.
func TestClusterFlags(t *testing.T) {
	kubeconfig := filepath.Join(t.TempDir(), "config")
	require.NoError(t, os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters:
- name: one
  cluster: {server: "https://one.example:6443"}
- name: two
  cluster: {server: "https://two.example:6443"}
users:
- name: u
  user: {token: t}
contexts:
- name: first
  context: {cluster: one, user: u, namespace: ignored}
- name: second
  context: {cluster: two, user: u}
current-context: first
`), 0o600))
	for _, tc := range []struct {
		args             []string
		wantHost, wantNS string
		wantErr          string
	}{
		{args: []string{"--kubeconfig", kubeconfig}, wantHost: "https://one.example:6443", wantNS: "velero"},
		{args: []string{"--kubeconfig=" + kubeconfig, "--context", "second", "-n", "backups"}, wantHost: "https://two.example:6443", wantNS: "backups"},
		{args: []string{"--kubeconfig", kubeconfig, "--context=second", "--namespace=other"}, wantHost: "https://two.example:6443", wantNS: "other"},
		{args: []string{"--kubeconfig", kubeconfig, "--context", "third"}, wantErr: `context "third" does not exist`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Setenv("VELERO_NAMESPACE", "")
			var f clusterFlags
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			f.bind(fs)
			require.NoError(t, fs.Parse(tc.args))
			cfg, err := f.restConfig()
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.wantHost, cfg.Host)
			require.Equal(t, tc.wantNS, f.namespace)
		})
	}
	t.Run("KUBECONFIG with --context", func(t *testing.T) {
		t.Setenv("KUBECONFIG", kubeconfig)
		cfg, err := clusterFlags{context: "second"}.restConfig()
		require.NoError(t, err)
		require.Equal(t, "https://two.example:6443", cfg.Host)
	})
	t.Run("VELERO_NAMESPACE is -n's default", func(t *testing.T) {
		t.Setenv("VELERO_NAMESPACE", "from-env")
		var f clusterFlags
		fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
		f.bind(fs)
		require.NoError(t, fs.Parse(nil))
		require.Equal(t, "from-env", f.namespace)
	})
}

func TestMain_ExitStatus(t *testing.T) {
	for _, tc := range []struct {
		args                []string
		wantCode            int
		wantStdout, wantErr []string
		wantNoStdout        bool
	}{
		{args: nil, wantCode: 2, wantErr: []string{"restore-files BACKUP NS/PVC"}, wantNoStdout: true},
		{args: []string{"help"}, wantStdout: []string{"restore-files BACKUP NS/PVC", "completion bash|zsh|fish|powershell"}},
		{args: []string{"--help"}, wantStdout: []string{"restore-files BACKUP NS/PVC"}},
		{args: []string{"-h"}, wantStdout: []string{"restore-files BACKUP NS/PVC"}},
		{args: []string{"help", "list"}, wantStdout: []string{"snapmove list [BACKUP] [flags]", "-n, --namespace", "--context", "-o, --output"}},
		{args: []string{"list", "-h"}, wantStdout: []string{"snapmove list [BACKUP] [flags]"}},
		{args: []string{"install", "-h"}, wantStdout: []string{"snapmove install DIR"}},
		{args: []string{"lsit"}, wantCode: 2, wantErr: []string{`snapmove: unknown command "lsit" for "snapmove"`, "Did you mean this?", "  list", "restore-files BACKUP NS/PVC"}, wantNoStdout: true},
		{args: []string{"--features=EnableCSI"}, wantCode: 2, wantErr: []string{"unknown flag: --features", "restore-files BACKUP NS/PVC"}, wantNoStdout: true},
		{args: []string{"list", "--no-such-flag"}, wantCode: 2, wantErr: []string{"unknown flag: --no-such-flag", "see 'snapmove list -h'"}, wantNoStdout: true},
		{args: []string{"cancel", "backup"}, wantCode: 1, wantErr: []string{"snapmove: usage: snapmove cancel backup|restore NAME"}, wantNoStdout: true},
		{args: []string{"mover"}, wantCode: 1, wantErr: []string{"usage: snapmove mover controller|worker|receive-files"}},
		{args: []string{"mover", "worker"}, wantCode: 1, wantErr: []string{"usage: snapmove mover worker backup|restore"}},
		{args: []string{"mover", "worker", "backup", "--no-such-flag"}, wantCode: 1, wantErr: []string{"unknown flag"}},
		{args: []string{"completion", "bash"}, wantStdout: []string{"bash completion V2 for snapmove"}},
		{args: []string{"completion", "zsh"}, wantStdout: []string{"#compdef snapmove"}},
		{args: []string{"version"}, wantStdout: []string{"snapmove v", "image ghcr.io/snapmove/snapmove:"}},
		{args: []string{"--version"}, wantStdout: []string{"snapmove v", "image ghcr.io/snapmove/snapmove:"}},
		{args: []string{"version", "-o", "yaml"}, wantStdout: []string{"version: v", "image: ghcr.io/snapmove/snapmove:", "platform: "}},
		{args: []string{"version", "-o", "json"}, wantStdout: []string{`"version": "v`, `"commit": `}},
	} {
		t.Run(strings.Join(append([]string{"snapmove"}, tc.args...), " "), func(t *testing.T) {
			code, stdout, stderr := run(t, tc.args...)
			require.Equal(t, tc.wantCode, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
			for _, w := range tc.wantStdout {
				require.Contains(t, stdout, w)
			}
			for _, w := range tc.wantErr {
				require.Contains(t, stderr, w)
			}
			if tc.wantNoStdout {
				require.Empty(t, stdout)
			}
		})
	}
}

// An error's ExitCode() is the process's (a worker's transient failure: 75), printed once
// and escaped.
func TestExitStatus(t *testing.T) {
	var stderr bytes.Buffer
	require.Equal(t, 75, exitStatus(nil, coded{75, "worker\x1b[31m failed"}, &stderr))
	require.Equal(t, "snapmove: worker\\x1b[31m failed\n", stderr.String())
	stderr.Reset()
	require.Equal(t, 1, exitStatus(nil, coded{0, "plain"}, &stderr))
	require.Equal(t, 0, exitStatus(nil, nil, &stderr))
}

type coded struct {
	code int
	msg  string
}

func (c coded) Error() string { return c.msg }
func (c coded) ExitCode() int { return c.code }

func TestPrintDoctorYAML(t *testing.T) {
	var b bytes.Buffer
	require.NoError(t, printDoctor(&b, "yaml", doctor.Report{OK: true, Checks: []doctor.Check{{Name: "snapshotCRDs", Status: doctor.OK, Detail: "served"}}}))
	require.Contains(t, b.String(), "checks:\n- ")
	require.Contains(t, b.String(), "name: snapshotCRDs")
}
