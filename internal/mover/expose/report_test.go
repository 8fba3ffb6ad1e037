package expose

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
)

// TestWorkerMayNotWriteItsMovement: the worker's Role grants no verb but get on
// DataUploads and DataDownloads (with no status subresource, patch would let it rewrite
// the spec the controller acts on); what it may write is its own report, by name.
func TestWorkerMayNotWriteItsMovement(t *testing.T) {
	for _, op := range []Operation{Backup, Restore} {
		t.Run(string(op), func(t *testing.T) {
			_, role, _ := WorkerIdentity(IdentityParams{Operation: op, Name: "m-1", Namespace: "velero", Owner: duOwner(), StorageLocation: "default"})
			var writable []rbacv1.PolicyRule
			for _, rule := range role.Rules {
				for _, res := range rule.Resources {
					if res == "datauploads" || res == "datadownloads" {
						require.Equal(t, []string{"get"}, rule.Verbs, "%s: only get", res)
					}
				}
				for _, v := range rule.Verbs {
					if v != "get" {
						writable = append(writable, rule)
						break
					}
				}
			}
			require.Equal(t, []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{"m-1"}, Verbs: []string{"patch"}}}, writable,
				"the only thing a worker may write is its own progress report")
		})
	}
}

func TestParseProgress(t *testing.T) {
	for _, tc := range []struct {
		name  string
		data  map[string]string
		want  Progress
		found bool
		err   string
	}{
		{name: "nothing reported yet", data: nil},
		{name: "the worker's patch", data: patchData(t, Progress{BytesDone: 5, TotalBytes: 10}), want: Progress{BytesDone: 5, TotalBytes: 10}, found: true},
		{name: "other keys ignored", data: map[string]string{"bytesDone": "1", "totalBytes": "2", "x": "y"}, want: Progress{BytesDone: 1, TotalBytes: 2}, found: true},
		{name: "missing key", data: map[string]string{"bytesDone": "1"}, err: "key totalBytes is missing"},
		{name: "negative", data: map[string]string{"bytesDone": "-1", "totalBytes": "2"}, err: `key bytesDone: "-1" is not a byte count`},
		{name: "text", data: map[string]string{"bytesDone": "1", "totalBytes": "lots\n"}, err: `key totalBytes: "lots\n" is not a byte count`},
		{name: "huge", data: map[string]string{"bytesDone": strings.Repeat("9", 100000), "totalBytes": "2"}, err: "key bytesDone: 100000 characters, not a byte count"},
		{name: "overflow", data: map[string]string{"bytesDone": "9999999999999999999", "totalBytes": "2"}, err: "is not a byte count"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, found, err := ParseProgress(&corev1.ConfigMap{Data: tc.data})
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.found, found)
			require.Equal(t, tc.want, got)
		})
	}
}

func patchData(t *testing.T, p Progress) map[string]string {
	var patch struct {
		Data map[string]string `json:"data"`
	}
	require.NoError(t, json.Unmarshal(ReportPatch(p), &patch))
	return patch.Data
}
