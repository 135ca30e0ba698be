package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/electric-socket/electric-socket/tests/skipreport"
	"github.com/electric-socket/electric-socket/tests/testkit"
)

const interopRoundTrips = 1000

// startEcho serves testkit.EchoScript at /echo with the extra configuration
// (appended to [server]; it may open other tables) and returns the server.
func startEcho(t *testing.T, extra string) *server {
	t.Helper()
	dir := t.TempDir()
	script := filepath.Join(dir, "echo.lua")
	if err := os.WriteFile(script, []byte(testkit.EchoScript), 0o644); err != nil {
		t.Fatal(err)
	}
	return startServer(t, fmt.Sprintf(`
[lua]
watch = false

[server]
listen = "127.0.0.1:0"
%s

[[integration]]
name = "echo"
path = "/echo"
script = %q
`, extra, script))
}

// noProtocolErrors fails the test when the server refused any client frame.
func noProtocolErrors(t *testing.T, s *server) {
	t.Helper()
	if log := s.log.String(); strings.Contains(log, "client frame refused") || strings.Contains(log, `"id":"error"`) {
		t.Errorf("the server refused client frames:\n%s", log)
	}
}

// interopServer pings every 20 ms, so the clients answer server pings
// between their round trips too; the message rate is not what is tested.
const interopServer = `ping_interval = "20ms"
pong_timeout = "5s"

[limits]
message_rate = 0`

// 1,000 round trips with github.com/coder/websocket: every echo matches,
// the close handshake completes, and neither side sees a protocol error.
func TestInteropCoderWebsocket(t *testing.T) {
	s := startEcho(t, interopServer)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws://"+s.addr+"/echo", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	conn.SetReadLimit(1 << 20)
	roundTrip := func(msg string) {
		t.Helper()
		if err := conn.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatalf("write: %v", err)
		}
		typ, got, err := conn.Read(ctx)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		var a, b any
		json.Unmarshal(got, &a)
		json.Unmarshal([]byte(msg), &b)
		if typ != websocket.MessageText || !reflect.DeepEqual(a, b) {
			t.Fatalf("sent %.80s, got %v %.80s", msg, typ, got)
		}
	}
	if err := conn.Write(ctx, websocket.MessageText, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if _, got, err := conn.Read(ctx); err != nil || string(got) != `{"ok":true}` {
		t.Fatalf("login: %s %v", got, err)
	}
	for i := range interopRoundTrips {
		roundTrip(fmt.Sprintf(`{"i":%d,"pad":%q,"text":"round trip κόσμε"}`, i, strings.Repeat("x", i%300)))
	}
	roundTrip(fmt.Sprintf(`{"big":%q}`, strings.Repeat("y", 60<<10))) // a large message
	if err := conn.Close(websocket.StatusNormalClosure, "done"); err != nil {
		t.Fatalf("close handshake: %v", err)
	}
	s.waitIdle()
	noProtocolErrors(t, s)
}

// nodeWithWS returns the machine's node, with tests/node's ws package
// installed. Without them the test is skipped, loudly; under CI=true it
// fails.
func nodeWithWS(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	mod := filepath.Join("node", "node_modules", "ws", "package.json")
	if _, serr := os.Stat(mod); err != nil || serr != nil {
		msg := fmt.Sprintf("node (%v) or the ws package (%v) is missing: run tests/install.sh (or npm ci --prefix tests/node)", err, serr)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		skipreport.Skip(t, msg)
	}
	return node
}

// 1,000 round trips with Node's ws package (tests/node/interop.mjs), run
// with the machine's node. Without node or the package (npm ci --prefix
// tests/node) the test is skipped, loudly (nodeWithWS).
func TestInteropNodeWS(t *testing.T) {
	node := nodeWithWS(t)
	s := startEcho(t, interopServer)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join("node", "interop.mjs"), "ws://"+s.addr+"/echo", fmt.Sprint(interopRoundTrips))
	out, err := cmd.Output()
	var res struct {
		RoundTrips int      `json:"roundTrips"`
		Errors     []string `json:"errors"`
		CloseCode  int      `json:"closeCode"`
	}
	if jerr := json.Unmarshal(out, &res); jerr != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("node: %v, output %q (%v)\n%s", err, out, jerr, stderr)
	}
	if err != nil || res.RoundTrips != interopRoundTrips || len(res.Errors) > 0 || res.CloseCode != 1000 {
		t.Fatalf("node ws: %d round trips, errors %q, close %d (%v)", res.RoundTrips, res.Errors, res.CloseCode, err)
	}
	s.waitIdle()
	noProtocolErrors(t, s)
}
