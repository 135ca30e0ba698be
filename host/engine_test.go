package host

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
	"github.com/electric-socket/electric-socket/luabridge"
)

// vconn is a virtual transport: it records what the engine sends.
type vconn struct {
	mu       sync.Mutex
	sent     []string
	closed   bool
	code     CloseCode
	reason   string
	closedAt time.Time
}

func (c *vconn) Send(msg []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.sent = append(c.sent, string(msg))
	}
}

func (c *vconn) Close(code CloseCode, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.closed, c.code, c.reason, c.closedAt = true, code, reason, time.Now()
	}
}

// take returns and forgets what was sent so far.
func (c *vconn) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.sent
	c.sent = nil
	return out
}

func (c *vconn) closeCode() CloseCode {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		return 0
	}
	return c.code
}

// recordSink keeps side effects in order.
type recordSink struct {
	mu  sync.Mutex
	got []SideEffect
}

func (s *recordSink) Deliver(_ context.Context, e SideEffect) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, e)
	return nil
}

func (s *recordSink) payloads() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, e := range s.got {
		out = append(out, e.Function+" "+string(e.Payload))
	}
	return out
}

// testEngine runs script with inline (synchronous) delivery: when a call
// into a session returns, everything it caused has happened.
type testEngine struct {
	t      *testing.T
	engine *Engine
	in     *Integration
	mem    *broker.Memory
	sink   *recordSink
	n      int
}

func newTestEngine(t *testing.T, src string, b broker.Broker) *testEngine {
	t.Helper()
	script, err := luabridge.Load("test.lua", []byte(src), luabridge.Options{Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	mem, _ := b.(*broker.Memory)
	if b == nil {
		mem = broker.NewMemory(3)
		b = mem
	}
	sink := &recordSink{}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	e := NewEngine(b, sink, log, EngineOptions{AuthTimeout: -1, Spawn: func(run func()) { run() }})
	return &testEngine{t: t, engine: e, in: NewIntegration("chat", "/chat", script), mem: mem, sink: sink}
}

func (te *testEngine) connect(query map[string]string) (*Session, *vconn) {
	te.n++
	c := &vconn{}
	ch := &luabridge.Channel{ID: fmt.Sprintf("c%d", te.n), Integration: "chat", Path: "/chat", RemoteAddr: "127.0.0.1:1", Query: query}
	s := te.engine.Open(te.in, ch, c)
	if s == nil {
		te.t.Fatal("engine refused a session")
	}
	return s, c
}

func (te *testEngine) login(user, room string) (*Session, *vconn) {
	s, c := te.connect(nil)
	s.Message([]byte(fmt.Sprintf(`{"user":%q,"room":%q}`, user, room)))
	if got := c.take(); len(got) != 1 || !strings.Contains(got[0], `"welcome"`) {
		te.t.Fatalf("login %s: got %v", user, got)
	}
	return s, c
}

// A small integration exercising every function; members live in broker data.
const roomScript = `
local es = require("es")
local M = {}
function M.initial_authorisation(channel, m)
  if m.user == nil then return es.fail({ reason = "no user" }) end
  return { user = m.user, room = m.room }
end
function M.channel_identifier(channel, cd) return cd.user end
function M.broker_key(channel, cd) return cd.room end
function M.broker_authorisation(channel, cd, bd)
  local members = bd.members or {}
  members[cd.user] = channel.id
  return { broker_data = { members = members }, websocket_response = { type = "welcome" },
           side_effects = { { join = cd.user } } }
end
function M.process_websocket_message(channel, m, cd, bd)
  if m.type == "to" then
    return { broker_messages = { { target = m.target, message = { from = cd.user, text = m.text } } },
             websocket_response = { type = "sent", seq = m.seq } }
  elseif m.type == "quit" then
    return { websocket_response = { type = "bye" }, should_close = true }
  elseif m.type == "boom" then
    error("boom")
  elseif m.type == "bump" then
    local n = (bd.n or 0) + 1
    return { broker_data = { n = n, members = bd.members }, websocket_response = { n = n },
             broker_messages = { { target = "peer", message = { n = n } } }, side_effects = { { n = n } } }
  end
  return { websocket_response = { echo = m.seq } }
end
function M.process_broker_message(channel, env, cd, bd)
  if env.message.kick then return { should_close = true } end
  return { websocket_response = { got = env.message, source = env.source, key = env.broker_key } }
end
function M.on_close(channel, cd, bd)
  local members = bd.members or {}
  members[cd.user] = nil
  local msgs = {}
  for user in pairs(members) do msgs[#msgs + 1] = { target = user, message = { left = cd.user } } end
  local data = { members = members }
  if next(members) == nil then data = es.DELETE end
  return { broker_data = data, broker_messages = msgs, side_effects = { { leave = cd.user } } }
end
return M
`

func TestFailedAuthorisationAnswersAndCloses1008(t *testing.T) {
	te := newTestEngine(t, roomScript, nil)
	s, c := te.connect(nil)
	s.Message([]byte(`{"room":"r"}`))
	got := c.take()
	if len(got) != 1 || got[0] != `{"id":"auth","reason":"no user"}` {
		t.Fatalf("sent %v", got)
	}
	if c.closeCode() != ClosePolicy {
		t.Fatalf("close code %d, want 1008", c.closeCode())
	}
	if len(te.sink.payloads()) != 0 {
		t.Fatalf("on_close or side effects ran for an unauthorised session: %v", te.sink.payloads())
	}
	if te.engine.Sessions() != 0 {
		t.Fatal("session not forgotten")
	}
}

func TestNothingBeforeAuthorisationFinishes(t *testing.T) {
	te := newTestEngine(t, roomScript, nil)
	s, c := te.connect(nil)
	s.Message([]byte(`{"user":"a","room":"r"}`))
	s.Message([]byte(`{"seq":1}`))
	got := c.take()
	if len(got) != 2 || !strings.Contains(got[0], "welcome") || got[1] != `{"echo":1}` {
		t.Fatalf("sent %v", got)
	}
}

func TestBrokerMessagesReachMatchingConnectionsExceptSource(t *testing.T) {
	te := newTestEngine(t, roomScript, nil)
	a1, ca1 := te.login("alice", "r1")
	_, ca2 := te.login("alice", "r1") // a second alice connection on the same key
	_, cb := te.login("bob", "r1")
	_, cother := te.login("alice", "r2") // same identifier, other key
	ca1.take()

	a1.Message([]byte(`{"type":"to","target":"alice","text":"hi","seq":1}`))
	if got := ca1.take(); len(got) != 1 || got[0] != `{"seq":1,"type":"sent"}` {
		t.Fatalf("source got %v, want only its response", got)
	}
	want := `{"got":{"from":"alice","text":"hi"},"key":"r1","source":"c1"}`
	if got := ca2.take(); len(got) != 1 || got[0] != want {
		t.Fatalf("other alice on r1 got %v, want %s", got, want)
	}
	if got := cb.take(); len(got) != 0 {
		t.Fatalf("bob got %v", got)
	}
	if got := cother.take(); len(got) != 0 {
		t.Fatalf("alice on r2 got %v", got)
	}
}

func TestOnlyTheCommittedAttemptIsActedOn(t *testing.T) {
	mem := broker.NewMemory(3)
	rb := &racingBroker{Memory: mem}
	te := newTestEngine(t, roomScript, rb)
	a, ca := te.login("alice", "r")
	_, cp := te.login("peer", "r")
	ca.take()
	before := len(te.sink.payloads())

	rb.race.Store(true)
	a.Message([]byte(`{"type":"bump"}`))
	// The first attempt saw n absent (n = 1) and lost to a writer that set
	// n = 10; only the second attempt (n = 11) may be acted on.
	if got := ca.take(); len(got) != 1 || got[0] != `{"n":11}` {
		t.Fatalf("response %v, want only {\"n\":11}", got)
	}
	if got := cp.take(); len(got) != 1 || !strings.Contains(got[0], `"n":11`) {
		t.Fatalf("peer got %v, want one message with n = 11", got)
	}
	fx := te.sink.payloads()[before:]
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
		do   func(te *testEngine, s *Session)
		code CloseCode
	}{
		{"client closes", func(te *testEngine, s *Session) { s.Closed() }, 0},
		{"should_close", func(te *testEngine, s *Session) { s.Message([]byte(`{"type":"quit"}`)) }, CloseNormal},
		{"script error", func(te *testEngine, s *Session) { s.Message([]byte(`{"type":"boom"}`)) }, CloseInternal},
		{"bad input", func(te *testEngine, s *Session) { s.Message([]byte(`[1]`)) }, CloseInvalidData},
		{"transport failure", func(te *testEngine, s *Session) { s.Fail(CodeTooLarge, "too big", CloseTooBig) }, CloseTooBig},
		{"broker message closes", func(te *testEngine, s *Session) {
			_, ck := te.login("kicker", "r")
			_ = ck
			te.publish("r", "alice", `{"kick":true}`)
		}, CloseNormal},
		{"shutdown", func(te *testEngine, s *Session) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := te.engine.Shutdown(ctx, 0); err != nil {
				t.Fatal(err)
			}
		}, CloseGoingAway},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			te := newTestEngine(t, roomScript, nil)
			s, c := te.login("alice", "r")
			_, cb := te.login("bob", "r")
			tc.do(te, s)
			if tc.code != 0 && c.closeCode() != tc.code {
				t.Fatalf("close code %d, want %d", c.closeCode(), tc.code)
			}
			fx := strings.Join(te.sink.payloads(), "\n")
			if strings.Count(fx, `{"leave":"alice"}`) != 1 {
				t.Fatalf("on_close side effects:\n%s", fx)
			}
			if tc.name != "shutdown" {
				if got := strings.Join(cb.take(), "\n"); !strings.Contains(got, `{"left":"alice"}`) {
					t.Fatalf("bob got %q, want the left notice", got)
				}
			}
			// Later events are dropped: on_close never runs twice.
			s.Closed()
			s.Message([]byte(`{"seq":9}`))
			if n := strings.Count(strings.Join(te.sink.payloads(), "\n"), `{"leave":"alice"}`); n != 1 {
				t.Fatalf("on_close ran %d times", n)
			}
		})
	}
}

func (te *testEngine) publish(key, target, msg string) {
	err := te.engine.broker.Publish(context.Background(), broker.Topic{Namespace: "chat", Key: key},
		broker.Envelope{Target: target, Message: json.RawMessage(msg), BrokerKey: key, Source: "elsewhere"})
	if err != nil {
		te.t.Fatal(err)
	}
}

func TestEmptyRoomLeavesNoEntityAndNoSubscription(t *testing.T) {
	te := newTestEngine(t, roomScript, nil)
	a, _ := te.login("alice", "r")
	b, _ := te.login("bob", "r")
	if te.engine.Subscriptions() != 1 || te.mem.Subscriptions() != 1 {
		t.Fatalf("subscriptions: engine %d, broker %d; want one for the shared key",
			te.engine.Subscriptions(), te.mem.Subscriptions())
	}
	a.Closed()
	if te.engine.Subscriptions() != 1 {
		t.Fatal("unsubscribed while bob is still on the key")
	}
	b.Closed()
	if te.mem.Len() != 0 {
		t.Fatalf("entity left behind: %s", te.mem.Get(broker.Topic{Namespace: "chat", Key: "r"}))
	}
	if te.engine.Subscriptions() != 0 || te.mem.Subscriptions() != 0 || te.engine.Sessions() != 0 {
		t.Fatalf("leak: engine subs %d, broker subs %d, sessions %d",
			te.engine.Subscriptions(), te.mem.Subscriptions(), te.engine.Sessions())
	}
}

func TestScriptErrorIsAnsweredNamingFunctionAndLine(t *testing.T) {
	te := newTestEngine(t, roomScript, nil)
	s, c := te.login("alice", "r")
	s.Message([]byte(`{"type":"boom"}`))
	got := c.take()
	if len(got) != 1 {
		t.Fatalf("sent %v", got)
	}
	var frame struct{ ID, Error, Message string }
	json.Unmarshal([]byte(got[0]), &frame)
	if frame.ID != "error" || frame.Error != "script_error" ||
		!strings.Contains(frame.Message, "test.lua:23") || !strings.Contains(frame.Message, "process_websocket_message") {
		t.Fatalf("error frame %s", got[0])
	}
	if c.closeCode() != CloseInternal {
		t.Fatalf("close %d, want 1011", c.closeCode())
	}
}

func TestBrokerFailureKeepsTheConnectionOpen(t *testing.T) {
	te := newTestEngine(t, roomScript, nil)
	s, c := te.login("alice", "r")
	te.mem.Close()
	s.Message([]byte(`{"seq":1}`))
	got := c.take()
	if len(got) != 1 || !strings.Contains(got[0], `"error":"broker_unavailable"`) {
		t.Fatalf("sent %v", got)
	}
	if c.closeCode() != 0 {
		t.Fatalf("closed with %d after a broker failure", c.closeCode())
	}
	// During authorisation a broker failure closes with 1011.
	s2, c2 := te.connect(nil)
	s2.Message([]byte(`{"user":"bob","room":"r"}`))
	if got := c2.take(); len(got) != 1 || !strings.Contains(got[0], "broker_unavailable") {
		t.Fatalf("sent %v", got)
	}
	if c2.closeCode() != CloseInternal {
		t.Fatalf("close %d, want 1011", c2.closeCode())
	}
}

func TestForcedConflictsRetryThenFailWithBrokerConflict(t *testing.T) {
	mem := broker.NewMemory(2)
	te := newTestEngine(t, roomScript, mem)
	s, c := te.login("alice", "r")
	before := len(te.sink.payloads())
	mem.ForceConflicts(broker.Topic{Namespace: "chat", Key: "r"}, 3)
	s.Message([]byte(`{"type":"bump"}`))
	got := c.take()
	if len(got) != 1 || !strings.Contains(got[0], `"error":"broker_conflict"`) {
		t.Fatalf("sent %v", got)
	}
	if len(te.sink.payloads()) != before {
		t.Fatal("side effects of an uncommitted call were delivered")
	}
	if c.closeCode() != 0 {
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
	e := NewEngine(broker.NewMemory(0), &recordSink{}, slog.New(slog.NewTextHandler(io.Discard, nil)), EngineOptions{})
	in := NewIntegration("echo", "/echo", script)
	const conns, msgs = 8, 200
	var wg sync.WaitGroup
	vcs := make([]*vconn, conns)
	for i := range vcs {
		vcs[i] = &vconn{}
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
			c.mu.Lock()
			n := len(c.sent)
			c.mu.Unlock()
			if n == msgs || time.Now().After(deadline) {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		var b bytes.Buffer
		for j, m := range c.take() {
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
	script, err := luabridge.Load("t.lua", []byte(roomScript), luabridge.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(broker.NewMemory(0), &recordSink{}, slog.New(slog.NewTextHandler(io.Discard, nil)),
		EngineOptions{AuthTimeout: 20 * time.Millisecond})
	c := &vconn{}
	e.Open(NewIntegration("chat", "/chat", script), &luabridge.Channel{ID: "x"}, c)
	deadline := time.Now().Add(5 * time.Second)
	for c.closeCode() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if c.closeCode() != ClosePolicy {
		t.Fatalf("close %d, want 1008", c.closeCode())
	}
	if got := c.take(); len(got) != 1 || !strings.Contains(got[0], CodeAuthTimeout) {
		t.Fatalf("sent %v", got)
	}
}

// Shutdown spreads the 1001 closes over the window instead of closing
// everyone at once; on_close runs for each.
func TestShutdownSpreadsCloses(t *testing.T) {
	te := newTestEngine(t, roomScript, nil)
	var conns []*vconn
	for _, u := range []string{"a", "b", "c", "d", "e"} {
		_, c := te.login(u, "r")
		conns = append(conns, c)
	}
	const spread = 400 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := te.engine.Shutdown(ctx, spread); err != nil {
		t.Fatal(err)
	}
	first, last := conns[0].closedAt, conns[0].closedAt
	for i, c := range conns {
		at := c.closedAt
		if conns[i].closeCode() != CloseGoingAway {
			t.Fatalf("conn %d closed with %d", i, conns[i].closeCode())
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
	if n := strings.Count(strings.Join(te.sink.payloads(), "\n"), `"leave"`); n != 5 {
		t.Fatalf("on_close ran %d times, want 5", n)
	}
	if te.mem.Len() != 0 {
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
	te := newTestEngine(t, roomScript, pb)
	pb.armed.Store(true)
	s, c := te.connect(nil)
	s.Message([]byte(`{"user":"newbie","room":"r"}`))
	got := c.take()
	if len(got) != 2 || !strings.Contains(got[0], "welcome") ||
		got[1] != `{"got":{"hello":"newbie"},"key":"r","source":"elsewhere"}` {
		t.Fatalf("sent %v, want the welcome then the message", got)
	}
}
