package controller

import (
	"context"
	"sync"
	"time"

	"github.com/pkg/errors"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/snapmove/snapmove/internal/mover/expose"
	"github.com/snapmove/snapmove/internal/naming"
)

// admission counts running data movements for the concurrency limits. The counts come
// from the (cached) DataUploads and DataDownloads; a movement this process just claimed
// or started may not be in the cache yet, so it is remembered for a short while
// ("reserved") and counted until the cache shows it.
type admission struct {
	gate     sync.Mutex // held across check-then-write
	mu       sync.Mutex // guards reserved
	reserved map[types.UID]reservation
}

type reservation struct {
	node string // "" for a claim (Accepted), the node for a start (InProgress)
	at   time.Time
}

// reservationTTL is far longer than any cache lag.
const reservationTTL = time.Minute

func newAdmission() *admission { return &admission{reserved: map[types.UID]reservation{}} }

// activity is one of our movements as the cache sees it.
type activity struct {
	op    expose.Operation
	uid   types.UID
	phase string
	node  string
	// finishing: the worker has ended and its result is recorded; what is left (cleanup,
	// handing the restored volume over) uses no node I/O, so it holds no perNode slot.
	finishing bool
}

// executedHere: a movement of this mover, or one of Velero's built-in mover that this
// mover claimed (serveVeleroDataMover).
func executedHere(obj client.Object, dataMover string) bool {
	return dataMover == naming.DataMover || (isBuiltInMover(dataMover) && controllerutil.ContainsFinalizer(obj, naming.MoverFinalizer))
}

func listActivities(ctx context.Context, c client.Reader, namespace string) ([]activity, error) {
	var out []activity
	dus := &velerov2alpha1.DataUploadList{}
	if err := c.List(ctx, dus, client.InNamespace(namespace)); err != nil {
		return nil, errors.Wrapf(err, "listing DataUploads in %s", namespace)
	}
	for i := range dus.Items {
		du := &dus.Items[i]
		if executedHere(du, du.Spec.DataMover) {
			out = append(out, activity{expose.Backup, du.UID, string(du.Status.Phase), du.Status.Node, resultRecorded(du)})
		}
	}
	dds := &velerov2alpha1.DataDownloadList{}
	if err := c.List(ctx, dds, client.InNamespace(namespace)); err != nil {
		return nil, errors.Wrapf(err, "listing DataDownloads in %s", namespace)
	}
	for i := range dds.Items {
		dd := &dds.Items[i]
		if executedHere(dd, dd.Spec.DataMover) {
			out = append(out, activity{expose.Restore, dd.UID, string(dd.Status.Phase), dd.Status.Node, resultRecorded(dd)})
		}
	}
	return out, nil
}

// count returns how many movements are active (Accepted..Canceling) and, when node is not
// empty, how many are moving (InProgress or Canceling) on node. self is not counted.
// It also drops reservations the cache has caught up with.
func (a *admission) count(acts []activity, self types.UID, node string, now time.Time) (active, onNode int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	seen := map[types.UID]activity{}
	for _, act := range acts {
		seen[act.uid] = act
		if act.uid == self {
			continue
		}
		if isActive(act.phase) {
			active++
		}
		if node != "" && act.node == node && (act.phase == phaseInProgress || act.phase == phaseCanceling) && !act.finishing {
			onNode++
		}
	}
	for uid, r := range a.reserved {
		act, known := seen[uid]
		switch {
		case now.Sub(r.at) > reservationTTL,
			known && naming.MovementEnded(act.phase),
			known && r.node == "" && isActive(act.phase),
			known && r.node != "" && (act.phase == phaseInProgress || act.phase == phaseCanceling):
			delete(a.reserved, uid) // the cache shows it (or it is long gone)
			continue
		}
		if uid == self {
			continue
		}
		if r.node == "" && !(known && isActive(act.phase)) {
			active++
		}
		if r.node != "" && r.node == node {
			onNode++
		}
	}
	return active, onNode
}

func (a *admission) reserve(uid types.UID, node string, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.reserved[uid] = reservation{node: node, at: now}
}

// lock serializes the check-then-claim of New and Prepared movements, so two reconciles
// cannot both take the last slot.
func (a *admission) lock() func() {
	a.gate.Lock()
	return a.gate.Unlock
}

// resultRecorded: the worker's result is on obj (annResultRecorded), only finishing is left.
func resultRecorded(obj client.Object) bool {
	return obj.GetAnnotations()[annResultRecorded] == "true"
}
