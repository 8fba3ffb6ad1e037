//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/util/wait"
	crclient "sigs.k8s.io/controller-runtime/pkg/client"
)

// TestDoctor (issue #24, item 3): `snapmove doctor` passes on the stack as installed
// (Velero's answer to a ServerStatusRequest lists snapmove's three plugins), and once the
// one labelled VolumeSnapshotClass loses its label it fails, exits non-zero and names the
// fix: the kubectl command that labels that class.
func TestDoctor(t *testing.T) {
	s := env
	requireSerial(t) // the class loses its label for a moment: a backup beside it would find none

	type report struct {
		Checks []struct{ Name, Status, Detail, Fix string }
		OK     bool
	}
	doctor := func() (report, string, error) {
		out, err := runErr(filepath.Join(repoRoot(), "bin", "snapmove"), "doctor", "-o", "json")
		var r report
		// stdout and stderr together: the JSON is the first line's object
		dec := json.NewDecoder(strings.NewReader(out))
		require.NoError(t, dec.Decode(&r), "snapmove doctor -o json:\n%s", out)
		return r, out, err
	}
	status := func(r report, name string) (string, string) {
		for _, c := range r.Checks {
			if c.Name == name {
				return c.Status, c.Fix
			}
		}
		t.Fatalf("no check %s in %+v", name, r)
		return "", ""
	}

	// A test before this one may have restarted Velero: its Deployment becomes Available
	// a moment after its server answers, and the doctor says so. Asked again until the
	// stack has settled.
	var (
		r   report
		out string
		err error
	)
	_ = wait.PollUntilContextTimeout(ctxT(t), 2*time.Second, 2*time.Minute, true, func(context.Context) (bool, error) {
		r, out, err = doctor()
		return err == nil, nil
	})
	require.NoError(t, err, "snapmove doctor on the stack as installed, for 2 minutes:\n%s", out)
	require.True(t, r.OK, out)
	require.Len(t, r.Checks, 8)
	st, _ := status(r, "pluginRegistered")
	require.Equal(t, "ok", st, out)

	var class snapshotv1.VolumeSnapshotClass
	require.NoError(t, s.c.Get(ctxT(t), crclient.ObjectKey{Name: s.snapClass}, &class))
	const label = "velero.io/csi-volumesnapshot-class"
	saved := class.Labels[label]
	require.Equal(t, "true", saved)
	t.Cleanup(func() {
		var now snapshotv1.VolumeSnapshotClass
		err := s.c.Get(context.Background(), crclient.ObjectKey{Name: s.snapClass}, &now)
		if err == nil {
			if now.Labels == nil { // the label was its only one
				now.Labels = map[string]string{}
			}
			now.Labels[label] = saved
			err = s.c.Update(context.Background(), &now)
		}
		if err != nil {
			t.Logf("putting back the label of VolumeSnapshotClass %s: %v", s.snapClass, err)
		}
	})
	delete(class.Labels, label)
	require.NoError(t, s.c.Update(ctxT(t), &class))

	r, out, err = doctor()
	require.Error(t, err, "doctor exits non-zero when a check fails:\n%s", out)
	require.False(t, r.OK)
	st, fix := status(r, "snapshotClasses")
	require.Equal(t, "fail", st, out)
	require.Contains(t, fix, "kubectl label volumesnapshotclass "+s.snapClass+" "+label+"=true", out)
	t.Logf("with the label gone:\n%s", out)
}
