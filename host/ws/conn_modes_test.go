package ws

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/electric-socket/electric-socket/tests/testkit"
)

// The transport's tests run in both reading modes: poll mode (the default
// on Linux for plain TCP) and goroutine mode (TLS, wrapped listeners,
// other systems). No test in this package runs in parallel, so switching
// the package-level flag is safe.
func TestGoroutineModeTransport(t *testing.T) {
	pollOff = true
	t.Cleanup(func() { pollOff = false })
	for name, test := range map[string]func(*testing.T){
		"Conformance":                     TestConformance,
		"RawPingPongAndCloseHandshake":    TestRawPingPongAndCloseHandshake,
		"RawProtocolErrorsGetErrorFrame":  TestRawProtocolErrorsGetErrorFrameThenClose,
		"HostileSlowReader":               TestHostileSlowReader,
		"HostilePings":                    TestHostilePings,
		"HostilePanicClosesOneConnection": TestHostilePanicClosesOneConnection,
		"ShutdownRightAfterUpgrade":       TestShutdownRightAfterUpgrade,
		"AuthorisedIdleConnectionsInPoll": testIdleConnectionsHoldGoroutines(true, Options{}),
	} {
		t.Run(name, test)
	}
}

// In poll mode an idle authorised connection holds no goroutine: 200 of
// them, each after its auth message, an echo, a ping answered and an
// unsolicited pong, leave no goroutine in a connection's code; in goroutine
// mode each holds its reader.
func TestPollModeIdleConnectionsHoldNoGoroutine(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("poll mode is Linux-only")
	}
	testIdleConnectionsHoldGoroutines(false, Options{})(t)
}

// [server] idle_poll = false gives each connection a reader goroutine.
func TestIdlePollOffGivesEachConnectionAReader(t *testing.T) {
	testIdleConnectionsHoldGoroutines(true, Options{NoIdlePoll: true})(t)
}

func testIdleConnectionsHoldGoroutines(goroutineMode bool, opts Options) func(*testing.T) {
	return func(t *testing.T) {
		const n = 200
		addr := startRaw(t, opts)
		before := connGoroutines()
		clients := make([]*rawClient, n)
		for i := range clients {
			c := dialRaw(t, addr, "/echo")
			c.write(text(`{}`))
			if op, p := c.read(); op != 1 || string(p) != `{"ok":true}` {
				t.Fatalf("auth response %d %q", op, p)
			}
			c.write(text(`{"a":1}`))
			if op, p := c.read(); op != 1 || string(p) != `{"a":1}` {
				t.Fatalf("echo %d %q", op, p)
			}
			c.write(control(0x9, []byte("p")))
			if op, _ := c.read(); op != 0xA {
				t.Fatalf("got opcode %d, want a pong", op)
			}
			c.write(control(0xA, nil)) // an unsolicited pong: nothing to answer
			clients[i] = c
		}
		var after int
		// before may count connections of an earlier test still closing:
		// they can only end meanwhile, so goroutine mode asks for n in
		// all (the n readers), and poll mode for no more than before.
		testkit.Eventually(t, 10*time.Second, "the connections to go idle", func() bool {
			after = connGoroutines()
			if goroutineMode {
				return after >= n
			}
			return after <= before
		})
		// Still served after being idle.
		for _, c := range clients[:10] {
			c.echo("after idle")
		}
		t.Logf("%d idle connections: %d goroutines in a connection's code before, %d after", n, before, after)
	}
}

// connGoroutines counts the goroutines with a connection's code on their
// stack (a reader, a writer, a burst of reads).
func connGoroutines() int {
	buf := make([]byte, 16<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "ws.(*wsConn).") {
			n++
		}
	}
	return n
}
