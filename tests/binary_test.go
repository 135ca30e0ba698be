package tests

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/electric-socket/electric-socket/tests/testkit"
)

// runBinary runs bin with args to completion (bounded) and returns its
// exit code, stdout and stderr.
func runBinary(t *testing.T, bin string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("run %v: %v", args, err)
	}
	return code, stdout.String(), stderr.String()
}

func TestBinary(t *testing.T) {
	bin := testkit.Binary(t)

	t.Run("check ok", func(t *testing.T) {
		code, stdout, stderr := runBinary(t, bin, "check", "--config", "../config.toml")
		if code != 0 || !strings.Contains(stdout, "ok") {
			t.Fatalf("check ../config.toml: exit %d, stdout %q, stderr %q; want exit 0 and ok", code, stdout, stderr)
		}
	})

	t.Run("check unknown key", func(t *testing.T) {
		path := prepareDir(t, "[server]\nlisen = \"127.0.0.1:8080\"\n"+
			"\n[[integration]]\nname = \"chat\"\npath = \"/chat\"\nscript = \"chat.lua\"\n")
		want := path + ":2: server.lisen: unknown key"
		for _, cmd := range []string{"check", "serve"} {
			code, stdout, stderr := runBinary(t, bin, cmd, "--config", path)
			if code != 1 || !strings.Contains(stderr+stdout, want) {
				t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 1 and %q", cmd, code, stdout, stderr, want)
			}
		}
	})

	t.Run("check missing script", func(t *testing.T) {
		path := prepareDir(t, "[[integration]]\nname = \"chat\"\npath = \"/chat\"\nscript = \"nope.lua\"\n")
		code, stdout, stderr := runBinary(t, bin, "check", "--config", path)
		if code != 1 || !strings.Contains(stderr, path+":4:") || !strings.Contains(stderr, "nope.lua") {
			t.Errorf("exit %d, stdout %q, stderr %q; want exit 1 and %s:4: ... nope.lua", code, stdout, stderr, path)
		}
	})

	t.Run("check syntax error", func(t *testing.T) {
		path := prepareDir(t, "[[integration]]\nname = \"bad\"\npath = \"/bad\"\nscript = \"bad_syntax.lua\"\n")
		want := fmt.Sprintf("bad_syntax.lua:%d", lineOf(t, "bad_syntax.lua", "MARK:syntax"))
		for _, args := range [][]string{
			{"check", "--config", path},
			{"serve", "--config", path, "--listen", "127.0.0.1:0"},
		} {
			code, stdout, stderr := runBinary(t, bin, args...)
			if cmd := args[0]; code != 1 || !strings.Contains(stderr, want) {
				t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 1 and %q", cmd, code, stdout, stderr, want)
			}
		}
	})

	// serve the chat as a user runs it (config.toml's settings), then SIGTERM
	t.Run("serve then SIGTERM", func(t *testing.T) {
		serveThenTerminate(t, bin, chatConfig)
	})
	// The same without shutdown_spread: every close happens at once and
	// the process exits right after the last on_close. Each client must
	// still get its 1001 close frame before the process is gone.
	t.Run("serve then SIGTERM without spread", func(t *testing.T) {
		serveThenTerminate(t, bin, strings.Replace(chatConfig, "[server]\n", "[server]\nshutdown_spread = \"0s\"\n", 1))
	})
}

// serveThenTerminate runs `electric-socket serve` on the chat of cfgText,
// has two clients chat, sends SIGTERM and checks SPEC 5.8: both clients get
// close 1001, on_close ran for both, and the process exits 0.
func serveThenTerminate(t *testing.T, bin, cfgText string) {
	path := prepareDir(t, cfgText)
	p := testkit.Serve(t, "the server", bin, "", 20*time.Second, "--config", path)
	addr, stderr := p.Addr, p.Stderr

	alice := loginAt(t, addr, "alice", "lobby")
	bob := loginAt(t, addr, "bob", "lobby")
	alice.Expect(map[string]any{"type": "joined", "user": "bob"})
	alice.Send(map[string]any{"type": "say", "text": "hello"})
	alice.Expect(map[string]any{"type": "sent", "text": "hello"})
	bob.Expect(map[string]any{"type": "message", "from": "alice", "text": "hello"})

	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Each client may or may not read the other's "left" before its own
	// 1001, depending on which on_close runs first.
	left := func(v map[string]any) bool { return v["type"] == "left" }
	for _, c := range []*testkit.Client{alice, bob} {
		if _, err := c.ReadUntilEnd(left); websocket.CloseStatus(err) != websocket.StatusGoingAway {
			t.Errorf("%s: connection ended with %v (status %d), want close 1001", c.Name, err, websocket.CloseStatus(err))
		}
	}

	select {
	case <-p.Exited():
		if err := p.Err(); err != nil {
			t.Fatalf("the server exited with %v, want 0", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("the server did not exit within 15s of SIGTERM")
	}
	logs := stderr.String()
	if n := strings.Count(logs, `event\":\"leave`); n != 2 {
		t.Errorf("stderr has %d leave side effects, want 2 (on_close for alice and bob)", n)
	}
	for _, user := range []string{"alice", "bob"} {
		found := false
		for _, line := range strings.Split(logs, "\n") {
			if strings.Contains(line, "function=on_close") && strings.Contains(line, `event\":\"leave`) &&
				strings.Contains(line, `user\":\"`+user+`\"`) {
				found = true
			}
		}
		if !found {
			t.Errorf("stderr has no on_close leave side effect for %s", user)
		}
	}
	if !strings.Contains(logs, "msg=stopped") {
		t.Errorf("stderr does not say stopped")
	}
}

// The production binary holds no test hook (issue 14): the environment
// variable of tests/fleet_test.go's orphan pause is in a binary built with
// -tags estest only. The tagged build shows that the search can find it.
func TestProductionBinaryHasNoTestHooks(t *testing.T) {
	const hook = "ELECTRIC_SOCKET_TEST_ORPHAN_PAUSE"
	for _, tt := range []struct {
		name string
		bin  func(testing.TB) string
		want bool
	}{{"production", testkit.ProductionBinary, false}, {"tests' (-tags estest)", testkit.Binary, true}} {
		data, err := os.ReadFile(tt.bin(t))
		if err != nil {
			t.Fatal(err)
		}
		if got := bytes.Contains(data, []byte(hook)); got != tt.want {
			t.Errorf("the %s binary contains %s: %v, want %v", tt.name, hook, got, tt.want)
		}
	}
}
