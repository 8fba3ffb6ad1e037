package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/pkg/errors"
	"github.com/sirupsen/logrus"
	ctrl "sigs.k8s.io/controller-runtime"
)

// What the mover acts on is recorded when it claims a movement, and only the record is
// acted on.
//
// DataUpload and DataDownload have no status subresource: whoever may write one may
// rewrite its spec. Workers may not (expose.WorkerIdentity grants them only get), but
// anyone who may edit DataUploads or DataDownloads in Velero's namespace can, by hand or
// with a stolen token. onNew records, in the one update that claims the movement
// (annClaim), the spec fields the mover acts on outside its own objects: the source
// namespace and BSL of either kind, a backup's VolumeSnapshot, PVC and storage class, a
// restore's snapshot and target PVC. Each later pass compares the spec with the record
// (checkClaim); a difference fails the movement naming it (ReasonSpecChanged). Cleanup and
// the restore's hand-over read the record (claimed), never the spec, so a spec rewritten
// at any moment cannot point them at another namespace's snapshot or claim. Whoever may
// edit the movement may also edit the annotation: the record keeps out what the worker
// and a stale or racing spec could do, not a cluster administrator.

// annClaim, on a DataUpload or DataDownload: the claim it was accepted with, as JSON.
const annClaim = "snapmove.io/claimed-spec"

// ReasonSpecChanged is the Event reason of a movement failed because its spec changed
// after the mover claimed it.
const ReasonSpecChanged = "SpecChanged"

// claim is what the mover acts on outside its own objects; the fields of the other
// kind are empty. Each field's JSON name is its place in the spec.
type claim struct {
	SourceNamespace       string `json:"sourceNamespace"`
	BackupStorageLocation string `json:"backupStorageLocation"`
	SourcePVC             string `json:"sourcePVC,omitempty"`
	VolumeSnapshot        string `json:"csiSnapshot.volumeSnapshot,omitempty"`
	StorageClass          string `json:"csiSnapshot.storageClass,omitempty"`
	SnapshotID            string `json:"snapshotID,omitempty"`
	TargetNamespace       string `json:"targetVolume.namespace,omitempty"`
	TargetPVC             string `json:"targetVolume.pvc,omitempty"`
}

// fields lists c's values by their place in the spec, in a fixed order.
func (c claim) fields() [][2]string {
	return [][2]string{
		{"sourceNamespace", c.SourceNamespace}, {"backupStorageLocation", c.BackupStorageLocation},
		{"sourcePVC", c.SourcePVC}, {"csiSnapshot.volumeSnapshot", c.VolumeSnapshot}, {"csiSnapshot.storageClass", c.StorageClass},
		{"snapshotID", c.SnapshotID}, {"targetVolume.namespace", c.TargetNamespace}, {"targetVolume.pvc", c.TargetPVC},
	}
}

// changes says how now differs from c ("" when it does not): spec.field "old" → "new".
func (c claim) changes(now claim) string {
	var out []string
	was, is := c.fields(), now.fields()
	for i := range was {
		if was[i][1] != is[i][1] {
			out = append(out, fmt.Sprintf("spec.%s %q → %q", was[i][0], was[i][1], is[i][1]))
		}
	}
	return strings.Join(out, ", ")
}

// recordClaim puts m's claim, from its spec, in annClaim (onNew's claim writes it).
func recordClaim(m movement) {
	b, _ := json.Marshal(m.specClaim())
	setAnnotation(m.object(), annClaim, string(b))
}

// recorded reads annClaim: found is false when m carries none.
func recorded(m movement) (c claim, found bool, err error) {
	v, ok := m.object().GetAnnotations()[annClaim]
	if !ok {
		return claim{}, false, nil
	}
	dec := json.NewDecoder(strings.NewReader(v))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return claim{}, false, errors.Wrapf(err, "reading annotation %s", annClaim)
	}
	return c, true, nil
}

// claimed is what cleanup and the hand-over act on: the record. A movement claimed by a
// mover older than the record has none: its spec then (checkClaim records it at the
// next pass). An unreadable record gives the zero claim, with which nothing outside
// Velero's namespace is touched.
func claimed(m movement, log logrus.FieldLogger) claim {
	c, found, err := recorded(m)
	switch {
	case err != nil:
		log.WithError(err).Warn("acting on nothing outside Velero's namespace")
		return claim{}
	case !found:
		return m.specClaim()
	}
	return c
}

// checkClaim compares m's spec with its record, in every pass after the claim. changed
// is the failure message when they differ or the record cannot be read. A movement
// claimed by an older mover (no record) gets one now, from its spec.
func (r machine[M]) checkClaim(ctx context.Context, m M) (changed string, err error) {
	c, found, err := recorded(m)
	switch {
	case err != nil:
		return fmt.Sprintf("%s %s: %v; the mover acts only on what it recorded when it accepted it", m.kind(), key(m), err), nil
	case !found:
		return "", r.write(ctx, m, recordClaim)
	}
	diff := c.changes(m.specClaim())
	if diff == "" {
		return "", nil
	}
	return fmt.Sprintf("the spec of %s %s changed after the mover accepted it (%s): the mover acts only on what it recorded then; "+
		"whoever may edit %ss in namespace %s changed it", m.kind(), key(m), diff, m.kind(), m.object().GetNamespace()), nil
}

// enforceClaim fails m when checkClaim finds its spec changed; done reports that it did.
func (r machine[M]) enforceClaim(ctx context.Context, m M, log logrus.FieldLogger) (done bool, res ctrl.Result, err error) {
	changed, err := r.checkClaim(ctx, m)
	if err != nil || changed == "" {
		return err != nil, ctrl.Result{}, err
	}
	res, err = r.fail(ctx, m, log, ReasonSpecChanged, changed)
	return true, res, err
}
