package tests

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/electric-socket/electric-socket/tests/testkit"
)

// SIGINT drains like SIGTERM (SPEC 5.8): the listener stops, every client
// gets 1001 and its on_close runs; the side effects are flushed until
// [server] shutdown_timeout. A second signal ends the process at once, by
// the signal, without waiting for the drain: here the webhook holds the
// flush of the on_close side effect, so the first signal alone would keep
// the process until its shutdown_timeout (10 s) and then exit 0.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	bin := testkit.Binary(t)
	h := testkit.NewWebhook(t, 0)
	path := prepareDir(t, effectsConfig(hookSink(h)))
	p := testkit.Serve(t, "server", bin, "", 20*time.Second, "--config", path)
	cmd, stderr, exited := p.Cmd, p.Stderr, p.Exited()

	c := testkit.Dial(t, "x", p.Addr, "/effects")
	c.Send(map[string]any{"user": "x"})
	c.Expect(map[string]any{"type": "welcome", "user": "x"})
	testkit.Eventually(t, waitBound, "the login's side effect at the webhook", func() bool { return len(h.Effects()) == 1 })
	h.Hold()
	t.Cleanup(h.Release) // before the hook's server closes: it waits for the held request

	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	// The first signal drains: 1001, then on_close's side effect is
	// flushed to the webhook, which holds it.
	if _, err := c.ReadUntilEnd(nil); websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Fatalf("connection ended with %v, want close 1001 after SIGINT", err)
	}
	testkit.Eventually(t, waitBound, "the flush of on_close's side effect", func() bool { return h.Held() == 1 })
	select {
	case <-exited:
		t.Fatalf("the server exited (%v) while the webhook still held its flush", p.Err())
	default:
	}
	if !strings.Contains(stderr.String(), "signal=interrupt") {
		t.Errorf("stderr does not say it is shutting down on SIGINT")
	}

	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(15 * time.Second):
		t.Fatalf("the server did not exit after the second SIGINT")
	}
	var ee *exec.ExitError
	if !errors.As(p.Err(), &ee) {
		t.Fatalf("the server exited with %v after the second SIGINT, want killed by it", p.Err())
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGINT {
		t.Fatalf("the server ended with %v after the second SIGINT, want killed by SIGINT (not the end of its drain)", p.Err())
	}
	if strings.Contains(stderr.String(), "msg=stopped") {
		t.Errorf("the drain finished: it should have been cut off by the second signal")
	}
}

// [server] shutdown_timeout cuts off an on_close that does not finish: the
// client still gets its 1001 at once, and the process exits 0 once the
// timeout has passed, saying the shutdown was incomplete, instead of
// waiting for the call ([lua] timeout is a minute here, to make it slow).
func TestShutdownTimeoutCutsASlowOnClose(t *testing.T) {
	bin := testkit.Binary(t)
	dir := t.TempDir()
	script := `local M = {}
function M.initial_authorisation(channel, message) return { user = message.user } end
function M.broker_authorisation() return { websocket_response = { type = "welcome" } } end
function M.process_websocket_message(channel, message) return { websocket_response = message } end
function M.on_close() while true do end end
return M
`
	cfg := `
[server]
shutdown_timeout = "1s"

[lua]
timeout = "60s"

[[integration]]
name = "slow"
path = "/slow"
script = "slow.lua"
`
	for name, text := range map[string]string{"slow.lua": script, "config.toml": cfg} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := testkit.Serve(t, "server", bin, dir, waitBound)
	c := testkit.Dial(t, "x", p.Addr, "/slow")
	c.Send(map[string]any{"user": "x"})
	c.Expect(map[string]any{"type": "welcome"})
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReadUntilEnd(nil); websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Fatalf("connection ended with %v, want close 1001 before on_close runs", err)
	}
	select {
	case <-p.Exited():
	case <-time.After(30 * time.Second): // half the on_close's own minute
		t.Fatal("the server still waits for on_close 30s after SIGTERM with shutdown_timeout = 1s")
	}
	if err := p.Err(); err != nil {
		t.Errorf("exit: %v, want 0", err)
	}
	if log := p.Stderr.String(); !strings.Contains(log, "shutdown incomplete") || !strings.Contains(log, "context deadline exceeded") {
		t.Errorf("the log does not say the shutdown was cut off:\n%s", log)
	}
}
