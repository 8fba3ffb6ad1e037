package plugin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	"github.com/stretchr/testify/require"
	"github.com/vmware-tanzu/velero/pkg/builder"
	"github.com/vmware-tanzu/velero/pkg/plugin/clientmgmt"
	"github.com/vmware-tanzu/velero/pkg/plugin/clientmgmt/process"
	"github.com/vmware-tanzu/velero/pkg/plugin/framework"
	"github.com/vmware-tanzu/velero/pkg/plugin/framework/common"
	"github.com/vmware-tanzu/velero/pkg/plugin/velero"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"

	"github.com/snapmove/snapmove/internal/naming"
)

// TestMain makes the test binary answer Velero's probe of its own executable: the plugin
// registry always starts os.Args[0] with "run-plugins" first (that is how the velero binary
// serves its built-in plugins). Here it serves no plugins.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "run-plugins" {
		framework.NewServer().Serve()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// buildBinary builds snapmove from the repository root into dir. While the root does not
// build yet, it builds testdata/servemain, which serves the plugins the same way.
func buildBinary(t *testing.T, dir string) string {
	t.Helper()
	goBin := "go"
	out := filepath.Join(dir, "snapmove")
	build := func(pkg string) ([]byte, error) {
		cmd := exec.Command(goBin, "build", "-o", out, pkg)
		cmd.Dir = "../.."
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		return cmd.CombinedOutput()
	}
	if b, err := build("."); err != nil {
		t.Logf("the repository root does not build yet, loading internal/plugin/testdata/servemain instead:\n%s", b)
		b, err := build("./internal/plugin/testdata/servemain")
		require.NoError(t, err, "building the plugin binary:\n%s", b)
	}
	return out
}

// fakeAPIServer answers just enough of the Kubernetes API for the plugin's client: discovery
// of velero.io/v2alpha1 and empty DataUpload/DataDownload lists in namespace velero.
func fakeAPIServer(t *testing.T) *httptest.Server {
	writeJSON := func(w http.ResponseWriter, v any) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/api", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]any{"kind": "APIVersions", "versions": []string{"v1"}})
	})
	mux.HandleFunc("/apis", func(w http.ResponseWriter, _ *http.Request) {
		gv := map[string]any{"groupVersion": "velero.io/v2alpha1", "version": "v2alpha1"}
		writeJSON(w, map[string]any{"kind": "APIGroupList", "apiVersion": "v1", "groups": []any{
			map[string]any{"name": "velero.io", "versions": []any{gv}, "preferredVersion": gv},
		}})
	})
	mux.HandleFunc("/apis/velero.io/v2alpha1", func(w http.ResponseWriter, _ *http.Request) {
		res := func(name, kind string) map[string]any {
			return map[string]any{"name": name, "singularName": strings.ToLower(kind), "namespaced": true, "kind": kind,
				"verbs": []string{"get", "list", "watch", "create", "update", "patch", "delete"}}
		}
		writeJSON(w, map[string]any{"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "velero.io/v2alpha1",
			"resources": []any{res("datauploads", "DataUpload"), res("datadownloads", "DataDownload")}})
	})
	for _, kind := range []string{"DataUpload", "DataDownload"} {
		mux.HandleFunc(fmt.Sprintf("/apis/velero.io/v2alpha1/namespaces/velero/%ss", strings.ToLower(kind)), func(w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, map[string]any{"kind": kind + "List", "apiVersion": "velero.io/v2alpha1", "metadata": map[string]any{}, "items": []any{}})
		})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		t.Logf("fake API server: unexpected %s %s", r.Method, r.URL)
		http.NotFound(w, r)
	})
	srv := httptest.NewServer(mux) // 127.0.0.1 only
	t.Cleanup(srv.Close)
	return srv
}

func writeKubeconfig(t *testing.T, server string) string {
	path := filepath.Join(t.TempDir(), "kubeconfig")
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: fake, cluster: {server: %q}}]
users: [{name: fake, user: {token: fake}}]
contexts: [{name: fake, context: {cluster: fake, user: fake}}]
current-context: fake
`, server)
	require.NoError(t, os.WriteFile(path, []byte(cfg), 0o600))
	return path
}

func toUnstructured(t *testing.T, obj k8sruntime.Object) *unstructured.Unstructured {
	m, err := k8sruntime.DefaultUnstructuredConverter.ToUnstructured(obj)
	require.NoError(t, err)
	return &unstructured.Unstructured{Object: m}
}

// TestLoadedLikeVelero discovers the built binary with Velero's own plugin registry and
// manager and talks to the actions over the real go-plugin channel, with the flags and
// environment Velero gives a plugin.
func TestLoadedLikeVelero(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the plugin binary")
	}
	start := time.Now()
	pluginDir := filepath.Join(t.TempDir(), "plugins")
	require.NoError(t, os.MkdirAll(pluginDir, 0o755))
	buildBinary(t, pluginDir)
	t.Logf("built the plugin binary in %s", time.Since(start).Round(time.Millisecond))

	api := fakeAPIServer(t)
	t.Setenv("KUBECONFIG", writeKubeconfig(t, api.URL))
	t.Setenv("VELERO_NAMESPACE", "velero")
	// Velero execs plugins with its own arguments after `velero server`.
	args := os.Args
	os.Args = []string{args[0], "server", "--uploader-type=kopia", "--features=EnableCSI", "--default-snapshot-move-data=true", "--log-level=debug"}
	t.Cleanup(func() { os.Args = args })

	log, hook := logtest.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	registry := process.NewRegistry(pluginDir, log, logrus.DebugLevel)
	require.NoError(t, registry.DiscoverPlugins())
	for kind, name := range map[common.PluginKind]string{
		common.PluginKindBackupItemActionV2:  naming.BackupActionName,
		common.PluginKindRestoreItemActionV2: naming.RestoreActionName,
		common.PluginKindDeleteItemAction:    naming.DeleteActionName,
	} {
		id, err := registry.Get(kind, name)
		require.NoError(t, err, "%s %s registered", kind, name)
		require.Equal(t, filepath.Join(pluginDir, "snapmove"), id.Command)
	}

	manager := clientmgmt.NewManager(log, logrus.DebugLevel, registry)
	defer manager.CleanupClients()
	backup := builder.ForBackup("velero", "nightly").ObjectMeta(builder.WithUID("backup-uid")).SnapshotMoveData(true).Result()

	bia, err := manager.GetBackupItemActionV2(naming.BackupActionName)
	require.NoError(t, err)
	sel, err := bia.AppliesTo()
	require.NoError(t, err)
	require.Equal(t, []string{"persistentvolumeclaims"}, sel.IncludedResources)

	pvc := toUnstructured(t, builder.ForPersistentVolumeClaim("app", "data").StorageClass("csi-sc").Phase(corev1.ClaimPending).Result())
	updated, additional, opID, post, err := bia.Execute(pvc, backup)
	require.NoError(t, err)
	got := &unstructured.Unstructured{Object: updated.UnstructuredContent()}
	require.Equal(t, `PVC is not bound (phase "Pending")`, got.GetAnnotations()[naming.SkippedAnnotation],
		"a skipped PVC comes back with the reason, across the plugin boundary")
	require.Equal(t, pvc.GetLabels(), got.GetLabels(), "and otherwise unchanged")
	require.Equal(t, pvc.Object["spec"], got.Object["spec"])
	require.Empty(t, additional)
	require.Empty(t, opID)
	require.Empty(t, post)

	_, err = bia.Progress("du-unknown", backup)
	require.ErrorContains(t, err, "no DataUpload labelled velero.io/async-operation-id=du-unknown in namespace velero")
	err = bia.Cancel("du-unknown", backup)
	require.ErrorContains(t, err, "no DataUpload labelled velero.io/async-operation-id=du-unknown in namespace velero")

	ria, err := manager.GetRestoreItemActionV2(naming.RestoreActionName)
	require.NoError(t, err)
	restore := builder.ForRestore("velero", "r1").Backup("nightly").Result()
	out, err := ria.Execute(&velero.RestoreItemActionExecuteInput{Item: pvc, ItemFromBackup: pvc, Restore: restore})
	require.NoError(t, err)
	require.Empty(t, out.OperationID)
	_, err = ria.Progress("dd-unknown", restore)
	require.ErrorContains(t, err, "no DataDownload labelled velero.io/async-operation-id=dd-unknown in namespace velero")

	dia, err := manager.GetDeleteItemAction(naming.DeleteActionName)
	require.NoError(t, err)
	dsel, err := dia.AppliesTo()
	require.NoError(t, err)
	require.Equal(t, []string{"datauploads.velero.io"}, dsel.IncludedResources)
	du := toUnstructured(t, builder.ForDataUpload("velero", "nightly-x").DataMover("velero").SnapshotID("k1").Result())
	require.NoError(t, dia.Execute(&velero.DeleteItemActionExecuteInput{Item: du, Backup: backup}))

	// The plugin's own log lines came back through Velero's adapter, and show the server
	// flags were parsed in the plugin process.
	var msgs []string
	for _, e := range hook.AllEntries() {
		msgs = append(msgs, e.Message)
	}
	all := strings.Join(msgs, "\n")
	require.Contains(t, all, "skipping PVC: PVC is not bound")
	require.Contains(t, all, "starting snapmove backup action (EnableCSI true, default snapshot move data true)")
	t.Logf("loaded and exercised in %s", time.Since(start).Round(time.Millisecond))
}

// TestPluginServerOnlyForVelero: the binary serves the plugins only with go-plugin's
// handshake variable Velero sets (TestLoadedLikeVelero); run by a user, with no command,
// a typo or help, it prints its commands and never go-plugin's "This binary is a plugin".
func TestPluginServerOnlyForVelero(t *testing.T) {
	bin := buildBinary(t, t.TempDir())
	for _, tc := range []struct {
		args     []string
		wantCode int
	}{
		{args: nil, wantCode: 2},
		{args: []string{"lsit"}, wantCode: 2},
		{args: []string{"--features=EnableCSI"}, wantCode: 2}, // Velero's flags, without Velero's handshake
		{args: []string{"help"}, wantCode: 0},
		{args: []string{"--help"}, wantCode: 0},
		{args: []string{"list", "-h"}, wantCode: 0},
		{args: []string{"install", "-h"}, wantCode: 0}, // usage, not a copy into a directory named -h
	} {
		t.Run(strings.Join(append([]string{"snapmove"}, tc.args...), " "), func(t *testing.T) {
			cmd := exec.Command(bin, tc.args...)
			cmd.Dir = t.TempDir()
			cmd.Env = slices.DeleteFunc(os.Environ(), func(e string) bool { return strings.HasPrefix(e, framework.Handshake().MagicCookieKey+"=") })
			out, err := cmd.CombinedOutput()
			code := 0
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				code = exit.ExitCode()
			} else {
				require.NoError(t, err)
			}
			require.Equal(t, tc.wantCode, code, "%s", out)
			require.NotContains(t, string(out), "This binary is a plugin")
			entries, err := os.ReadDir(cmd.Dir)
			require.NoError(t, err)
			require.Empty(t, entries, "nothing written to the working directory")
			if tc.args == nil || (tc.args[0] != "list" && tc.args[0] != "install") {
				require.Contains(t, string(out), "restore-files BACKUP NS/PVC")
			}
		})
	}
}
