package engine_test

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/electric-socket/electric-socket/broker"
	"github.com/electric-socket/electric-socket/host/engine"
	"github.com/electric-socket/electric-socket/host/engine/enginetest"
	"github.com/electric-socket/electric-socket/host/metrics"
	"github.com/electric-socket/electric-socket/luabridge"
	"github.com/electric-socket/electric-socket/tests/testkit"
)

// newMeteredEngine is newTestEngine (enginetest.RoomScript, synchronous delivery) with
// metrics and a log kept in logs.
func newMeteredEngine(t *testing.T, mem *broker.Memory) (*enginetest.Harness, *metrics.Metrics, *testkit.LogBuffer) {
	t.Helper()
	te := enginetest.New(t, enginetest.RoomScript, mem)
	m := metrics.New()
	logs := &testkit.LogBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	te.Engine = engine.New(te.Mem, te.Sink, log, engine.Options{AuthTimeout: -1, Spawn: func(run func()) { run() }, Metrics: m})
	return te, m, logs
}

// The engine keeps every metric of its work: connections, messages, Lua
// calls per function, broker updates and retries, pub/sub deliveries,
// script errors by kind, broker failures, closes by code.
func TestEngineMetrics(t *testing.T) {
	te, m, logs := newMeteredEngine(t, broker.NewMemory(2))
	const in = "chat"
	alice, ac := te.Login("alice", "r")
	bob, bc := te.Login("bob", "r")
	if v := testkit.MetricValue(t, m.Registry, "electric_socket_connections", "integration", in); v != 2 {
		t.Errorf("connections = %v, want 2", v)
	}

	alice.Message([]byte(`{"type":"to","target":"bob","text":"hi"}`))
	if got := bc.Take(); len(got) != 1 || !strings.Contains(got[0], `"hi"`) {
		t.Fatalf("bob got %v", got)
	}
	ac.Take()
	te.Mem.ForceConflicts(broker.Topic{Namespace: in, Key: "r"}, 2)
	alice.Message([]byte(`{"type":"bump"}`)) // runs 3 times, commits once
	te.Mem.ForceConflicts(broker.Topic{Namespace: in, Key: "r"}, 3)
	alice.Message([]byte(`{"type":"bump"}`)) // 3 attempts, then broker_conflict
	if got := ac.Take(); len(got) != 2 || !strings.Contains(got[1], "broker_conflict") {
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

// benchmarkMessage measures one message through the engine (Lua call,
// broker update, response), with and without metrics.
func benchmarkMessage(b *testing.B, m *metrics.Metrics) {
	script, err := luabridge.Load("test.lua", []byte(enginetest.RoomScript), luabridge.Options{})
	if err != nil {
		b.Fatal(err)
	}
	e := engine.New(broker.NewMemory(0), &enginetest.RecordSink{}, slog.New(slog.DiscardHandler),
		engine.Options{AuthTimeout: -1, Spawn: func(run func()) { run() }, Metrics: m})
	c := &enginetest.VConn{}
	ch := &luabridge.Channel{ID: "c1", Integration: "chat", Path: "/chat", Query: map[string]string{}}
	s := e.Open(engine.NewIntegration("chat", "/chat", script), ch, c)
	s.Message([]byte(`{"user":"alice","room":"r"}`))
	msg := []byte(`{"seq":1}`)
	b.ReportAllocs()
	for b.Loop() {
		s.Message(msg)
		c.Take()
	}
}

func BenchmarkMessageWithoutMetrics(b *testing.B) { benchmarkMessage(b, nil) }
func BenchmarkMessageWithMetrics(b *testing.B)    { benchmarkMessage(b, metrics.New()) }
