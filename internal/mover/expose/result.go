package expose

import (
	"encoding/json"

	"github.com/pkg/errors"
	corev1 "k8s.io/api/core/v1"

	"github.com/snapmove/snapmove/internal/mover/datapath"
)

// Result is what a worker writes to its termination message when it succeeds (exit 0).
// On failure (exit 1) the message is the error text instead.
type Result struct {
	// SnapshotID is the kopia manifest ID (backup only).
	SnapshotID string `json:"snapshotID,omitempty"`
	// TotalBytes is the size of the volume's data; IncrementalBytes the part a backup had
	// to read because the parent snapshot did not cover it.
	TotalBytes       int64 `json:"totalBytes"`
	IncrementalBytes int64 `json:"incrementalBytes,omitempty"`
	// Empty: the backed-up volume held no file data.
	Empty bool `json:"empty,omitempty"`
	// Verification is what a backup checked after saving the snapshot, in one line
	// (datapath.VerifyResult.Summary), e.g. "verified (metadata): 2500 files, 34
	// directories, 1.15 GB in 1.2s".
	Verification string `json:"verification,omitempty"`
	// Block is what a block backup read of the device, and why.
	Block *datapath.BlockRead `json:"block,omitempty"`
}

// MaxMessage is the kubelet's limit on a termination message.
const MaxMessage = 4096

// TerminationMessage is the message of the worker container's last termination, if any.
func TerminationMessage(pod *corev1.Pod) string {
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == WorkerContainer && cs.State.Terminated != nil {
			return cs.State.Terminated.Message
		}
	}
	return ""
}

// ParseResult reads a successful worker's termination message, which the worker alone
// wrote (its size bounded by MaxMessage): sizes must not be negative, and the snapshot ID
// must look like a kopia manifest ID (letters and digits), since Velero and the mover later
// use it to restore and delete.
func ParseResult(msg string) (Result, error) {
	var r Result
	if err := json.Unmarshal([]byte(msg), &r); err != nil {
		return Result{}, errors.Wrapf(err, "parsing worker result %q", truncate(msg, 200))
	}
	if r.TotalBytes < 0 || r.IncrementalBytes < 0 {
		return Result{}, errors.Errorf("worker result has negative sizes (%d total, %d incremental)", r.TotalBytes, r.IncrementalBytes)
	}
	if !plainID(r.SnapshotID) {
		return Result{}, errors.Errorf("worker result has snapshot ID %q, not a kopia manifest ID", truncate(r.SnapshotID, 80))
	}
	return r, nil
}

// plainID: at most 128 ASCII letters and digits ("" included: a restore has none).
func plainID(s string) bool {
	if len(s) > 128 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
