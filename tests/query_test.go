package tests

import (
	"strings"
	"testing"

	"github.com/coder/websocket"
	"github.com/electric-socket/electric-socket/tests/testkit"
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
	c.Send(map[string]any{})
	c.Send(map[string]any{"read": true})
	got := c.Recv()
	want := `{"all":{"room":["lobby"],"tag":["a","b","c"]},"query":{"room":"lobby","tag":"a"}}`
	if testkit.JSON(got) != want {
		t.Errorf("got  %s\nwant %s", testkit.JSON(got), want)
	}
	c.Send(map[string]any{"write": true})
	if msg := c.ExpectError("script_error"); !strings.Contains(msg, "query.lua:9: process_websocket_message: channel.query was written to") {
		t.Errorf("error message %q, want it to name the script, the function and channel.query", msg)
	}
	c.ExpectClose(websocket.StatusInternalError)

	d := s.dial("/query?room=x")
	d.Send(map[string]any{})
	d.Send(map[string]any{"read": true})
	if got := testkit.JSON(d.Recv()); got != `{"all":{"room":["x"]},"query":{"room":"x"}}` {
		t.Errorf("the next connection sees %s", got)
	}
}
