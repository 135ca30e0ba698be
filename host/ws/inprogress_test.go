package ws

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/electric-socket/electric-socket/broker"
	"github.com/electric-socket/electric-socket/host/engine"
	"github.com/electric-socket/electric-socket/host/sink"
	"github.com/electric-socket/electric-socket/luabridge"
	"github.com/electric-socket/electric-socket/tests/testkit"
)

// gatedBroker is a memory broker whose updates wait while its gate is
// shut: an update that takes as long as the test wants (a hot key's line,
// a slow Redis).
type gatedBroker struct {
	*broker.Memory
	gate atomic.Pointer[chan struct{}]
}

func (g *gatedBroker) shut() (open func()) {
	ch := make(chan struct{})
	g.gate.Store(&ch)
	return func() { g.gate.Store(nil); close(ch) }
}

func (g *gatedBroker) Update(ctx context.Context, t broker.Topic, fn broker.UpdateFunc) error {
	if ch := g.gate.Load(); ch != nil {
		<-*ch
	}
	return g.Memory.Update(ctx, t, fn)
}

func startKeyedEcho(t *testing.T, opts Options) (*gatedBroker, *engine.Engine, string) {
	t.Helper()
	script, err := luabridge.Load("keyed.lua", []byte(testkit.EchoScript), luabridge.Options{})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	b := &gatedBroker{Memory: broker.NewMemory(0)}
	e := newEngine(b, sink.Log{Log: log}, log, engine.Options{})
	srv := NewServer(e, []*engine.Integration{engine.NewIntegration("keyed", "/keyed", script)}, opts, log)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx, 0)
	})
	return b, e, l.Addr().String()
}

func keyedLogin(t *testing.T, addr string) *rawClient {
	t.Helper()
	c := dialRaw(t, addr, "/keyed")
	c.write(text(`{"key":"k"}`)) // every connection on the broker key "k"
	if op, p := c.read(); op != 1 || string(p) != `{"ok":true}` {
		t.Fatalf("auth response %d %q", op, p)
	}
	return c
}

// TestMessageInProgressAnswersPings: while a message waits for its broker
// update (here, for as long as the test holds it), the connection's
// reader goes on: a client's ping is answered at once, and the message's
// answer comes once the update is done.
func TestMessageInProgressAnswersPings(t *testing.T) {
	b, _, addr := startKeyedEcho(t, Options{})
	c := keyedLogin(t, addr)
	open := b.shut()
	c.write(text(`{"v":1}`), control(0x9, []byte("are you there")))
	if op, p := c.read(); op != 0xA || string(p) != "are you there" {
		open()
		t.Fatalf("got opcode %d %q while the message's update waits, want the pong", op, p)
	}
	open()
	if op, p := c.read(); op != 1 || string(p) != `{"v":1}` {
		t.Fatalf("got opcode %d %q, want the answer to the message", op, p)
	}
}

// TestHeldReaderIsNotBlamedForPongs: a client that sends faster than its
// messages run fills its queue, and the server stops reading it
// (backpressure); a pong it sent meanwhile waits unread. The server must
// not close it for pong_timeout: it was the server that did not read.
func TestHeldReaderIsNotBlamedForPongs(t *testing.T) {
	const pongTimeout = 200 * time.Millisecond // the subject of this test
	b, e, addr := startKeyedEcho(t, Options{PingInterval: 50 * time.Millisecond, PongTimeout: pongTimeout})
	c := keyedLogin(t, addr)
	open := b.shut()
	defer func() {
		if open != nil {
			open()
		}
	}()
	const sent = engine.MaxPendingMessages + 4
	for i := range sent {
		c.write(text(`{"v":` + string(rune('0'+i%10)) + `}`))
	}
	var s *engine.Session
	e.Each(func(x *engine.Session) { s = x })
	deadline := time.Now().Add(waitBound)
	for !s.ReaderHeld(time.Now()) { // held now
		if time.Now().After(deadline) {
			t.Fatal("the reader was never held back by a full queue")
		}
		time.Sleep(time.Millisecond)
	}
	// Answer the server's ping; the answer stays unread while the reader is
	// held. Then nothing may come for several pong timeouts: no close.
	c.nc.SetDeadline(time.Now().Add(waitBound))
	if op, p := c.read(); op != 0x9 {
		t.Fatalf("got opcode %d %q, want a ping", op, p)
	} else {
		c.write(control(0xA, p))
	}
	c.nc.SetReadDeadline(time.Now().Add(5 * pongTimeout))
	if _, err := c.br.ReadByte(); err == nil {
		c.br.UnreadByte()
		op, p := c.read()
		t.Fatalf("got opcode %d %q while the server held the reader, want nothing (no pong_timeout close)", op, p)
	} else if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Fatalf("the connection ended while the server held the reader: %v", err)
	}
	open()
	open = nil
	c.nc.SetDeadline(time.Now().Add(waitBound))
	for answered := 0; answered < sent; {
		op, p := c.read()
		switch op {
		case 1:
			answered++
		case 0x9:
			c.write(control(0xA, p))
		default:
			t.Fatalf("got opcode %d %q after %d answers, want the %d answers", op, p, answered, sent)
		}
	}
}
