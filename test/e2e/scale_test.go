//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestFixedCostPerPVC is `make bench-scale`, not part of `make test`: the fixed cost per
// volume above the data path (snapshot, expose, worker start, cleanup, Velero's own
// steps), measured with SNAPMOVE_SCALE_PVCS (e.g. 20) PVCs of 1 MiB in one backup and one
// restore at the mover's default settings. It prints seconds per PVC and where the time
// goes, from the timestamps on the Backup/Restore and on each DataUpload/DataDownload.
func TestFixedCostPerPVC(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("SNAPMOVE_SCALE_PVCS"))
	if n <= 0 {
		t.Skip("SNAPMOVE_SCALE_PVCS not set: run make bench-scale")
	}
	s := env
	ns := s.namespace(t, "scale")
	for i := 0; i < n; i++ {
		dir := s.pvc(t, ns, fmt.Sprintf("data-%02d", i), "64Mi", corev1.PersistentVolumeFilesystem)
		require.NoError(t, writeRandomBlocks(filepath.Join(dir, "f"), 1<<20))
	}

	name := ns + "-b"
	start := time.Now()
	b := s.backup(t, name, "--include-namespaces", ns, "--snapshot-move-data")
	backupWall := time.Since(start)
	require.Equal(t, velerov1.BackupPhaseCompleted, b.Status.Phase, s.backupLogs(t, name))
	dus := s.dataUploads(t, name)
	require.Len(t, dus, n)
	var ups []timeline
	for _, du := range dus {
		ups = append(ups, timeline{&du.CreationTimestamp, du.Status.AcceptedTimestamp, du.Status.StartTimestamp, du.Status.CompletionTimestamp})
	}
	t.Log(report("backup", n, backupWall, b.Status.StartTimestamp, b.Status.CompletionTimestamp, ups))

	s.deleteNamespace(t, ns)
	rname := ns + "-r"
	start = time.Now()
	r := s.restore(t, rname, "--from-backup", name)
	restoreWall := time.Since(start)
	require.Equal(t, velerov1.RestorePhaseCompleted, r.Status.Phase)
	dds := s.dataDownloads(t, rname)
	require.Len(t, dds, n)
	var downs []timeline
	for _, dd := range dds {
		require.Equal(t, velerov2alpha1.DataDownloadPhaseCompleted, dd.Status.Phase)
		downs = append(downs, timeline{&dd.CreationTimestamp, dd.Status.AcceptedTimestamp, dd.Status.StartTimestamp, dd.Status.CompletionTimestamp})
	}
	t.Log(report("restore", n, restoreWall, r.Status.StartTimestamp, r.Status.CompletionTimestamp, downs))
}

// timeline is one movement's timestamps: created (by the plugin), accepted (claimed by the
// mover), started (InProgress: exposed, worker running, node slot taken), completed.
type timeline struct{ created, accepted, started, completed *metav1.Time }

func (tl timeline) ok() bool {
	return tl.accepted != nil && tl.started != nil && tl.completed != nil
}

func report(op string, n int, wall time.Duration, opStart, opEnd *metav1.Time, tls []timeline) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s of %d PVCs of 1 MiB: %.1f s wall (CLI --wait), %.2f s per PVC\n", op, n, wall.Seconds(), wall.Seconds()/float64(n))
	var firstCreated, lastCreated, lastCompleted time.Time
	var queue, prepare, move []float64
	for _, tl := range tls {
		if !tl.ok() {
			continue
		}
		c := tl.created.Time
		if firstCreated.IsZero() || c.Before(firstCreated) {
			firstCreated = c
		}
		if c.After(lastCreated) {
			lastCreated = c
		}
		if tl.completed.After(lastCompleted) {
			lastCompleted = tl.completed.Time
		}
		queue = append(queue, tl.accepted.Sub(c).Seconds())
		prepare = append(prepare, tl.started.Sub(tl.accepted.Time).Seconds())
		move = append(move, tl.completed.Sub(tl.started.Time).Seconds())
	}
	if opStart != nil && opEnd != nil && !firstCreated.IsZero() {
		fmt.Fprintf(&sb, "  Velero %s start -> first movement created  %6.1f s  (Velero's item steps, snapshots)\n", op, firstCreated.Sub(opStart.Time).Seconds())
		fmt.Fprintf(&sb, "  first -> last movement created          %6.1f s  (Velero's items, one PVC at a time)\n", lastCreated.Sub(firstCreated).Seconds())
		fmt.Fprintf(&sb, "  last created -> last completed          %6.1f s  (the mover)\n", lastCompleted.Sub(lastCreated).Seconds())
		fmt.Fprintf(&sb, "  last completed -> Velero %s ended   %6.1f s  (Velero polls its item operations)\n", op, opEnd.Sub(lastCompleted).Seconds())
	}
	fmt.Fprintf(&sb, "  per movement, median / max s: queued before accepted %s, accepted -> moving (expose, worker start, node slot) %s, moving -> completed (move, cleanup) %s\n",
		medMax(queue), medMax(prepare), medMax(move))
	return sb.String()
}

func medMax(v []float64) string {
	if len(v) == 0 {
		return "-"
	}
	sort.Float64s(v)
	return fmt.Sprintf("%.1f / %.1f", v[len(v)/2], v[len(v)-1])
}
