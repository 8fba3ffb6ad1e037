package expose

import (
	"encoding/json"
	"strconv"

	"github.com/pkg/errors"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// The worker's report: how a worker tells the controller how far it got, without any
// right to write its DataUpload or DataDownload.
//
// Velero's DataUpload and DataDownload have no status subresource, so a right to patch
// one is a right to rewrite its spec, which the controller acts on (which snapshot it
// deletes, which claim it binds a restored volume to). A worker therefore may only read
// its movement (WorkerIdentity). What it reports goes two ways, each written by the
// worker alone and read by the controller as untrusted input:
//   - progress, while it runs: the ConfigMap ProgressReport, named after the movement in
//     Velero's namespace, created by the controller (owned by the movement, labelled
//     naming.MovementUIDLabel) and patchable by the worker through a Role rule that names it
//     (resourceNames). The controller copies it onto the movement's status.progress, where
//     Velero and the stall check read it (ParseProgress bounds it).
//   - the result, once it ends: its termination message (Result, ParseResult), with the
//     exit code saying whether a failure may pass (datapath.ExitTransient).
// Cancel stays the controller's: the worker reads its movement's phase and spec.cancel.

// Keys of the ConfigMap ProgressReport (decimal byte counts).
const (
	ReportBytesDone  = "bytesDone"
	ReportTotalBytes = "totalBytes"
)

// ReportParams describe the progress report of one movement.
type ReportParams struct {
	Operation       Operation
	Name, Namespace string // the movement's
	Owner           metav1.OwnerReference
}

// ProgressReport is the ConfigMap a worker patches with its progress (ReportPatch). It
// starts empty: no progress reported yet.
func ProgressReport(p ReportParams) *corev1.ConfigMap {
	labels := Labels(p.Operation, p.Name, p.Owner.UID)
	return &corev1.ConfigMap{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{
			Name: p.Name, Namespace: p.Namespace, Labels: labels,
			OwnerReferences: []metav1.OwnerReference{p.Owner},
		},
	}
}

// IsReportOf reports whether cm is the progress report of the movement with uid (a
// ConfigMap of that name that is not is never used, and the movement fails naming it).
func IsReportOf(cm *corev1.ConfigMap, uid types.UID) bool {
	return MadeFor(cm, uid)
}

// Progress is what a report says: bytes moved so far of the total.
type Progress struct {
	BytesDone, TotalBytes int64
}

// ReportPatch is the merge patch with which a worker writes p into its report.
func ReportPatch(p Progress) []byte {
	b, _ := json.Marshal(map[string]any{"data": map[string]string{
		ReportBytesDone: strconv.FormatInt(p.BytesDone, 10), ReportTotalBytes: strconv.FormatInt(p.TotalBytes, 10),
	}})
	return b
}

// maxCount is the longest decimal count a report may hold (int64 has 19 digits).
const maxCount = 19

// ParseProgress reads a report written by a worker, which may say anything: found is
// false while it reports nothing; a value that is not a non-negative decimal count of at
// most 19 digits is an error naming the key (never echoing more than a few bytes of it).
// Other keys are ignored.
func ParseProgress(cm *corev1.ConfigMap) (p Progress, found bool, err error) {
	_, hasDone := cm.Data[ReportBytesDone]
	_, hasTotal := cm.Data[ReportTotalBytes]
	if !hasDone && !hasTotal {
		return Progress{}, false, nil
	}
	if p.BytesDone, err = count(cm.Data, ReportBytesDone); err != nil {
		return Progress{}, false, err
	}
	if p.TotalBytes, err = count(cm.Data, ReportTotalBytes); err != nil {
		return Progress{}, false, err
	}
	return p, true, nil
}

func count(data map[string]string, key string) (int64, error) {
	v, ok := data[key]
	if !ok {
		return 0, errors.Errorf("key %s is missing", key)
	}
	if len(v) == 0 || len(v) > maxCount {
		return 0, errors.Errorf("key %s: %d characters, not a byte count", key, len(v))
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, errors.Errorf("key %s: %q is not a byte count", key, truncate(v, 20))
	}
	return n, nil
}
