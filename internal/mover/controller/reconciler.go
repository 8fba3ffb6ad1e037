package controller

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	crhandler "sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/snapmove/snapmove/internal/mover/config"
	"github.com/snapmove/snapmove/internal/mover/expose"
	"github.com/snapmove/snapmove/internal/mover/velerosrv"
	"github.com/snapmove/snapmove/internal/naming"
)

// This file is the wiring: the shared Reconciler, its constructor, the controllers'
// registration, and reconcile, which picks the phase. The phases are in phases.go, the
// status writes in status.go, the repository gate in repositories.go.

// Options are the controller's command-line settings that reach the worker pods.
type Options struct {
	// Namespace is Velero's namespace: where DataUploads, DataDownloads, BSLs, our PVCs,
	// VolumeSnapshots and worker pods live.
	Namespace   string
	WorkerImage string
	// WorkerServiceAccount, when set, is the account of every worker pod, with whatever
	// rights the install gave it. Empty (the default): each worker pod gets its own account
	// and Role (expose.WorkerIdentity), made before the pod and deleted with it.
	WorkerServiceAccount string
	// DefaultCredentials finds the credentials of BSLs without spec.credential
	// (velerosrv.Credentials; nil: none). What it resolves for a movement's BSL is passed
	// to its worker as --default-credentials-secret (NAME/KEY or none: the worker never
	// discovers, and may not list Deployments) and is readable by the worker's Role.
	DefaultCredentials DefaultCredentials
	// VeleroServer returns how Velero's server runs (velerosrv.Cache.Get): its workload
	// identity, pod label and pull secrets go to the workers (workerIdentity). nil:
	// nothing is copied.
	VeleroServer func(ctx context.Context) (velerosrv.Server, error)
	// Identity goes to status.acceptedByNode (the controller's node or pod name).
	Identity string
}

// DefaultCredentials finds the credentials of a BackupStorageLocation without
// spec.credential (velerosrv.Credentials implements it).
type DefaultCredentials interface {
	// DefaultFor returns the secret key in Velero's namespace, or nil, nil for none
	// (ambient credentials). It may block on API calls; API errors are returned as such.
	DefaultFor(ctx context.Context, bsl *velerov1.BackupStorageLocation) (*corev1.SecretKeySelector, error)
}

// Reconciler holds what the DataUpload, DataDownload and delete-request reconcilers
// share. Nothing in it is needed for correctness across restarts: every decision is
// derived from the cluster (the object, its worker pod, PVC and snapshots).
type Reconciler struct {
	// Client reads from the manager's cache (Velero's namespace) and writes to the API.
	Client client.Client
	// Reader reads from the API server: objects outside Velero's namespace, cluster-scoped
	// objects, Events, and fresh copies after a write conflict.
	Reader   client.Reader
	Recorder record.EventRecorder
	Clock    clock.PassiveClock
	Log      logrus.FieldLogger
	Repos    Repositories
	Metrics  *Metrics
	Options  Options
	// Settings returns the mover settings; nil means config.Load from Client.
	Settings func(ctx context.Context) (config.Config, error)

	admission *admission
	verifier  *verifier
	lastValid *lastSettings
	nodeAgent *nodeAgentCache
	progress  *progressSeen
	nodes     *nodeCache
	// namesChecked holds the UIDs of movements whose names checkNames found free or
	// theirs, until they end; losing it (restart) only costs one more check.
	namesChecked *sync.Map
	// azureWarning logs once per process that per-movement accounts cannot match an
	// Azure federated identity credential (warnAzurePerMovement).
	azureWarning *sync.Once
}

// lastSettings remembers the last valid mover settings (Reconciler.settings).
type lastSettings struct {
	mu  sync.Mutex
	cfg *config.Config
}

// NewReconciler fills the unexported parts of r.
func NewReconciler(r Reconciler) *Reconciler {
	r.admission = newAdmission()
	r.verifier = newVerifier()
	r.lastValid = &lastSettings{}
	r.nodeAgent = &nodeAgentCache{}
	r.progress = newProgressSeen()
	r.nodes = newNodeCache()
	r.namesChecked = &sync.Map{}
	r.azureWarning = &sync.Once{}
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	if r.Settings == nil {
		c, ns := r.Client, r.Options.Namespace
		r.Settings = func(ctx context.Context) (config.Config, error) { return config.Load(ctx, c, ns) }
	}
	return &r
}

// maxConcurrentReconciles per controller: repository checks block for a while.
const maxConcurrentReconciles = 4

// ours keeps the DataUploads and DataDownloads this mover executes, or may serve or
// report as unserved (Velero's built-in mover, builtin.go). Reconcile checks again (an
// object can be edited between event and reconcile).
func ours(obj client.Object) bool {
	switch o := obj.(type) {
	case *velerov2alpha1.DataUpload:
		return o.Spec.DataMover == naming.DataMover || isBuiltInMover(o.Spec.DataMover)
	case *velerov2alpha1.DataDownload:
		return o.Spec.DataMover == naming.DataMover || isBuiltInMover(o.Spec.DataMover)
	}
	return false
}

func isDeleteRequest(obj client.Object) bool {
	return obj.GetLabels()[naming.DeleteRequestLabel] == "true"
}

// SetupWithManager registers the DataUpload, DataDownload and delete-request controllers
// and the in-flight gauge.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	// DataUploads and DataDownloads: each also watches both kinds, for a freed slot.
	for _, c := range []struct {
		name    string
		obj     client.Object
		waiting crhandler.MapFunc
		rec     reconcile.Reconciler
	}{
		{"snapmove-dataupload", &velerov2alpha1.DataUpload{}, r.waitingUploads, &DataUploadReconciler{r}},
		{"snapmove-datadownload", &velerov2alpha1.DataDownload{}, r.waitingDownloads, &DataDownloadReconciler{r}},
	} {
		if err := ctrl.NewControllerManagedBy(mgr).
			Named(c.name).
			For(c.obj, builder.WithPredicates(predicate.NewPredicateFuncs(ours))).
			Owns(&corev1.Pod{}).
			Owns(&corev1.PersistentVolumeClaim{}).
			Owns(&corev1.ConfigMap{}). // the worker's progress report
			Watches(&velerov2alpha1.DataUpload{}, crhandler.EnqueueRequestsFromMapFunc(c.waiting), builder.WithPredicates(slotFreed())).
			Watches(&velerov2alpha1.DataDownload{}, crhandler.EnqueueRequestsFromMapFunc(c.waiting), builder.WithPredicates(slotFreed())).
			WithOptions(controller.Options{MaxConcurrentReconciles: maxConcurrentReconciles}).
			Complete(c.rec); err != nil {
			return err
		}
	}
	if err := ctrl.NewControllerManagedBy(mgr).
		Named("snapmove-snapshot-delete").
		For(&corev1.ConfigMap{}, builder.WithPredicates(predicate.NewPredicateFuncs(isDeleteRequest))).
		WithOptions(controller.Options{MaxConcurrentReconciles: 2}).
		Complete(r.deleteRequests()); err != nil {
		return err
	}
	return RegisterInFlight(metrics.Registry, r.Client, r.Options.Namespace)
}

// Requeue intervals.
const (
	// nextPhase: a phase moved on and the next one can start at once. A fixed short
	// delay rather than the rate limiter's backoff, which is for errors.
	nextPhase     = 10 * time.Millisecond
	queuedRequeue = 5 * time.Second  // waiting for a concurrency slot
	waitRequeue   = 10 * time.Second // waiting for a snapshot, PVC or pod
	// In the first fastWaitWindow after it was claimed, a movement waiting for what is not
	// watched (snapshots and PVCs outside Velero's namespace, which the mover does not
	// cache) looks again every fastWaitRequeue: most waits there take a second or two,
	// and a 10 s poll made them the largest part of a small volume's fixed cost.
	fastWaitRequeue = time.Second
	fastWaitWindow  = 30 * time.Second
	finishRequeue   = 2 * time.Second  // waiting for the exposed objects to go
	movingRequeue   = time.Minute      // safety net while the worker runs (pod events drive us)
	invalidRequeue  = 30 * time.Second // settings ConfigMap invalid
)

// finishingMessage is status.message of a movement whose worker succeeded and whose result
// is recorded (annResultRecorded): what is left is cleanup and, for a restore, the
// hand-over.
const finishingMessage = "data moved; finishing"

// Event reasons.
const (
	ReasonRepositoryError   = "RepositoryError"
	ReasonPrepareFailed     = "PrepareFailed"
	ReasonPrepareTimeout    = "PrepareTimeout"
	ReasonWorkerFailed      = "WorkerFailed"
	ReasonWorkerRetried     = "WorkerRetried"
	ReasonWorkerDisappeared = "WorkerDisappeared"
	ReasonInvalidResult     = "InvalidWorkerResult"
	ReasonHandOverFailed    = "HandOverFailed"
	ReasonCanceled          = "Canceled"
	ReasonCompleted         = "Completed"
	ReasonSettingsInvalid   = "SettingsInvalid"
	ReasonWorkerStalled     = "WorkerStalled"
	// ReasonVerificationFailed: the backup read back was not what was written
	// (datapath.ExitVerificationFailed); counted in snapmove_mover_failures_total.
	ReasonVerificationFailed = "VerificationFailed"
	// ReasonNameTaken: an object of the name the mover gives its own for the movement
	// exists and was not made for it (expose.NotMadeForError).
	ReasonNameTaken = "NameTaken"
)

// handler is the kind-specific part of a movement's phases; M is the kind's movement.
// The shared phase machine (machine) calls it and never looks at the kind itself.
type handler[M movement] interface {
	// expose makes sure everything the worker pod needs exists, the pod included. A
	// non-empty wait says what is not ready yet; a *datapath.PermanentError fails the
	// movement.
	expose(ctx context.Context, m M, cfg config.Config, log logrus.FieldLogger) (wait string, err error)
	// record copies a successful worker's result into m's status.
	record(m M, res expose.Result)
	// finish runs once the result is recorded: cleanup, and for a restore handing the
	// volume to the user's PVC. A non-empty wait means "not done yet".
	finish(ctx context.Context, m M, log logrus.FieldLogger) (wait string, err error)
	// cleanup deletes (requests deletion of) everything created for m. Idempotent. A
	// cleanupPending error says that part of it must wait (the rest is done): m may end,
	// keeping our finalizer until a later pass finishes.
	cleanup(ctx context.Context, m M, log logrus.FieldLogger) error
	// doneMessage is status.message of a Completed movement ("" for none).
	doneMessage(m M) string
	// lostWorker is the failure message when the worker pod vanished while moving data:
	// what it means for the user's data.
	lostWorker(m M) string
	// pvcLabel names the worker's PVC in messages ("backup PVC", "restore PVC").
	pvcLabel() string
}

// machine is the phase machine of one kind of movement: the shared phases, with the
// kind's handler.
type machine[M movement] struct {
	*Reconciler
	h handler[M]
}

func (r *Reconciler) logFor(m movement) logrus.FieldLogger {
	return r.Log.WithFields(logrus.Fields{m.logKey(): m.object().GetName(), "phase": m.phase()})
}

// reconcile is the shared phase machine: filter, finalizer/deletion, then one function
// per phase.
func (r machine[M]) reconcile(ctx context.Context, m M) (ctrl.Result, error) {
	log := r.logFor(m)
	obj := m.object()
	switch {
	case m.dataMover() == naming.DataMover:
	case !isBuiltInMover(m.dataMover()): // also filtered by the predicate
		return ctrl.Result{}, nil
	case controllerutil.ContainsFinalizer(obj, naming.MoverFinalizer):
		// Velero's built-in mover, claimed by this mover (serveVeleroDataMover): ours
		// to finish, whatever the setting says now.
	default:
		if serve, res, err := r.servesBuiltIn(ctx, m, log); !serve || err != nil {
			return res, err
		}
	}
	if naming.MovementEnded(m.phase()) {
		if !controllerutil.ContainsFinalizer(obj, naming.MoverFinalizer) {
			return ctrl.Result{}, nil
		}
		// Someone else ended it, we crashed between cleanup and finalizer removal, or it
		// ended with its cleanup pending.
		if pending, err := r.cleanup(ctx, m, log); err != nil || pending {
			return ctrl.Result{RequeueAfter: finishRequeue}, err
		}
		return ctrl.Result{}, r.removeFinalizer(ctx, m)
	}
	if obj.GetDeletionTimestamp() != nil {
		if !controllerutil.ContainsFinalizer(obj, naming.MoverFinalizer) {
			return ctrl.Result{}, nil // never claimed: nothing of ours exists
		}
		return r.cancel(ctx, m, log, fmt.Sprintf("%s was deleted while %s", m.kind(), phaseOrNew(m.phase())))
	}

	if !isNew(m.phase()) {
		if done, res, err := r.enforceClaim(ctx, m, log); done {
			return res, err
		}
	}

	cfg, cfgErr := r.settings(ctx)
	switch m.phase() {
	case "", phaseNew:
		return r.onNew(ctx, m, cfg, cfgErr, log)
	case phaseAccepted, phasePrepared:
		switch {
		case cfgErr == nil:
		case cfg != nil:
			log.WithError(cfgErr).Warn("mover settings are invalid: keeping the last valid settings")
		case !m.cancelRequested():
			msg := "waiting: " + cfgErr.Error() + "; no valid settings were seen since the mover started"
			return ctrl.Result{RequeueAfter: invalidRequeue}, r.setMessage(ctx, m, msg)
		default: // canceling needs no settings
			d := config.Default()
			cfg = &d
		}
		if m.phase() == phaseAccepted {
			return r.onAccepted(ctx, m, *cfg, log)
		}
		return r.onPrepared(ctx, m, *cfg, log)
	case phaseInProgress:
		return r.onInProgress(ctx, m, cfg, log)
	case phaseCanceling:
		return r.cancel(ctx, m, log, "canceled while moving data")
	default:
		log.Warnf("unknown phase %q; leaving the object alone", m.phase())
		return ctrl.Result{}, nil
	}
}

// settings returns the mover settings. When they cannot be read or are invalid, err says
// why and cfg is the last valid settings this process saw (nil: none): objects already
// claimed keep going with those, never with defaults that nobody asked for.
func (r *Reconciler) settings(ctx context.Context) (cfg *config.Config, err error) {
	c, err := r.Settings(ctx)
	r.lastValid.mu.Lock()
	defer r.lastValid.mu.Unlock()
	if err == nil {
		r.lastValid.cfg = &c
		return &c, nil
	}
	return r.lastValid.cfg, err
}
