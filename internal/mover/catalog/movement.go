package catalog

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pkg/errors"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	"github.com/vmware-tanzu/velero/pkg/label"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/naming"
)

// Kinds of a Movement.
const (
	KindDataUpload   = "DataUpload"
	KindDataDownload = "DataDownload"
)

// Movement is one DataUpload or DataDownload as `list --watch` and `report --restore`
// show it: where its bytes stand.
type Movement struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
	// Backup names a DataUpload's backup, Restore a DataDownload's restore.
	Backup  string `json:"backup,omitempty"`
	Restore string `json:"restore,omitempty"`
	// Namespace and PVC are the source of an upload, the target of a download.
	Namespace  string `json:"namespace"`
	PVC        string `json:"pvc"`
	Phase      string `json:"phase"`
	Message    string `json:"message,omitempty"`
	DataMover  string `json:"dataMover"`
	Node       string `json:"node,omitempty"`
	SnapshotID string `json:"snapshotID,omitempty"`
	// BytesDone and TotalBytes are status.progress; TotalBytes 0 while unknown.
	BytesDone  int64      `json:"bytesDone"`
	TotalBytes int64      `json:"totalBytes"`
	Started    *time.Time `json:"started,omitempty"`
	Completed  *time.Time `json:"completed,omitempty"`
}

// Key is the volume as namespace/pvc.
func (m Movement) Key() string { return m.Namespace + "/" + m.PVC }

// Ended reports whether the movement has ended (Completed, Failed or Canceled).
func (m Movement) Ended() bool { return naming.MovementEnded(m.Phase) }

// Duration is how long the movement took (until now, when it has not ended), 0 when
// unknown.
func (m Movement) Duration(now time.Time) time.Duration {
	switch {
	case m.Started == nil:
		return 0
	case m.Completed != nil:
		return m.Completed.Sub(*m.Started)
	case m.Ended():
		return 0
	}
	return now.Sub(*m.Started)
}

func fromUpload(du *velerov2alpha1.DataUpload) Movement {
	return newMovement(KindDataUpload, du.Name, du.Spec.SourceNamespace, du.Spec.SourcePVC, string(du.Status.Phase), du.Status.Message,
		du.Spec.DataMover, du.Status.Node, du.Status.SnapshotID, du.Status.Progress.BytesDone, du.Status.Progress.TotalBytes,
		du.Status.StartTimestamp, du.Status.CompletionTimestamp, func(m *Movement) { m.Backup = du.Labels[velerov1.BackupNameLabel] })
}

func fromDownload(dd *velerov2alpha1.DataDownload) Movement {
	return newMovement(KindDataDownload, dd.Name, dd.Spec.TargetVolume.Namespace, dd.Spec.TargetVolume.PVC, string(dd.Status.Phase), dd.Status.Message,
		dd.Spec.DataMover, dd.Status.Node, dd.Spec.SnapshotID, dd.Status.Progress.BytesDone, dd.Status.Progress.TotalBytes,
		dd.Status.StartTimestamp, dd.Status.CompletionTimestamp, func(m *Movement) { m.Restore = dd.Labels[velerov1.RestoreNameLabel] })
}

func newMovement(kind, name, ns, pvc, phase, msg, mover, node, snapshotID string, done, total int64, start, end *metav1.Time, owner func(*Movement)) Movement {
	m := Movement{Kind: kind, Name: name, Namespace: ns, PVC: pvc, Phase: phase, Message: msg, DataMover: mover, Node: node,
		SnapshotID: snapshotID, BytesDone: done, TotalBytes: total}
	if m.Phase == "" {
		m.Phase = string(velerov2alpha1.DataUploadPhaseNew)
	}
	if m.DataMover == "" {
		m.DataMover = naming.VeleroDataMover
	}
	if start != nil {
		m.Started = &start.Time
	}
	if end != nil {
		m.Completed = &end.Time
	}
	owner(&m)
	return m
}

// Movements lists the DataUploads (of backup, when it is not "") and, when backup is "",
// the DataDownloads in Velero's namespace ns, sorted by kind, volume and name. It is one
// frame of `snapmove list --watch`.
func Movements(ctx context.Context, c client.Reader, ns, backup string) ([]Movement, error) {
	opts := []client.ListOption{client.InNamespace(ns)}
	if backup != "" {
		opts = append(opts, client.MatchingLabels{velerov1.BackupNameLabel: label.GetValidName(backup)})
	}
	dus := &velerov2alpha1.DataUploadList{}
	if err := c.List(ctx, dus, opts...); err != nil {
		return nil, errors.Wrap(err, "listing DataUploads")
	}
	out := make([]Movement, 0, len(dus.Items))
	for i := range dus.Items {
		out = append(out, fromUpload(&dus.Items[i]))
	}
	if backup == "" {
		dds := &velerov2alpha1.DataDownloadList{}
		if err := c.List(ctx, dds, opts...); err != nil {
			return nil, errors.Wrap(err, "listing DataDownloads")
		}
		for i := range dds.Items {
			out = append(out, fromDownload(&dds.Items[i]))
		}
	}
	sortMovements(out)
	return out, nil
}

func sortMovements(ms []Movement) {
	sort.SliceStable(ms, func(i, j int) bool {
		a, b := ms[i], ms[j]
		if a.Kind != b.Kind {
			return a.Kind > b.Kind // uploads first
		}
		if a.Key() != b.Key() {
			return a.Key() < b.Key()
		}
		return a.Name < b.Name
	})
}

// Watch keeps what a `list --watch` frame shows: the movements that have not ended, and
// those it saw moving before (so that their end shows once).
type Watch struct {
	seen map[string]bool
}

// Frame is the movements of all that a frame shows.
func (w *Watch) Frame(all []Movement) []Movement {
	if w.seen == nil {
		w.seen = map[string]bool{}
	}
	out := []Movement{}
	for _, m := range all {
		id := m.Kind + "/" + m.Name
		if !m.Ended() || w.seen[id] {
			out = append(out, m)
			w.seen[id] = !m.Ended() // shown ended once, then no more
		}
	}
	return out
}

// PrintMovements writes one frame of `snapmove list --watch`: when it was read, then a
// table of the movements with their bytes done, total and percent.
func PrintMovements(w io.Writer, at time.Time, ms []Movement) error {
	if len(ms) == 0 {
		_, err := fmt.Fprintf(w, "%s: no volume is moving\n", FormatTime(at))
		return err
	}
	fmt.Fprintf(w, "%s: %s\n", FormatTime(at), nounCount(int64(len(ms)), "volume move"))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tNAME\tOF\tVOLUME\tPHASE\tDONE\tTOTAL\tPERCENT\tELAPSED\tNODE\tMESSAGE")
	for _, m := range ms {
		of := m.Backup
		if m.Kind == KindDataDownload {
			of = m.Restore
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Kind, m.Name, orDash(of), m.Key(), m.Phase,
			humanBytes(m.BytesDone), knownBytes(m.TotalBytes), Percent(m.BytesDone, m.TotalBytes), duration(m.Duration(at)), orDash(m.Node),
			orDash(datapath.EscapeText(m.Message)))
	}
	return tw.Flush()
}

// Percent is done of total as "45.1%", "-" when total is unknown.
func Percent(done, total int64) string {
	if total <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(done)/float64(total))
}

// knownBytes is humanBytes, "-" for 0 (status.progress not set yet).
func knownBytes(n int64) string {
	if n <= 0 {
		return "-"
	}
	return humanBytes(n)
}

// RestoreReport is what the volume moves of one restore did.
type RestoreReport struct {
	Restore string `json:"restore"`
	Backup  string `json:"backup"`
	Phase   string `json:"phase"`
	// Volumes are the restore's DataDownloads.
	Volumes []Movement `json:"volumes"`
	// Counts are the DataDownloads per phase.
	Counts map[string]int `json:"counts"`
}

// RestoreReport says, for every DataDownload of restore name, its phase, bytes, time,
// node and message.
func (r *Reporter) RestoreReport(ctx context.Context, name string) (*RestoreReport, error) {
	restore := &velerov1.Restore{}
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: r.Namespace, Name: name}, restore); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, errors.Errorf("restore %s not found in namespace %s", name, r.Namespace)
		}
		return nil, errors.Wrapf(err, "getting restore %s", name)
	}
	dds := &velerov2alpha1.DataDownloadList{}
	if err := r.Client.List(ctx, dds, client.InNamespace(r.Namespace),
		client.MatchingLabels{velerov1.RestoreNameLabel: label.GetValidName(name)}); err != nil {
		return nil, errors.Wrapf(err, "listing the DataDownloads of restore %s", name)
	}
	rep := &RestoreReport{Restore: name, Backup: restore.Spec.BackupName, Phase: string(restore.Status.Phase),
		Volumes: make([]Movement, 0, len(dds.Items)), Counts: map[string]int{}}
	for i := range dds.Items {
		m := fromDownload(&dds.Items[i])
		rep.Volumes = append(rep.Volumes, m)
		rep.Counts[m.Phase]++
	}
	sortMovements(rep.Volumes)
	return rep, nil
}

// PrintRestoreReport writes the report of a restore's volume moves; now is when it was
// read (the elapsed time of moves that have not ended).
func PrintRestoreReport(w io.Writer, r *RestoreReport, now time.Time) error {
	fmt.Fprintf(w, "Restore %s of backup %s (%s)\n", r.Restore, orDash(r.Backup), orNew(r.Phase))
	phases := make([]string, 0, len(r.Counts))
	for p := range r.Counts {
		phases = append(phases, p)
	}
	sort.Strings(phases)
	parts := make([]string, 0, len(phases))
	for _, p := range phases {
		parts = append(parts, fmt.Sprintf("%d %s", r.Counts[p], p))
	}
	if len(r.Volumes) == 0 {
		_, err := fmt.Fprintln(w, "no DataDownloads: the restore moved no volume data (its volumes came from snapshots, file system backups, or none)")
		return err
	}
	fmt.Fprintf(w, "%s: %s\n\n", nounCount(int64(len(r.Volumes)), "DataDownload"), strings.Join(parts, ", "))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PVC\tPHASE\tBYTES\tTOOK\tNODE\tMOVER\tDATADOWNLOAD\tMESSAGE")
	for _, m := range r.Volumes {
		bytes := knownBytes(m.TotalBytes)
		if m.BytesDone != m.TotalBytes {
			bytes = fmt.Sprintf("%s of %s (%s)", humanBytes(m.BytesDone), knownBytes(m.TotalBytes), Percent(m.BytesDone, m.TotalBytes))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Key(), m.Phase, bytes, duration(m.Duration(now)), orDash(m.Node),
			m.DataMover, m.Name, orDash(datapath.EscapeText(m.Message)))
	}
	return tw.Flush()
}

func orNew(phase string) string {
	if phase == "" {
		return "New"
	}
	return phase
}
