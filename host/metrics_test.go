package host

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/electric-socket/electric-socket/broker"
	"github.com/electric-socket/electric-socket/luabridge"
)

// metricValue returns the value of the series of name whose labels include
// the given name/value pairs: a counter's or gauge's value, a histogram's
// sample count; 0 when there is no such series.
func metricValue(t testing.TB, m *Metrics, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, s := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range s.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue series
				}
			}
			switch {
			case s.Counter != nil:
				return s.GetCounter().GetValue()
			case s.Gauge != nil:
				return s.GetGauge().GetValue()
			case s.Histogram != nil:
				return float64(s.GetHistogram().GetSampleCount())
			}
		}
	}
	return 0
}

// newMeteredEngine is newTestEngine (roomScript, synchronous delivery) with
// metrics and a log kept in logs.
func newMeteredEngine(t *testing.T, mem *broker.Memory) (*testEngine, *Metrics, *syncBuffer) {
	t.Helper()
	te := newTestEngine(t, roomScript, mem)
	m := NewMetrics()
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	te.engine = NewEngine(te.mem, te.sink, log, EngineOptions{AuthTimeout: -1, Spawn: func(run func()) { run() }, Metrics: m})
	return te, m, logs
}

// The engine keeps every metric of its work: connections, messages, Lua
// calls per function, broker updates and retries, pub/sub deliveries,
// script errors by kind, broker failures, closes by code.
func TestEngineMetrics(t *testing.T) {
	te, m, logs := newMeteredEngine(t, broker.NewMemory(2))
	const in = "chat"
	alice, ac := te.login("alice", "r")
	bob, bc := te.login("bob", "r")
	if v := metricValue(t, m, "electric_socket_connections", "integration", in); v != 2 {
		t.Errorf("connections = %v, want 2", v)
	}

	alice.Message([]byte(`{"type":"to","target":"bob","text":"hi"}`))
	if got := bc.take(); len(got) != 1 || !strings.Contains(got[0], `"hi"`) {
		t.Fatalf("bob got %v", got)
	}
	ac.take()
	te.mem.ForceConflicts(broker.Topic{Namespace: in, Key: "r"}, 2)
	alice.Message([]byte(`{"type":"bump"}`)) // runs 3 times, commits once
	te.mem.ForceConflicts(broker.Topic{Namespace: in, Key: "r"}, 3)
	alice.Message([]byte(`{"type":"bump"}`)) // 3 attempts, then broker_conflict
	if got := ac.take(); len(got) != 2 || !strings.Contains(got[1], "broker_conflict") {
		t.Fatalf("alice got %v", got)
	}
	alice.Message([]byte(`{"type":"boom"}`)) // script error: 1011, on_close runs
	bob.Closed()                             // the client went away

	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"electric_socket_connections", []string{"integration", in}, 0},
		{"electric_socket_connections_opened_total", []string{"integration", in}, 2},
		{"electric_socket_connections_closed_total", []string{"integration", in, "code", "1011"}, 1},
		{"electric_socket_connections_closed_total", []string{"integration", in, "code", "client"}, 1},
		{"electric_socket_messages_received_total", []string{"integration", in}, 6},
		{"electric_socket_lua_call_duration_seconds", []string{"function", "initial_authorisation"}, 2},
		{"electric_socket_lua_call_duration_seconds", []string{"function", "identify"}, 2},
		{"electric_socket_lua_call_duration_seconds", []string{"function", "broker_authorisation"}, 2},
		{"electric_socket_lua_call_duration_seconds", []string{"function", "process_websocket_message"}, 1 + 3 + 3 + 1},
		{"electric_socket_lua_call_duration_seconds", []string{"function", "process_broker_message"}, 2}, // hi, left
		{"electric_socket_lua_call_duration_seconds", []string{"function", "on_close"}, 2},
		{"electric_socket_broker_update_duration_seconds", []string{"integration", in}, 2 + 4 + 2 + 2}, // auth, messages, broker messages, on_close
		{"electric_socket_broker_update_retries_total", []string{"integration", in}, 2 + 2},
		{"electric_socket_broker_update_failures_total", []string{"code", "broker_conflict"}, 1},
		{"electric_socket_script_errors_total", []string{"kind", "script_error"}, 1},
		{"electric_socket_broker_messages_published_total", []string{"integration", in}, 3}, // hi, peer, left
		{"electric_socket_broker_messages_delivered_total", []string{"integration", in}, 2}, // hi to bob, left to bob (peer: nobody)
	} {
		if got := metricValue(t, m, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// alice: welcome, sent, {n}, conflict error, script error; bob: welcome, hi, left
	if got := metricValue(t, m, "electric_socket_messages_sent_total", "integration", in); got != 8 {
		t.Errorf("messages sent = %v, want 8", got)
	}

	// A line per connection opened and closed.
	out := logs.String()
	for _, want := range []string{
		`msg="connection opened" channel=c1 integration=chat`,
		`msg="connection closed" channel=c1 integration=chat code=1011 by=server duration=`,
		`msg="connection closed" channel=c2 integration=chat code=0 by=client duration=`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

// A nil *Metrics (fixture runs, admin listener off) is safe and allocates
// nothing.
func TestNilMetricsCostNothing(t *testing.T) {
	var m *Metrics
	tr := &vconn{}
	failed := errors.New("x")
	allocs := testing.AllocsPerRun(100, func() {
		start := m.now()
		m.luaCall("x", "on_close", start)
		m.connOpened("x")
		m.connClosed("x", 1000)
		m.messageIn("x")
		m.scriptError("x", "script_error")
		m.brokerUpdate("x", start, failed)
		m.brokerRetry("x")
		m.brokerPublished("x")
		m.brokerDelivered("x", 1)
		m.brokerDropped("x", 1)
		m.slowClient("x")
		m.effectsSent("log", 1)
		m.effectAttemptFailed("log")
		m.effectsLost("log", "queue_full", 1)
		m.integration("x")
		if m.transport("x", tr) != Transport(tr) {
			t.Fatal("a nil Metrics wrapped the transport")
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per run, want 0", allocs)
	}
	if !m.now().IsZero() {
		t.Error("a nil Metrics read the clock")
	}
}

// The log sink counts what it writes.
func TestLogSinkCounts(t *testing.T) {
	m := NewMetrics()
	var buf bytes.Buffer
	s := LogSink{Log: slog.New(slog.NewTextHandler(&buf, nil)), Metrics: m}
	s.Deliver(context.Background(), SideEffect{Integration: "chat", Channel: "c1", Function: "on_close", Payload: []byte(`{"a":1}`)})
	if got := metricValue(t, m, "electric_socket_side_effects_delivered_total", "sink", "log"); got != 1 {
		t.Errorf("delivered = %v, want 1", got)
	}
	if !strings.Contains(buf.String(), `effect="{\"a\":1}"`) {
		t.Errorf("log: %s", buf.String())
	}
}

// benchmarkMessage measures one message through the engine (Lua call,
// broker update, response), with and without metrics.
func benchmarkMessage(b *testing.B, m *Metrics) {
	script, err := luabridge.Load("test.lua", []byte(roomScript), luabridge.Options{})
	if err != nil {
		b.Fatal(err)
	}
	e := NewEngine(broker.NewMemory(0), &recordSink{}, slog.New(slog.DiscardHandler),
		EngineOptions{AuthTimeout: -1, Spawn: func(run func()) { run() }, Metrics: m})
	c := &vconn{}
	ch := &luabridge.Channel{ID: "c1", Integration: "chat", Path: "/chat", Query: map[string]string{}}
	s := e.Open(NewIntegration("chat", "/chat", script), ch, c)
	s.Message([]byte(`{"user":"alice","room":"r"}`))
	msg := []byte(`{"seq":1}`)
	b.ReportAllocs()
	for b.Loop() {
		s.Message(msg)
		c.take()
	}
}

func BenchmarkMessageWithoutMetrics(b *testing.B) { benchmarkMessage(b, nil) }
func BenchmarkMessageWithMetrics(b *testing.B)    { benchmarkMessage(b, NewMetrics()) }
