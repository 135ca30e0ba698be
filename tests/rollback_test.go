package tests

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/coder/websocket"

	"github.com/electric-socket/electric-socket/tests/testkit"
)

// badVersion fails every call it is given.
const badVersion = `local M = {}
local function fail() error("this version fails every call") end
M.initial_authorisation = fail
M.broker_key = fail
M.broker_authorisation = fail
M.process_websocket_message = fail
M.on_close = fail
return M
`

// saveByRename writes text to path the way editors save: a new file
// renamed over the old one.
func saveByRename(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path+".tmp", []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

// A reload of a version that errors on every call is switched back while
// 50 clients keep sending: the connections its errors closed are counted;
// once the rollback is counted, every message is answered by the previous
// version and no connection is closed; a second save of the same content
// is refused; a fixed save loads.
func TestReloadOfAFailingVersionRollsBack(t *testing.T) {
	bin := testkit.Binary(t)
	dir := t.TempDir()
	admin := testkit.FreeAddr(t)
	good, err := os.ReadFile(filepath.Join("testdata", "reload_v.lua"))
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(dir, "reload_v.lua")
	if err := os.WriteFile(script, good, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`
[lua]
watch = true
rollback_after = 100

[admin]
listen = %q

[[integration]]
name = "v"
path = "/v"
script = "reload_v.lua"
`, admin)
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p := testkit.Serve(t, "serve", bin, dir, waitBound)
	metric := func(name string) float64 { return scrape(t, admin)["electric_socket_"+name] }

	const clients, afterRollback = 50, 5
	var (
		rolledBack    atomic.Bool // set once the rollback is counted
		stop          = make(chan struct{})
		wg            sync.WaitGroup
		mu            sync.Mutex
		closedByErrs  int      // connections the failing version's errors closed
		failures      []string // anything wrong after the rollback
		goodBeforeBad atomic.Int64
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		failures = append(failures, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	// client keeps a connection sending until it has had afterRollback
	// answers sent after the rollback was counted; a connection an error
	// closed is counted and dialled again.
	client := func(i int) {
		defer wg.Done()
		answered := 0
		for seq := 0; ; {
			select {
			case <-stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), testkit.WaitBound)
			conn, resp, err := websocket.Dial(ctx, "ws://"+p.Addr+"/v", nil)
			cancel()
			if err != nil {
				fail("client %d: dial: %v", i, err)
				return
			}
			if resp != nil && resp.Body != nil {
				resp.Body.Close()
			}
			c := testkit.NewClient(t, fmt.Sprint("client ", i), conn)
			msg := map[string]any{}
			for {
				after := rolledBack.Load() // read before the send: the answer comes from after the rollback
				if err := c.TrySend(msg); err != nil {
					fail("client %d: write: %v", i, err)
					conn.CloseNow()
					return
				}
				v, err := c.Read()
				if err == nil && v["id"] != "error" {
					if after {
						if v["version"] != 1.0 {
							fail("client %d: after the rollback answered by %v, want version 1", i, v)
						}
						if answered++; answered == afterRollback {
							conn.Close(websocket.StatusNormalClosure, "")
							return
						}
					} else if v["version"] == 1.0 {
						goodBeforeBad.Add(1)
					}
					seq++
					msg = map[string]any{"seq": seq}
					continue
				}
				if after {
					fail("client %d: after the rollback: %v %v", i, v, err)
					conn.CloseNow()
					return
				}
				if err == nil { // an error frame: the close follows
					_, err = c.Read()
				}
				if websocket.CloseStatus(err) != websocket.StatusInternalError {
					fail("client %d: before the rollback: got %v %v, want an error then close 1011", i, v, err)
					conn.CloseNow()
					return
				}
				mu.Lock()
				closedByErrs++
				mu.Unlock()
				break
			}
		}
	}
	wg.Add(clients)
	for i := range clients {
		go client(i)
	}
	t.Cleanup(func() { close(stop); wg.Wait() })
	testkit.Eventually(t, waitBound, "the clients to be answered", func() bool { return goodBeforeBad.Load() >= clients })

	saveByRename(t, script, badVersion)
	testkit.Eventually(t, waitBound, "the rollback", func() bool { return metric("reload_rollbacks_total") == 1 })
	rolledBack.Store(true)
	wg.Wait()
	mu.Lock()
	t.Logf("connections closed by the failing version's errors: %d", closedByErrs)
	if closedByErrs == 0 {
		t.Errorf("no connection met the failing version: it was never served")
	}
	for _, f := range failures {
		t.Error(f)
	}
	mu.Unlock()
	logs := p.Stderr.String()
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "reload rolled back") {
			t.Log(l)
		}
	}
	if !strings.Contains(logs, "reload rolled back") || !strings.Contains(logs, "this version fails every call") {
		t.Errorf("the rollback is not logged with its errors:\n%s", logs)
	}
	if n := metric("reloads_total"); n != 1 {
		t.Errorf("reloads_total = %v, want 1 (the failing version)", n)
	}

	// The same content saved again is refused; the previous version serves.
	saveByRename(t, script, badVersion)
	testkit.Eventually(t, waitBound, "the refusal", func() bool { return metric("reload_refusals_total") >= 1 })
	c := testkit.Dial(t, "after the refusal", p.Addr, "/v")
	c.Send(map[string]any{})
	c.Expect(map[string]any{"type": "ready", "version": 1.0})
	if !strings.Contains(p.Stderr.String(), "reload refused") {
		t.Errorf("the refusal is not logged:\n%s", p.Stderr.String())
	}

	// A fixed save loads.
	saveByRename(t, script, strings.Replace(string(good), "local VERSION = 1", "local VERSION = 3", 1))
	testkit.Eventually(t, waitBound, "the fixed version", func() bool { return metric("reloads_total") == 2 })
	c.Send(map[string]any{"seq": 1})
	c.Expect(map[string]any{"version": 3.0})
	if n := metric("reload_rollbacks_total"); n != 1 {
		t.Errorf("reload_rollbacks_total = %v after the fixed save, want 1", n)
	}
}
