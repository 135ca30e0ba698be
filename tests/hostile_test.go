package tests

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"testing"

	"github.com/coder/websocket"

	"github.com/electric-socket/electric-socket/luabridge"
	"github.com/electric-socket/electric-socket/tests/testkit"
)

// hostileScript misbehaves on request: message.kind names the mistake.
const hostileScript = `
local M = {}
function M.initial_authorisation(ch, m) return {} end
function M.broker_authorisation(ch, cd, bd) return { websocket_response = { ok = true } } end
function M.process_websocket_message(ch, m, cd, bd)
  local k = m.kind
  if k == "bomb" then string.find(string.rep("a", 400), ".-.-.-b") end
  if k == "gsub" then string.gsub(string.rep("a", 16 * 1024 * 1024), "a", "bb") end
  if k == "rep" then string.rep("x", 2^30) end
  if k == "grow" then local t = {} while true do t[#t + 1] = t end end
  if k == "double" then local s = "x" while true do s = s .. s end end
  if k == "recurse" then local function f(n) return f(n + 1) + 1 end f(1) end
  if k == "cycle" then local t = {} t.self = t return { websocket_response = t } end
  if k == "deep" then local t = {} for i = 1, 10000 do t = { t } end return { websocket_response = { t = t } } end
  if k == "shared" then local t = {} for i = 1, 30 do t = { t, t } end return { broker_data = { t = t } } end
  if k == "long" then
    local t = {} for i = 1, 1000000 do t[i] = i end
    return { channel_data = { t = t }, websocket_response = { n = #t } }
  end
  return { websocket_response = m }
end
return M
`

// recvSlow reads the next message with a bound far over the scripts'
// budgets: under -race and a loaded machine, encoding 16 MiB takes seconds.
func recvSlow(t *testing.T, c *testkit.Client) map[string]any {
	t.Helper()
	v, why := c.Next(12 * waitBound)
	if v == nil {
		t.Fatalf("read: %s", why)
	}
	if u, ok := v["unparsable"]; ok && len(v) == 1 {
		t.Fatalf("%q: not a JSON object", u)
	}
	return v
}

func heapNow() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// Hostile scripts, end to end through the real server: a pattern bomb, a
// huge gsub or string.rep, unbounded table or string growth, deep
// recursion, and returned tables that are self-referencing, 10,000 deep or
// shared 2^30 times each close only their own connection with the error
// frame and 1011; a 1,000,000-long table is accepted; the server stays up
// and serves, and its memory comes back under [lua] max_memory.
func TestHostileScriptsEndToEnd(t *testing.T) {
	runtime.GC()
	limit := heapNow() + 256<<20
	t.Cleanup(func() { luabridge.SetMaxMemory(0) })
	dir := t.TempDir()
	script := filepath.Join(dir, "hostile.lua")
	if err := os.WriteFile(script, []byte(hostileScript), 0o644); err != nil {
		t.Fatal(err)
	}
	start := func(timeout string) *server {
		return startServer(t, fmt.Sprintf(`
[server]
listen = "127.0.0.1:0"

[lua]
watch = false
timeout = %q
max_memory = %d

[[integration]]
name = "hostile"
path = "/hostile"
script = %q
`, timeout, limit, script))
	}
	s := start("2s")
	login := func() *testkit.Client {
		c := s.dial("/hostile")
		c.Conn.SetReadLimit(16 << 20)
		c.Send(map[string]any{})
		c.Expect(map[string]any{"ok": true})
		return c
	}
	bystander := login()
	for _, tc := range []struct {
		kind, code string
	}{
		{"bomb", "script_timeout"},
		{"gsub", ""}, // the cap or the budget, whichever comes first
		{"rep", "script_error"},
		{"grow", ""}, // the memory guard (script_error), or the budget first under -race
		{"double", ""},
		{"recurse", "script_error"},
		{"cycle", "malformed_action"},
		{"deep", "malformed_action"},
		{"shared", "malformed_action"},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			c := login()
			c.Send(map[string]any{"kind": tc.kind})
			got := recvSlow(t, c)
			if got["id"] != "error" || (tc.code != "" && got["error"] != tc.code) {
				t.Fatalf("got %s, want an error frame %q", testkit.JSON(got), tc.code)
			}
			c.ExpectClose(websocket.StatusInternalError)
			bystander.Send(map[string]any{"still": tc.kind})
			bystander.Expect(map[string]any{"still": tc.kind})
		})
	}
	// Long enough for a million elements under -race.
	s = start("30s")
	t.Run("long", func(t *testing.T) {
		c := login()
		c.Send(map[string]any{"kind": "long"})
		if got := recvSlow(t, c); got["n"] != float64(1000000) {
			t.Fatalf("got %s, want n = 1000000", testkit.JSON(got))
		}
		c.Send(map[string]any{"after": "long"})
		c.Expect(map[string]any{"after": "long"})
	})
	runtime.GC()
	if h := heapNow(); h > limit {
		t.Errorf("heap %d MiB after the hostile scripts, over max_memory %d MiB", h>>20, limit>>20)
	}
	t.Logf("memory guard stops: %d", luabridge.MemoryStops())
}

// The handshake limits of the configuration reach the server: a foreign
// Origin is refused with 403, the per-address cap with 429, before any
// upgrade, and the connections already open go on.
func TestHostileHandshakeLimitsFromConfig(t *testing.T) {
	s := startEcho(t, `allowed_origins = ["https://app.example"]

[limits]
max_connections_per_ip = 2`)
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, "ws://"+s.addr+"/echo", &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"https://evil.example"}}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("foreign origin: %v, %v; want 403", resp, err)
	}
	var open []*websocket.Conn
	for range 2 {
		c, _, err := websocket.Dial(ctx, "ws://"+s.addr+"/echo", &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"https://app.example"}}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		open = append(open, c)
	}
	_, resp, err = websocket.Dial(ctx, "ws://"+s.addr+"/echo", nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("third connection from one address: %v, %v; want 429", resp, err)
	}
	for i, c := range open {
		if err := c.Write(ctx, websocket.MessageText, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		if _, got, err := c.Read(ctx); err != nil || string(got) != `{"ok":true}` {
			t.Fatalf("connection %d: %s %v", i, got, err)
		}
		c.Close(websocket.StatusNormalClosure, "")
	}
}
