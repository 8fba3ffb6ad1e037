package csisnapshot

import (
	"context"
	"fmt"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"github.com/pkg/errors"
	"github.com/sirupsen/logrus"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	"github.com/vmware-tanzu/velero/pkg/label"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

const (
	// DefaultInterval is how often Wait looks at the VolumeSnapshot, at most. It looks
	// first after firstPoll and doubles the wait up to the interval: a CSI driver often
	// has the handle within a fraction of a second, and Velero runs the PVCs of a backup
	// one after another, so each poll saved is saved once per PVC.
	DefaultInterval = time.Second
	firstPoll       = 50 * time.Millisecond
	// DefaultErrorGrace is how long a VolumeSnapshot may report status.error before Wait
	// gives up on it. The snapshot-controller clears errors the driver recovers from, so
	// failing at first sight would turn a retried, transient CSI error into a failed PVC.
	DefaultErrorGrace = 30 * time.Second
)

// Request describes the VolumeSnapshot to take of one PVC for one backup.
type Request struct {
	PVC        *corev1.PersistentVolumeClaim
	BackupName string
	ClassName  string
	Driver     string // CSI driver of the PVC's volume; used in messages
}

// New returns the VolumeSnapshot for req, named like Velero's (generateName velero-<pvc>-)
// in the PVC's namespace, labelled with the PVC's labels and velero.io/backup-name.
func New(req Request) *snapshotv1.VolumeSnapshot {
	labels := make(map[string]string, len(req.PVC.Labels)+1)
	for k, v := range req.PVC.Labels {
		labels[k] = v
	}
	labels[velerov1.BackupNameLabel] = label.GetValidName(req.BackupName)
	pvcName := req.PVC.Name
	className := req.ClassName
	return &snapshotv1.VolumeSnapshot{
		TypeMeta: metav1.TypeMeta{APIVersion: snapshotv1.SchemeGroupVersion.String(), Kind: "VolumeSnapshot"},
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "velero-" + pvcName + "-",
			Namespace:    req.PVC.Namespace,
			Labels:       labels,
		},
		Spec: snapshotv1.VolumeSnapshotSpec{
			Source:                  snapshotv1.VolumeSnapshotSource{PersistentVolumeClaimName: &pvcName},
			VolumeSnapshotClassName: &className,
		},
	}
}

// Snapshotter creates VolumeSnapshots and waits for them. It keeps no state between calls
// and is safe for concurrent use.
type Snapshotter struct {
	Client     client.Client
	Log        logrus.FieldLogger
	Interval   time.Duration // between polls; 0 means DefaultInterval
	ErrorGrace time.Duration // see DefaultErrorGrace; 0 means DefaultErrorGrace
}

// Snapshot creates the VolumeSnapshot for req and waits up to timeout for its snapshot
// handle. It blocks. On any failure after the create it deletes the VolumeSnapshot (and
// the storage snapshot, see Cleanup) before returning the error, so nothing is left behind.
func (s *Snapshotter) Snapshot(ctx context.Context, req Request, timeout time.Duration) (*snapshotv1.VolumeSnapshot, *snapshotv1.VolumeSnapshotContent, error) {
	vs := New(req)
	if err := s.Client.Create(ctx, vs); err != nil {
		return nil, nil, errors.Wrapf(err, "creating VolumeSnapshot for PVC %s/%s", req.PVC.Namespace, req.PVC.Name)
	}
	log := s.Log.WithField("volumeSnapshot", client.ObjectKeyFromObject(vs).String())
	log.Infof("created VolumeSnapshot with class %s", req.ClassName)

	vsc, err := s.Wait(ctx, vs, req.Driver, timeout)
	if err != nil {
		if cerr := s.Cleanup(context.WithoutCancel(ctx), vs); cerr != nil {
			log.WithError(cerr).Warn("cleaning up the failed VolumeSnapshot")
		}
		return nil, nil, err
	}
	log.Infof("VolumeSnapshotContent %s has snapshot handle %s", vsc.Name, *vsc.Status.SnapshotHandle)
	return vs, vsc, nil
}

// Wait polls vs until its bound VolumeSnapshotContent has a snapshot handle and returns
// that content. It returns an error that names the component to check when vs is not
// bound or has no handle within timeout, or when vs reports an error for longer than
// ErrorGrace. Transient API errors are retried until the timeout.
func (s *Snapshotter) Wait(ctx context.Context, vs *snapshotv1.VolumeSnapshot, driver string, timeout time.Duration) (*snapshotv1.VolumeSnapshotContent, error) {
	interval, grace := s.Interval, s.ErrorGrace
	if interval <= 0 {
		interval = DefaultInterval
	}
	if grace <= 0 {
		grace = DefaultErrorGrace
	}
	key := client.ObjectKeyFromObject(vs)
	id := key.String()
	log := s.Log.WithField("volumeSnapshot", id)
	deadline := time.Now().Add(timeout)

	var (
		boundTo    string    // content name once bound
		vsErr      string    // current VolumeSnapshot status.error.message
		vsErrSince time.Time // when vsErr was first seen
		vscErr     string    // last VolumeSnapshotContent status.error.message
		apiErr     error     // last API error
	)
	pause := min(firstPoll, interval)
	timer := time.NewTimer(pause)
	defer timer.Stop()
	for {
		cur := &snapshotv1.VolumeSnapshot{}
		err := s.Client.Get(ctx, key, cur)
		switch {
		case apierrors.IsNotFound(err):
			return nil, errors.Errorf("VolumeSnapshot %s was deleted while waiting for its snapshot handle", id)
		case err != nil:
			apiErr = errors.Wrapf(err, "getting VolumeSnapshot %s", id)
			log.WithError(err).Warn("getting VolumeSnapshot; retrying")
		default:
			apiErr = nil
			vsErr = ""
			if cur.Status != nil && cur.Status.Error != nil && cur.Status.Error.Message != nil {
				vsErr = *cur.Status.Error.Message
			}
			if vsErr == "" {
				vsErrSince = time.Time{}
			} else if vsErrSince.IsZero() {
				vsErrSince = time.Now()
				log.Warnf("VolumeSnapshot reports an error: %s", vsErr)
			}
			if cur.Status != nil && cur.Status.BoundVolumeSnapshotContentName != nil && *cur.Status.BoundVolumeSnapshotContentName != "" {
				boundTo = *cur.Status.BoundVolumeSnapshotContentName
				vsc := &snapshotv1.VolumeSnapshotContent{}
				if err := s.Client.Get(ctx, client.ObjectKey{Name: boundTo}, vsc); err != nil {
					apiErr = errors.Wrapf(err, "getting VolumeSnapshotContent %s of VolumeSnapshot %s", boundTo, id)
					log.WithError(err).Warn("getting VolumeSnapshotContent; retrying")
				} else {
					if vsc.Status != nil && vsc.Status.SnapshotHandle != nil && *vsc.Status.SnapshotHandle != "" {
						return vsc, nil
					}
					if vsc.Status != nil && vsc.Status.Error != nil && vsc.Status.Error.Message != nil {
						vscErr = *vsc.Status.Error.Message
					}
				}
			}
			if vsErr != "" && time.Since(vsErrSince) >= grace {
				return nil, errors.Errorf("VolumeSnapshot %s failed: %s", id, vsErr)
			}
		}

		if !time.Now().Before(deadline) {
			return nil, timeoutError(id, boundTo, driver, timeout, firstNonEmpty(vsErr, vscErr), apiErr)
		}
		select {
		case <-ctx.Done():
			return nil, errors.Wrapf(ctx.Err(), "waiting for VolumeSnapshot %s", id)
		case <-timer.C:
		}
		pause = min(2*pause, interval)
		timer.Reset(pause)
	}
}

func timeoutError(id, boundTo, driver string, timeout time.Duration, lastErr string, apiErr error) error {
	var msg string
	if boundTo == "" {
		msg = fmt.Sprintf("VolumeSnapshot %s was not bound to a VolumeSnapshotContent within %s: is the snapshot-controller running?", id, timeout)
	} else {
		msg = fmt.Sprintf("VolumeSnapshot %s is bound to VolumeSnapshotContent %s, but the csi-snapshotter sidecar of driver %s did not report a snapshot handle within %s: is it running?", id, boundTo, driver, timeout)
	}
	if lastErr != "" {
		msg += " Last error: " + lastErr
	}
	if apiErr != nil {
		msg += " Last API error: " + apiErr.Error()
	}
	return errors.New(msg)
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// Cleanup deletes vs. If it is bound, its VolumeSnapshotContent is first switched to
// deletionPolicy Delete so that the storage snapshot goes too (a class with Retain would
// otherwise leak it). A VolumeSnapshot that is already gone is not an error.
func (s *Snapshotter) Cleanup(ctx context.Context, vs *snapshotv1.VolumeSnapshot) error {
	key := client.ObjectKeyFromObject(vs)
	cur := &snapshotv1.VolumeSnapshot{}
	if err := s.Client.Get(ctx, key, cur); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return errors.Wrapf(err, "getting VolumeSnapshot %s", key)
	}
	if cur.Status != nil && cur.Status.BoundVolumeSnapshotContentName != nil && *cur.Status.BoundVolumeSnapshotContentName != "" {
		name := *cur.Status.BoundVolumeSnapshotContentName
		vsc := &snapshotv1.VolumeSnapshotContent{}
		err := s.Client.Get(ctx, client.ObjectKey{Name: name}, vsc)
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return errors.Wrapf(err, "getting VolumeSnapshotContent %s", name)
		case vsc.Spec.DeletionPolicy != snapshotv1.VolumeSnapshotContentDelete:
			orig := vsc.DeepCopy()
			vsc.Spec.DeletionPolicy = snapshotv1.VolumeSnapshotContentDelete
			if err := s.Client.Patch(ctx, vsc, client.MergeFrom(orig)); err != nil && !apierrors.IsNotFound(err) {
				return errors.Wrapf(err, "setting deletionPolicy Delete on VolumeSnapshotContent %s", name)
			}
		}
	}
	if err := s.Client.Delete(ctx, cur); err != nil && !apierrors.IsNotFound(err) {
		return errors.Wrapf(err, "deleting VolumeSnapshot %s", key)
	}
	s.Log.WithField("volumeSnapshot", key.String()).Info("deleted VolumeSnapshot")
	return nil
}
