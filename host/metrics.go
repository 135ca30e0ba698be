package host

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

// NewMetrics returns the metrics in a new registry that also holds the Go
// runtime and process collectors.
func NewMetrics() *Metrics {
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

// integration creates the series of an integration at zero, so that they
// are scraped before its first connection.
func (m *Metrics) integration(name string) {
	if m == nil {
		return
	}
	m.connections.WithLabelValues(name)
	m.connectionsOpened.WithLabelValues(name)
	m.messagesIn.WithLabelValues(name)
	m.messagesOut.WithLabelValues(name)
	m.slowClients.WithLabelValues(name)
}

// gaugeFunc registers a gauge read at scrape time.
func (m *Metrics) gaugeFunc(name, help string, f func() float64) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "electric_socket", Name: name, Help: help}, f))
}

// counterFunc registers a counter read at scrape time.
func (m *Metrics) counterFunc(name, help string, f func() float64) {
	m.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: "electric_socket", Name: name, Help: help}, f))
}

// now is the start of something measured: the zero time when m is nil, so
// that unobserved runs never read the clock.
func (m *Metrics) now() time.Time {
	if m == nil {
		return time.Time{}
	}
	return time.Now()
}

func (m *Metrics) connOpened(integration string) {
	if m == nil {
		return
	}
	m.connections.WithLabelValues(integration).Inc()
	m.connectionsOpened.WithLabelValues(integration).Inc()
}

// connClosed counts a closed connection; code 0 means the client closed
// (or the network dropped) before the server decided to.
func (m *Metrics) connClosed(integration string, code CloseCode) {
	if m == nil {
		return
	}
	label := "client"
	if code != 0 {
		label = strconv.Itoa(int(code))
	}
	m.connections.WithLabelValues(integration).Dec()
	m.connectionsClosed.WithLabelValues(integration, label).Inc()
}

func (m *Metrics) messageIn(integration string) {
	if m != nil {
		m.messagesIn.WithLabelValues(integration).Inc()
	}
}

// luaCall observes one call of function that started at start (m.now()).
func (m *Metrics) luaCall(integration, function string, start time.Time) {
	if m != nil {
		m.luaCalls.WithLabelValues(integration, function).Observe(time.Since(start).Seconds())
	}
}

func (m *Metrics) scriptError(integration, kind string) {
	if m != nil {
		m.scriptErrors.WithLabelValues(integration, kind).Inc()
	}
}

// brokerUpdate observes one broker update that started at start and ended
// with err (a script error is not the broker's failure).
func (m *Metrics) brokerUpdate(integration string, start time.Time, err error) {
	if m == nil {
		return
	}
	m.brokerUpdates.WithLabelValues(integration).Observe(time.Since(start).Seconds())
	if code := brokerCode(err); code != "" {
		m.brokerFailures.WithLabelValues(integration, code).Inc()
	}
}

func (m *Metrics) brokerRetry(integration string) {
	if m != nil {
		m.brokerRetries.WithLabelValues(integration).Inc()
	}
}

func (m *Metrics) brokerPublished(integration string) {
	if m != nil {
		m.published.WithLabelValues(integration).Inc()
	}
}

func (m *Metrics) brokerDelivered(integration string, n int) {
	if m != nil && n > 0 {
		m.delivered.WithLabelValues(integration).Add(float64(n))
	}
}

func (m *Metrics) brokerDropped(integration string, n int) {
	if m != nil && n > 0 {
		m.dropped.WithLabelValues(integration).Add(float64(n))
	}
}

func (m *Metrics) slowClient(integration string) {
	if m != nil {
		m.slowClients.WithLabelValues(integration).Inc()
	}
}

func (m *Metrics) effectsSent(sink string, n int) {
	if m != nil && n > 0 {
		m.effectsDelivered.WithLabelValues(sink).Add(float64(n))
	}
}

func (m *Metrics) effectAttemptFailed(sink string) {
	if m != nil {
		m.effectsFailed.WithLabelValues(sink).Inc()
	}
}

func (m *Metrics) effectsLost(sink, reason string, n int) {
	if m != nil && n > 0 {
		m.effectsDropped.WithLabelValues(sink, reason).Add(float64(n))
	}
}

// countingTransport counts what the engine sends to a client.
type countingTransport struct {
	Transport
	sent prometheus.Counter
}

func (t countingTransport) Send(msg []byte) {
	t.sent.Inc()
	t.Transport.Send(msg)
}

// transport wraps t so that its sends are counted; without metrics it is t.
func (m *Metrics) transport(integration string, t Transport) Transport {
	if m == nil {
		return t
	}
	return countingTransport{Transport: t, sent: m.messagesOut.WithLabelValues(integration)}
}
