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

	"github.com/snapmove/snapmove/internal/mover/datapath"
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
		{name: "move attempts default", check: func(t *testing.T, c Config) { require.Equal(t, 3, c.MoveAttempts) }},
		{name: "move attempts 1: never retried", data: map[string]string{"moveAttempts": "1"},
			check: func(t *testing.T, c Config) { require.Equal(t, 1, c.MoveAttempts) }},
		{name: "move attempts 10", data: map[string]string{"moveAttempts": "10"},
			check: func(t *testing.T, c Config) { require.Equal(t, 10, c.MoveAttempts) }},
		{name: "move attempts 0", data: map[string]string{"moveAttempts": "0"}, wantErr: "moveAttempts (0) must be between 1 and 10"},
		{name: "move attempts 11", data: map[string]string{"moveAttempts": "11"}, wantErr: "moveAttempts (11) must be between 1 and 10"},
		{name: "verify default", check: func(t *testing.T, c Config) { require.Equal(t, "metadata", c.Verify) }},
		{name: "verify full", data: map[string]string{"verify": "full"}, check: func(t *testing.T, c Config) { require.Equal(t, "full", c.Verify) }},
		{name: "verify none", data: map[string]string{"verify": "none"}, check: func(t *testing.T, c Config) { require.Equal(t, "none", c.Verify) }},
		{name: "verify sample is written canonically", data: map[string]string{"verify": "sample:05%"},
			check: func(t *testing.T, c Config) { require.Equal(t, "sample:5", c.Verify) }},
		{name: "verify quoted", data: map[string]string{"verify": `"sample:10"`},
			check: func(t *testing.T, c Config) { require.Equal(t, "sample:10", c.Verify) }},
		{name: "verify unknown", data: map[string]string{"verify": "everything"}, wantErr: `verify: unknown mode "everything"`},
		{name: "verify empty", data: map[string]string{"verify": `""`}, wantErr: `verify: unknown mode ""`},
		{name: "verify sample zero", data: map[string]string{"verify": "sample:0"}, wantErr: "whole percent from 1 to 100"},
		{name: "verify sample over 100", data: map[string]string{"verify": "sample:101"}, wantErr: "whole percent from 1 to 100"},
		{name: "verify sample fraction", data: map[string]string{"verify": "sample:2.5"}, wantErr: "whole percent from 1 to 100"},
		{name: "verify sample without percent", data: map[string]string{"verify": "sample"}, wantErr: `unknown mode "sample"`},
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

func TestParseVerify(t *testing.T) {
	tests := []struct {
		in      string
		want    datapath.VerifyMode
		text    string
		wantErr string
	}{
		{in: "none", want: datapath.VerifyMode{Level: datapath.VerifyNone}, text: "none"},
		{in: "metadata", want: datapath.VerifyMode{Level: datapath.VerifyMetadata}, text: "metadata"},
		{in: " full ", want: datapath.VerifyMode{Level: datapath.VerifyFull}, text: "full"},
		{in: "sample:1", want: datapath.VerifyMode{Level: datapath.VerifySample, Percent: 1}, text: "sample:1"},
		{in: "sample:100%", want: datapath.VerifyMode{Level: datapath.VerifySample, Percent: 100}, text: "sample:100"},
		{in: "Full", wantErr: "unknown mode"},
		{in: "sample:-1", wantErr: "whole percent"},
		{in: "sample:x", wantErr: "whole percent"},
		{in: "", wantErr: "unknown mode"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseVerify(tc.in)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
			require.Equal(t, tc.text, FormatVerify(got))
		})
	}
	require.Equal(t, "metadata", FormatVerify(datapath.VerifyMode{}), "the zero mode is the default")
}
