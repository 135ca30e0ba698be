package ws

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/electric-socket/electric-socket/host/engine"
)

// A lone message (nothing read after it) runs on the connection's reader:
// the session's worker is not started for it. Frames that arrive together
// go to the worker (the reader goes on reading, and the worker's run writes
// their answers together), and the answers keep their order. Both reading
// modes.
func TestLoneMessagesRunOnTheReader(t *testing.T) {
	for _, mode := range []struct {
		name string
		off  bool
	}{{"poll", false}, {"goroutine", true}} {
		t.Run(mode.name, func(t *testing.T) {
			pollOff = mode.off
			t.Cleanup(func() { pollOff = false })
			var runs atomic.Int64
			addr := startRawEngine(t, Options{}, engine.Options{Spawn: func(run func()) { runs.Add(1); Spawn(run) }})
			c := dialRaw(t, addr, "/echo")
			c.write(text(`{}`))
			if op, p := c.read(); op != 1 || string(p) != `{"ok":true}` {
				t.Fatalf("auth response %d %q", op, p)
			}
			afterLogin := runs.Load()
			for i := range 5 {
				c.echo(fmt.Sprint(i))
			}
			if n := runs.Load() - afterLogin; n != 0 {
				t.Fatalf("5 lone messages started the session's worker %d times, want 0", n)
			}
			var burst []byte
			for i := range 8 {
				burst = append(burst, text(fmt.Sprintf(`{"b":%d}`, i))...)
			}
			c.write(burst) // one write: the reader finds them together
			for i := range 8 {
				if op, p := c.read(); op != 1 || string(p) != fmt.Sprintf(`{"b":%d}`, i) {
					t.Fatalf("burst answer %d: %d %q", i, op, p)
				}
			}
			if runs.Load() == afterLogin {
				t.Fatal("a burst of 8 frames ran on the reader; want its worker")
			}
		})
	}
}
