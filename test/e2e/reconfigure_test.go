//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
	crclient "sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/naming"
)

// veleroSetup is how the stack's Velero runs: its --features, whether Velero's node-agent
// DaemonSet runs, and whether snapmove's initContainer loads snapmove's plugins.
type veleroSetup struct {
	features       string
	nodeAgent      bool
	snapmovePlugin bool
}

func (s *stack) veleroSetup() veleroSetup {
	read := func(name, def string) string {
		b, err := os.ReadFile(filepath.Join(s.run, "velero", name))
		if err != nil {
			return def
		}
		return strings.TrimSpace(string(b))
	}
	return veleroSetup{features: s.features(), nodeAgent: read("node-agent", "false") == "true", snapmovePlugin: read("snapmove-plugin", "true") == "true"}
}

// withVelero restarts Velero (a rollout of its Deployment, hack/stack/velero.sh) set up as
// want for the rest of the test, and as it was afterwards.
func (s *stack) withVelero(t *testing.T, want veleroSetup) {
	requireSerial(t)
	t.Helper()
	before := s.veleroSetup()
	if before == want {
		return
	}
	require.NoError(t, s.setVelero(t, want))
	t.Cleanup(func() { _ = s.setVelero(t, before) })
}

// setVelero restarts Velero set up as v, unless it runs so already.
func (s *stack) setVelero(t *testing.T, v veleroSetup) error {
	requireSerial(t)
	if s.veleroSetup() == v {
		return nil
	}
	cmd := filepath.Join(repoRoot(), "hack", "stack", "velero.sh")
	out, err := runEnv([]string{"VELERO_FEATURES=" + v.features, "VELERO_NODE_AGENT=" + strconv.FormatBool(v.nodeAgent),
		"VELERO_SNAPMOVE_PLUGIN=" + strconv.FormatBool(v.snapmovePlugin)}, cmd, "restart")
	if err != nil {
		t.Logf("velero.sh restart: %s", out)
	}
	return err
}

// withVeleroFeatures restarts the Velero server with the given --features for the rest of
// the test and restores the stack's setup afterwards.
func (s *stack) withVeleroFeatures(t *testing.T, features string) {
	t.Helper()
	v := s.veleroSetup()
	v.features = features
	s.withVelero(t, v)
}

// scaleMover sets the replicas of the mover's Deployment and waits until that many mover
// pods run (or none is left); scaling back up is the caller's cleanup.
func (s *stack) scaleMover(t *testing.T, replicas int32) {
	requireSerial(t)
	t.Helper()
	key := crclient.ObjectKey{Namespace: s.veleroNS, Name: "snapmove-mover"}
	var d appsv1.Deployment
	require.NoError(t, s.c.Get(ctxT(t), key, &d))
	patch := crclient.MergeFrom(d.DeepCopy())
	d.Spec.Replicas = ptr.To(replicas)
	require.NoError(t, s.c.Patch(ctxT(t), &d, patch))
	if replicas == 0 {
		t.Cleanup(func() {
			var cur appsv1.Deployment
			if err := s.c.Get(context.Background(), key, &cur); err == nil && cur.Spec.Replicas != nil && *cur.Spec.Replicas == 0 {
				p := crclient.MergeFrom(cur.DeepCopy())
				cur.Spec.Replicas = ptr.To[int32](1)
				_ = s.c.Patch(context.Background(), &cur, p)
			}
		})
	}
	poll(t, fmt.Sprintf("%d mover pods to run", replicas), 3*time.Minute, func(ctx context.Context) (bool, error) {
		var pods corev1.PodList
		if err := s.c.List(ctx, &pods, crclient.InNamespace(s.veleroNS), crclient.MatchingLabels{"app.kubernetes.io/name": "snapmove-mover"}); err != nil {
			return false, err
		}
		running := 0
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
				running++
			}
		}
		return running == int(replicas) && (replicas > 0 || len(pods.Items) == 0), nil
	})
}

// withMoverSettings changes keys of the mover's settings ConfigMap for the rest of the test.
func (s *stack) withMoverSettings(t *testing.T, data map[string]string) {
	requireSerial(t)
	t.Helper()
	key := crclient.ObjectKey{Namespace: s.veleroNS, Name: naming.MoverConfigMapName}
	var cm corev1.ConfigMap
	require.NoError(t, s.c.Get(ctxT(t), key, &cm))
	before := map[string]string{}
	for k, v := range cm.Data {
		before[k] = v
	}
	for k, v := range data {
		cm.Data[k] = v
	}
	require.NoError(t, s.c.Update(ctxT(t), &cm))
	t.Cleanup(func() {
		var cur corev1.ConfigMap
		if err := s.c.Get(context.Background(), key, &cur); err == nil {
			cur.Data = before
			_ = s.c.Update(context.Background(), &cur)
		}
	})
}
