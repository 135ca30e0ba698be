package engine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/electric-socket/electric-socket/broker"
	"github.com/electric-socket/electric-socket/host/engine"
	"github.com/electric-socket/electric-socket/host/engine/enginetest"
	"github.com/electric-socket/electric-socket/luabridge"
)

func TestFailedAuthorisationAnswersAndCloses1008(t *testing.T) {
	te := enginetest.New(t, enginetest.RoomScript, nil)
	s, c := te.Connect(nil)
	s.Message([]byte(`{"room":"r"}`))
	got := c.Take()
	if len(got) != 1 || got[0] != `{"id":"auth","reason":"no user"}` {
		t.Fatalf("sent %v", got)
	}
	if c.CloseCode() != engine.ClosePolicy {
		t.Fatalf("close code %d, want 1008", c.CloseCode())
	}
	if len(te.Sink.Payloads()) != 0 {
		t.Fatalf("on_close or side effects ran for an unauthorised session: %v", te.Sink.Payloads())
	}
	if te.Engine.Sessions() != 0 {
		t.Fatal("session not forgotten")
	}
}

func TestNothingBeforeAuthorisationFinishes(t *testing.T) {
	te := enginetest.New(t, enginetest.RoomScript, nil)
	s, c := te.Connect(nil)
	s.Message([]byte(`{"user":"a","room":"r"}`))
	s.Message([]byte(`{"seq":1}`))
	got := c.Take()
	if len(got) != 2 || !strings.Contains(got[0], "welcome") || got[1] != `{"echo":1}` {
		t.Fatalf("sent %v", got)
	}
}

func TestBrokerMessagesReachMatchingConnectionsExceptSource(t *testing.T) {
	te := enginetest.New(t, enginetest.RoomScript, nil)
	a1, ca1 := te.Login("alice", "r1")
	_, ca2 := te.Login("alice", "r1") // a second alice connection on the same key
	_, cb := te.Login("bob", "r1")
	_, cother := te.Login("alice", "r2") // same identifier, other key
	ca1.Take()

	a1.Message([]byte(`{"type":"to","target":"alice","text":"hi","seq":1}`))
	if got := ca1.Take(); len(got) != 1 || got[0] != `{"seq":1,"type":"sent"}` {
		t.Fatalf("source got %v, want only its response", got)
	}
	want := `{"got":{"from":"alice","text":"hi"},"key":"r1","source":"c1"}`
	if got := ca2.Take(); len(got) != 1 || got[0] != want {
		t.Fatalf("other alice on r1 got %v, want %s", got, want)
	}
	if got := cb.Take(); len(got) != 0 {
		t.Fatalf("bob got %v", got)
	}
	if got := cother.Take(); len(got) != 0 {
		t.Fatalf("alice on r2 got %v", got)
	}
}

func TestOnlyTheCommittedAttemptIsActedOn(t *testing.T) {
	mem := broker.NewMemory(3)
	rb := &racingBroker{Memory: mem}
	te := enginetest.New(t, enginetest.RoomScript, rb)
	a, ca := te.Login("alice", "r")
	_, cp := te.Login("peer", "r")
	ca.Take()
	before := len(te.Sink.Payloads())

	rb.race.Store(true)
	a.Message([]byte(`{"type":"bump"}`))
	// The first attempt saw n absent (n = 1) and lost to a writer that set
	// n = 10; only the second attempt (n = 11) may be acted on.
	if got := ca.Take(); len(got) != 1 || got[0] != `{"n":11}` {
		t.Fatalf("response %v, want only {\"n\":11}", got)
	}
	if got := cp.Take(); len(got) != 1 || !strings.Contains(got[0], `"n":11`) {
		t.Fatalf("peer got %v, want one message with n = 11", got)
	}
	fx := te.Sink.Payloads()[before:]
	if len(fx) != 1 || fx[0] != `process_websocket_message {"n":11}` {
		t.Fatalf("side effects %v, want one with n = 11", fx)
	}
	if rb.attempts != 2 {
		t.Fatalf("attempts = %d, want 2", rb.attempts)
	}
	var stored struct{ N int }
	json.Unmarshal(mem.Get(broker.Topic{Namespace: "chat", Key: "r"}), &stored)
	if stored.N != 11 {
		t.Fatalf("stored n = %d", stored.N)
	}
}

// racingBroker makes the next update lose its first attempt to another
// writer, which sets n = 10 between the attempts.
type racingBroker struct {
	*broker.Memory
	race     atomicBool
	attempts int
}

type atomicBool struct {
	mu sync.Mutex
	v  bool
}

func (b *atomicBool) Store(v bool) { b.mu.Lock(); b.v = v; b.mu.Unlock() }
func (b *atomicBool) Swap(v bool) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	old := b.v
	b.v = v
	return old
}

func (b *racingBroker) Update(ctx context.Context, t broker.Topic, fn broker.UpdateFunc) error {
	if !b.race.Swap(false) {
		return b.Memory.Update(ctx, t, fn)
	}
	b.attempts = 1
	if _, _, err := fn(b.Memory.Get(t), false); err != nil {
		return err
	}
	var v map[string]any
	json.Unmarshal(b.Memory.Get(t), &v)
	v["n"] = 10
	nv, _ := json.Marshal(v)
	b.Memory.Set(t, nv)
	return b.Memory.Update(ctx, t, func(cur []byte, _ bool) ([]byte, broker.Op, error) {
		b.attempts++
		return fn(cur, true)
	})
}

func TestOnCloseRunsOnEveryClosePath(t *testing.T) {
	cases := []struct {
		name string
		do   func(te *enginetest.Harness, s *engine.Session)
		code engine.CloseCode
	}{
		{"client closes", func(te *enginetest.Harness, s *engine.Session) { s.Closed() }, 0},
		{"should_close", func(te *enginetest.Harness, s *engine.Session) { s.Message([]byte(`{"type":"quit"}`)) }, engine.CloseNormal},
		{"script error", func(te *enginetest.Harness, s *engine.Session) { s.Message([]byte(`{"type":"boom"}`)) }, engine.CloseInternal},
		{"bad input", func(te *enginetest.Harness, s *engine.Session) { s.Message([]byte(`[1]`)) }, engine.CloseInvalidData},
		{"transport failure", func(te *enginetest.Harness, s *engine.Session) {
			s.Fail(engine.CodeTooLarge, "too big", engine.CloseTooBig)
		}, engine.CloseTooBig},
		{"broker message closes", func(te *enginetest.Harness, s *engine.Session) {
			_, ck := te.Login("kicker", "r")
			_ = ck
			te.Publish("r", "alice", `{"kick":true}`)
		}, engine.CloseNormal},
		{"shutdown", func(te *enginetest.Harness, s *engine.Session) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := te.Engine.Shutdown(ctx, 0); err != nil {
				t.Fatal(err)
			}
		}, engine.CloseGoingAway},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			te := enginetest.New(t, enginetest.RoomScript, nil)
			s, c := te.Login("alice", "r")
			_, cb := te.Login("bob", "r")
			tc.do(te, s)
			if tc.code != 0 && c.CloseCode() != tc.code {
				t.Fatalf("close code %d, want %d", c.CloseCode(), tc.code)
			}
			fx := strings.Join(te.Sink.Payloads(), "\n")
			if strings.Count(fx, `{"leave":"alice"}`) != 1 {
				t.Fatalf("on_close side effects:\n%s", fx)
			}
			if tc.name != "shutdown" {
				if got := strings.Join(cb.Take(), "\n"); !strings.Contains(got, `{"left":"alice"}`) {
					t.Fatalf("bob got %q, want the left notice", got)
				}
			}
			// Later events are dropped: on_close never runs twice.
			s.Closed()
			s.Message([]byte(`{"seq":9}`))
			if n := strings.Count(strings.Join(te.Sink.Payloads(), "\n"), `{"leave":"alice"}`); n != 1 {
				t.Fatalf("on_close ran %d times", n)
			}
		})
	}
}

func TestEmptyRoomLeavesNoEntityAndNoSubscription(t *testing.T) {
	te := enginetest.New(t, enginetest.RoomScript, nil)
	a, _ := te.Login("alice", "r")
	b, _ := te.Login("bob", "r")
	if te.Engine.Subscriptions() != 1 || te.Mem.Subscriptions() != 1 {
		t.Fatalf("subscriptions: engine %d, broker %d; want one for the shared key",
			te.Engine.Subscriptions(), te.Mem.Subscriptions())
	}
	a.Closed()
	if te.Engine.Subscriptions() != 1 {
		t.Fatal("unsubscribed while bob is still on the key")
	}
	b.Closed()
	if te.Mem.Len() != 0 {
		t.Fatalf("entity left behind: %s", te.Mem.Get(broker.Topic{Namespace: "chat", Key: "r"}))
	}
	if te.Engine.Subscriptions() != 0 || te.Mem.Subscriptions() != 0 || te.Engine.Sessions() != 0 {
		t.Fatalf("leak: engine subs %d, broker subs %d, sessions %d",
			te.Engine.Subscriptions(), te.Mem.Subscriptions(), te.Engine.Sessions())
	}
}

func TestScriptErrorIsAnsweredNamingFunctionAndLine(t *testing.T) {
	te := enginetest.New(t, enginetest.RoomScript, nil)
	s, c := te.Login("alice", "r")
	s.Message([]byte(`{"type":"boom"}`))
	got := c.Take()
	if len(got) != 1 {
		t.Fatalf("sent %v", got)
	}
	var frame struct{ ID, Error, Message string }
	json.Unmarshal([]byte(got[0]), &frame)
	if frame.ID != "error" || frame.Error != "script_error" ||
		!strings.Contains(frame.Message, "test.lua:23") || !strings.Contains(frame.Message, "process_websocket_message") {
		t.Fatalf("error frame %s", got[0])
	}
	if c.CloseCode() != engine.CloseInternal {
		t.Fatalf("close %d, want 1011", c.CloseCode())
	}
}

func TestBrokerFailureKeepsTheConnectionOpen(t *testing.T) {
	te := enginetest.New(t, enginetest.RoomScript, nil)
	s, c := te.Login("alice", "r")
	te.Mem.Close()
	s.Message([]byte(`{"seq":1}`))
	got := c.Take()
	if len(got) != 1 || !strings.Contains(got[0], `"error":"broker_unavailable"`) {
		t.Fatalf("sent %v", got)
	}
	if c.CloseCode() != 0 {
		t.Fatalf("closed with %d after a broker failure", c.CloseCode())
	}
	// During authorisation a broker failure closes with 1011.
	s2, c2 := te.Connect(nil)
	s2.Message([]byte(`{"user":"bob","room":"r"}`))
	if got := c2.Take(); len(got) != 1 || !strings.Contains(got[0], "broker_unavailable") {
		t.Fatalf("sent %v", got)
	}
	if c2.CloseCode() != engine.CloseInternal {
		t.Fatalf("close %d, want 1011", c2.CloseCode())
	}
}

func TestForcedConflictsRetryThenFailWithBrokerConflict(t *testing.T) {
	mem := broker.NewMemory(2)
	te := enginetest.New(t, enginetest.RoomScript, mem)
	s, c := te.Login("alice", "r")
	before := len(te.Sink.Payloads())
	mem.ForceConflicts(broker.Topic{Namespace: "chat", Key: "r"}, 3)
	s.Message([]byte(`{"type":"bump"}`))
	got := c.Take()
	if len(got) != 1 || !strings.Contains(got[0], `"error":"broker_conflict"`) {
		t.Fatalf("sent %v", got)
	}
	if len(te.Sink.Payloads()) != before {
		t.Fatal("side effects of an uncommitted call were delivered")
	}
	if c.CloseCode() != 0 {
		t.Fatal("a conflict closed the connection")
	}
}

func TestPerConnectionOrderUnderConcurrency(t *testing.T) {
	script, err := luabridge.Load("echo.lua", []byte(`
local M = {}
function M.initial_authorisation(ch, m) return {} end
function M.process_websocket_message(ch, m, cd, bd) return { websocket_response = { seq = m.seq } } end
return M`), luabridge.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := engine.New(broker.NewMemory(0), &enginetest.RecordSink{}, slog.New(slog.NewTextHandler(io.Discard, nil)), engine.Options{})
	in := engine.NewIntegration("echo", "/echo", script)
	const conns, msgs = 8, 200
	var wg sync.WaitGroup
	vcs := make([]*enginetest.VConn, conns)
	for i := range vcs {
		vcs[i] = &enginetest.VConn{}
		s := e.Open(in, &luabridge.Channel{ID: fmt.Sprint(i)}, vcs[i])
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.Message([]byte(`{}`))
			for j := 0; j < msgs; j++ {
				s.Message([]byte(fmt.Sprintf(`{"seq":%d}`, j)))
			}
		}()
	}
	wg.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for i, c := range vcs {
		for {
			n := c.Pending()
			if n == msgs || time.Now().After(deadline) {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		got := c.Take()
		if len(got) != msgs {
			t.Fatalf("conn %d got %d answers, want %d (one per message)", i, len(got), msgs)
		}
		var b bytes.Buffer
		for j, m := range got {
			if want := fmt.Sprintf(`{"seq":%d}`, j); m != want {
				fmt.Fprintf(&b, "conn %d message %d: %s, want %s\n", i, j, m, want)
				break
			}
		}
		if b.Len() > 0 {
			t.Fatal(b.String())
		}
	}
}

func TestAuthTimeoutCloses1008(t *testing.T) {
	script, err := luabridge.Load("t.lua", []byte(enginetest.RoomScript), luabridge.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := engine.New(broker.NewMemory(0), &enginetest.RecordSink{}, slog.New(slog.NewTextHandler(io.Discard, nil)),
		engine.Options{AuthTimeout: 20 * time.Millisecond})
	c := &enginetest.VConn{}
	e.Open(engine.NewIntegration("chat", "/chat", script), &luabridge.Channel{ID: "x"}, c)
	deadline := time.Now().Add(5 * time.Second)
	for c.CloseCode() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if c.CloseCode() != engine.ClosePolicy {
		t.Fatalf("close %d, want 1008", c.CloseCode())
	}
	if got := c.Take(); len(got) != 1 || !strings.Contains(got[0], engine.CodeAuthTimeout) {
		t.Fatalf("sent %v", got)
	}
}

// Shutdown spreads the 1001 closes over the window instead of closing
// everyone at once; on_close runs for each.
func TestShutdownSpreadsCloses(t *testing.T) {
	te := enginetest.New(t, enginetest.RoomScript, nil)
	var conns []*enginetest.VConn
	for _, u := range []string{"a", "b", "c", "d", "e"} {
		_, c := te.Login(u, "r")
		conns = append(conns, c)
	}
	const spread = 400 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := te.Engine.Shutdown(ctx, spread); err != nil {
		t.Fatal(err)
	}
	first, last := conns[0].ClosedAt(), conns[0].ClosedAt()
	for i, c := range conns {
		at := c.ClosedAt()
		if conns[i].CloseCode() != engine.CloseGoingAway {
			t.Fatalf("conn %d closed with %d", i, conns[i].CloseCode())
		}
		if at.Before(first) {
			first = at
		}
		if at.After(last) {
			last = at
		}
	}
	// A lower bound only: a slow machine spreads them more, never less.
	if last.Sub(first) < spread/2 {
		t.Fatalf("closes within %v of each other, want them spread over %v", last.Sub(first), spread)
	}
	if n := strings.Count(strings.Join(te.Sink.Payloads(), "\n"), `"leave"`); n != 5 {
		t.Fatalf("on_close ran %d times, want 5", n)
	}
	if te.Mem.Len() != 0 {
		t.Fatal("the room's entity survived the shutdown")
	}
}

// publishingBroker publishes a message to "newbie" on the key right after
// the next update commits, as another instance would the moment it sees the
// new member in the entity.
type publishingBroker struct {
	*broker.Memory
	armed atomicBool
}

func (b *publishingBroker) Update(ctx context.Context, t broker.Topic, fn broker.UpdateFunc) error {
	err := b.Memory.Update(ctx, t, fn)
	if err == nil && b.armed.Swap(false) {
		b.Memory.Publish(ctx, t, broker.Envelope{Target: "newbie", Message: json.RawMessage(`{"hello":"newbie"}`),
			BrokerKey: t.Key, Source: "elsewhere"})
	}
	return err
}

// A broker message sent to a connection the moment its membership commits
// is delivered after its authorisation, never lost.
func TestMessageRightAfterAuthorisationCommitIsDelivered(t *testing.T) {
	pb := &publishingBroker{Memory: broker.NewMemory(3)}
	te := enginetest.New(t, enginetest.RoomScript, pb)
	pb.armed.Store(true)
	s, c := te.Connect(nil)
	s.Message([]byte(`{"user":"newbie","room":"r"}`))
	got := c.Take()
	if len(got) != 2 || !strings.Contains(got[0], "welcome") ||
		got[1] != `{"got":{"hello":"newbie"},"key":"r","source":"elsewhere"}` {
		t.Fatalf("sent %v, want the welcome then the message", got)
	}
}
