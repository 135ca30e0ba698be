package ws

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/electric-socket/electric-socket/host/engine"
)

// unwritten keeps, after a writev that stopped anywhere, exactly the bytes
// not yet on the wire, in order: what the batch would have written equals
// what was written plus what unwritten returns, written out.
func TestUnwrittenKeepsTheRestOfTheBatch(t *testing.T) {
	frames := []outFrame{
		{op: ws.OpText, payload: []byte(strings.Repeat("a", 300))}, // a 4-byte header
		{op: ws.OpText, payload: []byte("bb")},                     // a 2-byte header
		{op: ws.OpPong},                                            // a header only
		{op: opTail, payload: []byte("tail")},
	}
	whole := batchBytes(t, frames)
	for written := 0; written <= len(whole); written++ {
		b := &frameBatch{frames: append([]outFrame(nil), frames...)}
		if err := b.prepare(); err != nil {
			t.Fatal(err)
		}
		left := b.unwritten(written)
		got := append(append([]byte(nil), whole[:written]...), batchBytes(t, left)...)
		if !bytes.Equal(got, whole) {
			t.Fatalf("after %d of %d bytes written: the rest differs", written, len(whole))
		}
		if written == len(whole) && left != nil {
			t.Fatalf("everything written, %d frames left", len(left))
		}
	}
}

func batchBytes(t *testing.T, frames []outFrame) []byte {
	t.Helper()
	var buf bytes.Buffer
	b := &frameBatch{frames: frames}
	if len(frames) == 0 {
		return nil
	}
	if err := b.writeTo(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// A client that sends a long pipeline and reads only afterwards gets every
// answer whole and in order: the answers fill the socket, so writes that it
// took only in part go on from where they stopped (on the writer).
func TestInlineWritesResumeWhereTheSocketStopped(t *testing.T) {
	h := startHostile(t, Options{}, engine.Options{}, nil, nil)
	c := h.login(t)
	const n = 300 // 6 MiB of answers: more than the socket buffers hold
	payload := strings.Repeat("x", 20<<10)
	done := make(chan error, 1)
	go func() {
		for i := range n {
			if _, err := c.nc.Write(text(fmt.Sprintf(`{"i":%d,"p":%q}`, i, payload))); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	time.Sleep(100 * time.Millisecond) // answers pile up meanwhile (the test passes without it, testing less)
	c.nc.SetDeadline(time.Now().Add(3 * waitBound))
	for i := range n {
		op, p := c.read()
		if want := fmt.Sprintf(`{"i":%d,"p":%q}`, i, payload); op != 1 || string(p) != want {
			t.Fatalf("answer %d: opcode %d, %d bytes, want the echo of message %d", i, op, len(p), i)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	c.echo("after")
}

// A client closed as slow while the end of a frame waits to go (a
// non-blocking write took only part of it) gets that end, then the close
// frame: the frames after it are dropped, the stream stays whole.
func TestCloseSlowKeepsTheEndOfAFrameBegun(t *testing.T) {
	server, client := net.Pipe()
	defer client.Close()
	opts := Options{}.withDefaults()
	c := &wsConn{nc: server, opts: &opts, log: slog.New(slog.DiscardHandler), gone: make(chan struct{})}
	c.out = []outFrame{{op: opTail, payload: []byte("end of a frame")}, {op: ws.OpText, payload: []byte("next")}}
	c.writing = true // a writer holds the queue: closeSlow only rearranges it
	c.closeSlow()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.out) != 2 || c.out[0].op != opTail || string(c.out[0].payload) != "end of a frame" || c.out[1].op != ws.OpClose {
		t.Fatalf("queue after closeSlow: %+v, want the frame's end, then the close frame", c.out)
	}
	if want := len("end of a frame") + len(c.out[1].payload) + 2*frameOverhead; c.queuedBytes != want {
		t.Errorf("queued bytes %d, want %d", c.queuedBytes, want)
	}
}
