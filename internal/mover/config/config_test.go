package config

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/snapmove/snapmove/internal/naming"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		data    map[string]string
		check   func(t *testing.T, c Config)
		wantErr string
	}{
		{name: "empty gives defaults", check: func(t *testing.T, c Config) { require.Equal(t, Default(), c) }},
		{
			name: "all scalar and structured keys",
			data: map[string]string{
				"maxConcurrent":        "3",
				"perNode":              "1",
				"prepareTimeout":       "5m",
				"workerHostNetwork":    "true",
				"backupPVCAccessMode":  "ReadWriteOnce",
				"backupPVCAccessModes": "ceph-rbd: ReadOnlyMany\n",
				"workerResources":      "requests: {cpu: 500m, memory: 1Gi}\nlimits: {memory: 2Gi}\n",
				"workerTolerations":    "- {key: dedicated, operator: Equal, value: backup, effect: NoSchedule}\n",
				"workerNodeSelector":   "role: backup\n",
				"cacheSizeLimit":       "10Gi",
				"cacheLimitMB":         "8000",
				"writeSparseFiles":     "false",
			},
			check: func(t *testing.T, c Config) {
				require.Equal(t, 3, c.MaxConcurrent)
				require.Equal(t, 1, c.PerNode)
				require.Equal(t, 5*time.Minute, c.PrepareTimeout.Duration)
				require.True(t, c.WorkerHostNetwork)
				require.False(t, c.WriteSparseFiles)
				require.Equal(t, corev1.ReadWriteOnce, c.BackupAccessMode("other"))
				require.Equal(t, corev1.ReadOnlyMany, c.BackupAccessMode("ceph-rbd"))
				require.Equal(t, resource.MustParse("2Gi"), c.WorkerResources.Limits[corev1.ResourceMemory])
				require.Equal(t, "backup", c.WorkerTolerations[0].Value)
				require.Equal(t, map[string]string{"role": "backup"}, c.WorkerNodeSelector)
				require.Equal(t, int64(8000), c.CacheLimitMB)
			},
		},
		{name: "unknown key", data: map[string]string{"maxConcurent": "3"}, wantErr: `unknown field "maxConcurent"`},
		{name: "wrong type", data: map[string]string{"perNode": "two"}, wantErr: "decoding settings"},
		{name: "negative limit", data: map[string]string{"maxConcurrent": "-1"}, wantErr: "maxConcurrent must not be negative"},
		{name: "bad access mode", data: map[string]string{"backupPVCAccessMode": "ReadMostly"}, wantErr: `unknown access mode "ReadMostly"`},
		{name: "cache does not fit", data: map[string]string{"cacheSizeLimit": "1Gi"}, wantErr: "does not fit in cacheSizeLimit"},
		{name: "zero timeout", data: map[string]string{"prepareTimeout": "0s"}, wantErr: "prepareTimeout must be positive"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse(&corev1.ConfigMap{Data: tc.data})
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				require.Equal(t, Default(), c, "an invalid ConfigMap gives the defaults")
				return
			}
			require.NoError(t, err)
			tc.check(t, c)
		})
	}
}

func TestLoad(t *testing.T) {
	ctx := context.Background()
	c, err := Load(ctx, fake.NewClientBuilder().Build(), "velero")
	require.NoError(t, err)
	require.Equal(t, Default(), c)

	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: "velero", Name: naming.MoverConfigMapName},
		Data:       map[string]string{"perNode": "x"},
	}
	_, err = Load(ctx, fake.NewClientBuilder().WithObjects(cm).Build(), "velero")
	require.ErrorContains(t, err, "mover settings ConfigMap velero/snapmove-mover is invalid")
}
