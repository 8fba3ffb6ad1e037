package controller

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/pkg/errors"
	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/mover/config"
)

// A worker can stop without failing: its process frozen, its volume hung, its node lost
// (NotReady, the pod stuck Running or Terminating). Velero would wait for its 4-hour item
// operation timeout; the mover notices within the stall timeout and replaces the worker
// (a new attempt, which resumes from the upload's last checkpoint) or fails the movement
// when no attempt is left, naming the cause.

// NodeNotReadyGrace is how long a worker's node may be not Ready before its movement is
// given up there: Kubernetes' own default before it evicts pods from such a node.
const NodeNotReadyGrace = 5 * time.Minute

// progressSeen remembers, per movement, the last bytesDone the controller saw and when it
// changed. It lives in memory: a restarted controller gives every worker a full stall
// timeout again, which only delays the verdict.
type progressSeen struct {
	mu   sync.Mutex
	seen map[types.UID]seenProgress
}

type seenProgress struct {
	bytes int64
	at    time.Time
}

func newProgressSeen() *progressSeen { return &progressSeen{seen: map[types.UID]seenProgress{}} }

// observe records bytes for uid at now and returns since when they are unchanged.
func (p *progressSeen) observe(uid types.UID, bytes int64, now time.Time) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	s, ok := p.seen[uid]
	if !ok || s.bytes != bytes {
		s = seenProgress{bytes: bytes, at: now}
		p.seen[uid] = s
	}
	for k, v := range p.seen { // forget movements not seen for long
		if now.Sub(v.at) > 24*time.Hour {
			delete(p.seen, k)
		}
	}
	return s.at
}

func (p *progressSeen) forget(uid types.UID) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.seen, uid)
}

// checkStalled looks at a running worker: done reports that it decided (retried or
// failed m); otherwise res says when to look again.
func (r machine[M]) checkStalled(ctx context.Context, m M, pod *corev1.Pod, cfg *config.Config, log logrus.FieldLogger) (done bool, res ctrl.Result, err error) {
	if cfg == nil || cfg.StallTimeout.Duration <= 0 {
		return false, ctrl.Result{RequeueAfter: movingRequeue}, nil
	}
	stall := cfg.StallTimeout.Duration
	now := r.Clock.Now()
	if why, err := r.nodeLost(ctx, pod, now); err != nil || why != "" {
		if err != nil {
			return true, ctrl.Result{}, err
		}
		res, err := r.giveUp(ctx, m, pod, cfg, why, log)
		return true, res, err
	}
	since := r.progress.observe(m.object().GetUID(), m.progress().BytesDone, now)
	if started := m.startedAt(); started != nil && since.Before(started.Time) {
		since = started.Time
	}
	if idle := now.Sub(since); idle >= stall {
		p := m.progress()
		why := fmt.Sprintf("no progress for %s (%d of %d bytes moved; stallTimeout %s)", idle.Round(time.Second), p.BytesDone, p.TotalBytes, stall)
		res, err := r.giveUp(ctx, m, pod, cfg, why, log)
		return true, res, err
	}
	return false, ctrl.Result{RequeueAfter: min(movingRequeue, stall/2)}, nil
}

// nodeLost says why pod's node cannot be trusted any more ("" when it can): not Ready
// for NodeNotReadyGrace.
func (r *Reconciler) nodeLost(ctx context.Context, pod *corev1.Pod, now time.Time) (string, error) {
	if pod.Spec.NodeName == "" {
		return "", nil
	}
	node, found, err := r.nodes.get(ctx, r.Reader, pod.Spec.NodeName, now)
	if apierrors.IsForbidden(errors.Cause(err)) {
		// Installed without the right to read nodes (examples/mover.yaml grants it): the
		// stall timeout still notices a lost node's worker, only later.
		r.Log.WithError(err).Debug("cannot read the worker's node")
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if !found { // a deleted node's pods are deleted too: "worker pod disappeared"
		return "", nil
	}
	for _, c := range node.Status.Conditions {
		if c.Type != corev1.NodeReady || c.Status == corev1.ConditionTrue {
			continue
		}
		if d := now.Sub(c.LastTransitionTime.Time); d >= NodeNotReadyGrace {
			return fmt.Sprintf("its node %s has not been Ready for %s (%s)", pod.Spec.NodeName, d.Round(time.Second), oneLine(c.Message)), nil
		}
	}
	return "", nil
}

// nodeCache keeps what the API server said of each worker node for nodeCheckFor: the
// stall check runs on every reconcile of a moving worker (each progress patch, about every
// 10 s per worker), and a node's readiness only matters after NodeNotReadyGrace.
type nodeCache struct {
	mu    sync.Mutex
	nodes map[string]cachedNode
}

type cachedNode struct {
	node  *corev1.Node // nil: not found
	until time.Time
}

const nodeCheckFor = 30 * time.Second

func newNodeCache() *nodeCache { return &nodeCache{nodes: map[string]cachedNode{}} }

func (c *nodeCache) get(ctx context.Context, reader client.Reader, name string, now time.Time) (*corev1.Node, bool, error) {
	c.mu.Lock()
	cached, ok := c.nodes[name]
	c.mu.Unlock()
	if ok && now.Before(cached.until) {
		return cached.node, cached.node != nil, nil
	}
	node := &corev1.Node{}
	found, err := get(ctx, reader, "", name, node)
	if err != nil {
		return nil, false, err
	}
	if !found {
		node = nil
	}
	c.mu.Lock()
	c.nodes[name] = cachedNode{node: node, until: now.Add(nodeCheckFor)}
	c.mu.Unlock()
	return node, found, nil
}

// giveUp replaces a stalled worker by a new attempt, or fails m when none is left.
func (r machine[M]) giveUp(ctx context.Context, m M, pod *corev1.Pod, cfg *config.Config, why string, log logrus.FieldLogger) (ctrl.Result, error) {
	r.progress.forget(m.object().GetUID())
	why = fmt.Sprintf("worker pod %s: %s", key(m), why)
	n, limit := attempt(m), cfg.MoveAttempts
	if n < limit {
		return r.retry(ctx, m, pod, n+1, limit, why, log)
	}
	if err := r.deleteWorker(ctx, pod); err != nil {
		return ctrl.Result{}, err
	}
	return r.fail(ctx, m, log, ReasonWorkerStalled, fmt.Sprintf("%s (attempt %d of %d)", why, n, max(n, limit)))
}
