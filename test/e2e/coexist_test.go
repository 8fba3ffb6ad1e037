//go:build e2e

package e2e

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/snapmove/snapmove/internal/naming"
)

// Without EnableCSI (the stack's default) Velero's CSI actions are off and snapmove's
// actions take every CSI PVC.
func TestCoexistenceWithoutEnableCSI(t *testing.T) {
	s := env
	s.withVeleroFeatures(t, "")
	ns, dir := s.smallVolume(t, "nocsi")
	s.movedRoundTrip(t, ns, dir, nil, naming.BackupActionName)
}

// With EnableCSI, a volume policy of action type custom (mover: snapmove) makes Velero's
// own CSI action skip the PVC and snapmove's take it.
func TestCoexistenceEnableCSIWithPolicy(t *testing.T) {
	s := env
	s.withVeleroFeatures(t, naming.FeatureEnableCSI)
	ns, dir := s.smallVolume(t, "policy")
	policy := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.veleroNS, Name: ns + "-policy"},
		Data: map[string]string{"policy.yaml": `version: v1
volumePolicies:
  - conditions:
      csi:
        driver: ` + s.csiDriver + `
    action:
      type: custom
      parameters:
        mover: snapmove
`},
	}
	require.NoError(t, s.c.Create(ctxT(t), policy))
	t.Cleanup(func() { _ = s.c.Delete(context.Background(), policy) })
	s.movedRoundTrip(t, ns, dir, []string{"--resource-policies-configmap", policy.Name}, naming.BackupActionName)
}

// With EnableCSI and no policy, `--data-mover snapmove` is Velero's documented way to use a
// third-party mover: Velero's own CSI action cuts the snapshot and creates the DataUpload,
// snapmove's action stands back, and snapmove's mover moves the bytes.
func TestCoexistenceEnableCSIDataMover(t *testing.T) {
	s := env
	s.withVeleroFeatures(t, naming.FeatureEnableCSI)
	ns, dir := s.smallVolume(t, "dm")
	s.movedRoundTrip(t, ns, dir, []string{"--data-mover", naming.DataMover}, "velero.io/csi-pvc-backupper")
}
