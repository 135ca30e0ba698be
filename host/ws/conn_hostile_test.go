package ws

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/electric-socket/electric-socket/broker"
	"github.com/electric-socket/electric-socket/host/engine"
	"github.com/electric-socket/electric-socket/host/sink"
	"github.com/electric-socket/electric-socket/luabridge"
	"github.com/electric-socket/electric-socket/tests/testkit"
)

// waitBound bounds every single wait of these tests.
const waitBound = 5 * time.Second

// hostile is a server under test.
type hostile struct {
	srv  *Server
	eng  *engine.Engine
	addr string
}

// startHostile serves testkit.EchoScript at /echo on a loopback port with opts;
// wrap, when set, wraps the listener; sk replaces the log sink.
func startHostile(t *testing.T, opts Options, eopts engine.Options, sk engine.Sink, wrap func(net.Listener) net.Listener) *hostile {
	t.Helper()
	script, err := luabridge.Load("echo.lua", []byte(testkit.EchoScript), luabridge.Options{})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if sk == nil {
		sk = sink.Log{Log: log}
	}
	e := newEngine(broker.NewMemory(0), sk, log, eopts)
	srv := NewServer(e, []*engine.Integration{engine.NewIntegration("echo", "/echo", script)}, opts, log)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if wrap != nil {
		l = wrap(l)
	}
	go srv.Serve(l)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx, 0)
	})
	return &hostile{srv: srv, eng: e, addr: addr}
}

// login dials /echo, sends the initial message and reads {"ok":true}.
func (h *hostile) login(t *testing.T) *rawClient {
	t.Helper()
	c := dialRaw(t, h.addr, "/echo")
	c.write(text(`{}`))
	if op, p := c.read(); op != 1 || string(p) != `{"ok":true}` {
		t.Fatalf("auth response %d %q", op, p)
	}
	return c
}

// expectErrorClose reads an error frame with code, then a close with status.
func (c *rawClient) expectErrorClose(code string, status engine.CloseCode) {
	c.t.Helper()
	op, p := c.read()
	var e struct{ ID, Error string }
	if op != 1 || json.Unmarshal(p, &e) != nil || e.ID != "error" || e.Error != code {
		c.t.Fatalf("got opcode %d %q, want an error frame %q", op, p, code)
	}
	c.expectClose(status)
}

// echo checks that the connection still echoes.
func (c *rawClient) echo(v string) {
	c.t.Helper()
	c.write(text(`{"v":"` + v + `"}`))
	if op, p := c.read(); op != 1 || string(p) != `{"v":"`+v+`"}` {
		c.t.Fatalf("echo: got %d %q", op, p)
	}
}

// No initial message within auth_timeout: an auth_timeout error frame and
// close 1008, at the wire.
func TestHostileAuthTimeout(t *testing.T) {
	h := startHostile(t, Options{}, engine.Options{AuthTimeout: time.Second}, nil, nil)
	c := dialRaw(t, h.addr, "/echo")
	c.expectErrorClose(engine.CodeAuthTimeout, engine.ClosePolicy)
	h.login(t).echo("after")
}

// 100,000 one-byte continuation frames: the size limit counts the whole
// message, so the client gets 1009 when the sum passes the limit.
func TestHostileContinuationFlood(t *testing.T) {
	h := startHostile(t, Options{}, engine.Options{}, nil, nil)
	c := h.login(t)
	go func() {
		var b []byte
		b = append(b, fragment(1, "{")...)
		for range 100_000 {
			b = append(b, fragment(0, "x")...)
		}
		b = append(b, final("}")...)
		c.nc.Write(b) // fails once the server stops reading: fine
	}()
	c.expectErrorClose(engine.CodeTooLarge, engine.CloseTooBig)
	h.login(t).echo("after")
}

// A frame header declaring 2^62 bytes is refused with 1009 at once, over
// TCP: the server does not wait for (or allocate) the payload.
func TestHostileHugeDeclaredLengthOverTCP(t *testing.T) {
	h := startHostile(t, Options{}, engine.Options{}, nil, nil)
	c := h.login(t)
	hdr := []byte{0x81, 0x80 | 127}
	hdr = binary.BigEndian.AppendUint64(hdr, 1<<62)
	c.write(append(hdr, 1, 2, 3, 4)) // the mask; no payload follows
	c.expectErrorClose(engine.CodeTooLarge, engine.CloseTooBig)
	h.login(t).echo("after")
}

// The message rate: a client over [limits] message_rate gets rate_limited
// and close 1008; one within its burst is served.
func TestHostileMessageRate(t *testing.T) {
	h := startHostile(t, Options{MessageRate: 5, MessageBurst: 10, RateClose: true}, engine.Options{}, nil, nil)
	ok := h.login(t) // the login is message 1 of its bucket
	for i := range 8 {
		ok.echo(fmt.Sprint(i))
	}
	c := h.login(t)
	var flood []byte
	for i := range 50 {
		flood = append(flood, text(fmt.Sprintf(`{"v":"%d"}`, i))...)
	}
	c.write(flood)
	echoed := 0
	for {
		op, p := c.read()
		if op == 1 && strings.HasPrefix(string(p), `{"v":`) {
			echoed++
			continue
		}
		var e struct{ Error string }
		if op != 1 || json.Unmarshal(p, &e) != nil || e.Error != CodeRateLimited {
			t.Fatalf("after %d echoes got opcode %d %q, want rate_limited", echoed, op, p)
		}
		break
	}
	if echoed >= 50 {
		t.Fatalf("all %d messages were served", echoed)
	}
	c.expectClose(engine.ClosePolicy)
	h.login(t).echo("after")
}

// A client that sends but never reads is closed as slow once its send
// queue passes max_queued_bytes, and the queue never grows much past it.
func TestHostileSlowReader(t *testing.T) {
	const maxQueued = 256 << 10
	h := startHostile(t, Options{MaxQueuedBytes: maxQueued}, engine.Options{}, nil, nil)
	nc := dialSmallWindow(t, h.addr).nc // logged in; it reads no more
	msg := text(`{"p":"` + strings.Repeat("x", 60<<10) + `"}`)
	const most = 128 << 20
	sent := 0
	for sent < most {
		nc.SetWriteDeadline(time.Now().Add(3 * waitBound))
		if _, err := nc.Write(msg); err != nil {
			break
		}
		sent += len(msg)
	}
	if sent >= most {
		t.Fatalf("the server took %d MiB from a client that never reads without closing it", most>>20)
	}
	testkit.Eventually(t, 10*time.Second, "the session to end", func() bool { return h.eng.Sessions() == 0 })
	// The bound: the limit, plus the frame accepted under it, plus the
	// frame being written.
	if peak := h.srv.peakQueued.Load(); peak > maxQueued+2*(int64(len(msg))+frameOverhead) {
		t.Errorf("the send queue reached %d bytes for a limit of %d", peak, maxQueued)
	}
	t.Logf("sent %d KiB before the close; queue peak %d KiB", sent>>10, h.srv.peakQueued.Load()>>10)
	h.login(t).echo("after")
}

// The server pings; a client that answers stays, one that never answers is
// closed with pong_timeout and 1008.
func TestHostilePings(t *testing.T) {
	h := startHostile(t, Options{PingInterval: 50 * time.Millisecond, PongTimeout: time.Second}, engine.Options{}, nil, nil)
	t.Run("answered", func(t *testing.T) {
		c := h.login(t)
		for range 3 {
			op, p := c.read()
			if op != 0x9 {
				t.Fatalf("got opcode %d %q, want a ping", op, p)
			}
			c.write(control(0xA, p))
		}
		c.echo("alive")
	})
	t.Run("never answered", func(t *testing.T) {
		c := h.login(t)
		if op, _ := c.read(); op != 0x9 {
			t.Fatalf("got opcode %d, want a ping", op)
		}
		c.expectErrorClose(CodePongTimeout, engine.ClosePolicy)
	})
}

// panicSink panics on a side effect {boom = "sink"}: a bug in the runner's
// path.
type panicSink struct{}

func (panicSink) Deliver(_ context.Context, e engine.SideEffect) error {
	if strings.Contains(string(e.Payload), `"sink"`) {
		panic("injected panic in the sink")
	}
	return nil
}

// A Go panic while handling one connection closes that connection only:
// in the session's runner (internal_error, 1011) and in the reader (the
// socket closes); the other connection and the server go on.
func TestHostilePanicClosesOneConnection(t *testing.T) {
	var hookMu sync.Mutex
	readerHook = func(msg []byte) {
		hookMu.Lock()
		defer hookMu.Unlock()
		if strings.Contains(string(msg), "reader-boom") {
			panic("injected panic in the reader")
		}
	}
	t.Cleanup(func() { readerHook = nil })
	h := startHostile(t, Options{}, engine.Options{}, panicSink{}, nil)
	other := h.login(t)

	c := h.login(t)
	c.write(text(`{"side":"sink"}`))
	c.expectErrorClose(engine.CodeInternal, engine.CloseInternal)
	other.echo("after the runner's panic")

	r := h.login(t)
	r.write(text(`{"v":"reader-boom"}`))
	r.expectEOF()
	other.echo("after the reader's panic")
	h.login(t).echo("a new one")
	testkit.Eventually(t, 10*time.Second, "the panicked sessions to end", func() bool { return h.eng.Sessions() == 2 })
}
