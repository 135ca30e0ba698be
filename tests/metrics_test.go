package tests

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/electric-socket/electric-socket/broker/redistest"
	"github.com/electric-socket/electric-socket/tests/testkit"
)

// adminSection turns the admin listener on, on a free loopback port.
const adminSection = "\n[admin]\nlisten = \"127.0.0.1:0\"\n"

// serveAdmin serves s's admin listener ([admin] listen must be set) and
// returns its address; App.Shutdown stops it.
func (s *server) serveAdmin() string {
	s.t.Helper()
	l, err := s.app.ListenAdmin()
	if err != nil || l == nil {
		s.t.Fatalf("ListenAdmin: %v, %v", l, err)
	}
	go s.app.ServeAdmin(l)
	return l.Addr().String()
}

// httpGet returns the status and body of GET url, within the bound.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

// scrape reads /metrics at addr: the value of every series, by its name
// and labels as exposed (labels sorted by name), e.g.
// `electric_socket_connections{integration="chat"}`.
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	status, body := httpGet(t, "http://"+addr+"/metrics")
	if status != http.StatusOK {
		t.Fatalf("/metrics: %d %s", status, body)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("/metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// checkSeries compares the scraped series with want; a negative want
// means "present and at least -want".
func checkSeries(t *testing.T, got map[string]float64, want map[string]float64) {
	t.Helper()
	for k, w := range want {
		g, ok := got[k]
		switch {
		case !ok:
			t.Errorf("no series %s", k)
		case w >= 0 && g != w:
			t.Errorf("%s = %v, want %v", k, g, w)
		case w < 0 && g < -w:
			t.Errorf("%s = %v, want at least %v", k, g, -w)
		}
	}
}

// /metrics counts what happened, by integration: connections, messages,
// Lua calls per function, script errors by kind, broker updates and their
// retries, pub/sub messages, reloads and failed reloads, side effects.
func TestMetricsEndpoint(t *testing.T) {
	s := startServer(t, badConfig+adminSection)
	admin := s.serveAdmin()

	alice := s.login("alice", "lobby")
	bob := s.login("bob", "lobby")
	alice.Expect(map[string]any{"type": "joined", "user": "bob"})
	s.memory().ForceConflicts(roomTopic("lobby"), 1) // one retry
	alice.Send(map[string]any{"type": "say", "text": "hi"})
	alice.Expect(map[string]any{"type": "sent"})
	bob.Expect(map[string]any{"type": "message", "text": "hi"})
	bob.Send(map[string]any{"type": "whisper", "to": "alice", "text": "psst"})
	bob.Expect(map[string]any{"type": "sent"})
	alice.Expect(map[string]any{"type": "whisper", "text": "psst"})

	for _, c := range []struct{ user, typ, code string }{{"x", "error", "script_error"}, {"y", "loop", "script_timeout"}} {
		b := s.badLogin(c.user)
		b.Send(map[string]any{"type": c.typ})
		b.ExpectError(c.code)
		b.ExpectClose(websocket.StatusInternalError)
	}

	chat := filepath.Join(s.dir, "chat.lua")
	src, err := os.ReadFile(chat)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(chat, append(src, []byte("\n-- a new version\n")...), 0o644)
	if err := s.app.Reload(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	os.WriteFile(chat, []byte("return {"), 0o644)
	if err := s.app.Reload(); err == nil {
		t.Fatal("a broken script reloaded")
	}

	testkit.Eventually(t, waitBound, "the bad connections to close", func() bool { return s.app.Engine.Sessions() == 2 })
	checkSeries(t, scrape(t, admin), map[string]float64{
		`electric_socket_connections{integration="chat"}`:                                                                 2,
		`electric_socket_connections_opened_total{integration="chat"}`:                                                    2,
		`electric_socket_connections{integration="bad"}`:                                                                  0,
		`electric_socket_connections_closed_total{code="1011",integration="bad"}`:                                         2,
		`electric_socket_messages_received_total{integration="chat"}`:                                                     4,
		`electric_socket_messages_sent_total{integration="chat"}`:                                                         7, // 2 welcomes, joined, sent, message, sent, whisper
		`electric_socket_lua_call_duration_seconds_count{function="process_websocket_message",integration="chat"}`:        3, // say twice (a retry), whisper
		`electric_socket_lua_call_duration_seconds_count{function="process_broker_message",integration="chat"}`:           3, // joined, message, whisper
		`electric_socket_lua_call_duration_seconds_count{function="initial_authorisation",integration="chat"}`:            2,
		`electric_socket_lua_call_duration_seconds_bucket{function="initial_authorisation",integration="chat",le="+Inf"}`: 2,
		`electric_socket_script_errors_total{integration="bad",kind="script_error"}`:                                      1,
		`electric_socket_script_errors_total{integration="bad",kind="script_timeout"}`:                                    1,
		`electric_socket_broker_update_duration_seconds_count{integration="chat"}`:                                        7, // 2 logins, 2 messages, 3 broker messages
		`electric_socket_broker_update_retries_total{integration="chat"}`:                                                 1,
		`electric_socket_broker_messages_published_total{integration="chat"}`:                                             3,
		`electric_socket_broker_messages_delivered_total{integration="chat"}`:                                             3,
		`electric_socket_broker_subscriptions`:                                                                            1,
		`electric_socket_reloads_total`:                                                                                   1,
		`electric_socket_reload_failures_total`:                                                                           1,
		`electric_socket_side_effects_delivered_total{sink="log"}`:                                                        -2, // the chat's joins (and bad's)
		`go_goroutines`:                 -1,
		`process_resident_memory_bytes`: -1,
	})

	if status, body := httpGet(t, "http://"+admin+"/healthz"); status != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", status, body)
	}
	// Not on the WebSocket listener.
	if status, _ := httpGet(t, "http://"+s.addr+"/metrics"); status != http.StatusNotFound {
		t.Errorf("/metrics on the WebSocket listener: %d", status)
	}

	// A line per connection opened and closed.
	logs := s.log.String()
	for _, want := range []string{
		`msg="connection opened" channel=`,
		`integration=bad code=1011 by=server duration=`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log lacks %q", want)
		}
	}
}

// readyz returns /readyz's status and decoded body.
func readyz(t *testing.T, admin string) (int, map[string]any) {
	t.Helper()
	status, body := httpGet(t, "http://"+admin+"/readyz")
	var v map[string]any
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("/readyz body %q: %v", body, err)
	}
	return status, v
}

// /readyz follows the redis broker: 503 naming the problem while Redis is
// down, 200 again once it is back; /healthz answers throughout.
func TestReadyzFollowsTheRedisBroker(t *testing.T) {
	r := redistest.NewLocal(t)
	cfg := strings.Replace(chatConfig, `kind = "memory"`,
		fmt.Sprintf("kind = \"redis\"\nurl = %q\nprefix = %q", r.URL, r.Prefix(t)), 1) + adminSection
	s := startServer(t, cfg)
	admin := s.serveAdmin()
	// ready once the broker's first pub/sub probe came back
	testkit.Eventually(t, redisBound, "/readyz to answer 200", func() bool {
		status, v := readyz(t, admin)
		return status == 200 && v["ready"] == true && v["broker"] == "ok"
	})
	r.Stop(t)
	testkit.Eventually(t, redisBound, "/readyz to answer 503", func() bool {
		status, v := readyz(t, admin)
		broker, _ := v["broker"].(string)
		return status == 503 && v["ready"] == false && strings.Contains(broker, "broker_unavailable")
	})
	if status, _ := httpGet(t, "http://"+admin+"/healthz"); status != 200 {
		t.Errorf("/healthz while Redis is down: %d", status)
	}
	r.Start(t)
	testkit.Eventually(t, redisBound, "/readyz to answer 200 again", func() bool {
		status, _ := readyz(t, admin)
		return status == 200
	})
}

// The binary wires the admin listener (--admin overrides [admin] listen)
// and writes the connection lines as JSON with [log] format = "json".
func TestBinaryAdminAndJSONLogs(t *testing.T) {
	bin := testkit.Binary(t)
	dir := filepath.Dir(prepareDir(t, chatConfig+"\n[log]\nformat = \"json\"\n"+
		"\n[admin]\nlisten = \"127.0.0.1:1\"\n")) // replaced by --admin
	admin := testkit.FreeAddr(t)
	p := testkit.Serve(t, "serve", bin, "", 20*time.Second, "--config", filepath.Join(dir, "config.toml"), "--admin", admin)
	addr, stderr := p.Addr, p.Stderr
	testkit.Eventually(t, 20*time.Second, "the admin listener", func() bool {
		return strings.Contains(stderr.String(), `"msg":"admin listening"`)
	})

	alice := loginAt(t, addr, "alice", "lobby")
	alice.Send(map[string]any{"type": "leave"})
	alice.Expect(map[string]any{"type": "bye"})
	alice.ExpectClose(websocket.StatusNormalClosure)
	testkit.Eventually(t, waitBound, "the connection closed line", func() bool {
		return strings.Contains(stderr.String(), `"msg":"connection closed"`)
	})
	var opened, closed map[string]any
	for _, line := range strings.Split(stderr.String(), "\n") {
		var v map[string]any
		if json.Unmarshal([]byte(line), &v) != nil {
			continue
		}
		switch v["msg"] {
		case "connection opened":
			opened = v
		case "connection closed":
			closed = v
		}
	}
	if opened["integration"] != "chat" || opened["channel"] == "" || opened["channel"] == nil {
		t.Errorf("connection opened line: %v", opened)
	}
	if closed["channel"] != opened["channel"] || closed["code"] != 1000.0 || closed["by"] != "server" || closed["duration"] == nil {
		t.Errorf("connection closed line: %v", closed)
	}
	checkSeries(t, scrape(t, admin), map[string]float64{
		`electric_socket_connections_closed_total{code="1000",integration="chat"}`: 1,
	})

	p.Signal(syscall.SIGTERM)
	select {
	case <-p.Exited():
		if err := p.Err(); err != nil {
			t.Errorf("serve exited with %v after SIGTERM", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not exit after SIGTERM")
	}
}
