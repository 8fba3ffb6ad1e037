package examples

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	"github.com/vmware-tanzu/velero/pkg/builder"
	"github.com/vmware-tanzu/velero/pkg/kuberesource"
	"github.com/vmware-tanzu/velero/pkg/plugin/utils/volumehelper"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/yaml"

	"github.com/snapmove/snapmove/internal/mover/config"
	"github.com/snapmove/snapmove/internal/mover/controller"
	"github.com/snapmove/snapmove/internal/naming"
)

func scheme(t *testing.T) *runtime.Scheme {
	s := runtime.NewScheme()
	require.NoError(t, clientgoscheme.AddToScheme(s))
	require.NoError(t, velerov1.AddToScheme(s))
	require.NoError(t, snapshotv1.AddToScheme(s))
	return s
}

// decodeFile strictly decodes every YAML document of a manifest file into its typed object.
func decodeFile(t *testing.T, path string) []runtime.Object {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return decodeDocs(t, b)
}

func decodeDocs(t *testing.T, b []byte) []runtime.Object {
	t.Helper()
	dec := serializer.NewCodecFactory(scheme(t), serializer.EnableStrict).UniversalDeserializer()
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	var objs []runtime.Object
	for {
		doc, err := r.Read()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		if onlyComments(doc) {
			continue
		}
		obj, _, err := dec.Decode(doc, nil, nil)
		require.NoError(t, err, "decoding:\n%s", doc)
		objs = append(objs, obj)
	}
	return objs
}

// onlyComments: a YAML document with nothing but comments and blank lines (a file's header).
func onlyComments(doc []byte) bool {
	for _, l := range bytes.Split(doc, []byte("\n")) {
		if l = bytes.TrimSpace(l); len(l) > 0 && l[0] != '#' && !bytes.Equal(l, []byte("---")) {
			return false
		}
	}
	return true
}

func TestManifestsDecode(t *testing.T) {
	for _, f := range []string{"mover.yaml", "resource-policy.yaml", "rook-ceph-volumesnapshotclass.yaml"} {
		t.Run(f, func(t *testing.T) {
			require.NotEmpty(t, decodeFile(t, f))
		})
	}
}

func TestRookCephClassIsLabelled(t *testing.T) {
	objs := decodeFile(t, "rook-ceph-volumesnapshotclass.yaml")
	require.Len(t, objs, 1)
	class := objs[0].(*snapshotv1.VolumeSnapshotClass)
	require.Equal(t, "true", class.Labels[velerov1.VolumeSnapshotClassSelectorLabel])
	require.Equal(t, "rook-ceph.rbd.csi.ceph.com", class.Driver)
}

func TestMoverSettingsParse(t *testing.T) {
	var found bool
	for _, o := range decodeFile(t, "mover.yaml") {
		cm, ok := o.(*corev1.ConfigMap)
		if !ok || cm.Name != "snapmove-mover" {
			continue
		}
		found = true
		_, err := config.Parse(cm)
		require.NoError(t, err)
	}
	require.True(t, found, "mover.yaml has the settings ConfigMap")
}

// TestResourcePolicyAccepted runs the policy through the exact code Velero (and snapmove's
// backup action) evaluate volume policies with, and checks it claims a rook-ceph PVC for
// snapmove.
func TestResourcePolicyAccepted(t *testing.T) {
	objs := decodeFile(t, "resource-policy.yaml")
	require.Len(t, objs, 1)
	cm := objs[0].(*corev1.ConfigMap)

	pv := builder.ForPersistentVolume("pv-1").CSI("rook-ceph.rbd.csi.ceph.com", "handle").Result()
	pvc := builder.ForPersistentVolumeClaim("app", "data").VolumeName("pv-1").Phase(corev1.ClaimBound).Result()
	backup := builder.ForBackup(cm.Namespace, "b").Result()
	backup.Spec.ResourcePolicy = &corev1.TypedLocalObjectReference{Kind: "configmap", Name: cm.Name}
	c := fake.NewClientBuilder().WithScheme(scheme(t)).WithObjects(cm, pv, pvc).Build()

	vh, err := volumehelper.NewVolumeHelperWithCache(*backup, c, logrus.New(), nil)
	require.NoError(t, err)
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(pvc)
	require.NoError(t, err)
	ok, err := vh.ShouldPerformCustomAction(&unstructured.Unstructured{Object: u}, kuberesource.PersistentVolumeClaims, map[string]any{"mover": "snapmove"})
	require.NoError(t, err)
	require.True(t, ok)
}

// TestHelmValues checks Velero's helm values: snapmove's initContainer mounts the plugins
// volume at /target and runs the image of snapmove's chart with its defaults, which is the
// image this snapmove expects (naming.Image:naming.Version), and the mover of
// examples/mover.yaml runs it too (one image).
func TestHelmValues(t *testing.T) {
	b, err := os.ReadFile("velero-values.yaml")
	require.NoError(t, err)
	var values struct {
		InitContainers []corev1.Container `json:"initContainers"`
		ExtraObjects   []map[string]any   `json:"extraObjects"`
	}
	require.NoError(t, yaml.Unmarshal(b, &values))
	require.Empty(t, values.ExtraObjects, "the mover comes from its own chart")

	var ours *corev1.Container
	for i := range values.InitContainers {
		if values.InitContainers[i].Name == "snapmove" {
			ours = &values.InitContainers[i]
		}
	}
	require.NotNil(t, ours, "initContainers has snapmove")
	require.Equal(t, []corev1.VolumeMount{{Name: "plugins", MountPath: "/target"}}, ours.VolumeMounts)

	var chart struct {
		AppVersion string `json:"appVersion"`
	}
	b, err = os.ReadFile(filepath.Join("..", "charts", "snapmove", "Chart.yaml"))
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(b, &chart))
	var chartValues struct {
		Image struct {
			Repository string `json:"repository"`
			Tag        string `json:"tag"`
		} `json:"image"`
	}
	b, err = os.ReadFile(filepath.Join("..", "charts", "snapmove", "values.yaml"))
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(b, &chartValues))
	require.Empty(t, chartValues.Image.Tag, "the tag defaults to the chart's appVersion")
	image := chartValues.Image.Repository + ":" + chart.AppVersion
	require.Equal(t, naming.Image+":"+naming.Version, image, "the chart's image is the one this snapmove expects")
	require.Equal(t, image, ours.Image, "Velero's initContainer runs the chart's image")

	var mover *appsv1.Deployment
	for _, o := range decodeFile(t, "mover.yaml") {
		if d, ok := o.(*appsv1.Deployment); ok {
			mover = d
		}
	}
	require.NotNil(t, mover)
	require.Equal(t, image, mover.Spec.Template.Spec.Containers[0].Image)
	require.Contains(t, mover.Spec.Template.Spec.Containers[0].Args, "--worker-image="+image)
}

func TestEveryExampleIsTested(t *testing.T) {
	files, err := filepath.Glob("*.yaml")
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"monitoring.yaml", "mover.yaml", "resource-policy.yaml", "rook-ceph-volumesnapshotclass.yaml", "velero-values.yaml"}, files)
}

// TestStackRunsTheHelmValues keeps the local test stack's Velero (hack/stack/velero.yaml,
// the helm chart's objects rendered by hand) in step with velero-values.yaml: what the
// values ask for is what the e2e suite runs.
func TestStackRunsTheHelmValues(t *testing.T) {
	b, err := os.ReadFile("velero-values.yaml")
	require.NoError(t, err)
	var values struct {
		InitContainers []corev1.Container `json:"initContainers"`
		Configuration  struct {
			DefaultSnapshotMoveData *bool  `json:"defaultSnapshotMoveData"`
			UploaderType            string `json:"uploaderType"`
			Features                string `json:"features"`
		} `json:"configuration"`
		SnapshotsEnabled bool `json:"snapshotsEnabled"`
		DeployNodeAgent  bool `json:"deployNodeAgent"`
		Credentials      struct {
			UseSecret bool   `json:"useSecret"`
			Name      string `json:"name"`
		} `json:"credentials"`
	}
	require.NoError(t, yaml.Unmarshal(b, &values))

	raw, err := os.ReadFile(filepath.Join("..", "hack", "stack", "velero.yaml"))
	require.NoError(t, err)
	server, nodeAgent, found := strings.Cut(string(raw), "\n# --- node-agent")
	require.True(t, found, "velero.yaml has its node-agent part")
	_, server, _ = strings.Cut(server, "\n---\n") // the header: comments only
	// the stack's placeholders, as hack/stack/lib.sh fills them
	fill := strings.NewReplacer("${VELERO_VERSION}", "v1.18.1", "${VELERO_FEATURES}", "EnableCSI")
	var deploy *appsv1.Deployment
	kinds := map[string]int{}
	for _, o := range decodeDocs(t, []byte(fill.Replace(server))) {
		kinds[o.GetObjectKind().GroupVersionKind().Kind]++
		if d, ok := o.(*appsv1.Deployment); ok && d.Name == "velero" {
			deploy = d
		}
	}
	require.NotNil(t, deploy, "velero.yaml has the Deployment velero")
	require.Zero(t, kinds["VolumeSnapshotLocation"], "snapshotsEnabled: %v", values.SnapshotsEnabled)
	require.Zero(t, kinds["DaemonSet"], "node-agent only in its own part (deployNodeAgent: %v in the values)", values.DeployNodeAgent)
	require.False(t, values.DeployNodeAgent, "the stack switches node-agent on per test; the values keep it off")
	require.Contains(t, nodeAgent, "kind: DaemonSet")

	pod := deploy.Spec.Template.Spec
	require.Equal(t, values.InitContainers, pod.InitContainers, "initContainers: the values' exactly")
	args := strings.Join(pod.Containers[0].Args, " ")
	if values.Configuration.DefaultSnapshotMoveData != nil {
		require.Contains(t, args, "--default-snapshot-move-data="+strconv.FormatBool(*values.Configuration.DefaultSnapshotMoveData))
	}
	uploader := values.Configuration.UploaderType
	if uploader == "" {
		uploader = "kopia" // the chart's default
	}
	require.Contains(t, args, "--uploader-type="+uploader)
	require.Empty(t, values.Configuration.Features, "the values turn no feature on; the stack's features are per test")
	require.True(t, values.Credentials.UseSecret)
	var secret string
	for _, v := range pod.Volumes {
		if v.Name == "cloud-credentials" && v.Secret != nil {
			secret = v.Secret.SecretName
		}
	}
	require.Equal(t, values.Credentials.Name, secret, "credentials secret")
}

// TestMonitoringUsesTheMoversMetrics: every metric the alert rules (monitoring.yaml) and
// the dashboard (grafana-dashboard.json) query is one the mover exports, and every rule
// and panel queries one.
func TestMonitoringUsesTheMoversMetrics(t *testing.T) {
	exported := controller.MetricNames()
	require.Contains(t, exported, "snapmove_mover_failures_total")
	metric := regexp.MustCompile(`snapmove_[a-z_]+`)
	check := func(where, expr string) {
		t.Helper()
		names := metric.FindAllString(expr, -1)
		require.NotEmpty(t, names, "%s queries no snapmove metric: %s", where, expr)
		for _, n := range names {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} { // a histogram's series
				if base, ok := strings.CutSuffix(n, suffix); ok && slices.Contains(exported, base) {
					n = base
				}
			}
			require.Contains(t, exported, n, "%s: %s", where, expr)
		}
	}

	b, err := os.ReadFile("monitoring.yaml")
	require.NoError(t, err)
	var rules int
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	for {
		doc, err := r.Read()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		var obj struct {
			Kind string `json:"kind"`
			Spec struct {
				Groups []struct {
					Rules []struct {
						Alert string `json:"alert"`
						Expr  string `json:"expr"`
					} `json:"rules"`
				} `json:"groups"`
			} `json:"spec"`
		}
		require.NoError(t, yaml.Unmarshal(doc, &obj), "%s", doc)
		for _, g := range obj.Spec.Groups {
			for _, rule := range g.Rules {
				check("alert "+rule.Alert, rule.Expr)
				rules++
			}
		}
	}
	require.Positive(t, rules)

	b, err = os.ReadFile("grafana-dashboard.json")
	require.NoError(t, err)
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	require.NoError(t, json.Unmarshal(b, &dash))
	require.NotEmpty(t, dash.Panels)
	for _, p := range dash.Panels {
		require.NotEmpty(t, p.Targets, "panel %q", p.Title)
		for _, tg := range p.Targets {
			check("panel "+p.Title, tg.Expr)
		}
	}
}
