// Package metrics holds the Prometheus metrics of one server, in a
// registry of its own, behind nil-safe methods that cost nothing unobserved.
package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are the Prometheus metrics of one App, in a registry of their own
// (never the global one, so that several Apps in one process, as in tests,
// do not collide).
//
// Every method is nil-safe: the engine, the registry and the sinks call them
// unconditionally, and a nil *Metrics (the fixture runner's, or a server
// whose [admin] listener is off) costs one comparison and no clock read.
// All methods may be called concurrently.
type Metrics struct {
	Registry *prometheus.Registry

	connections       *prometheus.GaugeVec     // integration
	connectionsOpened *prometheus.CounterVec   // integration
	connectionsClosed *prometheus.CounterVec   // integration, code
	messagesIn        *prometheus.CounterVec   // integration
	messagesOut       *prometheus.CounterVec   // integration
	luaCalls          *prometheus.HistogramVec // integration, function
	scriptErrors      *prometheus.CounterVec   // integration, kind
	brokerUpdates     *prometheus.HistogramVec // integration
	brokerRetries     *prometheus.CounterVec   // integration
	brokerFailures    *prometheus.CounterVec   // integration, code
	published         *prometheus.CounterVec   // integration
	delivered         *prometheus.CounterVec   // integration
	dropped           *prometheus.CounterVec   // integration
	slowClients       *prometheus.CounterVec   // integration
	effectsDelivered  *prometheus.CounterVec   // sink
	effectsFailed     *prometheus.CounterVec   // sink
	effectsDropped    *prometheus.CounterVec   // sink, reason
}

// New returns the metrics in a new registry that also holds the Go
// runtime and process collectors.
func New() *Metrics {
	const ns = "electric_socket"
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: name, Help: help}, labels)
	}
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		connections: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "connections",
			Help: "WebSocket connections open now."}, []string{"integration"}),
		connectionsOpened: counter("connections_opened_total", "WebSocket connections opened.", "integration"),
		connectionsClosed: counter("connections_closed_total",
			`WebSocket connections closed, by the close code the server sent ("client": the client closed or the network dropped).`,
			"integration", "code"),
		messagesIn:  counter("messages_received_total", "Text messages received from clients.", "integration"),
		messagesOut: counter("messages_sent_total", "Messages queued to clients (responses, broker messages, error frames).", "integration"),
		luaCalls: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "lua_call_duration_seconds",
			Help:    `Duration of one call of an integration function ("identify": channel_identifier and broker_key together); every attempt of a retried update counts.`,
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"integration", "function"}),
		scriptErrors: counter("script_errors_total",
			"Script errors answered to a client, by kind (script_error, script_timeout, malformed_action).",
			"integration", "kind"),
		brokerUpdates: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "broker_update_duration_seconds",
			Help:    "Duration of a broker update (every compare-and-set attempt and the Lua calls in it).",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"integration"}),
		brokerRetries:  counter("broker_update_retries_total", "Update attempts run again after losing their compare-and-set.", "integration"),
		brokerFailures: counter("broker_update_failures_total", "Broker updates that failed (broker_conflict, broker_unavailable).", "integration", "code"),
		published:      counter("broker_messages_published_total", "Broker messages published.", "integration"),
		delivered:      counter("broker_messages_delivered_total", "Broker messages handed to a local connection (pub/sub deliveries).", "integration"),
		dropped: counter("broker_messages_dropped_total",
			"Broker messages dropped with a connection closed as slow_client (the one over its queue and those waiting).", "integration"),
		slowClients: counter("slow_client_closes_total",
			"Connections closed as slow_client (1008): over [limits] max_queued_bytes unsent, or 1,024 broker messages waiting.", "integration"),
		effectsDelivered: counter("side_effects_delivered_total",
			"Side effects delivered by the sink (accepted by the webhook, added to the stream, written to the log).", "sink"),
		effectsFailed: counter("side_effect_delivery_failures_total",
			"Failed delivery attempts of a batch of side effects (each is retried).", "sink"),
		effectsDropped: counter("side_effects_dropped_total",
			"Side effects given up on: queue_full, max_attempts, or shutdown (still queued when the shutdown timeout ended).",
			"sink", "reason"),
	}
	m.Registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.connections, m.connectionsOpened, m.connectionsClosed, m.messagesIn, m.messagesOut,
		m.luaCalls, m.scriptErrors, m.brokerUpdates, m.brokerRetries, m.brokerFailures,
		m.published, m.delivered, m.dropped, m.slowClients, m.effectsDelivered, m.effectsFailed, m.effectsDropped,
	)
	return m
}

// Integration creates the series of an integration at zero, so that they
// are scraped before its first connection.
func (m *Metrics) Integration(name string) {
	if m == nil {
		return
	}
	m.connections.WithLabelValues(name)
	m.connectionsOpened.WithLabelValues(name)
	m.messagesIn.WithLabelValues(name)
	m.messagesOut.WithLabelValues(name)
	m.slowClients.WithLabelValues(name)
}

// GaugeFunc registers a gauge read at scrape time.
func (m *Metrics) GaugeFunc(name, help string, f func() float64) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "electric_socket", Name: name, Help: help}, f))
}

// CounterFunc registers a counter read at scrape time.
func (m *Metrics) CounterFunc(name, help string, f func() float64) {
	m.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: "electric_socket", Name: name, Help: help}, f))
}

// Now is the start of something measured: the zero time when m is nil, so
// that unobserved runs never read the clock.
func (m *Metrics) Now() time.Time {
	if m == nil {
		return time.Time{}
	}
	return time.Now()
}

func (m *Metrics) ConnOpened(integration string) {
	if m == nil {
		return
	}
	m.connections.WithLabelValues(integration).Inc()
	m.connectionsOpened.WithLabelValues(integration).Inc()
}

// ConnClosed counts a closed connection; code 0 means the client closed
// (or the network dropped) before the server decided to.
func (m *Metrics) ConnClosed(integration string, code int) {
	if m == nil {
		return
	}
	label := "client"
	if code != 0 {
		label = strconv.Itoa(code)
	}
	m.connections.WithLabelValues(integration).Dec()
	m.connectionsClosed.WithLabelValues(integration, label).Inc()
}

func (m *Metrics) MessageIn(integration string) {
	if m != nil {
		m.messagesIn.WithLabelValues(integration).Inc()
	}
}

// LuaCall observes one call of function that started at start (m.now()).
func (m *Metrics) LuaCall(integration, function string, start time.Time) {
	if m != nil {
		m.luaCalls.WithLabelValues(integration, function).Observe(time.Since(start).Seconds())
	}
}

func (m *Metrics) ScriptError(integration, kind string) {
	if m != nil {
		m.scriptErrors.WithLabelValues(integration, kind).Inc()
	}
}

// BrokerUpdate observes one broker update that started at start; failure
// is the error code it failed with ("" when the broker did not fail: a
// script error is not the broker's failure).
func (m *Metrics) BrokerUpdate(integration string, start time.Time, failure string) {
	if m == nil {
		return
	}
	m.brokerUpdates.WithLabelValues(integration).Observe(time.Since(start).Seconds())
	if failure != "" {
		m.brokerFailures.WithLabelValues(integration, failure).Inc()
	}
}

func (m *Metrics) BrokerRetry(integration string) {
	if m != nil {
		m.brokerRetries.WithLabelValues(integration).Inc()
	}
}

func (m *Metrics) BrokerPublished(integration string) {
	if m != nil {
		m.published.WithLabelValues(integration).Inc()
	}
}

func (m *Metrics) BrokerDelivered(integration string, n int) {
	if m != nil && n > 0 {
		m.delivered.WithLabelValues(integration).Add(float64(n))
	}
}

func (m *Metrics) BrokerDropped(integration string, n int) {
	if m != nil && n > 0 {
		m.dropped.WithLabelValues(integration).Add(float64(n))
	}
}

func (m *Metrics) SlowClient(integration string) {
	if m != nil {
		m.slowClients.WithLabelValues(integration).Inc()
	}
}

func (m *Metrics) EffectsSent(sink string, n int) {
	if m != nil && n > 0 {
		m.effectsDelivered.WithLabelValues(sink).Add(float64(n))
	}
}

func (m *Metrics) EffectAttemptFailed(sink string) {
	if m != nil {
		m.effectsFailed.WithLabelValues(sink).Inc()
	}
}

func (m *Metrics) EffectsLost(sink, reason string, n int) {
	if m != nil && n > 0 {
		m.effectsDropped.WithLabelValues(sink, reason).Add(float64(n))
	}
}

// Sent is the counter of the messages queued to the clients of
// integration; m must not be nil.
func (m *Metrics) Sent(integration string) prometheus.Counter {
	return m.messagesOut.WithLabelValues(integration)
}
