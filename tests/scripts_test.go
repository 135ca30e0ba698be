package tests

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"github.com/electric-socket/electric-socket/broker"
	"github.com/electric-socket/electric-socket/tests/testkit"
)

// badConfig serves testdata/bad.lua at /bad (with a short Lua timeout) and
// the chat at /chat.
const badConfig = `
[server]
listen = "127.0.0.1:0"

[lua]
timeout = "200ms"
watch = false

[broker]
kind = "memory"

[[integration]]
name = "bad"
path = "/bad"
script = "bad.lua"

[[integration]]
name = "chat"
path = "/chat"
script = "chat.lua"
`

// badMembers returns the members of bad.lua's single room.
func (s *server) badMembers() []string {
	s.t.Helper()
	raw := s.memory().Get(broker.Topic{Namespace: "bad", Key: "room"})
	if raw == nil {
		return nil
	}
	var v struct{ Members map[string]string }
	if err := json.Unmarshal(raw, &v); err != nil {
		s.t.Fatalf("bad room: %v: %s", err, raw)
	}
	var out []string
	for k := range v.Members {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// badLogin dials /bad and joins as user.
func (s *server) badLogin(user string) *testkit.Client {
	s.t.Helper()
	c := s.dial("/bad")
	c.Name = user
	c.Send(map[string]any{"user": user})
	c.Expect(map[string]any{"type": "welcome", "user": user})
	return c
}

// checkBadHealthy shows that the bad integration still serves: the
// bystander echoes, a newcomer joins (the bystander hears it) and echoes.
func checkBadHealthy(s *server, bystander *testkit.Client) {
	s.t.Helper()
	bystander.Send(map[string]any{"type": "echo", "text": "ping"})
	bystander.Expect(map[string]any{"type": "echo", "text": "ping"})
	name := fmt.Sprintf("fresh%d", newcomers.Add(1))
	c := s.badLogin(name)
	bystander.Expect(map[string]any{"type": "joined", "user": name})
	c.Send(map[string]any{"type": "echo", "text": "pong"})
	c.Expect(map[string]any{"type": "echo", "text": "pong"})
	c.Conn.Close(websocket.StatusNormalClosure, "")
	bystander.Expect(map[string]any{"type": "left", "user": name})
	// and the other integration is untouched
	checkHealthy(s, "lobby")
}

// A script error, a timeout or a malformed action in
// process_websocket_message: an error frame whose message names the
// script's file:line and the function, close 1011, nothing committed for
// the failed call, on_close still runs, and everything else keeps working.
func TestScriptFailuresInMessage(t *testing.T) {
	cases := []struct {
		typ      string
		code     string
		line     string   // MARK whose line the message names
		contains []string // more text the message must contain
	}{
		{"error", "script_error", "MARK:runtime_error", []string{"kaboom"}},
		{"loop", "script_timeout", "MARK:process_websocket_message", []string{"200ms"}},
		{"malformed", "malformed_action", "MARK:malformed", []string{"bogus_field"}}, // the line of its return
		{"poison", "malformed_action", "MARK:process_websocket_message", []string{"broker_data.f", "function"}},
	}
	for _, tc := range cases {
		t.Run(tc.typ, func(t *testing.T) {
			s := startServer(t, badConfig)
			alice := s.badLogin("alice")
			mallory := s.badLogin("mallory")
			alice.Expect(map[string]any{"type": "joined", "user": "mallory"})

			mallory.Send(map[string]any{"type": tc.typ})
			msg := mallory.ExpectError(tc.code)
			want := append([]string{
				fmt.Sprintf("bad.lua:%d", lineOf(t, "bad.lua", tc.line)),
				"process_websocket_message",
			}, tc.contains...)
			for _, w := range want {
				if !strings.Contains(msg, w) {
					t.Errorf("error message %q does not contain %q", msg, w)
				}
			}
			mallory.ExpectClose(websocket.StatusInternalError)

			// on_close ran on the committed data: no intruder from the
			// failed call, and mallory is gone
			alice.Expect(map[string]any{"type": "left", "user": "mallory"})
			if got := s.badMembers(); !slices.Equal(got, []string{"alice"}) {
				t.Errorf("members %v, want [alice]", got)
			}
			if !strings.Contains(s.log.String(), "script error") {
				t.Errorf("the script error is not logged")
			}
			checkBadHealthy(s, alice)
		})
	}
}

// A failure during authorisation (an error or a timeout in
// initial_authorisation, a malformed action from broker_authorisation)
// closes with 1011 after the error frame, runs no on_close and commits
// nothing.
func TestScriptFailuresInAuthorisation(t *testing.T) {
	cases := []struct {
		user, code, fn, line string
	}{
		{"auth_error", "script_error", "initial_authorisation", "MARK:auth_error"},
		{"auth_loop", "script_timeout", "initial_authorisation", ""},
		{"auth_malformed", "malformed_action", "broker_authorisation", "MARK:auth_malformed"},
	}
	for _, tc := range cases {
		t.Run(tc.user, func(t *testing.T) {
			s := startServer(t, badConfig)
			alice := s.badLogin("alice")
			c := s.dial("/bad")
			c.Send(map[string]any{"user": tc.user})
			msg := c.ExpectError(tc.code)
			want := []string{"bad.lua:", tc.fn}
			if tc.line != "" {
				want = append(want, fmt.Sprintf("bad.lua:%d", lineOf(t, "bad.lua", tc.line)))
			}
			if tc.user == "auth_malformed" {
				want = append(want, "websocket_respons")
			}
			for _, w := range want {
				if !strings.Contains(msg, w) {
					t.Errorf("error message %q does not contain %q", msg, w)
				}
			}
			c.ExpectClose(websocket.StatusInternalError)
			testkit.Eventually(t, waitBound, "the failed session to end", func() bool { return s.app.Engine.Sessions() == 1 })
			if got := s.badMembers(); !slices.Equal(got, []string{"alice"}) {
				t.Errorf("members %v, want [alice]: nothing of a failed authorisation is committed", got)
			}
			// no "joined" and no "left" for the failed login: alice's next
			// message is the newcomer's "joined" inside checkBadHealthy
			checkBadHealthy(s, alice)
		})
	}
}

// Two integrations never share entities: the same key in two namespaces.
func TestIntegrationsAreSeparate(t *testing.T) {
	s := startServer(t, badConfig)
	b := s.badLogin("alice")
	c := s.login("alice", "room")
	if got := s.badMembers(); !slices.Equal(got, []string{"alice"}) {
		t.Errorf("bad members %v, want [alice]", got)
	}
	if got := s.members("room"); !slices.Equal(got, []string{"alice"}) {
		t.Errorf("chat members %v, want [alice]", got)
	}
	// chat's alice saying something reaches nobody in bad's room
	c.Send(map[string]any{"type": "say", "text": "hi"})
	c.Expect(map[string]any{"type": "sent"})
	b.Send(map[string]any{"type": "echo", "text": "only me"})
	b.Expect(map[string]any{"type": "echo", "text": "only me"})
}
