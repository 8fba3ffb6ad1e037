package operation

import (
	"context"
	"strings"

	"github.com/pkg/errors"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	"github.com/vmware-tanzu/velero/pkg/plugin/velero"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/naming"
)

// Units is the OperationUnits of every snapmove operation.
const Units = "Bytes"

// FindDataUpload returns the one DataUpload in namespace labelled with operation ID id.
func FindDataUpload(ctx context.Context, c client.Reader, namespace, id string) (*velerov2alpha1.DataUpload, error) {
	var list velerov2alpha1.DataUploadList
	if err := c.List(ctx, &list, client.InNamespace(namespace), client.MatchingLabels{velerov1.AsyncOperationIDLabel: id}); err != nil {
		return nil, errors.Wrapf(err, "listing DataUploads of operation %s", id)
	}
	names := make([]string, len(list.Items))
	for i := range list.Items {
		names[i] = list.Items[i].Name
	}
	if err := one("DataUpload", namespace, id, names); err != nil {
		return nil, err
	}
	return &list.Items[0], nil
}

// FindDataDownload returns the one DataDownload in namespace labelled with operation ID id.
func FindDataDownload(ctx context.Context, c client.Reader, namespace, id string) (*velerov2alpha1.DataDownload, error) {
	var list velerov2alpha1.DataDownloadList
	if err := c.List(ctx, &list, client.InNamespace(namespace), client.MatchingLabels{velerov1.AsyncOperationIDLabel: id}); err != nil {
		return nil, errors.Wrapf(err, "listing DataDownloads of operation %s", id)
	}
	names := make([]string, len(list.Items))
	for i := range list.Items {
		names[i] = list.Items[i].Name
	}
	if err := one("DataDownload", namespace, id, names); err != nil {
		return nil, err
	}
	return &list.Items[0], nil
}

func one(kind, namespace, id string, names []string) error {
	switch len(names) {
	case 1:
		return nil
	case 0:
		return errors.Errorf("no %s labelled %s=%s in namespace %s", kind, velerov1.AsyncOperationIDLabel, id, namespace)
	default:
		return errors.Errorf("%d %ss labelled %s=%s in namespace %s (%s): expected one",
			len(names), kind, velerov1.AsyncOperationIDLabel, id, namespace, strings.Join(names, ", "))
	}
}

// status is what DataUpload and DataDownload status have in common.
type status struct {
	kind       string
	phase      string
	message    string
	done       int64
	total      int64
	started    *metav1.Time
	completion *metav1.Time
}

// UploadProgress translates a DataUpload's status like Velero's CSI plugin does.
func UploadProgress(du *velerov2alpha1.DataUpload) velero.OperationProgress {
	return progress(status{
		kind: "DataUpload", phase: string(du.Status.Phase), message: du.Status.Message,
		done: du.Status.Progress.BytesDone, total: du.Status.Progress.TotalBytes,
		started: du.Status.StartTimestamp, completion: du.Status.CompletionTimestamp,
	})
}

// DownloadProgress translates a DataDownload's status like Velero's CSI plugin does.
func DownloadProgress(dd *velerov2alpha1.DataDownload) velero.OperationProgress {
	return progress(status{
		kind: "DataDownload", phase: string(dd.Status.Phase), message: dd.Status.Message,
		done: dd.Status.Progress.BytesDone, total: dd.Status.Progress.TotalBytes,
		started: dd.Status.StartTimestamp, completion: dd.Status.CompletionTimestamp,
	})
}

// progress maps phases as Velero does: ""/New is "not started" (an empty progress, so the
// operation stays New; only a diagnostic message is passed on); Completed is done;
// Failed is done with the mover's message as Err; Canceled is done with
// "<kind> is canceled". A Failed object without a message still gets an Err: Velero treats
// Completed without Err as success.
func progress(s status) velero.OperationProgress {
	var p velero.OperationProgress
	switch s.phase {
	case "", string(velerov2alpha1.DataUploadPhaseNew):
		if s.message != "" {
			p.Description = "New: " + s.message
		}
		return p
	}
	p.Description = s.phase
	p.OperationUnits = Units
	p.NCompleted = s.done
	p.NTotal = s.total
	if s.started != nil {
		p.Started = s.started.Time
	}
	if s.completion != nil {
		p.Updated = s.completion.Time
	}
	p.Completed = naming.MovementEnded(s.phase)
	switch velerov2alpha1.DataUploadPhase(s.phase) { // a DataDownload's phases have the same values
	case velerov2alpha1.DataUploadPhaseCompleted: // done, without Err
	case velerov2alpha1.DataUploadPhaseFailed:
		p.Err = s.message
		if p.Err == "" {
			p.Err = s.kind + " failed without a message"
		}
	case velerov2alpha1.DataUploadPhaseCanceled:
		p.Err = s.kind + " is canceled"
		if s.message != "" {
			p.Err += ": " + s.message
		}
	default:
		if s.message != "" {
			p.Description += ": " + s.message
		}
	}
	return p
}

// CancelDataUpload sets spec.cancel on du with a merge patch; the mover does the rest.
func CancelDataUpload(ctx context.Context, c client.Client, du *velerov2alpha1.DataUpload) error {
	orig := du.DeepCopy()
	du.Spec.Cancel = true
	if err := c.Patch(ctx, du, client.MergeFrom(orig)); err != nil {
		return errors.Wrapf(err, "canceling DataUpload %s/%s", du.Namespace, du.Name)
	}
	return nil
}

// CancelDataDownload sets spec.cancel on dd with a merge patch; the mover does the rest.
func CancelDataDownload(ctx context.Context, c client.Client, dd *velerov2alpha1.DataDownload) error {
	orig := dd.DeepCopy()
	dd.Spec.Cancel = true
	if err := c.Patch(ctx, dd, client.MergeFrom(orig)); err != nil {
		return errors.Wrapf(err, "canceling DataDownload %s/%s", dd.Namespace, dd.Name)
	}
	return nil
}
