package outbox

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the relay's Prometheus metrics.
type Metrics struct {
	Published    prometheus.Counter
	BatchSize    prometheus.Histogram
	PublishTime  prometheus.Histogram
	RoundPhase   *prometheus.HistogramVec
	Failures     *prometheus.CounterVec
	Pending      *prometheus.GaugeVec
	OldestAge    *prometheus.GaugeVec
	CommitToSend prometheus.Histogram
	Vacuums      prometheus.Counter
	VacuumTime   prometheus.Histogram
}

// NewMetrics creates the relay's metrics and registers them with reg (none
// when reg is nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shop_relay_published_total", Help: "Events published and confirmed by RabbitMQ.",
		}),
		BatchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "shop_relay_batch_size", Help: "Rows published per round.",
			Buckets: []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000},
		}),
		PublishTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "shop_relay_publish_seconds", Help: "Time from a round's first publish to its commit: publishes, confirms, delete and commit (shop_relay_round_phase_seconds splits it).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		RoundPhase: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "shop_relay_round_phase_seconds",
			Help:    "Time a round spent in each phase: claim (locks and read, one round trip), send (writing the publishes), confirm (waiting for RabbitMQ's confirms), commit (delete and commit, one round trip).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}, []string{"phase"}),
		CommitToSend: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "shop_relay_lag_seconds", Help: "Time from an event's transaction to its confirmed publish.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		Vacuums: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shop_outbox_vacuums_total", Help: "VACUUMs of the outbox run by the relay.",
		}),
		VacuumTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "shop_outbox_vacuum_seconds", Help: "Time a VACUUM of the outbox took.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		Failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shop_relay_failures_total", Help: "Rounds or rows that failed: round (RabbitMQ or Postgres error), nacked, unroutable.",
		}, []string{"reason"}),
		Pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "shop_outbox_pending", Help: "Rows waiting in the outbox.",
		}, []string{"partition"}),
		OldestAge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "shop_outbox_oldest_age_seconds", Help: "Age of the oldest waiting row: the relay's lag.",
		}, []string{"partition"}),
	}
	if reg != nil {
		reg.MustRegister(m.Published, m.BatchSize, m.PublishTime, m.RoundPhase, m.CommitToSend, m.Failures, m.Pending, m.OldestAge, m.Vacuums, m.VacuumTime)
	}
	return m
}

func (m *Metrics) published(rows []row, took time.Duration) {
	if len(rows) == 0 {
		return
	}
	m.Published.Add(float64(len(rows)))
	m.BatchSize.Observe(float64(len(rows)))
	m.PublishTime.Observe(took.Seconds())
	now := time.Now()
	for _, x := range rows {
		m.CommitToSend.Observe(now.Sub(x.created).Seconds())
	}
}

// phase records that a round spent the time since *since in phase, and
// moves *since to now.
func (m *Metrics) phase(phase string, since *time.Time) {
	now := time.Now()
	m.RoundPhase.WithLabelValues(phase).Observe(now.Sub(*since).Seconds())
	*since = now
}

func (m *Metrics) observe(status []PartitionStatus) {
	for _, s := range status {
		p := strconv.Itoa(s.Partition)
		m.Pending.WithLabelValues(p).Set(float64(s.Pending))
		m.OldestAge.WithLabelValues(p).Set(s.OldestAge.Seconds())
	}
}
