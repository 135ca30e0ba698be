package tests

import (
	"strings"
	"testing"

	"github.com/coder/websocket"
)

// Through the real server: a parameter given twice is the first value in
// channel.query and every value, in order, in channel.query_all; a script
// that writes to channel.query fails with a script error and 1011, and
// changes nothing for the next connection.
func TestChannelQueryEndToEnd(t *testing.T) {
	s := startServer(t, `
[server]
listen = "127.0.0.1:0"

[lua]
watch = false

[[integration]]
name = "query"
path = "/query"
script = "query.lua"
`)
	c := s.dial("/query?tag=a&room=lobby&tag=b&tag=c")
	c.send(map[string]any{})
	c.send(map[string]any{"read": true})
	got := c.recv()
	want := `{"all":{"room":["lobby"],"tag":["a","b","c"]},"query":{"room":"lobby","tag":"a"}}`
	if jsonString(got) != want {
		t.Errorf("got  %s\nwant %s", jsonString(got), want)
	}
	c.send(map[string]any{"write": true})
	if msg := c.expectError("script_error"); !strings.Contains(msg, "query.lua:9: process_websocket_message: channel.query was written to") {
		t.Errorf("error message %q, want it to name the script, the function and channel.query", msg)
	}
	c.expectClose(websocket.StatusInternalError)

	d := s.dial("/query?room=x")
	d.send(map[string]any{})
	d.send(map[string]any{"read": true})
	if got := jsonString(d.recv()); got != `{"all":{"room":["x"]},"query":{"room":"x"}}` {
		t.Errorf("the next connection sees %s", got)
	}
}
