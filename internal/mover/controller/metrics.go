package controller

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/pkg/errors"
	"github.com/prometheus/client_golang/prometheus"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/mover/expose"
	"github.com/snapmove/snapmove/internal/naming"
)

// Metrics are the controller's Prometheus metrics. Label kind is "backup" or "restore".
// A nil *Metrics records nothing.
type Metrics struct {
	bytes       *prometheus.CounterVec
	incremental prometheus.Counter
	duration    *prometheus.HistogramVec
	outcomes    *prometheus.CounterVec
	failures    *prometheus.CounterVec
	retries     *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them on reg (controller-runtime's
// metrics.Registry in the controller; a fresh registry in tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "snapmove_mover_bytes_total",
			Help: "Bytes of volume data processed by completed data movements.",
		}, []string{"kind"}),
		incremental: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "snapmove_mover_incremental_bytes_total",
			Help: "Bytes completed backups read because their parent snapshot did not cover them.",
		}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "snapmove_mover_duration_seconds",
			Help:    "Time from acceptance to the end of a data movement, by outcome.",
			Buckets: prometheus.ExponentialBuckets(5, 2, 12), // 5s .. ~2.8h
		}, []string{"kind", "phase"}),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "snapmove_mover_outcomes_total",
			Help: "Data movements that ended, by final phase (Completed, Failed, Canceled).",
		}, []string{"kind", "phase"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "snapmove_mover_failures_total",
			Help: "Data movements that failed, by the reason of their Event (VerificationFailed: the backup read back was not what was written).",
		}, []string{"kind", "reason"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "snapmove_mover_retries_total",
			Help: "Worker attempts that failed in a way a new attempt may not repeat, and were retried.",
		}, []string{"kind"}),
	}
	reg.MustRegister(m.bytes, m.incremental, m.duration, m.outcomes, m.failures, m.retries)
	return m
}

func (m *Metrics) failed(op expose.Operation, reason string) {
	if m != nil {
		m.failures.WithLabelValues(string(op), reason).Inc()
	}
}

func (m *Metrics) retried(op expose.Operation) {
	if m != nil {
		m.retries.WithLabelValues(string(op)).Inc()
	}
}

func (m *Metrics) ended(op expose.Operation, phase string, took time.Duration, bytes, incremental int64) {
	if m == nil {
		return
	}
	m.outcomes.WithLabelValues(string(op), phase).Inc()
	if took > 0 {
		m.duration.WithLabelValues(string(op), phase).Observe(took.Seconds())
	}
	if phase == phaseCompleted {
		m.bytes.WithLabelValues(string(op)).Add(float64(bytes))
		if op == expose.Backup {
			m.incremental.Add(float64(incremental))
		}
	}
}

// inFlight is the collector of what is under way, counted from the cache at scrape time,
// so it is right after a restart too:
//   - snapmove_mover_in_flight{kind,phase}: movements claimed and not finished;
//   - snapmove_mover_moving_bytes{kind} and snapmove_mover_moving_total_bytes{kind}: the
//     bytes done so far and the total of the movements InProgress (their status.progress,
//     which the mover copies from each worker's report while it moves);
//   - snapmove_mover_queued{kind} and snapmove_mover_queued_oldest_seconds{kind}: this
//     mover's movements not claimed yet, and the age of the oldest (0 when none);
//   - snapmove_mover_delete_requests_pending and ..._oldest_seconds: snapshot delete
//     requests of deleted backups not answered yet.
type inFlight struct {
	desc, movingBytes, movingTotal, queued, queuedOldest, deletes, deletesOldest *prometheus.Desc

	reader    client.Reader
	namespace string
	now       func() time.Time
}

// RegisterInFlight registers the collector of what is under way, read from r at scrape time.
func RegisterInFlight(reg prometheus.Registerer, r client.Reader, namespace string) error {
	return reg.Register(newInFlight(r, namespace, time.Now))
}

func newInFlight(r client.Reader, namespace string, now func() time.Time) *inFlight {
	kind := []string{"kind"}
	return &inFlight{
		desc: prometheus.NewDesc("snapmove_mover_in_flight",
			"Data movements claimed and not finished, by kind and phase.", []string{"kind", "phase"}, nil),
		movingBytes: prometheus.NewDesc("snapmove_mover_moving_bytes",
			"Bytes done so far by the data movements InProgress.", kind, nil),
		movingTotal: prometheus.NewDesc("snapmove_mover_moving_total_bytes",
			"Total bytes of the data movements InProgress, as far as known.", kind, nil),
		queued: prometheus.NewDesc("snapmove_mover_queued",
			"Data movements of this mover not claimed yet.", kind, nil),
		queuedOldest: prometheus.NewDesc("snapmove_mover_queued_oldest_seconds",
			"Age of the oldest data movement not claimed yet (0 when none).", kind, nil),
		deletes: prometheus.NewDesc("snapmove_mover_delete_requests_pending",
			"Snapshot delete requests of deleted backups not answered yet.", nil, nil),
		deletesOldest: prometheus.NewDesc("snapmove_mover_delete_requests_oldest_seconds",
			"Age of the oldest snapshot delete request not answered yet (0 when none).", nil, nil),
		reader:    r,
		namespace: namespace,
		now:       now,
	}
}

func (c *inFlight) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.desc, c.movingBytes, c.movingTotal, c.queued, c.queuedOldest, c.deletes, c.deletesOldest} {
		ch <- d
	}
}

func (c *inFlight) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if states, err := listMovements(ctx, c.reader, c.namespace); err != nil {
		ch <- prometheus.NewInvalidMetric(c.desc, err)
	} else {
		c.collectMovements(states, ch)
	}
	if err := c.collectDeletes(ctx, ch); err != nil {
		ch <- prometheus.NewInvalidMetric(c.deletes, err)
	}
}

// movementState is what the collector needs of one of this mover's DataUploads or
// DataDownloads (executedHere).
type movementState struct {
	phase       string
	created     time.Time
	done, total int64
}

// listMovements reads this mover's movements from the cache, one list of each kind.
func listMovements(ctx context.Context, r client.Reader, namespace string) (map[expose.Operation][]movementState, error) {
	states := map[expose.Operation][]movementState{}
	dus := &velerov2alpha1.DataUploadList{}
	if err := r.List(ctx, dus, client.InNamespace(namespace)); err != nil {
		return nil, errors.Wrapf(err, "listing DataUploads in %s", namespace)
	}
	for i := range dus.Items {
		du := &dus.Items[i]
		if executedHere(du, du.Spec.DataMover) {
			states[expose.Backup] = append(states[expose.Backup], movementState{string(du.Status.Phase), du.CreationTimestamp.Time, du.Status.Progress.BytesDone, du.Status.Progress.TotalBytes})
		}
	}
	dds := &velerov2alpha1.DataDownloadList{}
	if err := r.List(ctx, dds, client.InNamespace(namespace)); err != nil {
		return nil, errors.Wrapf(err, "listing DataDownloads in %s", namespace)
	}
	for i := range dds.Items {
		dd := &dds.Items[i]
		if executedHere(dd, dd.Spec.DataMover) {
			states[expose.Restore] = append(states[expose.Restore], movementState{string(dd.Status.Phase), dd.CreationTimestamp.Time, dd.Status.Progress.BytesDone, dd.Status.Progress.TotalBytes})
		}
	}
	return states, nil
}

func (c *inFlight) collectMovements(states map[expose.Operation][]movementState, ch chan<- prometheus.Metric) {
	now := c.now()
	for _, op := range []expose.Operation{expose.Backup, expose.Restore} {
		kind := string(op)
		var done, total, queued int64
		var oldest time.Duration
		byPhase := map[string]int{}
		for _, st := range states[op] {
			switch {
			case isActive(st.phase):
				byPhase[st.phase]++
				if st.phase == phaseInProgress {
					done += st.done
					total += st.total
				}
			case isNew(st.phase):
				queued++
				oldest = max(oldest, now.Sub(st.created))
			}
		}
		for _, phase := range []string{phaseAccepted, phasePrepared, phaseInProgress, phaseCanceling} {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(byPhase[phase]), kind, phase)
		}
		ch <- prometheus.MustNewConstMetric(c.movingBytes, prometheus.GaugeValue, float64(done), kind)
		ch <- prometheus.MustNewConstMetric(c.movingTotal, prometheus.GaugeValue, float64(total), kind)
		ch <- prometheus.MustNewConstMetric(c.queued, prometheus.GaugeValue, float64(queued), kind)
		ch <- prometheus.MustNewConstMetric(c.queuedOldest, prometheus.GaugeValue, oldest.Seconds(), kind)
	}
}

func (c *inFlight) collectDeletes(ctx context.Context, ch chan<- prometheus.Metric) error {
	cms := &corev1.ConfigMapList{}
	if err := c.reader.List(ctx, cms, client.InNamespace(c.namespace), client.MatchingLabels{naming.DeleteRequestLabel: "true"}); err != nil {
		return errors.Wrapf(err, "listing snapshot delete requests in %s", c.namespace)
	}
	var pending int
	var oldest time.Duration
	for i := range cms.Items {
		cm := &cms.Items[i]
		if cm.Data[naming.DeleteRequestPhaseKey] == "" && cm.DeletionTimestamp == nil {
			pending++
			oldest = max(oldest, c.now().Sub(cm.CreationTimestamp.Time))
		}
	}
	ch <- prometheus.MustNewConstMetric(c.deletes, prometheus.GaugeValue, float64(pending))
	ch <- prometheus.MustNewConstMetric(c.deletesOldest, prometheus.GaugeValue, oldest.Seconds())
	return nil
}

// MetricNames are the names of every metric the mover exports, for the tests that keep
// dashboards and alert rules (examples/) in step with the code.
func MetricNames() []string {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	descs := make(chan *prometheus.Desc, 64)
	go func() {
		for _, c := range []prometheus.Collector{m.bytes, m.incremental, m.duration, m.outcomes, m.failures, m.retries, newInFlight(nil, "", time.Now)} {
			c.Describe(descs)
		}
		close(descs)
	}()
	var names []string
	for d := range descs {
		// Desc has no accessor; its String() is `Desc{fqName: "NAME", ...}`.
		if _, rest, ok := strings.Cut(d.String(), `fqName: "`); ok {
			name, _, _ := strings.Cut(rest, `"`)
			names = append(names, name)
		}
	}
	return names
}

// ReadyCheck is the mover's readiness probe: ready once its cache has synced (what it
// reconciles from is there) and the API server answers a one-item list of DataUploads in
// Velero's namespace with the mover's rights (reader reads from the API server, not the
// cache). A mover that cannot reach the API server, or has lost its rights, is not ready.
func ReadyCheck(synced func(context.Context) bool, reader client.Reader, namespace string) func(*http.Request) error {
	return func(req *http.Request) error {
		ctx, cancel := context.WithTimeout(req.Context(), 5*time.Second)
		defer cancel()
		if !synced(ctx) {
			return errors.New("the cache of Velero's namespace has not synced")
		}
		if err := reader.List(ctx, &velerov2alpha1.DataUploadList{}, client.InNamespace(namespace), client.Limit(1)); err != nil {
			return errors.Wrapf(err, "listing DataUploads in %s", namespace)
		}
		return nil
	}
}
