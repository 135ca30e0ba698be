package host

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/electric-socket/electric-socket/host/config"
	"github.com/electric-socket/electric-socket/tests/testkit"
)

// A script's print goes through the server's logger ([log] format and
// level), with the integration's name and the file:line of the call.
func TestLuaPrintGoesThroughTheConfiguredLogger(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "p.lua")
	src := `local M = {}
function M.initial_authorisation(ch, m) return {} end
function M.process_websocket_message(ch, m, cd, bd)
  print("got", m.n)
  return { websocket_response = { version = 1 } }
end
return M
`
	if err := os.WriteFile(script, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, level := range []slog.Level{slog.LevelInfo, slog.LevelWarn} {
		cfg := config.Default()
		cfg.Lua.Watch = false
		cfg.Integrations = []config.IntegrationConfig{{Name: "printer", Path: "/p", Script: script}}
		logs := &testkit.LogBuffer{}
		app, err := NewApp(cfg, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: level})))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { app.Broker.Close() })
		respond(t, app)
		var prints []map[string]any
		for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
			var rec map[string]any
			if line == "" {
				continue
			}
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Fatalf("a log line that is not JSON: %q", line)
			}
			if rec["msg"] == "lua print" {
				prints = append(prints, rec)
			}
		}
		if level > slog.LevelInfo {
			if len(prints) != 0 {
				t.Errorf("a print reached a logger at level %v: %v", level, prints)
			}
			continue
		}
		// respond authorises, then sends one message: one print.
		if len(prints) != 1 {
			t.Fatalf("%d print lines, want 1:\n%s", len(prints), logs.String())
		}
		want := map[string]any{"integration": "printer", "at": config.DisplayPath(script) + ":4", "text": "got\tnil"}
		for k, v := range want {
			if prints[0][k] != v {
				t.Errorf("%s = %v, want %v", k, prints[0][k], v)
			}
		}
	}
}
