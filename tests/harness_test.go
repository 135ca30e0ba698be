// Package tests holds the end-to-end tests of electric-socket: a real
// server (host.NewApp) on a loopback listener, real WebSocket clients
// (github.com/coder/websocket), and the real binary for the commands.
//
// Every wait is bounded: reads have a deadline, polling helpers have one,
// and the server is shut down with a bounded context.
package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/electric-socket/electric-socket/broker"
	"github.com/electric-socket/electric-socket/host"
	"github.com/electric-socket/electric-socket/host/config"
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

// syncBuffer is a bytes.Buffer safe for concurrent writers: the server's
// log, or a child process's stderr.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// server is one running App on a loopback listener.
type server struct {
	t    *testing.T
	app  *host.App
	addr string
	dir  string // the folder holding the config and the scripts
	log  *syncBuffer
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
	logs := &syncBuffer{}
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

// eventually polls cond until it holds or the bound passes.
func eventually(t *testing.T, bound time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", bound, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitIdle waits until the server holds no session and no subscription.
func (s *server) waitIdle() {
	s.t.Helper()
	eventually(s.t, waitBound, "no sessions", func() bool { return s.app.Engine.Sessions() == 0 })
	eventually(s.t, waitBound, "no subscriptions", func() bool { return s.app.Engine.Subscriptions() == 0 })
}

// client is one WebSocket connection to the server.
type client struct {
	t    *testing.T
	name string
	conn *websocket.Conn
}

// dial opens a WebSocket at path (with its query, if any).
func (s *server) dial(path string) *client {
	s.t.Helper()
	return dialAt(s.t, s.addr, path)
}

// login dials /chat and logs user in to room, checking the welcome.
func (s *server) login(user, room string) *client {
	s.t.Helper()
	return loginAt(s.t, s.addr, user, room)
}

// dialAt opens a WebSocket to the server at addr; the connection is
// dropped when the test ends.
func dialAt(t *testing.T, addr, path string) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, "ws://"+addr+path, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	c := &client{t: t, name: path, conn: conn}
	t.Cleanup(func() { conn.CloseNow() })
	return c
}

// loginAt dials the chat at addr and logs user in to room, checking the
// welcome.
func loginAt(t *testing.T, addr, user, room string) *client {
	t.Helper()
	c := dialAt(t, addr, "/chat")
	c.name = user
	c.send(map[string]any{"user": user, "room": room})
	c.expect(map[string]any{"type": "welcome", "user": user, "room": room})
	return c
}

// send writes v as one JSON text message.
func (c *client) send(v any) {
	c.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	c.sendRaw(websocket.MessageText, b)
}

// sendRaw writes one message of type typ.
func (c *client) sendRaw(typ websocket.MessageType, b []byte) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	if err := c.conn.Write(ctx, typ, b); err != nil {
		c.t.Fatalf("%s: write: %v", c.name, err)
	}
}

// read returns the next message or the read error, within the bound.
func (c *client) read() (map[string]any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	typ, b, err := c.conn.Read(ctx)
	if err != nil {
		return nil, err
	}
	if typ != websocket.MessageText {
		return nil, fmt.Errorf("got a %v message: %q", typ, b)
	}
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("message is not a JSON object: %v: %q", err, b)
	}
	return v, nil
}

// recv returns the next message; it fails the test if none comes in time.
func (c *client) recv() map[string]any {
	c.t.Helper()
	v, err := c.read()
	if err != nil {
		c.t.Fatalf("%s: recv: %v", c.name, err)
	}
	return v
}

// expect receives the next message and checks that it has every field of
// want (other fields are allowed). It returns the whole message.
func (c *client) expect(want map[string]any) map[string]any {
	c.t.Helper()
	got := c.recv()
	for k, w := range want {
		if g, ok := got[k]; !ok || !reflect.DeepEqual(g, w) {
			c.t.Fatalf("%s: got %v, want %s = %v (%T)", c.name, jsonString(got), k, w, w)
		}
	}
	return got
}

// expectError receives an error frame {"id":"error","error":code,...} and
// returns its message.
func (c *client) expectError(code string) string {
	c.t.Helper()
	got := c.expect(map[string]any{"id": "error", "error": code})
	msg, _ := got["message"].(string)
	if msg == "" {
		c.t.Errorf("%s: error frame without a message: %s", c.name, jsonString(got))
	}
	return msg
}

// expectClose reads until the connection ends and checks that it ended
// with a close frame of code; any message before it fails the test.
func (c *client) expectClose(code websocket.StatusCode) {
	c.t.Helper()
	c.expectCloseAllowing(code, nil)
}

// expectCloseAllowing is expectClose that accepts messages for which allow
// returns true before the close, and returns them.
func (c *client) expectCloseAllowing(code websocket.StatusCode, allow func(map[string]any) bool) []map[string]any {
	c.t.Helper()
	got, err := c.readUntilEnd(allow)
	if st := websocket.CloseStatus(err); st != code {
		c.t.Fatalf("%s: connection ended with %v (status %d), want close %d", c.name, err, st, code)
	}
	return got
}

// readUntilEnd reads until the connection ends and returns the messages
// read and the error that ended it (websocket.CloseStatus tells its close
// code). A message allow rejects (every message if allow is nil) ends the
// read with an error naming it.
func (c *client) readUntilEnd(allow func(map[string]any) bool) ([]map[string]any, error) {
	var got []map[string]any
	for {
		v, err := c.read()
		if err != nil {
			return got, err
		}
		if allow == nil || !allow(v) {
			return got, fmt.Errorf("got %s before the close", jsonString(v))
		}
		got = append(got, v)
	}
}

func jsonString(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
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
func checkHealthy(s *server, room string, others ...*client) {
	s.t.Helper()
	name := fmt.Sprintf("newcomer%d", newcomers.Add(1))
	c := s.login(name, room)
	for _, o := range others {
		o.expect(map[string]any{"type": "joined", "user": name, "room": room})
	}
	c.send(map[string]any{"type": "say", "text": "still here?"})
	c.expect(map[string]any{"type": "sent", "text": "still here?"})
	for _, o := range others {
		o.expect(map[string]any{"type": "message", "from": name, "text": "still here?"})
	}
	for _, o := range others {
		o.send(map[string]any{"type": "members"})
		got := o.expect(map[string]any{"type": "members", "room": room})
		if !contains(strs(got["members"]), name) || !contains(strs(got["members"]), o.name) {
			s.t.Fatalf("%s: members %v, want %s and %s in it", o.name, got["members"], name, o.name)
		}
	}
	c.send(map[string]any{"type": "leave"})
	c.expect(map[string]any{"type": "bye"})
	c.expectClose(websocket.StatusNormalClosure)
	for _, o := range others {
		o.expect(map[string]any{"type": "left", "user": name, "room": room})
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
