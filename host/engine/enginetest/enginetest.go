// Package enginetest runs the engine in tests without a network: a
// transport that records what it is sent, a sink that records side
// effects, and a harness that delivers synchronously.
package enginetest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/electric-socket/electric-socket/broker"
	"github.com/electric-socket/electric-socket/host/engine"
	"github.com/electric-socket/electric-socket/luabridge"
)

// VConn is a virtual transport: it records what the engine sends.
type VConn struct {
	mu       sync.Mutex
	sent     []string
	closed   bool
	code     engine.CloseCode
	reason   string
	closedAt time.Time
}

// Send implements engine.Transport.
func (c *VConn) Send(msg []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.sent = append(c.sent, string(msg))
	}
}

// Close implements engine.Transport.
func (c *VConn) Close(code engine.CloseCode, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.closed, c.code, c.reason, c.closedAt = true, code, reason, time.Now()
	}
}

// Take returns and forgets what was sent so far.
func (c *VConn) Take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.sent
	c.sent = nil
	return out
}

// Pending returns how many messages were sent and not taken yet.
func (c *VConn) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.sent)
}

// CloseCode returns the code the engine closed with; 0 while open.
func (c *VConn) CloseCode() engine.CloseCode {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		return 0
	}
	return c.code
}

// RecordSink keeps side effects in order.
type RecordSink struct {
	mu  sync.Mutex
	got []engine.SideEffect
}

// Deliver implements engine.Sink.
func (s *RecordSink) Deliver(_ context.Context, e engine.SideEffect) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, e)
	return nil
}

// Payloads returns "<function> <payload>" for every side effect so far.
func (s *RecordSink) Payloads() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, e := range s.got {
		out = append(out, e.Function+" "+string(e.Payload))
	}
	return out
}

// Effects returns the side effects so far.
func (s *RecordSink) Effects() []engine.SideEffect {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]engine.SideEffect(nil), s.got...)
}

// Harness runs a script with inline (synchronous) delivery: when a call
// into a session returns, everything it caused has happened.
type Harness struct {
	T      *testing.T
	Engine *engine.Engine
	In     *engine.Integration
	Broker broker.Broker
	Mem    *broker.Memory // Broker when it is a memory broker
	Sink   *RecordSink
	// IDPrefix starts the channel ids of the harness's connections (c1,
	// c2, ... after it), so that two harnesses on one broker differ.
	IDPrefix string
	n        int
}

// New returns a harness running src as the integration "chat" on b (a new
// memory broker when nil).
func New(t *testing.T, src string, b broker.Broker) *Harness {
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
	sink := &RecordSink{}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	e := engine.New(b, sink, log, engine.Options{AuthTimeout: -1, Spawn: Inline})
	return &Harness{T: t, Engine: e, In: engine.NewIntegration("chat", "/chat", script), Broker: b, Mem: mem, Sink: sink}
}

// Inline is an engine.Options.Spawn that runs the work at once, on the
// caller's goroutine.
func Inline(run func()) { run() }

// Connect opens a session with the given query parameters.
func (h *Harness) Connect(query map[string]string) (*engine.Session, *VConn) {
	h.n++
	c := &VConn{}
	ch := &luabridge.Channel{ID: fmt.Sprintf("%sc%d", h.IDPrefix, h.n), Integration: "chat", Path: "/chat", RemoteAddr: "127.0.0.1:1", Query: query}
	s := h.Engine.Open(h.In, ch, c)
	if s == nil {
		h.T.Fatal("engine refused a session")
	}
	return s, c
}

// Login connects and authorises user in room (RoomScript's initial
// message), and checks the welcome.
func (h *Harness) Login(user, room string) (*engine.Session, *VConn) {
	s, c := h.Connect(nil)
	s.Message([]byte(fmt.Sprintf(`{"user":%q,"room":%q}`, user, room)))
	if got := c.Take(); len(got) != 1 || !strings.Contains(got[0], `"welcome"`) {
		h.T.Fatalf("login %s: got %v", user, got)
	}
	return s, c
}

// RoomScript is a small integration exercising every function; members
// live in broker data.
const RoomScript = `
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

// Publish publishes msg to target on room key, as from another instance.
func (h *Harness) Publish(key, target, msg string) {
	err := h.Broker.Publish(context.Background(), broker.Topic{Namespace: "chat", Key: key},
		broker.Envelope{Target: target, Message: []byte(msg), BrokerKey: key, Source: "elsewhere"})
	if err != nil {
		h.T.Fatal(err)
	}
}

// ClosedAt returns when the engine closed c (the zero time while open).
func (c *VConn) ClosedAt() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closedAt
}
