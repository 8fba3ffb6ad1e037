package handover

import (
	"context"
	"time"

	"github.com/pkg/errors"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	"github.com/vmware-tanzu/velero/pkg/label"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/naming"
)

// Movement is one DataDownload of the restore and what handover did with it.
type Movement struct {
	Name      string `json:"name"`
	Volume    string `json:"volume"`
	DataMover string `json:"dataMover"`
	Phase     string `json:"phase"`
	// HandedOver: this call set spec.datamover to "velero".
	HandedOver bool `json:"handedOver"`
	// Reason says why a movement was left as it is.
	Reason string `json:"reason,omitempty"`
}

// Result is what a handover did.
type Result struct {
	Restore   string     `json:"restore"`
	Movements []Movement `json:"movements"`
	// Complete: Velero had created every DataDownload of the restore (its phase was past
	// InProgress) when the last pass ran, so none can appear later.
	Complete    bool   `json:"complete"`
	VeleroPhase string `json:"veleroPhase"`
}

// HandedOver counts the movements this call handed over.
func (r *Result) HandedOver() int {
	n := 0
	for _, m := range r.Movements {
		if m.HandedOver {
			n++
		}
	}
	return n
}

// Restore hands every DataDownload of restore name (in Velero's namespace ns) that no mover
// has accepted to Velero's built-in mover. Velero creates the DataDownloads while it
// restores the PVCs, so Restore passes over them once a second until the restore is past
// InProgress (then all exist) or timeout ends; a restore that does not exist is an error.
// Each of progress is called with the result after every pass, e.g. for a progress line.
func Restore(ctx context.Context, c client.Client, ns, name string, timeout time.Duration, progress ...func(*Result)) (*Result, error) {
	res := &Result{Restore: name}
	seen := map[string]int{}
	pass := func(ctx context.Context) (bool, error) {
		var r velerov1.Restore
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &r); err != nil {
			return false, errors.Wrapf(err, "getting restore %s/%s", ns, name)
		}
		// Read the phase before the DataDownloads: past InProgress, every one exists already.
		res.VeleroPhase = string(r.Status.Phase)
		complete := pastItems(r.Status.Phase)
		var l velerov2alpha1.DataDownloadList
		if err := c.List(ctx, &l, client.InNamespace(ns), client.MatchingLabels{velerov1.RestoreNameLabel: label.GetValidName(name)}); err != nil {
			return false, errors.Wrapf(err, "listing the DataDownloads of restore %s", name)
		}
		for i := range l.Items {
			m, err := handOver(ctx, c, &l.Items[i])
			if err != nil {
				return false, err
			}
			if j, ok := seen[m.Name]; ok {
				if res.Movements[j].HandedOver {
					m.HandedOver, m.Reason = true, ""
				}
				res.Movements[j] = m
				continue
			}
			seen[m.Name] = len(res.Movements)
			res.Movements = append(res.Movements, m)
		}
		res.Complete = complete
		for _, p := range progress {
			p(res)
		}
		return complete, nil
	}
	err := wait.PollUntilContextTimeout(ctx, time.Second, timeout, true, pass)
	if err != nil && !wait.Interrupted(err) {
		return nil, err
	}
	return res, nil
}

// pastItems: Velero has restored every item, so every DataDownload has been created.
func pastItems(p velerov1.RestorePhase) bool {
	switch p {
	case "", velerov1.RestorePhaseNew, velerov1.RestorePhaseInProgress:
		return false
	}
	return true
}

// handOver sets dd's datamover to Velero's when no mover has taken it; a conflict means a
// mover took it meanwhile, which the next pass sees.
func handOver(ctx context.Context, c client.Client, dd *velerov2alpha1.DataDownload) (Movement, error) {
	m := Movement{
		Name:      dd.Name,
		Volume:    dd.Spec.TargetVolume.Namespace + "/" + dd.Spec.TargetVolume.PVC,
		DataMover: dd.Spec.DataMover,
		Phase:     string(dd.Status.Phase),
	}
	switch {
	case dd.Spec.DataMover == "" || dd.Spec.DataMover == naming.VeleroDataMover:
		m.Reason = "Velero's built-in mover serves it already"
		return m, nil
	case dd.Spec.DataMover != naming.DataMover:
		m.Reason = "another data mover (" + dd.Spec.DataMover + ") serves it"
		return m, nil
	case dd.Spec.Cancel:
		m.Reason = "canceled"
		return m, nil
	case dd.Status.Phase != "" && dd.Status.Phase != velerov2alpha1.DataDownloadPhaseNew:
		m.Reason = "snapmove's mover has taken it"
		return m, nil
	}
	patch := client.MergeFromWithOptions(dd.DeepCopy(), client.MergeFromWithOptimisticLock{})
	dd.Spec.DataMover = naming.VeleroDataMover
	if err := c.Patch(ctx, dd, patch); err != nil {
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			m.Reason = "changed meanwhile; looked at again on the next pass"
			return m, nil
		}
		return m, errors.Wrapf(err, "handing DataDownload %s/%s to Velero's data mover", dd.Namespace, dd.Name)
	}
	m.DataMover, m.HandedOver, m.Reason = naming.VeleroDataMover, true, ""
	return m, nil
}
