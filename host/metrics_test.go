package host

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/electric-socket/electric-socket/broker"
	"github.com/electric-socket/electric-socket/host/metrics"
	"github.com/electric-socket/electric-socket/luabridge"
	"github.com/electric-socket/electric-socket/tests/testkit"
)

// newMeteredEngine is newTestEngine (roomScript, synchronous delivery) with
// metrics and a log kept in logs.
func newMeteredEngine(t *testing.T, mem *broker.Memory) (*testEngine, *metrics.Metrics, *syncBuffer) {
	t.Helper()
	te := newTestEngine(t, roomScript, mem)
	m := metrics.New()
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
	if v := testkit.MetricValue(t, m.Registry, "electric_socket_connections", "integration", in); v != 2 {
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
		if got := testkit.MetricValue(t, m.Registry, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// alice: welcome, sent, {n}, conflict error, script error; bob: welcome, hi, left
	if got := testkit.MetricValue(t, m.Registry, "electric_socket_messages_sent_total", "integration", in); got != 8 {
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

// A nil *metrics.Metrics (fixture runs, admin listener off) is safe and allocates
// nothing.
func TestNilMetricsCostNothing(t *testing.T) {
	var m *metrics.Metrics
	tr := &vconn{}
	failed := errors.New("x")
	allocs := testing.AllocsPerRun(100, func() {
		start := m.Now()
		m.LuaCall("x", "on_close", start)
		m.ConnOpened("x")
		m.ConnClosed("x", 1000)
		m.MessageIn("x")
		m.ScriptError("x", "script_error")
		m.BrokerUpdate("x", start, brokerCode(failed))
		m.BrokerRetry("x")
		m.BrokerPublished("x")
		m.BrokerDelivered("x", 1)
		m.BrokerDropped("x")
		m.EffectsSent("log", 1)
		m.EffectAttemptFailed("log")
		m.EffectsLost("log", "queue_full", 1)
		m.Integration("x")
		if countSent(m, "x", tr) != Transport(tr) {
			t.Fatal("a nil Metrics wrapped the transport")
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per run, want 0", allocs)
	}
	if !m.Now().IsZero() {
		t.Error("a nil Metrics read the clock")
	}
}

// The log sink counts what it writes.
func TestLogSinkCounts(t *testing.T) {
	m := metrics.New()
	var buf bytes.Buffer
	s := LogSink{Log: slog.New(slog.NewTextHandler(&buf, nil)), Metrics: m}
	s.Deliver(context.Background(), SideEffect{Integration: "chat", Channel: "c1", Function: "on_close", Payload: []byte(`{"a":1}`)})
	if got := testkit.MetricValue(t, m.Registry, "electric_socket_side_effects_delivered_total", "sink", "log"); got != 1 {
		t.Errorf("delivered = %v, want 1", got)
	}
	if !strings.Contains(buf.String(), `effect="{\"a\":1}"`) {
		t.Errorf("log: %s", buf.String())
	}
}

// benchmarkMessage measures one message through the engine (Lua call,
// broker update, response), with and without metrics.
func benchmarkMessage(b *testing.B, m *metrics.Metrics) {
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
func BenchmarkMessageWithMetrics(b *testing.B)    { benchmarkMessage(b, metrics.New()) }
