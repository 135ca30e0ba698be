package ws

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/electric-socket/electric-socket/broker"
	"github.com/electric-socket/electric-socket/host/engine"
	"github.com/electric-socket/electric-socket/host/sink"
	"github.com/electric-socket/electric-socket/luabridge"
	"github.com/electric-socket/electric-socket/tests/testkit"
)

// startRaw serves testkit.EchoScript on a loopback port and returns its address.
func startRaw(t *testing.T, opts Options) string {
	t.Helper()
	return startRawEngine(t, opts, engine.Options{})
}

// startRawEngine is startRaw with the engine's options eopts.
func startRawEngine(t *testing.T, opts Options, eopts engine.Options) string {
	t.Helper()
	script, err := luabridge.Load("echo.lua", []byte(testkit.EchoScript), luabridge.Options{})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	e := newEngine(broker.NewMemory(0), sink.Log{Log: log}, log, eopts)
	srv := NewServer(e, []*engine.Integration{engine.NewIntegration("echo", "/echo", script)}, opts, log)
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
	return l.Addr().String()
}

// rawClient speaks WebSocket by hand over TCP.
type rawClient struct {
	t      *testing.T
	nc     net.Conn
	br     *bufio.Reader
	status int // the handshake's HTTP status, when dialFrom was refused
}

func dialRaw(t *testing.T, addr, path string) *rawClient {
	nc, br := testkit.DialRaw(t, addr, path)
	return &rawClient{t: t, nc: nc, br: br}
}

func (c *rawClient) write(frames ...[]byte) {
	for _, f := range frames {
		if _, err := c.nc.Write(f); err != nil {
			c.t.Fatal(err)
		}
	}
}

// read returns the next server frame: opcode and payload.
func (c *rawClient) read() (byte, []byte) {
	c.t.Helper()
	op, p, err := testkit.ReadRawFrame(c.br)
	if err != nil {
		c.t.Fatal(err)
	}
	return op, p
}

func (c *rawClient) expectClose(code engine.CloseCode) {
	c.t.Helper()
	op, p := c.read()
	if op != 0x8 || len(p) < 2 || engine.CloseCode(binary.BigEndian.Uint16(p)) != code {
		c.t.Fatalf("got opcode %d payload %q, want close %d", op, p, code)
	}
}

func (c *rawClient) expectEOF() {
	c.t.Helper()
	if _, err := c.br.ReadByte(); err == nil {
		c.t.Fatal("connection still open")
	}
}

func TestRawPingPongAndCloseHandshake(t *testing.T) {
	addr := startRaw(t, Options{})
	c := dialRaw(t, addr, "/echo")
	c.write(text(`{}`))
	if op, p := c.read(); op != 1 || string(p) != `{"ok":true}` {
		t.Fatalf("auth response %d %q", op, p)
	}
	c.write(control(0x9, []byte("hello")))
	if op, p := c.read(); op != 0xA || string(p) != "hello" {
		t.Fatalf("got %d %q, want pong hello", op, p)
	}
	c.write(text(`{"x":1}`))
	if op, p := c.read(); op != 1 || string(p) != `{"x":1}` {
		t.Fatalf("echo %d %q", op, p)
	}
	c.write(control(0x8, closeBody(1000, "bye")))
	c.expectClose(1000)
	c.expectEOF()
}

func TestRawProtocolErrorsGetErrorFrameThenClose(t *testing.T) {
	addr := startRaw(t, Options{MaxMessageBytes: 1000})
	cases := []struct {
		name  string
		frame []byte
		code  string
		close engine.CloseCode
	}{
		{"binary", rawFrame(true, 0, 0x2, []byte{1}, false), engine.CodeBinaryFrame, engine.CloseUnsupported},
		{"too large", text(strings.Repeat("x", 1001)), engine.CodeTooLarge, engine.CloseTooBig},
		{"invalid utf-8", text("\xff"), engine.CodeInvalidUTF8, engine.CloseInvalidData},
		{"not json", text("nope"), luabridge.CodeInvalidJSON, engine.CloseInvalidData},
		{"unmasked", rawFrame(true, 0, 0x1, []byte("{}"), true), codeProtocol, engine.CloseProtocolError},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, addr, "/echo")
			c.write(text(`{}`))
			c.read()
			c.write(tc.frame)
			op, p := c.read()
			if op != 1 || !strings.Contains(string(p), `"error":"`+tc.code+`"`) {
				t.Fatalf("got %d %q, want an error frame %s", op, p, tc.code)
			}
			c.expectClose(tc.close)
			c.write(control(0x8, closeBody(uint16(tc.close), "")))
			c.expectEOF()
		})
	}
	// The server still serves.
	c := dialRaw(t, addr, "/echo")
	c.write(text(`{}`))
	if op, _ := c.read(); op != 1 {
		t.Fatal("server stopped serving")
	}
}

func TestRawUnknownPathIs404(t *testing.T) {
	addr := startRaw(t, Options{})
	resp, err := http.Get("http://" + addr + "/nope")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

// newEngine is engine.New with the server's worker pool as Spawn when
// opts has none, as the App builds it.
func newEngine(b broker.Broker, sk engine.Sink, log *slog.Logger, opts engine.Options) *engine.Engine {
	if opts.Spawn == nil {
		opts.Spawn = Spawn
	}
	return engine.New(b, sk, log, opts)
}
