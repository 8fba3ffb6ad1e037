package controller

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/naming"
)

// Velero's built-in data mover: DataUploads and DataDownloads whose spec.datamover is ""
// or "velero" are executed by Velero's node-agent DaemonSet (pkg/datamover
// IsBuiltInUploader). The mover never races node-agent for them. Where no node-agent runs,
// such an object would wait silently until Velero's item operation timeout (4 hours); the
// mover then either serves it (the serveVeleroDataMover setting: the repository layout,
// sources and snapshots are Velero's own, so the result is what node-agent would have
// written) or, after unservedAfter, says on the object why nothing moves it and what to
// change.

// NodeAgentDaemonSet is the name of Velero's node-agent DaemonSet in Velero's namespace.
const NodeAgentDaemonSet = "node-agent"

// unservedAfter is how long a New object of Velero's built-in mover may wait before the
// mover says that nothing serves it; nodeAgentCheckFor how long a look at the DaemonSet
// is trusted.
const (
	unservedAfter     = time.Minute
	unservedRecheck   = 5 * time.Minute
	nodeAgentCheckFor = 30 * time.Second
)

// ReasonNoDataMover is the Event reason on an object of Velero's built-in mover that
// nothing serves.
const ReasonNoDataMover = "NoDataMover"

func isBuiltInMover(dataMover string) bool {
	return dataMover == "" || dataMover == naming.VeleroDataMover
}

// nodeAgentCache remembers whether node-agent runs, for nodeAgentCheckFor.
type nodeAgentCache struct {
	mu      sync.Mutex
	at      time.Time
	running bool
}

// nodeAgentRuns reports whether Velero's node-agent DaemonSet exists in Velero's namespace
// (with pods scheduled or not: if it exists, it is the one to serve the built-in mover).
func (r *Reconciler) nodeAgentRuns(ctx context.Context) (bool, error) {
	c := r.nodeAgent
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.at.IsZero() && r.Clock.Since(c.at) < nodeAgentCheckFor {
		return c.running, nil
	}
	err := r.Reader.Get(ctx, client.ObjectKey{Namespace: r.Options.Namespace, Name: NodeAgentDaemonSet}, &appsv1.DaemonSet{})
	switch {
	case err == nil:
		c.running = true
	case apierrors.IsNotFound(err):
		c.running = false
	default:
		return false, err
	}
	c.at = r.Clock.Now()
	return c.running, nil
}

// servesBuiltIn decides for an object of Velero's built-in mover that this mover has not
// claimed: serve it (true), or leave it, with a wait for the notice when nothing else
// serves it either.
func (r *Reconciler) servesBuiltIn(ctx context.Context, m movement, log logrus.FieldLogger) (serve bool, res ctrl.Result, err error) {
	running, err := r.nodeAgentRuns(ctx)
	if err != nil {
		return false, ctrl.Result{}, err
	}
	if running || !isNew(m.phase()) || m.object().GetDeletionTimestamp() != nil {
		return false, ctrl.Result{}, nil // node-agent's, or already someone's
	}
	if cfg, _ := r.settings(ctx); cfg != nil && cfg.ServeVeleroDataMover {
		return true, ctrl.Result{}, nil
	}
	if left := unservedAfter - r.Clock.Since(m.object().GetCreationTimestamp().Time); left > 0 {
		return false, ctrl.Result{RequeueAfter: left}, nil
	}
	msg := fmt.Sprintf("no data mover serves this %s: spec.datamover %q is Velero's built-in data mover, which runs in Velero's node-agent, "+
		"and no DaemonSet %s/%s exists. Deploy node-agent (helm chart: deployNodeAgent: true), or have snapmove move the data: "+
		"`velero backup create ... --data-mover snapmove`, a volume policy (examples/resource-policy.yaml), "+
		"or the snapmove mover setting serveVeleroDataMover: \"true\"",
		m.kind(), m.dataMover(), r.Options.Namespace, NodeAgentDaemonSet)
	if m.message() != msg {
		r.event(m, corev1.EventTypeWarning, ReasonNoDataMover, msg)
		log.Warn(msg)
	}
	return false, ctrl.Result{RequeueAfter: unservedRecheck}, r.setMessage(ctx, m, msg)
}
