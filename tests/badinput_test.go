package tests

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/electric-socket/electric-socket/tests/testkit"
)

// smallConfig is chatConfig with a 1 KiB message limit.
const smallConfig = `
[server]
listen = "127.0.0.1:0"
max_message_bytes = 1024

[lua]
watch = false

[broker]
kind = "memory"

[[integration]]
name = "chat"
path = "/chat"
script = "chat.lua"
`

func nested(depth int) []byte {
	return []byte(strings.Repeat(`{"a":`, depth-1) + "{}" + strings.Repeat("}", depth-1))
}

// Bad input from a logged-in client: an error frame with the code, the
// close code, on_close runs (the bystander hears "left"), and the server and
// the bystander keep working. The same input as the initial message closes
// the same way and leaves nothing behind.
func TestBadInput(t *testing.T) {
	big := []byte(`{"type":"say","text":"` + strings.Repeat("x", 2000) + `"}`)
	cases := []struct {
		name  string
		send  func(c *testkit.Client)
		code  string // "" when no error frame is checked
		close websocket.StatusCode
	}{
		{"not json", func(c *testkit.Client) { c.SendRaw(websocket.MessageText, []byte(`{"type": "say", "text": `)) },
			"invalid_json", websocket.StatusInvalidFramePayloadData},
		{"plain text", func(c *testkit.Client) { c.SendRaw(websocket.MessageText, []byte(`hello`)) },
			"invalid_json", websocket.StatusInvalidFramePayloadData},
		{"array", func(c *testkit.Client) { c.SendRaw(websocket.MessageText, []byte(`[1,2]`)) },
			"not_an_object", websocket.StatusInvalidFramePayloadData},
		{"string", func(c *testkit.Client) { c.SendRaw(websocket.MessageText, []byte(`"hi"`)) },
			"not_an_object", websocket.StatusInvalidFramePayloadData},
		{"nested 100 deep", func(c *testkit.Client) { c.SendRaw(websocket.MessageText, nested(100)) },
			"too_deep", websocket.StatusInvalidFramePayloadData},
		{"invalid utf-8", func(c *testkit.Client) {
			c.SendRaw(websocket.MessageText, []byte("{\"type\":\"say\",\"text\":\"\xff\xfe\"}"))
		},
			"invalid_utf8", websocket.StatusInvalidFramePayloadData},
		{"binary", func(c *testkit.Client) { c.SendRaw(websocket.MessageBinary, []byte(`{"type":"say","text":"hi"}`)) },
			"binary_frame", websocket.StatusUnsupportedData},
		{"too large", func(c *testkit.Client) { c.SendRaw(websocket.MessageText, big) },
			"too_large", websocket.StatusMessageTooBig},
		{"too large in fragments", func(c *testkit.Client) {
			ctx, cancel := context.WithTimeout(context.Background(), waitBound)
			defer cancel()
			w, err := c.Conn.Writer(ctx, websocket.MessageText)
			if err != nil {
				c.T.Fatal(err)
			}
			// each Write is one frame; none is over the limit on its own
			for i := 0; i < 4; i++ {
				if _, err := w.Write(big[i*len(big)/4 : (i+1)*len(big)/4]); err != nil {
					c.T.Fatalf("fragment %d: %v", i, err)
				}
			}
			if err := w.Close(); err != nil {
				c.T.Fatalf("final fragment: %v", err)
			}
		}, "too_large", websocket.StatusMessageTooBig},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, smallConfig)
			alice := s.login("alice", "lobby")

			// after login
			mallory := s.login("mallory", "lobby")
			alice.Expect(map[string]any{"type": "joined", "user": "mallory"})
			tc.send(mallory)
			mallory.ExpectError(tc.code)
			mallory.ExpectClose(tc.close)
			alice.Expect(map[string]any{"type": "left", "user": "mallory"})
			checkHealthy(s, "lobby", alice)

			// as the initial message: nothing runs, nothing is left behind
			eve := s.dial("/chat")
			tc.send(eve)
			eve.ExpectError(tc.code)
			eve.ExpectClose(tc.close)
			testkit.Eventually(t, waitBound, "eve's session to end", func() bool { return s.app.Engine.Sessions() == 1 })
			if got := s.members("lobby"); len(got) != 1 || got[0] != "alice" {
				t.Errorf("broker members %v, want [alice]", got)
			}
			checkHealthy(s, "lobby", alice)
		})
	}
}

// A message just under the limit is accepted; the limit counts the whole
// message, fragments included.
func TestMessageUnderLimit(t *testing.T) {
	s := startServer(t, smallConfig)
	alice := s.login("alice", "lobby")
	text := strings.Repeat("y", 900)
	msg := []byte(`{"type":"say","text":"` + text + `"}`)
	if len(msg) > 1024 {
		t.Fatalf("test message is %d bytes", len(msg))
	}
	alice.SendRaw(websocket.MessageText, msg)
	alice.Expect(map[string]any{"type": "sent", "text": text})

	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	w, err := alice.Conn.Writer(ctx, websocket.MessageText)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := w.Write(msg[i*len(msg)/3 : (i+1)*len(msg)/3]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	alice.Expect(map[string]any{"type": "sent", "text": text})
}

// A client that sends nothing within auth_timeout gets an error frame and
// close 1008; one that logs in in time is not affected. The shipped default
// (10s) is used: a shorter timeout would be shared with alice's login, which
// then had to reach the server within it on a loaded machine.
func TestAuthTimeout(t *testing.T) {
	s := startServer(t, `
[server]
listen = "127.0.0.1:0"

[lua]
watch = false

[[integration]]
name = "chat"
path = "/chat"
script = "chat.lua"
`)
	if got := s.app.Config.Server.AuthTimeout; got != 10*time.Second {
		t.Fatalf("auth_timeout defaults to %v, want 10s", got)
	}
	alice := s.login("alice", "lobby")
	quiet := s.dial("/chat")
	v, why := quiet.Next(10*time.Second + waitBound)
	if v == nil || !testkit.HasFields(v, map[string]any{"id": "error", "error": "auth_timeout"}) {
		t.Fatalf("quiet: got %s (%s), want an auth_timeout error frame", testkit.JSON(v), why)
	}
	if msg, _ := v["message"].(string); !strings.Contains(msg, "10s") {
		t.Errorf("auth_timeout message %q does not name the timeout", msg)
	}
	quiet.ExpectClose(websocket.StatusPolicyViolation)
	testkit.Eventually(t, waitBound, "the quiet session to end", func() bool { return s.app.Engine.Sessions() == 1 })
	// alice, logged in long before, is still served
	checkHealthy(s, "lobby", alice)
}
