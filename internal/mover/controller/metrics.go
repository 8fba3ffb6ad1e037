package controller

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/mover/expose"
)

// Metrics are the controller's Prometheus metrics. Label kind is "backup" or "restore".
// A nil *Metrics records nothing.
type Metrics struct {
	bytes       *prometheus.CounterVec
	incremental prometheus.Counter
	duration    *prometheus.HistogramVec
	outcomes    *prometheus.CounterVec
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
	}
	reg.MustRegister(m.bytes, m.incremental, m.duration, m.outcomes)
	return m
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

// inFlight is a collector of snapmove_mover_in_flight{kind,phase}, counted from the
// cache at scrape time, so it is right after a restart too.
type inFlight struct {
	desc      *prometheus.Desc
	reader    client.Reader
	namespace string
}

// RegisterInFlight registers the in-flight gauge, read from r at scrape time.
func RegisterInFlight(reg prometheus.Registerer, r client.Reader, namespace string) error {
	return reg.Register(&inFlight{
		desc: prometheus.NewDesc("snapmove_mover_in_flight",
			"Data movements claimed and not finished, by kind and phase.", []string{"kind", "phase"}, nil),
		reader:    r,
		namespace: namespace,
	})
}

func (c *inFlight) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *inFlight) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	counts, err := countInFlight(ctx, c.reader, c.namespace)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	for _, op := range []expose.Operation{expose.Backup, expose.Restore} {
		for _, phase := range []string{phaseAccepted, phasePrepared, phaseInProgress, phaseCanceling} {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(counts[string(op)+"/"+phase]), string(op), phase)
		}
	}
}
