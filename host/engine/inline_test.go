package engine_test

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/electric-socket/electric-socket/broker"
	"github.com/electric-socket/electric-socket/host/engine"
	"github.com/electric-socket/electric-socket/host/engine/enginetest"
	"github.com/electric-socket/electric-socket/luabridge"
	"github.com/electric-socket/electric-socket/tests/testkit"
)

// heldSpawn is an engine.Options.Spawn that keeps the work for the test to
// run: a message that ran without it ran on the caller's goroutine.
type heldSpawn struct {
	mu   sync.Mutex
	runs []func()
}

func (h *heldSpawn) spawn(run func()) {
	h.mu.Lock()
	h.runs = append(h.runs, run)
	h.mu.Unlock()
}

// runAll runs what was spawned (and what that spawns) and says how many.
func (h *heldSpawn) runAll() int {
	n := 0
	for {
		h.mu.Lock()
		if len(h.runs) == 0 {
			h.mu.Unlock()
			return n
		}
		run := h.runs[0]
		h.runs = h.runs[1:]
		h.mu.Unlock()
		run()
		n++
	}
}

// funcSink calls fn for each side effect.
type funcSink func()

func (f funcSink) Deliver(context.Context, engine.SideEffect) error { f(); return nil }

// networkBroker is a memory broker that does not say it is in process, as
// the redis broker does not.
type networkBroker struct{ broker.Broker }

// inlineSession returns an authorised session (with broker key key when
// not empty) on b, and the spawner holding its workers' runs.
func inlineSession(t *testing.T, b broker.Broker, key string, sink engine.Sink) (*engine.Session, *enginetest.VConn, *heldSpawn) {
	t.Helper()
	script, err := luabridge.Load("echo.lua", []byte(testkit.EchoScript), luabridge.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if sink == nil {
		sink = &enginetest.RecordSink{}
	}
	hs := &heldSpawn{}
	e := engine.New(b, sink, slog.New(slog.NewTextHandler(io.Discard, nil)), engine.Options{AuthTimeout: -1, Spawn: hs.spawn})
	ch := &luabridge.Channel{ID: "c1", Integration: "t", Path: "/t", RemoteAddr: "127.0.0.1:1", Query: map[string]string{}}
	vc := &enginetest.VConn{}
	s := e.Open(engine.NewIntegration("t", "/t", script), ch, vc)
	login := `{}`
	if key != "" {
		login = `{"key":"` + key + `"}`
	}
	s.MessageNow([]byte(login))
	if hs.runAll() != 1 {
		t.Fatal("the initial message did not go to a worker")
	}
	if got := vc.Take(); len(got) != 1 || got[0] != `{"ok":true}` {
		t.Fatalf("login answered %q", got)
	}
	return s, vc, hs
}

func TestMessageNowRunsALoneMessageOnTheCaller(t *testing.T) {
	s, vc, hs := inlineSession(t, broker.NewMemory(3), "", nil)
	s.MessageNow([]byte(`{"n":1}`))
	if got := vc.Take(); len(got) != 1 || got[0] != `{"n":1}` {
		t.Fatalf("when MessageNow returned, the client had %q, want the answer", got)
	}
	if n := hs.runAll(); n != 0 {
		t.Fatalf("%d runs on a worker for a lone message", n)
	}
}

// A message that may wait for something besides its Lua call goes to a
// worker, so that the reader goes on answering pings meanwhile: an update
// of its broker key waits for the key's other updates (even on the memory
// broker: a hot key's line), and on a network broker a publish waits for
// the network.
func TestMessageNowHandsOffWhatMayWait(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    broker.Broker
		key  string
	}{
		{"a broker key on the memory broker", broker.NewMemory(3), "k1"},
		{"no key on a network broker", networkBroker{broker.NewMemory(3)}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, vc, hs := inlineSession(t, tc.b, tc.key, nil)
			s.MessageNow([]byte(`{"n":1}`))
			if got := vc.Take(); len(got) != 0 {
				t.Fatalf("the message ran on the reader: %q", got)
			}
			if hs.runAll() != 1 {
				t.Fatal("the message did not go to a worker")
			}
			if got := vc.Take(); len(got) != 1 || got[0] != `{"n":1}` {
				t.Fatalf("answered %q", got)
			}
		})
	}
}

func TestMessageNowQueuesBehindARunningSession(t *testing.T) {
	s, vc, hs := inlineSession(t, broker.NewMemory(3), "", nil)
	s.Message([]byte(`{"n":1}`)) // its run is held: the session is busy
	s.MessageNow([]byte(`{"n":2}`))
	if got := vc.Take(); len(got) != 0 {
		t.Fatalf("a message ran before the one queued ahead of it: %q", got)
	}
	if hs.runAll() != 1 {
		t.Fatal("want one run for both messages")
	}
	if got := vc.Take(); len(got) != 2 || got[0] != `{"n":1}` || got[1] != `{"n":2}` {
		t.Fatalf("answers %q, want n=1 then n=2", got)
	}
}

// While a message runs on the reader, the reader reads nothing: the
// session says so (a pong unread then is not the client's fault), and what
// arrives meanwhile runs after it, on a worker.
func TestMessageNowHoldsTheReaderAndLeavesLaterEventsToAWorker(t *testing.T) {
	var s *engine.Session
	var heldDuring bool
	sink := funcSink(func() {
		heldDuring = s.ReaderHeld(time.Now())
		s.Fail("test_failure", "failed while a message ran", engine.ClosePolicy)
	})
	var vc *enginetest.VConn
	var hs *heldSpawn
	s, vc, hs = inlineSession(t, broker.NewMemory(3), "", sink)
	before := time.Now()
	s.MessageNow([]byte(`{"side":1}`)) // EchoScript: a side effect
	if !heldDuring {
		t.Fatal("ReaderHeld was false while the message ran on the reader")
	}
	if !s.ReaderHeld(before) {
		t.Fatal("ReaderHeld(since before the message) is false after it")
	}
	if got := vc.Take(); len(got) != 1 || got[0] != `{"side":1}` {
		t.Fatalf("answered %q", got)
	}
	if vc.CloseCode() != 0 {
		t.Fatal("the event queued during the message ran on the reader")
	}
	if hs.runAll() != 1 {
		t.Fatal("the event queued during the message did not go to a worker")
	}
	if got := vc.Take(); len(got) != 1 || vc.CloseCode() != engine.ClosePolicy {
		t.Fatalf("after the failure: sent %q, close %d", got, vc.CloseCode())
	}
}
