// Package bench holds Go benchmarks of the paths the load scenarios of
// tests/bench/run.sh exercise, with the scenarios' own scripts: the memory
// broker's update, and one message through the engine (no network) for the
// echo integrations of scenarios (a) and (b). The luabridge, host and broker
// packages have the benchmarks of their own hot paths (BENCHMARKS.md lists
// them). These report; they assert nothing about speed.
package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/electric-socket/electric-socket/broker"
	"github.com/electric-socket/electric-socket/host/engine"
	"github.com/electric-socket/electric-socket/luabridge"
)

// counter is the update of echo_key.lua's entity: {"n":N} -> {"n":N+1}.
func counter(cur []byte, _ bool) ([]byte, broker.Op, error) {
	n := 0
	if len(cur) > 5 {
		n, _ = strconv.Atoi(string(cur[5 : len(cur)-1]))
	}
	return []byte(`{"n":` + strconv.Itoa(n+1) + `}`), broker.Set, nil
}

// BenchmarkMemoryUpdate: one update that writes, on one key, one goroutine.
func BenchmarkMemoryUpdate(b *testing.B) {
	m := broker.NewMemory(10)
	t := broker.Topic{Namespace: "bench", Key: "k"}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := m.Update(ctx, t, counter); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMemoryUpdateParallel: every goroutine updates a key of its own,
// as the connections of scenario (b) do; they share only the broker's map
// lock.
func BenchmarkMemoryUpdateParallel(b *testing.B) {
	m := broker.NewMemory(10)
	ctx := context.Background()
	var next atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		t := broker.Topic{Namespace: "bench", Key: fmt.Sprint("k", next.Add(1))}
		for pb.Next() {
			if err := m.Update(ctx, t, counter); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkMemoryUpdateParallelOneKey: every goroutine updates the same key.
func BenchmarkMemoryUpdateParallelOneKey(b *testing.B) {
	m := broker.NewMemory(10)
	ctx := context.Background()
	t := broker.Topic{Namespace: "bench", Key: "k"}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := m.Update(ctx, t, counter); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// discard is a transport that counts the messages sent.
type discard struct{ n int }

func (d *discard) Send(msg []byte)                       { d.n++ }
func (d *discard) Close(code engine.CloseCode, _ string) {}

type noSink struct{}

func (noSink) Deliver(context.Context, engine.SideEffect) error { return nil }

// benchEngine sends one message through the engine, synchronously (the
// session's events run on the caller), with the script of a scenario: the
// whole per-message cost of the host minus the WebSocket transport and the
// goroutine hand-offs.
func benchEngine(b *testing.B, script, auth string) {
	src, err := os.ReadFile("scripts/" + script)
	if err != nil {
		b.Fatal(err)
	}
	s, err := luabridge.Load(script, src, luabridge.Options{})
	if err != nil {
		b.Fatal(err)
	}
	e := engine.New(broker.NewMemory(10), noSink{}, slog.New(slog.DiscardHandler),
		engine.Options{AuthTimeout: -1, Spawn: func(run func()) { run() }})
	tr := &discard{}
	ch := &luabridge.Channel{ID: "c1", Integration: "bench", Path: "/echo", RemoteAddr: "127.0.0.1:1", Query: map[string]string{}}
	sess := e.Open(engine.NewIntegration("bench", "/echo", s), ch, tr)
	sess.Message([]byte(auth))
	if tr.n != 1 {
		b.Fatalf("no reply to the auth message")
	}
	msg := []byte(`{"seq":12345,"text":"hello, world"}`)
	b.ReportAllocs()
	sent := 0
	for b.Loop() {
		// the engine keeps the message: a fresh copy each time, as the
		// transport hands it over; MessageNow, as the transport hands over
		// a lone message
		sess.MessageNow(append([]byte(nil), msg...))
		sent++
	}
	if tr.n != 1+sent {
		b.Fatalf("%d replies for %d messages", tr.n-1, sent)
	}
}

// BenchmarkEngineEcho: scenario (a)'s message, echo.lua, no broker key.
func BenchmarkEngineEcho(b *testing.B) {
	benchEngine(b, "echo.lua", `{"user":"u1"}`)
}

// BenchmarkEngineEchoKey: scenario (b)'s message on the memory broker,
// echo_key.lua: the echo inside an update that commits.
func BenchmarkEngineEchoKey(b *testing.B) {
	benchEngine(b, "echo_key.lua", `{"key":"k1","user":"u1"}`)
}
