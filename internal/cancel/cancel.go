package cancel

import (
	"context"
	"time"

	"github.com/pkg/errors"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	"github.com/vmware-tanzu/velero/pkg/label"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/naming"
)

// Kind says whether a backup's or a restore's movements are canceled.
type Kind string

// Kinds.
const (
	Backup  Kind = "backup"
	Restore Kind = "restore"
)

// Movement is one DataUpload or DataDownload and where it stands.
type Movement struct {
	Name string `json:"name"`
	// Volume is namespace/PVC: the source of a backup, the target of a restore.
	Volume string `json:"volume"`
	// Before is the phase when the cancel was asked for ("" for New); Phase the last seen.
	Before  string `json:"before"`
	Phase   string `json:"phase"`
	Message string `json:"message,omitempty"`
	// Asked: spec.cancel was set by this call (false: it had ended, or was asked before).
	Asked bool `json:"asked"`
}

// Ended counts the movements that have ended.
func (r *Result) Ended() int {
	n := 0
	for _, m := range r.Movements {
		if naming.MovementEnded(m.Phase) {
			n++
		}
	}
	return n
}

// Result is what a cancel did.
type Result struct {
	Kind        Kind       `json:"kind"`
	Name        string     `json:"name"`
	Movements   []Movement `json:"movements"`
	AllEnded    bool       `json:"allEnded"`
	VeleroPhase string     `json:"veleroPhase"`
}

// Request sets spec.cancel on every movement of the backup or restore name (in Velero's
// namespace ns) that has not ended, then waits up to timeout (0: no wait) until all of
// them have ended. A backup or restore that does not exist is an error; one without
// movements is not (there is nothing to cancel). Each of progress is called with the
// result after every look while it waits (once a second), e.g. for a progress line.
func Request(ctx context.Context, c client.Client, ns string, kind Kind, name string, timeout time.Duration, progress ...func(*Result)) (*Result, error) {
	res := &Result{Kind: kind, Name: name}
	if _, err := veleroPhase(ctx, c, ns, kind, name); err != nil {
		return nil, err
	}
	ms, err := list(ctx, c, ns, kind, name)
	if err != nil {
		return nil, err
	}
	for _, m := range ms {
		mv := m.movement()
		mv.Before = mv.Phase
		if !naming.MovementEnded(mv.Phase) && !m.canceled() {
			if err := m.cancel(ctx, c); err != nil {
				return nil, err
			}
			mv.Asked = true
		}
		res.Movements = append(res.Movements, mv)
	}
	if timeout > 0 {
		err := wait.PollUntilContextTimeout(ctx, time.Second, timeout, true, func(ctx context.Context) (bool, error) {
			done, err := res.refresh(ctx, c, ns)
			for _, p := range progress {
				p(res)
			}
			return done, err
		})
		if err != nil && !wait.Interrupted(err) {
			return nil, err
		}
	}
	if _, err := res.refresh(ctx, c, ns); err != nil {
		return nil, err
	}
	if res.VeleroPhase, err = veleroPhase(ctx, c, ns, kind, name); err != nil {
		return nil, err
	}
	return res, nil
}

// refresh re-reads the movements; it reports whether all have ended.
func (r *Result) refresh(ctx context.Context, c client.Client, ns string) (bool, error) {
	ms, err := list(ctx, c, ns, r.Kind, r.Name)
	if err != nil {
		return false, err
	}
	now := map[string]Movement{}
	for _, m := range ms {
		now[m.movement().Name] = m.movement()
	}
	r.AllEnded = true
	for i, mv := range r.Movements {
		if cur, ok := now[mv.Name]; ok {
			r.Movements[i].Phase, r.Movements[i].Message = cur.Phase, cur.Message
		}
		if !naming.MovementEnded(r.Movements[i].Phase) {
			r.AllEnded = false
		}
	}
	return r.AllEnded, nil
}

// movementObject is a DataUpload or a DataDownload.
type movementObject interface {
	movement() Movement
	canceled() bool
	cancel(ctx context.Context, c client.Client) error
}

type upload struct{ *velerov2alpha1.DataUpload }

func (u upload) movement() Movement {
	return Movement{Name: u.Name, Volume: types.NamespacedName{Namespace: u.Spec.SourceNamespace, Name: u.Spec.SourcePVC}.String(), Phase: string(u.Status.Phase), Message: u.Status.Message}
}
func (u upload) canceled() bool { return u.Spec.Cancel }
func (u upload) cancel(ctx context.Context, c client.Client) error {
	patch := client.MergeFrom(u.DeepCopy())
	u.Spec.Cancel = true
	return errors.Wrapf(c.Patch(ctx, u.DataUpload, patch), "canceling DataUpload %s/%s", u.Namespace, u.Name)
}

type download struct{ *velerov2alpha1.DataDownload }

func (d download) movement() Movement {
	return Movement{Name: d.Name, Volume: types.NamespacedName{Namespace: d.Spec.TargetVolume.Namespace, Name: d.Spec.TargetVolume.PVC}.String(), Phase: string(d.Status.Phase), Message: d.Status.Message}
}
func (d download) canceled() bool { return d.Spec.Cancel }
func (d download) cancel(ctx context.Context, c client.Client) error {
	patch := client.MergeFrom(d.DeepCopy())
	d.Spec.Cancel = true
	return errors.Wrapf(c.Patch(ctx, d.DataDownload, patch), "canceling DataDownload %s/%s", d.Namespace, d.Name)
}

// list finds the movements by the label Velero's and snapmove's actions both set.
func list(ctx context.Context, c client.Client, ns string, kind Kind, name string) ([]movementObject, error) {
	var out []movementObject
	switch kind {
	case Backup:
		var l velerov2alpha1.DataUploadList
		if err := c.List(ctx, &l, client.InNamespace(ns), client.MatchingLabels{velerov1.BackupNameLabel: label.GetValidName(name)}); err != nil {
			return nil, errors.Wrapf(err, "listing the DataUploads of backup %s", name)
		}
		for i := range l.Items {
			out = append(out, upload{&l.Items[i]})
		}
	case Restore:
		var l velerov2alpha1.DataDownloadList
		if err := c.List(ctx, &l, client.InNamespace(ns), client.MatchingLabels{velerov1.RestoreNameLabel: label.GetValidName(name)}); err != nil {
			return nil, errors.Wrapf(err, "listing the DataDownloads of restore %s", name)
		}
		for i := range l.Items {
			out = append(out, download{&l.Items[i]})
		}
	default:
		return nil, errors.Errorf("unknown kind %q: want backup or restore", kind)
	}
	return out, nil
}

func veleroPhase(ctx context.Context, c client.Client, ns string, kind Kind, name string) (string, error) {
	key := client.ObjectKey{Namespace: ns, Name: name}
	switch kind {
	case Backup:
		var b velerov1.Backup
		if err := c.Get(ctx, key, &b); err != nil {
			return "", errors.Wrapf(err, "getting backup %s", key)
		}
		return string(b.Status.Phase), nil
	case Restore:
		var r velerov1.Restore
		if err := c.Get(ctx, key, &r); err != nil {
			return "", errors.Wrapf(err, "getting restore %s", key)
		}
		return string(r.Status.Phase), nil
	}
	return "", errors.Errorf("unknown kind %q: want backup or restore", kind)
}
