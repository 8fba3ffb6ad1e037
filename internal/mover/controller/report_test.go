package controller

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/snapmove/snapmove/internal/mover/expose"
)

// report is the progress report of the movement name with uid, holding data.
func report(name string, uid types.UID, data map[string]string) *corev1.ConfigMap {
	cm := expose.ProgressReport(expose.ReportParams{Operation: expose.Backup, Name: name, Namespace: veleroNS,
		Owner: metav1.OwnerReference{APIVersion: "velero.io/v2alpha1", Kind: "DataUpload", Name: name, UID: uid}})
	cm.Data = data
	return cm
}

func reportKey(name string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: veleroNS, Name: name}}
}

// TestReportLifecycle: the mover creates the worker's report with its identity and
// deletes it when the movement ends, for both kinds.
func TestReportLifecycle(t *testing.T) {
	for _, k := range kindsUnderTest {
		t.Run(k.name, func(t *testing.T) {
			name := k.objectName()
			obj := k.object(phaseAccepted)
			e := newEnv(t, nil, dedupe(append([]client.Object{obj}, k.exposed()...))...)
			_, err := k.reconcile(context.Background(), e.r)
			require.NoError(t, err)
			cm := reportKey(name)
			require.True(t, e.exists(cm), "created before the worker")
			require.True(t, expose.IsReportOf(cm, obj.GetUID()))
			require.True(t, e.exists(ourPod(name)))

			got := k.object("")
			require.NoError(t, e.c.Get(context.Background(), client.ObjectKeyFromObject(obj), got))
			e.update(got, func() { cancelIt(got) })
			_, err = k.reconcile(context.Background(), e.r)
			require.NoError(t, err)
			require.False(t, e.exists(reportKey(name)), "deleted with the movement's other objects")
		})
	}
}

// TestReportConflict: a ConfigMap of the movement's name that is not its report (the
// mover's settings, a delete request, anything) is never handed to a worker to write,
// and never deleted; the movement fails naming it. A mover that may not create
// ConfigMaps fails at once saying what to grant.
func TestReportConflict(t *testing.T) {
	for _, tc := range []struct {
		name     string
		existing *corev1.ConfigMap
		create   error
		want     string
	}{
		{name: "someone else's ConfigMap", existing: &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: veleroNS, Name: duName}, Data: map[string]string{"maxConcurrent": "8"}},
			want: "ConfigMap velero/" + duName + " exists and is not this DataUpload's progress report (no label snapmove.io/movement-uid=du-uid)"},
		{name: "another movement's report", existing: report(duName, "other-uid", nil),
			want: "is not this DataUpload's progress report"},
		{name: "may not create", create: apierrors.NewForbidden(corev1.Resource("configmaps"), duName, fmt.Errorf("RBAC")),
			want: "the mover may not create its worker's progress report"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var funcs *interceptor.Funcs
			if tc.create != nil {
				funcs = &interceptor.Funcs{Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
					if _, ok := obj.(*corev1.ConfigMap); ok {
						return tc.create
					}
					return c.Create(ctx, obj, opts...)
				}}
			}
			objs := backupFixtures(dataUpload(velerov2alpha1.DataUploadPhaseAccepted))
			if tc.existing != nil {
				objs = append(objs, tc.existing.DeepCopy())
			}
			e := newEnv(t, funcs, objs...)
			e.reconcileDU()
			du := e.du()
			require.Equal(t, velerov2alpha1.DataUploadPhaseFailed, du.Status.Phase)
			require.Contains(t, du.Status.Message, tc.want)
			require.False(t, e.exists(ourPod(duName)), "no worker")
			if tc.existing != nil {
				cm := reportKey(duName)
				require.True(t, e.exists(cm), "never deleted")
				require.Equal(t, tc.existing.Data, cm.Data)
				require.Equal(t, tc.existing.Labels, cm.Labels)
			}
		})
	}
}

// TestProgressFromReport: what the worker reports reaches the movement's status, for
// both kinds; a report that cannot be read fails the movement, naming it, and its
// worker goes.
func TestProgressFromReport(t *testing.T) {
	for _, k := range kindsUnderTest {
		for _, tc := range []struct {
			name      string
			data      map[string]string
			wantPhase string
			wantDone  int64
			wantTotal int64
			wantMsg   string
			errs      []reactorError // injected
			wantErr   bool           // transient: requeued, nothing written
		}{
			{name: "nothing reported yet", wantPhase: phaseInProgress, wantDone: 40, wantTotal: 100},
			{name: "reported", data: map[string]string{"bytesDone": "70", "totalBytes": "120"}, wantPhase: phaseInProgress, wantDone: 70, wantTotal: 120},
			{name: "reported, the status write conflicts once", data: map[string]string{"bytesDone": "70", "totalBytes": "120"},
				errs:      []reactorError{{verb: "update", kind: k.name, call: 1, err: conflict(k.object(""))}},
				wantPhase: phaseInProgress, wantDone: 70, wantTotal: 120},
			{name: "the report cannot be read from the API", data: map[string]string{"bytesDone": "70", "totalBytes": "120"},
				errs:    []reactorError{{verb: "get", kind: "ConfigMap", err: apierrors.NewServiceUnavailable("etcd")}},
				wantErr: true, wantPhase: phaseInProgress, wantDone: 40, wantTotal: 100},
			{name: "not a number", data: map[string]string{"bytesDone": "70; rm -rf", "totalBytes": "120"}, wantPhase: phaseFailed, wantDone: 40, wantTotal: 100,
				wantMsg: `the progress report of worker pod velero/<name> (ConfigMap velero/<name>) cannot be read: key bytesDone: "70; rm -rf" is not a byte count`},
			{name: "huge", data: map[string]string{"bytesDone": "1", "totalBytes": strings.Repeat("1", 1<<20)}, wantPhase: phaseFailed, wantDone: 40, wantTotal: 100,
				wantMsg: "cannot be read: key totalBytes: 1048576 characters, not a byte count"},
			{name: "half a report", data: map[string]string{"bytesDone": "1"}, wantPhase: phaseFailed, wantDone: 40, wantTotal: 100,
				wantMsg: "cannot be read: key totalBytes is missing"},
		} {
			t.Run(k.name+"/"+tc.name, func(t *testing.T) {
				name := k.objectName()
				obj := k.object(phaseInProgress)
				m := asMovement(obj)
				m.progress().TotalBytes, m.progress().BytesDone = 100, 40
				m.setNode(nodeA)
				m.setStarted(metav1.NewTime(t0))
				recordClaim(m) // as claimed: the injected conflict hits the progress write
				in := &injector{counts: map[string]int{}, errs: tc.errs}
				e := newEnv(t, in.funcs(), obj, bsl(), workerPod(name, corev1.PodRunning), report(name, obj.GetUID(), tc.data))
				_, err := k.reconcile(context.Background(), e.r)
				if tc.wantErr {
					require.Error(t, err)
				} else {
					require.NoError(t, err)
				}
				in.errs = nil

				got := k.object("")
				require.NoError(t, e.c.Get(context.Background(), client.ObjectKeyFromObject(obj), got))
				gm := asMovement(got)
				require.Equal(t, tc.wantPhase, gm.phase(), gm.message())
				require.Equal(t, tc.wantDone, gm.progress().BytesDone)
				require.Equal(t, tc.wantTotal, gm.progress().TotalBytes)
				if tc.wantMsg == "" {
					return
				}
				require.Contains(t, gm.message(), strings.ReplaceAll(tc.wantMsg, "<name>", name))
				e.requireEvent(ReasonInvalidReport)
				require.False(t, e.exists(ourPod(name)), "the worker goes")
			})
		}
	}
}
