//go:build e2e

package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	crclient "sigs.k8s.io/controller-runtime/pkg/client"
)

// poll calls cond every interval until it returns true or the timeout passes. cond's error
// ends the wait at once.
func poll(t *testing.T, what string, timeout time.Duration, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	pollEvery(t, what, time.Second, timeout, cond)
}

// pollEvery is poll at another interval: a short one for what lasts a moment.
func pollEvery(t *testing.T, what string, interval, timeout time.Duration, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	err := wait.PollUntilContextTimeout(ctxT(t), interval, timeout, true, cond)
	require.NoError(t, err, "waiting for %s", what)
}

func (s *stack) waitBackupDone(t *testing.T, name string) {
	t.Helper()
	poll(t, "backup "+name+" to finish", 5*time.Minute, func(ctx context.Context) (bool, error) {
		var b velerov1.Backup
		if err := s.c.Get(ctx, crclient.ObjectKey{Namespace: s.veleroNS, Name: name}, &b); err != nil {
			return false, err
		}
		switch b.Status.Phase {
		case velerov1.BackupPhaseCompleted, velerov1.BackupPhasePartiallyFailed, velerov1.BackupPhaseFailed:
			return true, nil
		}
		return false, nil
	})
}

// waitDataUpload waits for a DataUpload of the backup for which cond holds and returns it.
func (s *stack) waitDataUpload(t *testing.T, backup string, what string, cond func(velerov2alpha1.DataUpload) bool) velerov2alpha1.DataUpload {
	t.Helper()
	var found velerov2alpha1.DataUpload
	poll(t, what, 5*time.Minute, func(ctx context.Context) (bool, error) {
		var l velerov2alpha1.DataUploadList
		if err := s.c.List(ctx, &l, crclient.InNamespace(s.veleroNS), crclient.MatchingLabels{velerov1.BackupNameLabel: backup}); err != nil {
			return false, err
		}
		for _, du := range l.Items {
			if cond(du) {
				found = du
				return true, nil
			}
		}
		return false, nil
	})
	return found
}

// waitDataUploadPhase re-reads du until it reaches phase; du is left as last read.
func (s *stack) waitDataUploadPhase(t *testing.T, du *velerov2alpha1.DataUpload, phase velerov2alpha1.DataUploadPhase) {
	t.Helper()
	poll(t, "DataUpload "+du.Name+" to be "+string(phase), 5*time.Minute, func(ctx context.Context) (bool, error) {
		err := s.c.Get(ctx, crclient.ObjectKeyFromObject(du), du)
		return du.Status.Phase == phase, err
	})
}

// requireEvent checks that a Warning Event was recorded on the named DataUpload.
//
// The mover records Events asynchronously (client-go's broadcaster), so one may land a
// moment after the status it goes with: it is waited for, briefly.
func (s *stack) requireEvent(t *testing.T, name string) {
	t.Helper()
	found := false
	_ = wait.PollUntilContextTimeout(ctxT(t), 500*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		var evs corev1.EventList
		if err := s.c.List(ctx, &evs, crclient.InNamespace(s.veleroNS)); err != nil {
			return false, nil //nolint:nilerr // retried until the timeout
		}
		for _, e := range evs.Items {
			if e.InvolvedObject.Name == name && e.Type == corev1.EventTypeWarning {
				found = true
			}
		}
		return found, nil
	})
	if !found {
		t.Fatalf("no Warning Event on DataUpload %s within 30 s", name)
	}
}
