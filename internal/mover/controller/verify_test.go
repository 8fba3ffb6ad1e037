package controller

import (
	"testing"

	"github.com/stretchr/testify/require"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	"github.com/snapmove/snapmove/internal/naming"
)

// The worker pod gets the verify mode: the DataUpload's annotation when set, else the
// setting; an invalid annotation fails the DataUpload.
func TestVerifyModeReachesWorkerPod(t *testing.T) {
	tests := []struct {
		name       string
		setting    string
		annotation *string
		wantArg    string
		wantFailed string
	}{
		{name: "default setting", wantArg: "--verify=metadata"},
		{name: "setting", setting: "full", wantArg: "--verify=full"},
		{name: "annotation overrides the setting", setting: "full", annotation: ptr.To(" sample:5% "), wantArg: "--verify=sample:5"},
		{name: "annotation none", annotation: ptr.To("none"), wantArg: "--verify=none"},
		{name: "empty annotation is not set", setting: "none", annotation: ptr.To(""), wantArg: "--verify=none"},
		{name: "invalid annotation", annotation: ptr.To("fulll"),
			wantFailed: `annotation snapmove.io/verify on DataUpload velero/` + duName + `: unknown mode "fulll" (want none, metadata, sample:<percent> or full)`},
		{name: "invalid sample", annotation: ptr.To("sample:0"),
			wantFailed: `annotation snapmove.io/verify on DataUpload velero/` + duName + `: "sample:0": the sample must be a whole percent from 1 to 100`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			du := dataUpload(velerov2alpha1.DataUploadPhaseAccepted)
			if tc.annotation != nil {
				du.Annotations = map[string]string{annVerify: *tc.annotation}
			}
			e := newEnv(t, nil, backupFixtures(du)...)
			if tc.setting != "" {
				e.cfg.Verify = tc.setting
			}
			e.reconcileDU()
			pod := ourPod(duName)
			if tc.wantFailed != "" {
				got := e.du()
				require.Equal(t, velerov2alpha1.DataUploadPhaseFailed, got.Status.Phase)
				require.Equal(t, tc.wantFailed, got.Status.Message)
				e.requireEvent(ReasonPrepareFailed)
				require.False(t, e.exists(pod))
				require.True(t, e.exists(srcVSC()), "nothing was exposed: the user's snapshot was not taken over")
				return
			}
			require.True(t, e.exists(pod))
			var verifyArgs []string
			for _, a := range pod.Spec.Containers[0].Args {
				if len(a) > 9 && a[:9] == "--verify=" {
					verifyArgs = append(verifyArgs, a)
				}
			}
			require.Equal(t, []string{tc.wantArg}, verifyArgs)
		})
	}
}

// The worker's verification summary is kept in an annotation and ends the done message.
func TestRecordKeepsVerification(t *testing.T) {
	const summary = "verified (metadata): 2500 files, 34 directories, 1.15 GB in 1.2s"
	t.Run("volume with data", func(t *testing.T) {
		pod := terminated(workerPod(duName, corev1.PodSucceeded), "Completed",
			`{"snapshotID":"k0123","totalBytes":1000,"verification":"`+summary+`"}`, 0)
		e := newEnv(t, nil, inProgress(), pod, ourVS(), ourVSC(), ourPVC(duName))
		e.reconcileDU()
		du := e.du()
		require.Equal(t, velerov2alpha1.DataUploadPhaseCompleted, du.Status.Phase)
		require.Equal(t, summary, du.Annotations[annVerification])
		require.Equal(t, summary, du.Status.Message)
	})
	t.Run("empty volume", func(t *testing.T) {
		pod := terminated(workerPod(duName, corev1.PodSucceeded), "Completed",
			`{"snapshotID":"k0","totalBytes":0,"empty":true,"verification":"verified (metadata): 0 files, 1 directory, 0 B in 1ms"}`, 0)
		e := newEnv(t, nil, inProgress(), pod)
		e.reconcileDU()
		require.Equal(t, "the volume was empty; an empty snapshot was stored; verified (metadata): 0 files, 1 directory, 0 B in 1ms", e.du().Status.Message)
	})
	t.Run("worker without verification", func(t *testing.T) {
		pod := terminated(workerPod(duName, corev1.PodSucceeded), "Completed", `{"snapshotID":"k0123","totalBytes":1000}`, 0)
		e := newEnv(t, nil, inProgress(), pod)
		e.reconcileDU()
		du := e.du()
		require.NotContains(t, du.Annotations, annVerification)
		require.Empty(t, du.Status.Message)
	})
	t.Run("restart after the record", func(t *testing.T) {
		du := inProgress()
		du.Status.SnapshotID = "k0123"
		du.Status.Progress.TotalBytes, du.Status.Progress.BytesDone = 1000, 1000
		du.Annotations = map[string]string{annResultRecorded: "true", annVerification: summary}
		e := newEnv(t, nil, du)
		e.reconcileDU()
		require.Equal(t, summary, e.du().Status.Message)
	})
}

// Compression and the checkpoint interval reach backup worker pods: the DataUpload's
// compression annotation (copied from the Backup) over the setting; an invalid one fails
// the DataUpload before anything is exposed.
func TestCompressionReachesWorkerPod(t *testing.T) {
	for _, tc := range []struct {
		name, setting, annotation, wantArg, wantFailed string
	}{
		{name: "default: none, as Velero", wantArg: "--compression=none"},
		{name: "setting", setting: "zstd", wantArg: "--compression=zstd"},
		{name: "annotation overrides", setting: "zstd", annotation: "s2-default", wantArg: "--compression=s2-default"},
		{name: "lz4 is refused", annotation: "lz4",
			wantFailed: `annotation snapmove.io/compression on DataUpload velero/` + duName + `: compression "lz4": want one of none, zstd, zstd-fastest, zstd-better-compression, s2-default, s2-better, s2-parallel-4, s2-parallel-8`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			du := dataUpload(velerov2alpha1.DataUploadPhaseAccepted)
			if tc.annotation != "" {
				du.Annotations = map[string]string{naming.CompressionAnnotation: tc.annotation}
			}
			e := newEnv(t, nil, backupFixtures(du)...)
			if tc.setting != "" {
				e.cfg.Compression = tc.setting
			}
			e.reconcileDU()
			if tc.wantFailed != "" {
				require.Equal(t, tc.wantFailed, e.du().Status.Message)
				require.Equal(t, velerov2alpha1.DataUploadPhaseFailed, e.du().Status.Phase)
				require.True(t, e.exists(srcVSC()), "nothing was exposed: the user's snapshot was not taken over")
				return
			}
			pod := ourPod(duName)
			require.True(t, e.exists(pod))
			require.Contains(t, pod.Spec.Containers[0].Args, tc.wantArg)
			require.Contains(t, pod.Spec.Containers[0].Args, "--checkpoint-interval=30s")
		})
	}
}
