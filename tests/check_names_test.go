package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/electric-socket/electric-socket/tests/testkit"
)

// A misspelt integration function is an error at load: `check` reports it
// with the file, the line and the nearest name, and `serve` does not start
// (SPEC section 1), rather than running the default that forwards broker
// messages to the client.
func TestCheckMisspeltFunctionName(t *testing.T) {
	bin := testkit.Binary(t)
	path := prepareDir(t, "[[integration]]\nname = \"room\"\npath = \"/room\"\nscript = \"misspelt.lua\"\n")
	script := `local M = {}
function M.initial_authorisation(channel, message) return {} end
function M.process_websocket_message(channel, message, channel_data, broker_data) return {} end
function M.process_broker_mesage(channel, message, channel_data, broker_data)
  return {}
end
return M
`
	if err := os.WriteFile(filepath.Join(filepath.Dir(path), "misspelt.lua"), []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	want := `misspelt.lua:4: the returned table has the key "process_broker_mesage", which is not an integration function: did you mean process_broker_message?`
	for _, args := range [][]string{
		{"check", "--config", path},
		{"serve", "--config", path, "--listen", "127.0.0.1:0", "--admin", "off"},
	} {
		code, stdout, stderr := runBinary(t, bin, args...)
		if code != 1 || !strings.Contains(stderr, want) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 1 and %q", args[0], code, stdout, stderr, want)
		}
	}
}
