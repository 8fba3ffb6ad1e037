package controller

import (
	"context"
	"encoding/base64"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/snapmove/snapmove/internal/mover/config"
	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/mover/expose"
	"github.com/snapmove/snapmove/internal/naming"
)

// ourVS, ourVSC, ourPVC and ourPod are objects as the mover makes them for the movement
// name (ourMeta), as fixtures; as keys for exists, only their names count.
func ourVS() *snapshotv1.VolumeSnapshot {
	return &snapshotv1.VolumeSnapshot{ObjectMeta: ourMeta(veleroNS, duName)}
}
func ourVSC() *snapshotv1.VolumeSnapshotContent {
	return &snapshotv1.VolumeSnapshotContent{ObjectMeta: ourMeta("", duName)}
}
func ourPVC(name string) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{ObjectMeta: ourMeta(veleroNS, name)}
}
func ourPod(name string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: ourMeta(veleroNS, name)}
}

// ourMeta is the metadata of an object the mover made for the movement name (duName or
// ddName, whose UIDs the fixtures fix): it carries the movement's UID label.
func ourMeta(namespace, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: map[string]string{naming.MovementUIDLabel: string(movementUID(name))}}
}

// movementUID is the UID of the fixture movement name: dataUpload's or dataDownload's.
func movementUID(name string) types.UID {
	if name == ddName {
		return "dd-uid"
	}
	return "du-uid"
}
func srcVSC() *snapshotv1.VolumeSnapshotContent {
	return &snapshotv1.VolumeSnapshotContent{ObjectMeta: metav1.ObjectMeta{Name: "snapcontent-1"}}
}
func srcVS() *snapshotv1.VolumeSnapshot {
	return &snapshotv1.VolumeSnapshot{ObjectMeta: metav1.ObjectMeta{Namespace: appNS, Name: "snap-1"}}
}

func TestDataMoverFilter(t *testing.T) {
	for _, mover := range []string{"", "velero", "other"} {
		t.Run("datamover="+mover, func(t *testing.T) {
			du := dataUpload(velerov2alpha1.DataUploadPhaseNew)
			du.Spec.DataMover = mover
			e := newEnv(t, nil, backupFixtures(du)...)
			e.reconcileDU()
			got := e.du()
			require.Equal(t, velerov2alpha1.DataUploadPhaseNew, got.Status.Phase)
			require.Empty(t, got.Finalizers)
			require.Equal(t, mover != "other", ours(got), "Velero's built-in mover is looked at (builtin.go)")
		})
	}
	require.True(t, ours(dataUpload(velerov2alpha1.DataUploadPhaseNew)))
	require.False(t, ours(&corev1.Pod{}))
}

func TestNewClaims(t *testing.T) {
	e := newEnv(t, nil, backupFixtures(dataUpload(""))...)
	res := e.reconcileDU()
	require.Equal(t, nextPhase, res.RequeueAfter)
	du := e.du()
	require.Equal(t, velerov2alpha1.DataUploadPhaseAccepted, du.Status.Phase)
	require.Equal(t, "controller-node", du.Status.AcceptedByNode)
	require.Equal(t, t0, du.Status.AcceptedTimestamp.Time.UTC())
	require.Contains(t, du.Finalizers, naming.MoverFinalizer)
}

func TestNewClaimConflict(t *testing.T) {
	funcs := &interceptor.Funcs{Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
		return conflict(obj)
	}}
	e := newEnv(t, funcs, backupFixtures(dataUpload(velerov2alpha1.DataUploadPhaseNew))...)
	res := e.reconcileDU() // no error: someone else won
	require.Zero(t, res.RequeueAfter)
	require.Equal(t, velerov2alpha1.DataUploadPhaseNew, e.du().Status.Phase)
}

func TestNewQueuesOverLimit(t *testing.T) {
	busy := func(name string, phase velerov2alpha1.DataUploadPhase) client.Object {
		du := dataUpload(phase)
		du.Name, du.UID = name, types.UID("uid-"+name)
		return du
	}
	dd := dataDownload(velerov2alpha1.DataDownloadPhaseInProgress)
	otherMover := busy("not-ours", velerov2alpha1.DataUploadPhaseInProgress).(*velerov2alpha1.DataUpload)
	otherMover.Spec.DataMover = "velero"
	otherMover.Finalizers = nil // node-agent's: not claimed by this mover
	objs := append(backupFixtures(dataUpload(velerov2alpha1.DataUploadPhaseNew)),
		busy("a", velerov2alpha1.DataUploadPhaseAccepted), dd, otherMover,
		busy("done", velerov2alpha1.DataUploadPhaseCompleted))
	e := newEnv(t, nil, objs...)
	e.cfg.MaxConcurrent = 2
	res := e.reconcileDU()
	require.Equal(t, queuedRequeue, res.RequeueAfter)
	du := e.du()
	require.Equal(t, velerov2alpha1.DataUploadPhaseNew, du.Status.Phase)
	require.Equal(t, "queued: 2 data movements running (limit 2)", du.Status.Message)

	e.cfg.MaxConcurrent = 3
	e.reconcileDU()
	require.Equal(t, velerov2alpha1.DataUploadPhaseAccepted, e.du().Status.Phase)
	require.Empty(t, e.du().Status.Message)
}

func phaseOr(p velerov2alpha1.DataUploadPhase) string { return string(p) }

func TestNewInvalidSettings(t *testing.T) {
	e := newEnv(t, nil, backupFixtures(dataUpload(velerov2alpha1.DataUploadPhaseNew))...)
	e.cfgErr = errString("mover settings ConfigMap velero/snapmove-mover is invalid: perNode: bad")
	res := e.reconcileDU()
	require.Equal(t, invalidRequeue, res.RequeueAfter)
	require.Equal(t, "not accepted: mover settings ConfigMap velero/snapmove-mover is invalid: perNode: bad", e.du().Status.Message)
	e.requireEvent(ReasonSettingsInvalid)
}

type errString string

func (e errString) Error() string { return string(e) }

func TestCancelInEveryPhase(t *testing.T) {
	for _, phase := range []velerov2alpha1.DataUploadPhase{"", velerov2alpha1.DataUploadPhaseNew, velerov2alpha1.DataUploadPhaseAccepted,
		velerov2alpha1.DataUploadPhasePrepared, velerov2alpha1.DataUploadPhaseInProgress, velerov2alpha1.DataUploadPhaseCanceling} {
		t.Run(phaseOr(phase), func(t *testing.T) {
			du := dataUpload(phase)
			du.Spec.Cancel = true
			objs := append(backupFixtures(du), workerPod(duName, corev1.PodRunning), ourVS(), ourPVC(duName))
			e := newEnv(t, nil, objs...)
			e.reconcileDU()
			if phase == velerov2alpha1.DataUploadPhaseInProgress {
				require.Equal(t, velerov2alpha1.DataUploadPhaseCanceling, e.du().Status.Phase)
				require.True(t, e.exists(ourPod(duName)), "the pod goes in Canceling")
				e.reconcileDU()
			}
			got := e.du()
			require.Equal(t, velerov2alpha1.DataUploadPhaseCanceled, got.Status.Phase)
			require.NotNil(t, got.Status.CompletionTimestamp)
			require.NotContains(t, got.Finalizers, naming.MoverFinalizer)
			require.False(t, e.exists(ourPod(duName)))
			require.False(t, e.exists(ourPVC(duName)))
			require.False(t, e.exists(ourVS()))
			require.False(t, e.exists(srcVS()), "the user's VolumeSnapshot is cleaned up too")
			e.requireEvent(ReasonCanceled)
			require.Equal(t, 1.0, testutil.ToFloat64(e.r.Metrics.outcomes.WithLabelValues("backup", phaseCanceled)))
		})
	}
}

func TestAcceptedRepositoryErrors(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		noBSL   bool
		want    string
		waiting bool
	}{
		{name: "wrong password", err: datapath.Permanent(ReasonRepositoryError, errString("the repository password in secret velero/velero-repo-credentials does not open the kopia repository at s3://bucket/velero/kopia/app/")),
			want: "the repository password in secret velero/velero-repo-credentials does not open the kopia repository at s3://bucket/velero/kopia/app/"},
		{name: "bucket missing", err: datapath.Permanent("", errString("bucket bucket does not exist (s3://bucket/velero/kopia/app/)")), want: "bucket bucket does not exist"},
		{name: "BSL missing", noBSL: true, want: "BackupStorageLocation velero/default does not exist"},
		{name: "transient", err: errString("connection reset"), waiting: true,
			want: "waiting: checking the kopia repository for namespace app on BackupStorageLocation default: connection reset"},
		// Velero creates the password at start; until then the movement says so and waits.
		{name: "password secret not created yet", err: datapath.Transient(errString("Velero's repository password secret velero/velero-repo-credentials does not exist yet; Velero creates it when its server starts")), waiting: true,
			want: "waiting: checking the kopia repository for namespace app on BackupStorageLocation default: Velero's repository password secret velero/velero-repo-credentials does not exist yet; Velero creates it when its server starts"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			objs := backupFixtures(dataUpload(velerov2alpha1.DataUploadPhaseAccepted))
			if tc.noBSL {
				objs = objs[:1]
				objs = append(objs, sourceVS(true), sourceVSC())
			}
			e := newEnv(t, nil, objs...)
			e.repos.verifyErr = tc.err
			e.reconcileDU()
			du := e.du()
			require.Contains(t, du.Status.Message, tc.want)
			if tc.waiting {
				require.Equal(t, velerov2alpha1.DataUploadPhaseAccepted, du.Status.Phase)
			} else {
				require.Equal(t, velerov2alpha1.DataUploadPhaseFailed, du.Status.Phase)
				e.requireEvent(ReasonRepositoryError)
			}
			// Nothing was exposed for a repository that cannot be used.
			require.False(t, e.exists(ourVS()))
			require.False(t, e.exists(ourVSC()))
			require.False(t, e.exists(ourPVC(duName)))
			require.False(t, e.exists(ourPod(duName)))
		})
	}
}

func TestAcceptedExposes(t *testing.T) {
	var policyAtDeletion snapshotv1.DeletionPolicy
	var vsDeletedAfterRetain bool
	funcs := &interceptor.Funcs{Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
		switch o := obj.(type) {
		case *snapshotv1.VolumeSnapshot:
			if o.Namespace == appNS {
				vsc := &snapshotv1.VolumeSnapshotContent{}
				require.NoError(t, c.Get(ctx, client.ObjectKey{Name: "snapcontent-1"}, vsc))
				vsDeletedAfterRetain = vsc.Spec.DeletionPolicy == snapshotv1.VolumeSnapshotContentRetain
			}
		case *snapshotv1.VolumeSnapshotContent:
			if o.Name == "snapcontent-1" {
				vsc := &snapshotv1.VolumeSnapshotContent{}
				require.NoError(t, c.Get(ctx, client.ObjectKey{Name: "snapcontent-1"}, vsc))
				policyAtDeletion = vsc.Spec.DeletionPolicy
			}
		}
		return c.Delete(ctx, obj, opts...)
	}}
	e := newEnv(t, funcs, backupFixtures(dataUpload(velerov2alpha1.DataUploadPhaseAccepted))...)
	res := e.reconcileDU()
	require.Equal(t, fastWaitRequeue, res.RequeueAfter, "just claimed: looks again soon")
	require.Equal(t, []string{"default/app/create"}, e.repos.verified)

	vsc := ourVSC()
	require.True(t, e.exists(vsc))
	require.Equal(t, "handle-1", *vsc.Spec.Source.SnapshotHandle)
	require.Equal(t, snapshotv1.VolumeSnapshotContentDelete, vsc.Spec.DeletionPolicy)
	require.Equal(t, "hostpath.csi.k8s.io", vsc.Spec.Driver)
	vs := ourVS()
	require.True(t, e.exists(vs))
	require.Equal(t, duName, *vs.Spec.Source.VolumeSnapshotContentName)
	require.Equal(t, "snapcontent-1", vs.Annotations[annSourceContent])

	require.True(t, vsDeletedAfterRetain, "the user's content is retained before its VolumeSnapshot is deleted")
	require.Equal(t, snapshotv1.VolumeSnapshotContentRetain, policyAtDeletion)
	require.False(t, e.exists(srcVS()))
	require.False(t, e.exists(srcVSC()))

	pvc := ourPVC(duName)
	require.True(t, e.exists(pvc))
	require.Equal(t, []corev1.PersistentVolumeAccessMode{corev1.ReadOnlyMany}, pvc.Spec.AccessModes)
	require.Equal(t, "1Gi", pvc.Spec.Resources.Requests.Storage().String(), "restoreSize wins over the PVC request")
	require.Equal(t, "csi-sc", *pvc.Spec.StorageClassName)
	require.Equal(t, duName, pvc.Spec.DataSource.Name)
	require.Equal(t, "DataUpload", pvc.OwnerReferences[0].Kind)

	pod := ourPod(duName)
	require.True(t, e.exists(pod))
	require.Equal(t, "snapmove:test", pod.Spec.Containers[0].Image)
	require.Equal(t, duName, pod.Labels[naming.DataUploadLabel])
	require.True(t, pod.Spec.Volumes[0].PersistentVolumeClaim.ReadOnly)
	require.Equal(t, nodeA, pod.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchExpressions[0].Values[0],
		"the source PV's topology is required (WaitForFirstConsumer class)")
	require.Contains(t, pod.Spec.Containers[0].Args, "--default-credentials-secret=cloud-credentials/cloud")
	require.Contains(t, pod.Spec.Containers[0].Args, "--verify=metadata")
	require.Contains(t, e.du().Status.Message, "waiting: worker pod velero/"+duName+" is not scheduled yet; backup PVC velero/"+duName+" is Pending")

	// A second pass changes nothing and does not check the repository again.
	e.reconcileDU()
	require.Len(t, e.repos.verified, 1)
	require.Equal(t, velerov2alpha1.DataUploadPhaseAccepted, e.du().Status.Phase)

	// The pod runs: Prepared on its node.
	e.update(pod, func() { pod.Spec.NodeName, pod.Status.Phase = nodeA, corev1.PodRunning })
	e.reconcileDU()
	du := e.du()
	require.Equal(t, velerov2alpha1.DataUploadPhasePrepared, du.Status.Phase)
	require.Equal(t, nodeA, du.Status.Node)
	require.Equal(t, velerov2alpha1.NodeOSLinux, du.Status.NodeOS, "set where Velero's own controller sets it: at Prepared")
	require.Empty(t, du.Status.Message)
}

func TestAcceptedBlockVolume(t *testing.T) {
	objs := backupFixtures(dataUpload(velerov2alpha1.DataUploadPhaseAccepted))
	pvc := objs[3].(*corev1.PersistentVolumeClaim)
	pvc.Spec.VolumeMode = ptr.To(corev1.PersistentVolumeBlock)
	e := newEnv(t, nil, objs...)
	e.cfg.BackupPVCAccessModes = map[string]corev1.PersistentVolumeAccessMode{"csi-sc": corev1.ReadWriteOnce}
	e.reconcileDU()
	got := ourPVC(duName)
	require.True(t, e.exists(got))
	require.Equal(t, corev1.PersistentVolumeBlock, *got.Spec.VolumeMode)
	require.Equal(t, corev1.ReadWriteOnce, got.Spec.AccessModes[0])
	pod := ourPod(duName)
	require.True(t, e.exists(pod))
	require.Equal(t, expose.SourceDevicePath, pod.Spec.Containers[0].VolumeDevices[0].DevicePath)
	require.False(t, pod.Spec.Volumes[0].PersistentVolumeClaim.ReadOnly)
}

func TestAcceptedSnapshotProblems(t *testing.T) {
	t.Run("source snapshot not ready", func(t *testing.T) {
		objs := backupFixtures(dataUpload(velerov2alpha1.DataUploadPhaseAccepted))
		vs := objs[5].(*snapshotv1.VolumeSnapshot)
		vs.Status.ReadyToUse = ptr.To(false)
		vs.Status.Error = &snapshotv1.VolumeSnapshotError{Message: ptr.To("rpc error: quota exceeded")}
		e := newEnv(t, nil, objs...)
		e.reconcileDU()
		require.Equal(t, "waiting: VolumeSnapshot app/snap-1 is not ready yet: rpc error: quota exceeded", e.du().Status.Message)
		require.False(t, e.exists(ourVS()))

		e.clock.SetTime(t0.Add(31 * time.Minute))
		e.reconcileDU()
		du := e.du()
		require.Equal(t, velerov2alpha1.DataUploadPhaseFailed, du.Status.Phase)
		require.Equal(t, "VolumeSnapshot app/snap-1 is not ready yet: rpc error: quota exceeded (still not ready after 30m0s)", du.Status.Message)
		e.requireEvent(ReasonPrepareTimeout)
	})
	t.Run("source snapshot gone", func(t *testing.T) {
		objs := backupFixtures(dataUpload(velerov2alpha1.DataUploadPhaseAccepted))[:5]
		e := newEnv(t, nil, objs...)
		e.reconcileDU()
		du := e.du()
		require.Equal(t, velerov2alpha1.DataUploadPhaseFailed, du.Status.Phase)
		require.Equal(t, "VolumeSnapshot app/snap-1 does not exist any more", du.Status.Message)
		e.requireEvent(ReasonPrepareFailed)
	})
}

func TestPrepareTimeoutDiagnosis(t *testing.T) {
	tests := []struct {
		name  string
		setup func(e *env)
		want  string
	}{
		{
			name: "PVC pending",
			setup: func(e *env) {
				pvc := ourPVC(duName)
				require.True(t, e.exists(pvc))
				e.create(pvcEvent(pvc.UID, "ProvisioningFailed", "failed to provision volume: rpc error: code = ResourceExhausted desc = out of space"))
			},
			want: "backup PVC velero/" + duName + " is Pending: failed to provision volume: rpc error: code = ResourceExhausted desc = out of space",
		},
		{
			name: "pod unschedulable",
			setup: func(e *env) {
				pvc := ourPVC(duName)
				require.True(t, e.exists(pvc))
				e.create(pvcEvent(pvc.UID, "WaitForFirstConsumer", "waiting for first consumer to be created before binding"))
				pod := ourPod(duName)
				e.update(pod, func() {
					pod.Status.Phase = corev1.PodPending
					pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: "Unschedulable",
						Message: "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."}}
				})
			},
			want: "worker pod velero/" + duName + " is unschedulable: 0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector.; backup PVC velero/" + duName + " is Pending: waiting for first consumer",
		},
		{
			name: "volume cannot be mounted",
			setup: func(e *env) {
				pvc := ourPVC(duName)
				e.update(pvc, func() { pvc.Status.Phase = corev1.ClaimBound })
				pod := ourPod(duName)
				e.update(pod, func() {
					pod.Spec.NodeName = nodeA
					pod.Status.Phase = corev1.PodPending
					pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: expose.WorkerContainer, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}}}
				})
				e.create(pvcEvent(pod.UID, "FailedMount", "MountVolume.SetUp failed for volume \"data\": mount failed"))
			},
			want: "worker pod velero/" + duName + " is not running: ContainerCreating; worker pod velero/" + duName + ": FailedMount: MountVolume.SetUp failed for volume \"data\": mount failed",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil, backupFixtures(dataUpload(velerov2alpha1.DataUploadPhaseAccepted))...)
			e.reconcileDU()
			tc.setup(e)
			e.reconcileDU()
			require.Contains(t, e.du().Status.Message, "waiting: "+tc.want, "the diagnosis shows while waiting")

			e.clock.SetTime(t0.Add(30 * time.Minute))
			e.reconcileDU()
			du := e.du()
			require.Equal(t, velerov2alpha1.DataUploadPhaseFailed, du.Status.Phase)
			require.Contains(t, du.Status.Message, tc.want)
			require.Contains(t, du.Status.Message, "(still not ready after 30m0s)")
			require.False(t, e.exists(ourPod(duName)))
			require.False(t, e.exists(ourPVC(duName)))
			require.False(t, e.exists(ourVS()))
			require.False(t, e.exists(ourVSC()))
			e.requireEvent(ReasonPrepareTimeout)
		})
	}
}

func TestAcceptedImagePullFailsFast(t *testing.T) {
	e := newEnv(t, nil, backupFixtures(dataUpload(velerov2alpha1.DataUploadPhaseAccepted))...)
	e.reconcileDU()
	pod := ourPod(duName)
	e.update(pod, func() {
		pod.Status.Phase = corev1.PodPending
		pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: expose.WorkerContainer, Image: "snapmove:test",
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: "Back-off pulling image"}}}}
	})
	e.reconcileDU()
	du := e.du()
	require.Equal(t, velerov2alpha1.DataUploadPhaseFailed, du.Status.Phase)
	require.Equal(t, "worker pod velero/"+duName+" cannot start: ImagePullBackOff for image snapmove:test: Back-off pulling image", du.Status.Message)
}

func TestAccessModeFallback(t *testing.T) {
	e := newEnv(t, nil, backupFixtures(dataUpload(velerov2alpha1.DataUploadPhaseAccepted))...)
	e.reconcileDU()
	pvc := ourPVC(duName)
	require.True(t, e.exists(pvc))
	require.Equal(t, corev1.ReadOnlyMany, pvc.Spec.AccessModes[0])
	e.create(pvcEvent(pvc.UID, "ProvisioningFailed", "rpc error: code = InvalidArgument desc = volume capability access mode MULTI_NODE_READER_ONLY not supported"))

	e.reconcileDU()
	require.Contains(t, e.du().Status.Message, "cannot be provisioned ReadOnlyMany")
	require.False(t, e.exists(ourPVC(duName)))
	vs := ourVS()
	require.True(t, e.exists(vs))
	require.Equal(t, "ReadWriteOnce", vs.Annotations[annBackupAccessMode])

	e.reconcileDU()
	pvc = ourPVC(duName)
	require.True(t, e.exists(pvc))
	require.Equal(t, corev1.ReadWriteOnce, pvc.Spec.AccessModes[0])
	pod := ourPod(duName)
	require.True(t, e.exists(pod))
	require.False(t, pod.Spec.Volumes[0].PersistentVolumeClaim.ReadOnly)
}

func TestPrepared(t *testing.T) {
	prepared := func() *velerov2alpha1.DataUpload {
		du := dataUpload(velerov2alpha1.DataUploadPhasePrepared)
		du.Status.Node = nodeA
		return du
	}
	t.Run("starts", func(t *testing.T) {
		e := newEnv(t, nil, prepared(), workerPod(duName, corev1.PodRunning))
		res := e.reconcileDU()
		require.Equal(t, movingRequeue, res.RequeueAfter)
		du := e.du()
		require.Equal(t, velerov2alpha1.DataUploadPhaseInProgress, du.Status.Phase)
		require.Equal(t, t0, du.Status.StartTimestamp.Time.UTC())
	})
	t.Run("node full", func(t *testing.T) {
		other := dataDownload(velerov2alpha1.DataDownloadPhaseInProgress)
		other.Status.Node = nodeA
		e := newEnv(t, nil, prepared(), workerPod(duName, corev1.PodRunning), other)
		e.cfg.PerNode = 1
		res := e.reconcileDU()
		require.Equal(t, queuedRequeue, res.RequeueAfter)
		du := e.du()
		require.Equal(t, velerov2alpha1.DataUploadPhasePrepared, du.Status.Phase)
		require.Equal(t, "queued on node node-a: 1 data movements in progress there (perNode limit 1)", du.Status.Message)
	})
	// A settings ConfigMap broken while movements run: claimed ones keep the last valid
	// settings (here perNode 1), never silently fall back to defaults (perNode 2).
	t.Run("settings broken later keep the last valid ones", func(t *testing.T) {
		other := dataDownload(velerov2alpha1.DataDownloadPhaseInProgress)
		other.Status.Node = nodeA
		e := newEnv(t, nil, prepared(), workerPod(duName, corev1.PodRunning), other)
		e.cfg.PerNode = 1
		e.reconcileDU() // the mover saw valid settings
		e.cfg, e.cfgErr = config.Default(), errString("mover settings ConfigMap velero/snapmove-mover is invalid: key perNode: want a number")
		e.reconcileDU()
		du := e.du()
		require.Equal(t, velerov2alpha1.DataUploadPhasePrepared, du.Status.Phase)
		require.Equal(t, "queued on node node-a: 1 data movements in progress there (perNode limit 1)", du.Status.Message)
	})
	t.Run("pod gone", func(t *testing.T) {
		e := newEnv(t, nil, prepared())
		e.reconcileDU()
		du := e.du()
		require.Equal(t, velerov2alpha1.DataUploadPhaseFailed, du.Status.Phase)
		require.Contains(t, du.Status.Message, "disappeared before moving data")
	})
}

func inProgress() *velerov2alpha1.DataUpload {
	du := dataUpload(velerov2alpha1.DataUploadPhaseInProgress)
	du.Status.Node, du.Status.NodeOS = nodeA, velerov2alpha1.NodeOSLinux
	du.Status.StartTimestamp = &metav1.Time{Time: t0}
	du.Status.Progress.TotalBytes, du.Status.Progress.BytesDone = 100, 40
	return du
}

func TestInProgressWorkerOutcomes(t *testing.T) {
	t.Run("succeeded", func(t *testing.T) {
		pod := terminated(workerPod(duName, corev1.PodSucceeded), "Completed", `{"snapshotID":"k0123","totalBytes":1000,"incrementalBytes":300}`, 0)
		e := newEnv(t, nil, inProgress(), pod, ourVS(), ourVSC(), ourPVC(duName))
		e.clock.SetTime(t0.Add(time.Minute))
		e.reconcileDU()
		du := e.du()
		require.Equal(t, velerov2alpha1.DataUploadPhaseCompleted, du.Status.Phase)
		require.Equal(t, "k0123", du.Status.SnapshotID)
		require.Equal(t, int64(1000), du.Status.Progress.TotalBytes)
		require.Equal(t, int64(1000), du.Status.Progress.BytesDone)
		require.Equal(t, int64(300), du.Status.IncrementalBytes)
		require.Equal(t, velerov2alpha1.NodeOSLinux, du.Status.NodeOS)
		require.Equal(t, t0.Add(time.Minute), du.Status.CompletionTimestamp.Time.UTC())
		require.Empty(t, du.Status.Message)
		require.NotContains(t, du.Finalizers, naming.MoverFinalizer)
		require.False(t, e.exists(ourPod(duName)))
		require.False(t, e.exists(ourPVC(duName)))
		require.False(t, e.exists(ourVS()))
		require.False(t, e.exists(ourVSC()))
		e.requireEvent(ReasonCompleted)
		require.Equal(t, 1000.0, testutil.ToFloat64(e.r.Metrics.bytes.WithLabelValues("backup")))
		require.Equal(t, 300.0, testutil.ToFloat64(e.r.Metrics.incremental))
		require.Equal(t, 1.0, testutil.ToFloat64(e.r.Metrics.outcomes.WithLabelValues("backup", phaseCompleted)))
	})
	t.Run("empty volume", func(t *testing.T) {
		pod := terminated(workerPod(duName, corev1.PodSucceeded), "Completed", `{"snapshotID":"k0","totalBytes":0,"empty":true}`, 0)
		e := newEnv(t, nil, inProgress(), pod)
		e.reconcileDU()
		du := e.du()
		require.Equal(t, velerov2alpha1.DataUploadPhaseCompleted, du.Status.Phase)
		require.Equal(t, "the volume was empty; an empty snapshot was stored", du.Status.Message)
	})
	t.Run("failed with message", func(t *testing.T) {
		pod := terminated(workerPod(duName, corev1.PodFailed), "Error", "backing up /data: open /data/x: permission denied", 1)
		e := newEnv(t, nil, inProgress(), pod, ourPVC(duName))
		e.reconcileDU()
		du := e.du()
		require.Equal(t, velerov2alpha1.DataUploadPhaseFailed, du.Status.Phase)
		require.Equal(t, "worker pod velero/"+duName+" failed: backing up /data: open /data/x: permission denied", du.Status.Message)
		require.False(t, e.exists(ourPVC(duName)))
		e.requireEvent(ReasonWorkerFailed)
	})
	t.Run("OOM killed", func(t *testing.T) {
		pod := terminated(workerPod(duName, corev1.PodFailed), "OOMKilled", "", 137)
		pod.Spec.Containers[0].Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: mustQuantity("1Gi")}
		e := newEnv(t, nil, inProgress(), pod)
		e.reconcileDU()
		require.Equal(t, "retrying (attempt 2 of 3) after: container OOMKilled (exit code 137), memory limit 1Gi; raise workerResources in the mover settings", e.du().Status.Message)
	})
	t.Run("OOM killed at the last attempt", func(t *testing.T) {
		pod := terminated(workerPod(duName, corev1.PodFailed), "OOMKilled", "", 137)
		pod.Spec.Containers[0].Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: mustQuantity("1Gi")}
		du := inProgress()
		setAnnotation(du, annAttempt, "3")
		e := newEnv(t, nil, du, pod)
		e.reconcileDU()
		require.Equal(t, "worker pod velero/"+duName+" failed (attempt 3 of 3): container OOMKilled (exit code 137), memory limit 1Gi; raise workerResources in the mover settings", e.du().Status.Message)
	})
	t.Run("evicted", func(t *testing.T) {
		pod := workerPod(duName, corev1.PodFailed)
		pod.Status.Reason, pod.Status.Message = "Evicted", "The node was low on resource: ephemeral-storage."
		e := newEnv(t, nil, inProgress(), pod)
		e.reconcileDU()
		require.Equal(t, "worker pod velero/"+duName+" failed: Evicted The node was low on resource: ephemeral-storage.", e.du().Status.Message)
	})
	t.Run("pod gone", func(t *testing.T) {
		e := newEnv(t, nil, inProgress(), ourVS(), ourPVC(duName))
		e.reconcileDU()
		du := e.du()
		require.Equal(t, velerov2alpha1.DataUploadPhaseFailed, du.Status.Phase)
		require.Equal(t, "worker pod velero/"+duName+" disappeared while moving data (deleted or evicted); the next backup of this volume will start from the last complete snapshot", du.Status.Message)
		require.False(t, e.exists(ourVS()))
		e.requireEvent(ReasonWorkerDisappeared)
	})
	t.Run("unreadable result", func(t *testing.T) {
		pod := terminated(workerPod(duName, corev1.PodSucceeded), "Completed", "done", 0)
		e := newEnv(t, nil, inProgress(), pod)
		e.reconcileDU()
		require.Contains(t, e.du().Status.Message, "succeeded but its result cannot be read")
		e.requireEvent(ReasonInvalidResult)
	})
	t.Run("running: re-attached, nothing changes", func(t *testing.T) {
		e := newEnv(t, nil, inProgress(), workerPod(duName, corev1.PodRunning))
		res := e.reconcileDU()
		require.Equal(t, movingRequeue, res.RequeueAfter)
		du := e.du()
		require.Equal(t, velerov2alpha1.DataUploadPhaseInProgress, du.Status.Phase)
		require.Equal(t, int64(40), du.Status.Progress.BytesDone)
	})
}

func mustQuantity(s string) resource.Quantity { return resource.MustParse(s) }

// A crash after the result was recorded and the pod deleted: the restarted controller
// finishes instead of reporting a disappeared pod.
func TestFinishingSurvivesRestart(t *testing.T) {
	du := inProgress()
	du.Status.SnapshotID = "k0123"
	du.Status.Progress.TotalBytes, du.Status.Progress.BytesDone = 1000, 1000
	du.Status.Message = "reworded by a later version"
	du.Annotations = map[string]string{annResultRecorded: "true"}
	e := newEnv(t, nil, du, ourVS())
	e.reconcileDU()
	got := e.du()
	require.Equal(t, velerov2alpha1.DataUploadPhaseCompleted, got.Status.Phase)
	require.Equal(t, "k0123", got.Status.SnapshotID)
	require.False(t, e.exists(ourVS()))
}

func TestDeletionCancels(t *testing.T) {
	e := newEnv(t, nil, inProgress(), workerPod(duName, corev1.PodRunning), ourPVC(duName), ourVS())
	require.NoError(t, e.c.Delete(context.Background(), e.du()))
	e.reconcileDU()
	require.False(t, e.exists(&velerov2alpha1.DataUpload{ObjectMeta: metav1.ObjectMeta{Namespace: veleroNS, Name: duName}}),
		"the finalizer is removed, so the object goes")
	require.False(t, e.exists(ourPod(duName)))
	require.False(t, e.exists(ourPVC(duName)))
	require.False(t, e.exists(ourVS()))
	e.requireEvent("DataUpload was deleted while InProgress")
}

func TestTerminalLeftoverFinalizer(t *testing.T) {
	du := dataUpload(velerov2alpha1.DataUploadPhaseFailed)
	e := newEnv(t, nil, du, ourPVC(duName))
	e.reconcileDU()
	got := e.du()
	require.Empty(t, got.Finalizers)
	require.Equal(t, velerov2alpha1.DataUploadPhaseFailed, got.Status.Phase)
	require.False(t, e.exists(ourPVC(duName)))
}

func TestWriteRetriesOnConflict(t *testing.T) {
	t.Run("re-applies on a fresh copy", func(t *testing.T) {
		calls := 0
		funcs := &interceptor.Funcs{Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			calls++
			if calls == 1 {
				// someone else wrote progress meanwhile
				du := &velerov2alpha1.DataUpload{}
				require.NoError(t, c.Get(ctx, client.ObjectKeyFromObject(obj), du))
				du.Status.Progress.BytesDone = 77
				require.NoError(t, c.Update(ctx, du))
				return conflict(obj)
			}
			return c.Update(ctx, obj, opts...)
		}}
		du := dataUpload(velerov2alpha1.DataUploadPhasePrepared)
		du.Status.Node = nodeA
		e := newEnv(t, funcs, du, workerPod(duName, corev1.PodRunning))
		e.reconcileDU()
		got := e.du()
		require.Equal(t, velerov2alpha1.DataUploadPhaseInProgress, got.Status.Phase)
		require.Equal(t, int64(77), got.Status.Progress.BytesDone, "the other writer's change is kept")
	})
	t.Run("never touches an object that ended meanwhile", func(t *testing.T) {
		calls := 0
		funcs := &interceptor.Funcs{Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			calls++
			if calls == 1 {
				du := &velerov2alpha1.DataUpload{}
				require.NoError(t, c.Get(ctx, client.ObjectKeyFromObject(obj), du))
				du.Status.Phase = velerov2alpha1.DataUploadPhaseCanceled
				require.NoError(t, c.Update(ctx, du))
				return conflict(obj)
			}
			return c.Update(ctx, obj, opts...)
		}}
		du := dataUpload(velerov2alpha1.DataUploadPhasePrepared)
		du.Status.Node = nodeA
		e := newEnv(t, funcs, du, workerPod(duName, corev1.PodRunning))
		e.reconcileDU()
		require.Equal(t, velerov2alpha1.DataUploadPhaseCanceled, e.du().Status.Phase)
		require.Equal(t, 1, calls, "no second write after the re-read showed Canceled")
	})
}

// TestAcceptedBlockChangeTracking: the worker of a block backup is told how to ask the
// driver's SnapshotMetadataService what changed (its address, our snapshot, a token for
// its audience, its CA, and a role that may get VolumeSnapshots: the one right the
// service checks), or why it cannot; the snapshot and volume handles it tags the
// snapshot with are those recorded at the take-over. Only a failure that may pass stops
// the expose, before anything is made.
func TestAcceptedBlockChangeTracking(t *testing.T) {
	ca := "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
	sms := func(spec map[string]any) func(*unstructured.Unstructured) error {
		return func(u *unstructured.Unstructured) error {
			u.Object["spec"] = spec
			return nil
		}
	}
	good := map[string]any{"address": "127.0.0.1:50051", "audience": "snapmove-cbt", "caCert": base64.StdEncoding.EncodeToString([]byte(ca))}
	notFound := func(*unstructured.Unstructured) error {
		return apierrors.NewNotFound(schema.GroupResource{Group: "cbt.storage.k8s.io", Resource: "snapshotmetadataservices"}, "hostpath.csi.k8s.io")
	}
	tests := []struct {
		name            string
		get             func(*unstructured.Unstructured) error
		filesystem      bool
		wantUnavailable string // "": a service
		wantErr         bool
	}{
		{name: "service", get: sms(good)},
		{name: "no service for the driver", get: notFound, wantUnavailable: "no SnapshotMetadataService serves CSI driver hostpath.csi.k8s.io"},
		{name: "no API", get: func(*unstructured.Unstructured) error {
			return &meta.NoKindMatchError{GroupKind: smsGVK.GroupKind(), SearchedVersions: []string{"v1beta1"}}
		}, wantUnavailable: "the cluster has no SnapshotMetadataService API"},
		{name: "forbidden", get: func(*unstructured.Unstructured) error {
			return apierrors.NewForbidden(schema.GroupResource{Group: "cbt.storage.k8s.io", Resource: "snapshotmetadataservices"}, "hostpath.csi.k8s.io", errors.New("no"))
		}, wantUnavailable: "the mover may not read SnapshotMetadataService hostpath.csi.k8s.io"},
		{name: "no CA", get: sms(map[string]any{"address": "a:1", "audience": "x"}), wantUnavailable: "lacks its address, audience or caCert"},
		{name: "CA not base64", get: sms(map[string]any{"address": "a:1", "audience": "x", "caCert": "%%"}), wantUnavailable: "spec.caCert is not base64"},
		{name: "API server error", get: func(*unstructured.Unstructured) error {
			return apierrors.NewInternalError(errors.New("etcd timeout"))
		}, wantErr: true},
		{name: "filesystem volume: not asked", get: func(*unstructured.Unstructured) error { panic("asked") }, filesystem: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			objs := backupFixtures(dataUpload(velerov2alpha1.DataUploadPhaseAccepted))
			vsc := objs[6].(*snapshotv1.VolumeSnapshotContent)
			vsc.Spec.Source.VolumeHandle = ptr.To("vol-1")
			if !tc.filesystem {
				vsc.Spec.SourceVolumeMode = ptr.To(corev1.PersistentVolumeBlock)
				objs[3].(*corev1.PersistentVolumeClaim).Spec.VolumeMode = ptr.To(corev1.PersistentVolumeBlock)
			}
			e := newEnv(t, &interceptor.Funcs{Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
				if u, ok := obj.(*unstructured.Unstructured); ok && u.GroupVersionKind() == smsGVK {
					require.Equal(t, "hostpath.csi.k8s.io", key.Name)
					return tc.get(u)
				}
				return c.Get(ctx, key, obj, opts...)
			}}, objs...)
			e.cfg.BackupPVCAccessModes = map[string]corev1.PersistentVolumeAccessMode{"csi-sc": corev1.ReadWriteOnce}
			_, err := (&DataUploadReconciler{e.r}).Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: veleroNS, Name: duName}})
			pod := ourPod(duName)
			if tc.wantErr {
				require.ErrorContains(t, err, "etcd timeout", "retried")
				require.False(t, e.exists(pod))
				require.False(t, e.exists(ourVSC()), "nothing is exposed")
				return
			}
			require.NoError(t, err)
			require.True(t, e.exists(pod))
			args := pod.Spec.Containers[0].Args
			role := &rbacv1.Role{}
			require.NoError(t, e.c.Get(context.Background(), client.ObjectKey{Namespace: veleroNS, Name: duName}, role))
			readsSnapshots := slices.ContainsFunc(role.Rules, func(r rbacv1.PolicyRule) bool { return slices.Contains(r.Resources, "volumesnapshots") })
			if tc.filesystem {
				require.False(t, slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--cbt-") }), args)
				require.False(t, readsSnapshots)
				return
			}
			require.Contains(t, args, "--cbt-change-id=handle-1")
			require.Contains(t, args, "--cbt-volume-id=vol-1")
			vs := ourVS()
			require.True(t, e.exists(vs))
			require.Equal(t, "vol-1", vs.Annotations[annVolumeID], "recorded at the take-over")
			tokens := slices.ContainsFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Projected != nil })
			if tc.wantUnavailable != "" {
				require.True(t, slices.ContainsFunc(args, func(a string) bool {
					return strings.HasPrefix(a, "--cbt-unavailable=") && strings.Contains(a, tc.wantUnavailable)
				}), args)
				require.False(t, tokens)
				require.False(t, readsSnapshots)
				return
			}
			require.Contains(t, args, "--cbt-address=127.0.0.1:50051")
			require.Contains(t, args, "--cbt-snapshot="+duName)
			require.True(t, tokens)
			require.Contains(t, pod.Spec.Containers[0].Env, corev1.EnvVar{Name: expose.EnvCBTCACert, Value: ca})
			require.True(t, readsSnapshots)
		})
	}
}
