package catalog

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"sort"
	"time"

	"github.com/pkg/errors"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	"github.com/vmware-tanzu/velero/pkg/label"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/naming"
)

// Protection statuses of a PVC in a backup.
const (
	// StatusMoved: its data is in the repository (the upload completed).
	StatusMoved = "Moved"
	// StatusFailed: its upload failed or was canceled; the backup holds no data of it.
	StatusFailed = "Failed"
	// StatusInProgress: its upload has not ended.
	StatusInProgress = "InProgress"
	// StatusFSBackup: Velero's file system backup holds its data (a PodVolumeBackup).
	StatusFSBackup = "FileSystemBackup"
	// StatusSkipped: its data was not backed up, for the reason given.
	StatusSkipped = "Skipped"
	// StatusNotBackedUp: the PVC is in the backup's scope and existed when it started,
	// but the backup holds no copy of it: backing it up failed.
	StatusNotBackedUp = "NotBackedUp"
)

// Protection is what one PVC of a backup got.
type Protection struct {
	Namespace string `json:"namespace"`
	PVC       string `json:"pvc"`
	PV        string `json:"pv,omitempty"`
	Status    string `json:"status"`
	// Reason says why a PVC was skipped or failed (the plugin's record, the upload's
	// message).
	Reason string `json:"reason,omitempty"`
	// Volume is the upload, for Moved, Failed and InProgress.
	Volume *Volume `json:"volume,omitempty"`
}

// Report is the protection report of one backup.
type Report struct {
	Backup           string       `json:"backup"`
	Phase            string       `json:"phase"`
	SnapshotMoveData *bool        `json:"snapshotMoveData,omitempty"`
	PVCs             []Protection `json:"pvcs"`
	// Counts are the PVCs per status.
	Counts map[string]int `json:"counts"`
}

// Contents streams a backup's contents (the gzipped tarball Velero stores), e.g. through
// a DownloadRequest as `velero backup download` does.
type Contents func(ctx context.Context, backup string, w io.Writer) error

// Reporter builds protection reports from the cluster and the backup's stored contents.
type Reporter struct {
	Client    client.Reader
	Namespace string
	Contents  Contents
	Catalog   *Catalog
}

// Report says, for every PVC the backup holds, what protection it got: moved (with its
// snapshot, bytes, time and verification), failed (the upload's message), file system
// backup (Velero's PodVolumeBackup), or skipped (the reason snapmove's backup plugin
// recorded on the PVC as the backup stores it).
func (r *Reporter) Report(ctx context.Context, backupName string) (*Report, error) {
	backup := &velerov1.Backup{}
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: r.Namespace, Name: backupName}, backup); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, errors.Errorf("backup %s not found in namespace %s", backupName, r.Namespace)
		}
		return nil, errors.Wrapf(err, "getting backup %s", backupName)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(r.Contents(ctx, backupName, pw)) }()
	items, err := readContents(pr)
	_ = pr.CloseWithError(err)
	if err != nil {
		return nil, errors.Wrapf(err, "reading the contents of backup %s", backupName)
	}
	vols, err := r.Catalog.List(ctx, backupName, false)
	if err != nil {
		return nil, err
	}
	pvbs := &velerov1.PodVolumeBackupList{}
	if err := r.Client.List(ctx, pvbs, client.InNamespace(r.Namespace),
		client.MatchingLabels{velerov1.BackupNameLabel: label.GetValidName(backupName)}); err != nil {
		return nil, errors.Wrapf(err, "listing the PodVolumeBackups of backup %s", backupName)
	}
	rep := &Report{Backup: backupName, Phase: string(backup.Status.Phase), SnapshotMoveData: backup.Spec.SnapshotMoveData}
	rep.PVCs = protections(items, vols, pvbs.Items)
	missing, err := r.notInBackup(ctx, backup, items)
	if err != nil {
		// The rest of the report stands; say what it cannot show.
		r.Catalog.Log.WithError(err).Warn("PVCs whose backup failed are not shown")
	}
	rep.PVCs = append(rep.PVCs, missing...)
	sortProtections(rep.PVCs)
	rep.Counts = map[string]int{}
	for _, p := range rep.PVCs {
		rep.Counts[p.Status]++
	}
	return rep, nil
}

// protections joins the PVCs a backup holds with their uploads and file system backups.
func protections(items *backupItems, vols []Volume, pvbs []velerov1.PodVolumeBackup) []Protection {
	uploads := map[string]Volume{}
	for _, v := range vols {
		// The last attempt counts; a completed one wins over any other.
		if old, ok := uploads[v.Key()]; ok && old.Phase == string(velerov2alpha1.DataUploadPhaseCompleted) {
			continue
		}
		uploads[v.Key()] = v
	}
	fsBackups := map[string]velerov1.PodVolumeBackup{}
	for _, pvb := range pvbs {
		if claim := items.claimOf(pvb.Spec.Pod.Namespace, pvb.Spec.Pod.Name, pvb.Spec.Volume); claim != "" {
			fsBackups[pvb.Spec.Pod.Namespace+"/"+claim] = pvb
		}
	}
	out := make([]Protection, 0, len(items.pvcs))
	for key, pvc := range items.pvcs {
		p := Protection{Namespace: pvc.Namespace, PVC: pvc.Name, PV: pvc.Spec.VolumeName}
		if v, ok := uploads[key]; ok {
			v := v
			p.Volume = &v
			switch velerov2alpha1.DataUploadPhase(v.Phase) {
			case velerov2alpha1.DataUploadPhaseCompleted:
				p.Status = StatusMoved
			case velerov2alpha1.DataUploadPhaseFailed, velerov2alpha1.DataUploadPhaseCanceled:
				p.Status, p.Reason = StatusFailed, fmt.Sprintf("upload %s: %s", v.Phase, v.Message)
			default:
				p.Status, p.Reason = StatusInProgress, "upload "+v.Phase
			}
		} else if pvb, ok := fsBackups[key]; ok {
			p.Status = StatusFSBackup
			p.Reason = fmt.Sprintf("PodVolumeBackup %s (%s) of pod %s, volume %s", pvb.Name, pvb.Status.Phase, pvb.Spec.Pod.Name, pvb.Spec.Volume)
		} else {
			p.Status = StatusSkipped
			p.Reason = pvc.Annotations[naming.SkippedAnnotation]
			if p.Reason == "" {
				p.Reason = "no record of why: no upload, no file system backup, and no reason recorded by snapmove's backup plugin (was it loaded?)"
			}
		}
		out = append(out, p)
	}
	return out
}

func sortProtections(ps []Protection) {
	sort.Slice(ps, func(i, j int) bool {
		if ps[i].Namespace != ps[j].Namespace {
			return ps[i].Namespace < ps[j].Namespace
		}
		return ps[i].PVC < ps[j].PVC
	})
}

// notInBackup are the PVCs of the cluster that the backup should hold and does not: in
// its namespaces and label selectors, existing when it started, and absent from its
// contents. Velero stores no item whose backup item action failed (a PVC without a usable
// VolumeSnapshotClass, say), so such a PVC would otherwise be missing from the report.
func (r *Reporter) notInBackup(ctx context.Context, backup *velerov1.Backup, items *backupItems) ([]Protection, error) {
	if !includesPVCs(backup.Spec) || backup.Status.StartTimestamp == nil {
		return nil, nil
	}
	scope, err := newBackupScope(backup.Spec)
	if err != nil {
		return nil, err
	}
	var live []corev1.PersistentVolumeClaim
	lists := []client.ListOption{nil} // the whole cluster, unless the backup names namespaces
	if len(scope.included) > 0 {
		lists = nil
		for ns := range scope.included {
			lists = append(lists, client.InNamespace(ns))
		}
	}
	for _, opt := range lists {
		l := &corev1.PersistentVolumeClaimList{}
		var opts []client.ListOption
		if opt != nil {
			opts = append(opts, opt)
		}
		if err := r.Client.List(ctx, l, opts...); err != nil {
			return nil, errors.Wrap(err, "listing PVCs")
		}
		live = append(live, l.Items...)
	}
	var out []Protection
	for i := range live {
		pvc := &live[i]
		if _, ok := items.pvcs[pvc.Namespace+"/"+pvc.Name]; ok || !scope.holds(pvc) ||
			!pvc.CreationTimestamp.Before(backup.Status.StartTimestamp) {
			continue
		}
		out = append(out, Protection{Namespace: pvc.Namespace, PVC: pvc.Name, PV: pvc.Spec.VolumeName, Status: StatusNotBackedUp,
			Reason: fmt.Sprintf("the backup holds no copy of it: backing it up failed (velero backup describe %s --details lists the error)", backup.Name)})
	}
	return out, nil
}

// includesPVCs reports whether a backup's resource filters let PVCs in.
func includesPVCs(spec velerov1.BackupSpec) bool {
	const pvcs = "persistentvolumeclaims"
	for _, r := range spec.ExcludedResources {
		if r == pvcs || r == "*" {
			return false
		}
	}
	if len(spec.IncludedResources) == 0 {
		return true
	}
	for _, r := range spec.IncludedResources {
		if r == pvcs || r == "*" {
			return true
		}
	}
	return false
}

// backupScope is which namespaces and labels a backup covers.
type backupScope struct {
	included, excluded map[string]bool   // included empty: all
	selectors          []labels.Selector // none: all; else any of them
}

func newBackupScope(spec velerov1.BackupSpec) (*backupScope, error) {
	s := &backupScope{included: map[string]bool{}, excluded: map[string]bool{}}
	for _, ns := range spec.IncludedNamespaces {
		if ns == "*" {
			s.included = map[string]bool{}
			break
		}
		s.included[ns] = true
	}
	for _, ns := range spec.ExcludedNamespaces {
		s.excluded[ns] = true
	}
	sels := spec.OrLabelSelectors
	if spec.LabelSelector != nil {
		sels = append(sels, spec.LabelSelector)
	}
	for _, ls := range sels {
		sel, err := metav1.LabelSelectorAsSelector(ls)
		if err != nil {
			return nil, errors.Wrap(err, "reading the backup's label selector")
		}
		s.selectors = append(s.selectors, sel)
	}
	return s, nil
}

func (s *backupScope) holds(pvc *corev1.PersistentVolumeClaim) bool {
	if s.excluded[pvc.Namespace] || (len(s.included) > 0 && !s.included[pvc.Namespace]) {
		return false
	}
	if len(s.selectors) == 0 {
		return true
	}
	for _, sel := range s.selectors {
		if sel.Matches(labels.Set(pvc.Labels)) {
			return true
		}
	}
	return false
}

// backupItems are the objects of a backup's contents that a report needs.
type backupItems struct {
	pvcs map[string]*corev1.PersistentVolumeClaim // by namespace/name
	pods map[string]*corev1.Pod
}

// claimOf is the PVC that pod volume mounts, "" when unknown.
func (b *backupItems) claimOf(ns, pod, volume string) string {
	p, ok := b.pods[ns+"/"+pod]
	if !ok {
		return ""
	}
	for _, v := range p.Spec.Volumes {
		if v.Name == volume && v.PersistentVolumeClaim != nil {
			return v.PersistentVolumeClaim.ClaimName
		}
	}
	return ""
}

// itemPath matches the items of a backup tarball (Velero's layout, with or without the
// API version directory: resources/<resource>[/<version>]/namespaces/<ns>/<name>.json).
var itemPath = regexp.MustCompile(`^resources/(persistentvolumeclaims|pods)(?:/[^/]+)?/namespaces/([^/]+)/([^/]+)\.json$`)

// maxItemBytes bounds one item read from a tarball (Kubernetes objects are at most ~1.5 MB).
const maxItemBytes = 4 << 20

func readContents(r io.Reader) (*backupItems, error) {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return nil, errors.Wrap(err, "not a gzipped tarball")
	}
	items := &backupItems{pvcs: map[string]*corev1.PersistentVolumeClaim{}, pods: map[string]*corev1.Pod{}}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return items, nil
		}
		if err != nil {
			return nil, errors.Wrap(err, "reading the tarball")
		}
		m := itemPath.FindStringSubmatch(h.Name)
		if m == nil || h.Typeflag != tar.TypeReg {
			continue
		}
		key := m[2] + "/" + m[3]
		data, err := io.ReadAll(io.LimitReader(tr, maxItemBytes))
		if err != nil {
			return nil, errors.Wrapf(err, "reading %s", h.Name)
		}
		switch m[1] {
		case "persistentvolumeclaims":
			pvc := &corev1.PersistentVolumeClaim{}
			if err := json.Unmarshal(data, pvc); err != nil {
				return nil, errors.Wrapf(err, "decoding %s", h.Name)
			}
			items.pvcs[key] = pvc
		case "pods":
			pod := &corev1.Pod{}
			if err := json.Unmarshal(data, pod); err != nil {
				return nil, errors.Wrapf(err, "decoding %s", h.Name)
			}
			items.pods[key] = pod
		}
	}
}

// timeOrDash is FormatTime(*t), "-" for nil.
func timeOrDash(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return FormatTime(*t)
}
