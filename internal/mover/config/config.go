package config

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pkg/errors"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/naming"
)

// Config is the mover's settings. The zero value is not useful; start from Default.
type Config struct {
	// MaxConcurrent bounds the DataUploads and DataDownloads being prepared or moved at
	// once (phases Accepted, Prepared, InProgress, Canceling), cluster-wide. 0: no limit.
	MaxConcurrent int `json:"maxConcurrent"`
	// PerNode bounds the movements InProgress on one node; a worker pod that became
	// Running on a full node waits in Prepared. 0: no limit.
	PerNode int `json:"perNode"`
	// PrepareTimeout bounds the Accepted phase: snapshot ready, PVC bound, pod running.
	PrepareTimeout metav1.Duration `json:"prepareTimeout"`
	// MoveAttempts bounds the attempts at one movement's data: a worker that failed for a
	// reason that may pass (the object store after kopia's and the storage client's own
	// retries, exit code 75) or was killed (OOMKilled, SIGKILL) is replaced by a new one
	// until this many ran. 1: never retried. 1 to 10.
	MoveAttempts int `json:"moveAttempts"`
	// StallTimeout: a worker whose movement made no progress (status.progress.bytesDone
	// unchanged) for this long, or whose node has not been Ready for NodeNotReadyGrace, is
	// replaced by a new attempt (moveAttempts), or fails the movement when none is left,
	// naming the cause. 0: no stall detection.
	StallTimeout metav1.Duration `json:"stallTimeout"`

	// BackupPVCAccessMode is the access mode of the PVC restored from the snapshot for a
	// backup. ReadOnlyMany lets the CSI driver skip work (and cannot harm the data); when
	// a driver refuses it the controller retries once with ReadWriteOnce.
	BackupPVCAccessMode corev1.PersistentVolumeAccessMode `json:"backupPVCAccessMode"`
	// BackupPVCAccessModes overrides BackupPVCAccessMode per source StorageClass.
	BackupPVCAccessModes map[string]corev1.PersistentVolumeAccessMode `json:"backupPVCAccessModes,omitempty"`
	// RestoreIgnoreDelayBinding: do not wait for a pod to use a WaitForFirstConsumer
	// target PVC before restoring (the volume is then provisioned wherever the worker runs).
	RestoreIgnoreDelayBinding bool `json:"restoreIgnoreDelayBinding"`
	// WriteSparseFiles is the default for filesystem restores whose DataDownload's
	// spec.dataMoverConfig has no "WriteSparseFiles" key.
	WriteSparseFiles bool `json:"writeSparseFiles"`
	// ServeVeleroDataMover makes this mover also execute the DataUploads and DataDownloads
	// of Velero's built-in data mover (spec.datamover "" or "velero"), which Velero's
	// node-agent executes otherwise: for clusters that run snapmove instead of node-agent
	// and keep Velero's defaults (`velero backup create --snapshot-move-data` with
	// EnableCSI), and to restore backups that node-agent made. It is ignored while a
	// node-agent DaemonSet runs in Velero's namespace: two movers must never race for one
	// object.
	ServeVeleroDataMover bool `json:"serveVeleroDataMover"`

	// WorkerHostNetwork runs worker pods on their node's host network (for clusters whose
	// pod network cannot reach the object store).
	WorkerHostNetwork bool `json:"workerHostNetwork"`
	// WorkerResources are the resources of the worker container.
	WorkerResources corev1.ResourceRequirements `json:"workerResources"`
	// WorkerNodeSelector is added to every worker pod's nodeSelector (a backup's worker
	// must still reach its volume: keep it wide enough).
	WorkerNodeSelector map[string]string `json:"workerNodeSelector,omitempty"`
	// WorkerTolerations are every worker pod's tolerations.
	WorkerTolerations []corev1.Toleration `json:"workerTolerations,omitempty"`
	// WorkerPriorityClassName is every worker pod's priorityClassName.
	WorkerPriorityClassName string `json:"workerPriorityClassName,omitempty"`
	// WorkerImagePullPolicy is the worker container's imagePullPolicy.
	WorkerImagePullPolicy corev1.PullPolicy `json:"workerImagePullPolicy,omitempty"`
	// CacheSizeLimit is the sizeLimit of the worker's cache emptyDir (kopia's local cache).
	CacheSizeLimit resource.Quantity `json:"cacheSizeLimit"`
	// CacheLimitMB is kopia's cache limit inside it; keep it well below CacheSizeLimit.
	CacheLimitMB int64 `json:"cacheLimitMB"`

	// Verify says what a backup reads back from the repository after saving its snapshot
	// and before the DataUpload is Completed: "none", "metadata" (the manifest and every
	// directory; entry counts and file bytes must match the upload's), "sample:<percent>"
	// (also the content of that share of the files) or "full" (the content of every
	// file). See ParseVerify. A DataUpload's annotation snapmove.io/verify overrides it.
	Verify string `json:"verify"`
	// Compression is the kopia compressor of volume data (datapath.Compressors): "none"
	// as in Velero, or a zstd or s2 compressor. A Backup's annotation
	// snapmove.io/compression overrides it. Repositories mix compressions freely: every
	// kopia that Velero links reads them all.
	Compression string `json:"compression"`
	// CheckpointInterval is how often a running upload saves a checkpoint that the next
	// attempt (the mover's retry, or the next backup) resumes from instead of starting
	// over: the retry reads again what was moved since the last checkpoint (at most this
	// long of the move) and the files in flight. 1s to 45m (kopia's limit); default 30s.
	CheckpointInterval metav1.Duration `json:"checkpointInterval"`
}

// Defaults.
const (
	DefaultMaxConcurrent  = 8
	DefaultPerNode        = 2
	DefaultPrepareTimeout = 30 * time.Minute
	DefaultMoveAttempts   = 3
	MaxMoveAttempts       = 10
	DefaultCacheLimitMB   = 4096
	DefaultVerify         = "metadata"
	DefaultCompression    = "none"
	DefaultCheckpoint     = 30 * time.Second
	DefaultStallTimeout   = 15 * time.Minute
)

// Default returns the settings used when the ConfigMap does not exist, and the base the
// ConfigMap's keys override.
func Default() Config {
	return Config{
		MaxConcurrent:       DefaultMaxConcurrent,
		PerNode:             DefaultPerNode,
		PrepareTimeout:      metav1.Duration{Duration: DefaultPrepareTimeout},
		MoveAttempts:        DefaultMoveAttempts,
		BackupPVCAccessMode: corev1.ReadOnlyMany,
		WriteSparseFiles:    true,
		WorkerResources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse("100m"),
				corev1.ResourceMemory: resource.MustParse("256Mi"),
			},
		},
		WorkerImagePullPolicy: corev1.PullIfNotPresent,
		CacheSizeLimit:        resource.MustParse("6Gi"),
		CacheLimitMB:          DefaultCacheLimitMB,
		Verify:                DefaultVerify,
		Compression:           DefaultCompression,
		CheckpointInterval:    metav1.Duration{Duration: DefaultCheckpoint},
		StallTimeout:          metav1.Duration{Duration: DefaultStallTimeout},
	}
}

// Parse applies the ConfigMap's data over Default. A nil ConfigMap gives Default.
func Parse(cm *corev1.ConfigMap) (Config, error) {
	cfg := Default()
	if cm == nil || len(cm.Data) == 0 {
		return cfg, nil
	}
	// Turn each key's YAML value into JSON and decode the assembled object over the
	// defaults, so every field keeps its own type's parsing (durations, quantities).
	doc := map[string]json.RawMessage{}
	keys := make([]string, 0, len(cm.Data))
	for k := range cm.Data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		raw, err := yaml.YAMLToJSON([]byte(cm.Data[k]))
		if err != nil {
			return Default(), errors.Wrapf(err, "parsing key %s", k)
		}
		doc[k] = raw
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return Default(), errors.Wrap(err, "assembling settings")
	}
	if err := yaml.UnmarshalStrict(b, &cfg); err != nil {
		return Default(), errors.Wrap(err, "decoding settings")
	}
	if err := cfg.Validate(); err != nil {
		return Default(), err
	}
	mode, _ := ParseVerify(cfg.Verify) // valid: Validate parsed it
	cfg.Verify = FormatVerify(mode)
	return cfg, nil
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	var problems []string
	if c.MaxConcurrent < 0 {
		problems = append(problems, "maxConcurrent must not be negative")
	}
	if c.PerNode < 0 {
		problems = append(problems, "perNode must not be negative")
	}
	if c.PrepareTimeout.Duration <= 0 {
		problems = append(problems, "prepareTimeout must be positive")
	}
	if c.MoveAttempts < 1 || c.MoveAttempts > MaxMoveAttempts {
		problems = append(problems, fmt.Sprintf("moveAttempts (%d) must be between 1 and %d", c.MoveAttempts, MaxMoveAttempts))
	}
	checkMode := func(key string, m corev1.PersistentVolumeAccessMode) {
		switch m {
		case corev1.ReadOnlyMany, corev1.ReadWriteOnce, corev1.ReadWriteMany, corev1.ReadWriteOncePod:
		default:
			problems = append(problems, fmt.Sprintf("%s: unknown access mode %q", key, m))
		}
	}
	checkMode("backupPVCAccessMode", c.BackupPVCAccessMode)
	for sc, m := range c.BackupPVCAccessModes {
		checkMode("backupPVCAccessModes."+sc, m)
	}
	switch c.WorkerImagePullPolicy {
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		problems = append(problems, fmt.Sprintf("workerImagePullPolicy: unknown policy %q", c.WorkerImagePullPolicy))
	}
	if c.CacheLimitMB < 0 {
		problems = append(problems, "cacheLimitMB must not be negative")
	}
	if !c.CacheSizeLimit.IsZero() && c.CacheLimitMB*1024*1024 > c.CacheSizeLimit.Value() {
		problems = append(problems, fmt.Sprintf("cacheLimitMB (%d) does not fit in cacheSizeLimit (%s)", c.CacheLimitMB, c.CacheSizeLimit.String()))
	}
	if err := ValidCompression(c.Compression); err != nil {
		problems = append(problems, err.Error())
	}
	if d := c.StallTimeout.Duration; d != 0 && d < 30*time.Second {
		problems = append(problems, fmt.Sprintf("stallTimeout (%s) must be 0 (off) or at least 30s", d))
	}
	if d := c.CheckpointInterval.Duration; d < time.Second || d > 45*time.Minute {
		problems = append(problems, fmt.Sprintf("checkpointInterval (%s) must be between 1s and 45m", d))
	}
	if _, err := ParseVerify(c.Verify); err != nil {
		problems = append(problems, "verify: "+err.Error())
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// BackupAccessMode is the backup PVC access mode for a source StorageClass.
func (c Config) BackupAccessMode(storageClass string) corev1.PersistentVolumeAccessMode {
	if m, ok := c.BackupPVCAccessModes[storageClass]; ok {
		return m
	}
	return c.BackupPVCAccessMode
}

// ValidCompression checks a compression setting or annotation value.
func ValidCompression(c string) error {
	if !slices.Contains(datapath.Compressors, c) {
		return errors.Errorf("compression %q: want one of %s", c, strings.Join(datapath.Compressors, ", "))
	}
	return nil
}

// ParseVerify reads a verify mode: "none", "metadata", "full" or "sample:<percent>" with
// a whole percent from 1 to 100 ("sample:10" or "sample:10%"). Surrounding spaces are
// ignored; anything else is an error.
func ParseVerify(s string) (datapath.VerifyMode, error) {
	s = strings.TrimSpace(s)
	switch datapath.VerifyLevel(s) {
	case datapath.VerifyNone, datapath.VerifyMetadata, datapath.VerifyFull:
		return datapath.VerifyMode{Level: datapath.VerifyLevel(s)}, nil
	}
	if rest, ok := strings.CutPrefix(s, string(datapath.VerifySample)+":"); ok {
		n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), "%"))
		if err != nil || n < 1 || n > 100 {
			return datapath.VerifyMode{}, errors.Errorf("%q: the sample must be a whole percent from 1 to 100", s)
		}
		return datapath.VerifyMode{Level: datapath.VerifySample, Percent: n}, nil
	}
	return datapath.VerifyMode{}, errors.Errorf("unknown mode %q (want none, metadata, sample:<percent> or full)", s)
}

// FormatVerify is the text form of m that ParseVerify reads; the zero mode is
// "metadata".
func FormatVerify(m datapath.VerifyMode) string { return m.String() }

// Load reads the settings ConfigMap from namespace. A missing ConfigMap gives Default and
// no error; an invalid one gives Default and an error naming the ConfigMap.
func Load(ctx context.Context, r client.Reader, namespace string) (Config, error) {
	cm := &corev1.ConfigMap{}
	err := r.Get(ctx, client.ObjectKey{Namespace: namespace, Name: naming.MoverConfigMapName}, cm)
	if apierrors.IsNotFound(err) {
		return Default(), nil
	}
	if err != nil {
		return Default(), errors.Wrapf(err, "getting ConfigMap %s/%s", namespace, naming.MoverConfigMapName)
	}
	cfg, err := Parse(cm)
	if err != nil {
		return cfg, errors.Wrapf(err, "mover settings ConfigMap %s/%s is invalid", namespace, naming.MoverConfigMapName)
	}
	return cfg, nil
}
