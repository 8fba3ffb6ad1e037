package cmd

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/snapmove/snapmove/internal/doctor"
	"github.com/snapmove/snapmove/internal/testkit"
)

var (
	allOK = doctor.Report{OK: true, Checks: []doctor.Check{
		{Name: "snapshotCRDs", Status: doctor.OK, Detail: "volumesnapshots, volumesnapshotcontents, volumesnapshotclasses serve snapshot.storage.k8s.io/v1"},
		{Name: "snapshotClasses", Status: doctor.OK, Detail: "rook-ceph.rbd.csi.ceph.com: ceph-block"},
		{Name: "veleroServer", Status: doctor.OK, Detail: "Deployment velero Available; --features: none; no node-agent DaemonSet"},
		{Name: "pluginRegistered", Status: doctor.OK, Detail: "snapmove.io/pvc-backupper (BackupItemActionV2), snapmove.io/pvc-restorer (RestoreItemActionV2), snapmove.io/dataupload-delete (DeleteItemAction)"},
		{Name: "moverReady", Status: doctor.OK, Detail: "1 of 1 replicas available, image ghcr.io/snapmove/snapmove:v0.1.0, --worker-image ghcr.io/snapmove/snapmove:v0.1.0"},
		{Name: "credentials", Status: doctor.OK, Detail: "default: secret velero/velero key cloud (mounted by Velero's Deployment velero)"},
		{Name: "storageLocations", Status: doctor.OK, Detail: "default (default): Available"},
		{Name: "repositoryPassword", Status: doctor.OK, Detail: "secret velero/velero-repo-credentials key repository-password present"},
	}}
	mixed = doctor.Report{OK: false, Checks: []doctor.Check{
		allOK.Checks[0],
		{Name: "snapshotClasses", Status: doctor.Fail, Detail: "rook-ceph.rbd.csi.ceph.com: none of ceph-block is labelled velero.io/csi-volumesnapshot-class=true",
			Fix: "kubectl label volumesnapshotclass ceph-block velero.io/csi-volumesnapshot-class=true"},
		{Name: "veleroServer", Status: doctor.Warn, Detail: "Deployment velero Available; --features=EnableCSI; no node-agent DaemonSet; with EnableCSI and no node-agent, backups that neither pass --data-mover snapmove nor match a volume policy of snapmove create DataUploads of Velero's built-in mover that nothing serves",
			Fix: `set serveVeleroDataMover: "true" in ConfigMap velero/snapmove-mover (README: Velero's CSI feature), or pass --data-mover snapmove, or install node-agent`},
		allOK.Checks[3], allOK.Checks[4], allOK.Checks[5], allOK.Checks[6], allOK.Checks[7],
	}}
)

func TestPrintDoctor(t *testing.T) {
	for _, tc := range []struct {
		file string
		r    doctor.Report
		err  string
	}{
		{file: "testdata/doctor-ok.txt", r: allOK},
		{file: "testdata/doctor-mixed.txt", r: mixed, err: "1 of 8 checks failed: snapshotClasses"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			var b bytes.Buffer
			err := printDoctor(&b, "text", tc.r)
			if tc.err == "" {
				require.NoError(t, err)
			} else {
				require.EqualError(t, err, tc.err)
			}
			if testkit.Updating() {
				require.NoError(t, os.WriteFile(tc.file, b.Bytes(), 0o644))
			}
			want, err := os.ReadFile(tc.file)
			require.NoError(t, err, "run go test -update to create %s", tc.file)
			require.Equal(t, string(want), b.String(), "golden file %s differs; run go test -update if intended", tc.file)
		})
	}
}

func TestPrintDoctorJSON(t *testing.T) {
	var b bytes.Buffer
	require.Error(t, printDoctor(&b, "json", mixed), "a failed check fails the command")
	var got map[string]any
	require.NoError(t, json.Unmarshal(b.Bytes(), &got))
	require.Equal(t, false, got["ok"])
	checks := got["checks"].([]any)
	require.Len(t, checks, 8)
	require.Equal(t, map[string]any{"name": "snapshotCRDs", "status": "ok",
		"detail": "volumesnapshots, volumesnapshotcontents, volumesnapshotclasses serve snapshot.storage.k8s.io/v1"}, checks[0])
	require.Equal(t, "fail", checks[1].(map[string]any)["status"])
	require.Equal(t, "kubectl label volumesnapshotclass ceph-block velero.io/csi-volumesnapshot-class=true", checks[1].(map[string]any)["fix"])
	require.Equal(t, doctor.Names(), names(allOK), "the reports here list every check")
}

func names(r doctor.Report) []string {
	var out []string
	for _, c := range r.Checks {
		out = append(out, c.Name)
	}
	return out
}
