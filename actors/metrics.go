package actors

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the System's Prometheus instruments. Counters the tests and
// Stats read are mirrored in atomics (reading a Prometheus counter back is
// not its purpose).
type metrics struct {
	framesIn     prometheus.Counter
	applied      prometheus.Counter
	retried      prometheus.Counter
	rejected     *prometheus.CounterVec
	rejectedBy   map[string]prometheus.Counter
	statsIn      prometheus.Counter
	ticks        prometheus.Counter
	events       prometheus.Counter
	activeTwins  *prometheus.GaugeVec
	activeSensor prometheus.Gauge
	activeGw     prometheus.Gauge
	activations  prometheus.Counter
	passivations prometheus.Counter
	restarts     prometheus.Counter
	applyLatency prometheus.Histogram
	pubLatency   prometheus.Histogram
	persistLat   prometheus.Histogram
	publishCalls prometheus.Counter
	callLatency  prometheus.Histogram
	batchEvents  prometheus.Histogram
	publishErrs  prometheus.Counter
	persistErrs  prometheus.Counter

	nApplied, nRejected, nRetried, nTicks, nActivations, nPassivations, nRestarts atomic.Uint64
	// nRecoveryWaits counts recoveries postponed after MaxApplyAttempts.
	nRecoveryWaits atomic.Uint64
	nActive        atomic.Int64
}

// latencyBuckets span 100 µs to 10 s.
var latencyBuckets = prometheus.ExponentialBuckets(0.0001, 2.5, 12)

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns = "legiond"
	m := &metrics{
		framesIn: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "frames_in_total",
			Help: "Uplink frames handed to the twin actors (redeliveries included)."}),
		applied: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "frames_applied_total",
			Help: "Uplink frames whose effects are durable (events published, state persisted); duplicates included."}),
		retried: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "frames_retried_total",
			Help: "Uplink frames handed back for a later retry (publish or persist failed, shutdown)."}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "frames_rejected_total",
			Help: "Uplink frames rejected for good (dead-lettered), by reason."}, []string{"reason"}),
		statsIn: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "gateway_stats_in_total",
			Help: "Gateway stats records handed to the gateway twins."}),
		ticks: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "twin_ticks_total",
			Help: "Deadline ticks applied by twins."}),
		events: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "twin_events_published_total",
			Help: "Events published to twin.events (republications after a retry included)."}),
		activeTwins: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "active_twins",
			Help: "Twin actors in memory, by kind."}, []string{"kind"}),
		activations: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "twin_activations_total",
			Help: "Twin actors started (state loaded from the store)."}),
		passivations: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "twin_passivations_total",
			Help: "Twin actors stopped after their idle period."}),
		restarts: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "twin_restarts_total",
			Help: "Twin actors restarted by their supervisor after a panic."}),
		applyLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "apply_latency_seconds",
			Help: "From handing a frame to the actors until its effects are durable (or it is rejected).", Buckets: latencyBuckets}),
		pubLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "publish_latency_seconds",
			Help: "From a twin submitting events until twin.events acknowledged them.", Buckets: latencyBuckets}),
		persistLat: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "persist_latency_seconds",
			Help: "From a twin submitting its state until the store made it durable.", Buckets: latencyBuckets}),
		publishCalls: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "publish_calls_total",
			Help: "Batched Publish calls to twin.events."}),
		callLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "publish_call_seconds",
			Help: "Duration of one batched Publish call.", Buckets: latencyBuckets}),
		batchEvents: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "publish_batch_events",
			Help: "Events per batched Publish call.", Buckets: prometheus.ExponentialBuckets(1, 4, 8)}),
		publishErrs: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "publish_errors_total",
			Help: "Failed Publish calls (the events' inputs are re-applied or retried)."}),
		persistErrs: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "persist_errors_total",
			Help: "Failed state writes, fencing rejections included."}),
	}
	m.activeSensor = m.activeTwins.WithLabelValues("sensor")
	m.activeGw = m.activeTwins.WithLabelValues("gateway")
	m.rejectedBy = make(map[string]prometheus.Counter)
	for _, r := range Reasons() {
		m.rejectedBy[r] = m.rejected.WithLabelValues(r)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.framesIn, m.applied, m.retried, m.rejected, m.statsIn, m.ticks,
			m.events, m.activeTwins, m.activations, m.passivations, m.restarts, m.applyLatency, m.pubLatency,
			m.persistLat, m.publishCalls, m.callLatency, m.batchEvents, m.publishErrs, m.persistErrs} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

func (m *metrics) reject(reason string) {
	m.nRejected.Add(1)
	if c := m.rejectedBy[reason]; c != nil {
		c.Inc()
		return
	}
	m.rejected.WithLabelValues(reason).Inc()
}

// Stats are counters of a System, for tests and tools.
type Stats struct {
	ActiveTwins  int64
	Applied      uint64 // frames and gateway records durable
	Rejected     uint64
	Retried      uint64
	Ticks        uint64
	Activations  uint64
	Passivations uint64
	Restarts     uint64
	// RecoveryWaits counts recoveries postponed because publishing or
	// persisting kept failing (the twin backs off, holding its inputs).
	RecoveryWaits uint64
	InFlightInput int64
}
