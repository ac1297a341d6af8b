package consumer

import "github.com/prometheus/client_golang/prometheus"

// Metrics are a consumer process's Prometheus metrics.
type Metrics struct {
	// Handled counts attempts to apply an event by group, event type and
	// outcome: applied, duplicate, failed, unavailable (a dependency was
	// down: the delivery waits and tries again).
	Handled *prometheus.CounterVec
	// Dead counts messages sent to the group's dead queue.
	Dead *prometheus.CounterVec
	// Latency observes how long applying an event took, by group.
	Latency *prometheus.HistogramVec
	// Batch observes how many events each transaction that applied more
	// than one held, by group and outcome: committed, or failed (its events
	// were then applied one at a time).
	Batch *prometheus.HistogramVec
	// EventAge observes, for each event a group applied, the time from
	// the event's occurred_at to its effect committed: the group's end to
	// end lag, outbox, relay and queue included.
	EventAge *prometheus.HistogramVec
}

// NewMetrics returns the metrics, registered with reg unless it is nil.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shop_consumer_messages_total",
			Help: "Attempts to apply an event, by group, event type and outcome (applied, duplicate, failed, unavailable).",
		}, []string{"group", "type", "outcome"}),
		Dead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shop_consumer_dead_total",
			Help: "Messages sent to the group's dead queue, by group.",
		}, []string{"group"}),
		Latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "shop_consumer_apply_seconds",
			Help:    "Time to apply one event (its transaction included), by group.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, []string{"group"}),
		Batch: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "shop_consumer_batch_events",
			Help:    "Events per batch (one transaction; one round trip to Redis for the projections) that held more than one, by group and outcome (committed, failed: applied again one at a time).",
			Buckets: []float64{2, 4, 8, 16, 32, 64},
		}, []string{"group", "outcome"}),
		EventAge: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "shop_consumer_event_age_seconds",
			Help:    "Time from an event's occurred_at to its effect committed by the group (duplicates not counted), by group: the group's lag.",
			Buckets: prometheus.ExponentialBucketsRange(0.001, 600, 20),
		}, []string{"group"}),
	}
	if reg != nil {
		reg.MustRegister(m.Handled, m.Dead, m.Latency, m.Batch, m.EventAge)
	}
	return m
}

func (m *Metrics) handled(group, typ, outcome string) {
	m.Handled.WithLabelValues(group, typ, outcome).Inc()
}
