package ws

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/electric-socket/electric-socket/host/engine"
	"github.com/electric-socket/electric-socket/tests/testkit"
)

// dialSmallWindow dials /echo with a small receive buffer (the server's
// writes block soon once it stops reading) and logs in.
func dialSmallWindow(t *testing.T, addr string) *rawClient {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, waitBound)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.(*net.TCPConn).SetReadBuffer(16 << 10)
	nc.SetDeadline(time.Now().Add(waitBound))
	br, resp, err := testkit.RawUpgrade(nc, "/echo")
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	c := &rawClient{t: t, nc: nc, br: br}
	c.write(text(`{}`))
	if op, p := c.read(); op != 1 || string(p) != `{"ok":true}` {
		t.Fatalf("auth response %d %q", op, p)
	}
	nc.SetDeadline(time.Time{})
	return c
}

// [server] write_timeout: a frame write that makes no progress for that
// long ends the connection (its session ends, on_close would run), even
// when the send queue is far from max_queued_bytes. Without it the writer
// would wait on a client that never reads for ever.
func TestWriteTimeoutEndsAStuckWrite(t *testing.T) {
	h := startHostile(t, Options{WriteTimeout: 300 * time.Millisecond, MaxQueuedBytes: 1 << 30}, engine.Options{}, nil, nil)
	c := dialSmallWindow(t, h.addr)
	msg := text(`{"p":"` + strings.Repeat("x", 60<<10) + `"}`)
	// Echoes the server cannot write pile up until its write is stuck for
	// write_timeout; the client stops when its own writes block (the
	// server stops reading once 64 messages wait) or fail (closed).
	stop := time.Now().Add(waitBound)
	for time.Now().Before(stop) && h.eng.Sessions() == 1 {
		c.nc.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		if _, err := c.nc.Write(msg); err != nil && !isTimeout(err) {
			break
		}
	}
	testkit.Eventually(t, waitBound, "the session of the stuck connection to end", func() bool { return h.eng.Sessions() == 0 })
	if q := h.srv.peakQueued.Load(); q >= 1<<30 {
		t.Errorf("the queue reached max_queued_bytes (%d): the close was the queue's, not the write timeout's", q)
	}
	h.login(t).echo("after")
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// [server] close_timeout: after the server's close frame, a client that
// never answers it is cut off once close_timeout (default 2s) has passed,
// so that a shutdown does not wait for it: Shutdown returns well within its
// own deadline, every connection ended.
func TestCloseTimeoutCutsAClientThatNeverAnswersTheClose(t *testing.T) {
	h := startHostile(t, Options{}, engine.Options{}, nil, nil)
	dialSmallWindow(t, h.addr) // logged in; it reads no more and never answers a close
	ctx, cancel := context.WithTimeout(context.Background(), 3*waitBound)
	defer cancel()
	if err := h.srv.Shutdown(ctx, 0); err != nil {
		t.Fatalf("Shutdown with a client that never answers the close: %v", err)
	}
	if n := h.eng.Sessions(); n != 0 {
		t.Errorf("%d sessions after Shutdown", n)
	}
}
