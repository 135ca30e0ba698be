package tests

import (
	"errors"
	"github.com/electric-socket/electric-socket/tests/testkit"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
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
