// Package tests holds the end-to-end tests of electric-socket: a real
// server (host.NewApp) on a loopback listener, real WebSocket clients
// (github.com/coder/websocket), and the real binary for the commands.
//
// Every wait is bounded: reads have a deadline, polling helpers have one,
// and the server is shut down with a bounded context.
package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/electric-socket/electric-socket/broker"
	"github.com/electric-socket/electric-socket/host"
	"github.com/electric-socket/electric-socket/host/config"
	"github.com/electric-socket/electric-socket/tests/testkit"
)

// waitBound bounds every single wait of a test (a read, a dial, a poll).
const waitBound = 5 * time.Second

// chatConfig serves scripts/chat.lua (copied next to the config) at /chat
// with the memory broker, as config.toml does.
const chatConfig = `
[server]
listen = "127.0.0.1:0"

[lua]
watch = false

[broker]
kind = "memory"

[[integration]]
name = "chat"
path = "/chat"
script = "chat.lua"
`

// roomTopic is the broker entity of a chat room.
func roomTopic(room string) broker.Topic { return broker.Topic{Namespace: "chat", Key: room} }

// server is one running App on a loopback listener.
type server struct {
	t    *testing.T
	app  *host.App
	addr string
	dir  string // the folder holding the config and the scripts
	log  *testkit.LogBuffer
}

// prepareDir writes cfgText as config.toml into a new temporary folder,
// with scripts/chat.lua and every tests/testdata/*.lua beside it, and
// returns the config's path.
func prepareDir(t *testing.T, cfgText string) string {
	t.Helper()
	dir := t.TempDir()
	copyFile(t, filepath.Join("..", "scripts", "chat.lua"), filepath.Join(dir, "chat.lua"))
	lua, err := filepath.Glob(filepath.Join("testdata", "*.lua"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range lua {
		copyFile(t, p, filepath.Join(dir, filepath.Base(p)))
	}
	path := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(path, []byte(cfgText), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// startServer builds the App of cfgText (see prepareDir), serves it on a
// loopback port and shuts it down when the test ends. The server's log is
// kept and printed if the test fails.
func startServer(t *testing.T, cfgText string) *server {
	t.Helper()
	path := prepareDir(t, cfgText)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	logs := &testkit.LogBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	app, err := host.NewApp(cfg, logger)
	if err != nil {
		t.Fatalf("NewApp: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- app.Serve(l) }()
	s := &server{t: t, app: app, addr: l.Addr().String(), dir: filepath.Dir(path), log: logs}
	t.Cleanup(func() {
		// The clients' cleanups (run before this one) closed every
		// connection: the sessions end on their own, none leaks.
		deadline := time.Now().Add(waitBound)
		for app.Engine.Sessions() > 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if n := app.Engine.Sessions(); n > 0 {
			t.Errorf("%d sessions still open %v after every client disconnected", n, waitBound)
		}
		ctx, cancel := context.WithTimeout(context.Background(), waitBound)
		defer cancel()
		if err := app.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("Serve returned %v", err)
			}
		case <-time.After(waitBound):
			t.Errorf("Serve did not return after Shutdown")
		}
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	return s
}

// memory is the App's broker, which these tests configure as "memory".
func (s *server) memory() *broker.Memory {
	s.t.Helper()
	m, ok := s.app.Broker.(*broker.Memory)
	if !ok {
		s.t.Fatalf("broker is %T, want *broker.Memory", s.app.Broker)
	}
	return m
}

// room returns the decoded entity of a chat room, nil when it does not exist.
func (s *server) room(name string) map[string]any {
	s.t.Helper()
	raw := s.memory().Get(roomTopic(name))
	if raw == nil {
		return nil
	}
	var v map[string]any
	if err := json.Unmarshal(raw, &v); err != nil {
		s.t.Fatalf("room %s: %v in %s", name, err, raw)
	}
	return v
}

// members returns the user names in a room's entity.
func (s *server) members(room string) []string {
	s.t.Helper()
	data := s.room(room)
	m, _ := data["members"].(map[string]any)
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// waitIdle waits until the server holds no session and no subscription.
func (s *server) waitIdle() {
	s.t.Helper()
	testkit.Eventually(s.t, waitBound, "no sessions", func() bool { return s.app.Engine.Sessions() == 0 })
	testkit.Eventually(s.t, waitBound, "no subscriptions", func() bool { return s.app.Engine.Subscriptions() == 0 })
}

// dial opens a WebSocket at path (with its query, if any).
func (s *server) dial(path string) *testkit.Client {
	s.t.Helper()
	return testkit.Dial(s.t, path, s.addr, path)
}

// login dials /chat and logs user in to room, checking the welcome.
func (s *server) login(user, room string) *testkit.Client {
	s.t.Helper()
	return loginAt(s.t, s.addr, user, room)
}

// loginAt dials the chat at addr and logs user in to room, checking the
// welcome.
func loginAt(t *testing.T, addr, user, room string) *testkit.Client {
	t.Helper()
	c := testkit.Dial(t, user, addr, "/chat")
	c.Send(map[string]any{"user": user, "room": room})
	c.Expect(map[string]any{"type": "welcome", "user": user, "room": room})
	return c
}

// strs converts a JSON array of strings.
func strs(v any) []string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, x := range list {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

// lineOf returns the 1-based line of testdata/name that contains marker.
func lineOf(t *testing.T, name, marker string) int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range strings.Split(string(data), "\n") {
		if strings.Contains(line, marker) {
			return i + 1
		}
	}
	t.Fatalf("testdata/%s has no line with %q", name, marker)
	return 0
}

// checkHealthy shows that the server still serves: a new user logs in to
// room and chats, and every client of others (already logged in to room,
// each with nothing unread) sees the newcomer join and speak.
func checkHealthy(s *server, room string, others ...*testkit.Client) {
	s.t.Helper()
	name := fmt.Sprintf("newcomer%d", newcomers.Add(1))
	c := s.login(name, room)
	for _, o := range others {
		o.Expect(map[string]any{"type": "joined", "user": name, "room": room})
	}
	c.Send(map[string]any{"type": "say", "text": "still here?"})
	c.Expect(map[string]any{"type": "sent", "text": "still here?"})
	for _, o := range others {
		o.Expect(map[string]any{"type": "message", "from": name, "text": "still here?"})
	}
	for _, o := range others {
		o.Send(map[string]any{"type": "members"})
		got := o.Expect(map[string]any{"type": "members", "room": room})
		if !contains(strs(got["members"]), name) || !contains(strs(got["members"]), o.Name) {
			s.t.Fatalf("%s: members %v, want %s and %s in it", o.Name, got["members"], name, o.Name)
		}
	}
	c.Send(map[string]any{"type": "leave"})
	c.Expect(map[string]any{"type": "bye"})
	c.ExpectClose(websocket.StatusNormalClosure)
	for _, o := range others {
		o.Expect(map[string]any{"type": "left", "user": name, "room": room})
	}
}

var newcomers atomic.Int64

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
