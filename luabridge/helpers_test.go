package luabridge

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// testName is the name every test script is loaded under; errors name it.
const testName = "scripts/x.lua"

// testChannel is the connection the tests' integration functions see.
func testChannel() *Channel {
	return &Channel{
		ID:          "ch-1",
		Integration: "chat",
		Path:        "/chat",
		RemoteAddr:  "127.0.0.1:5555",
		Query:       map[string]string{"x": "42", "room": "lobby"},
	}
}

// wsPrelude is the start of the scripts built by wsScript: process_websocket_message
// is defined on line wsFuncLine and its body starts on the line after.
const wsPrelude = `local es = require("es")
local M = {}
function M.initial_authorisation(channel, message) return {} end
function M.process_websocket_message(channel, message, channel_data, broker_data)
`

const wsFuncLine = 4

// wsScript is a script whose process_websocket_message runs body.
func wsScript(body string) string {
	return wsPrelude + body + "\nend\nreturn M\n"
}

// mustLoad loads src under testName and closes the script when the test ends.
func mustLoad(tb testing.TB, src string, opts Options) *Script {
	tb.Helper()
	s, err := Load(testName, []byte(src), opts)
	if err != nil {
		tb.Fatalf("Load: %v\nscript:\n%s", err, src)
	}
	tb.Cleanup(s.Close)
	return s
}

// loadErr loads src and returns the *ScriptError it must fail with.
func loadErr(tb testing.TB, src string, opts Options) *ScriptError {
	tb.Helper()
	s, err := Load(testName, []byte(src), opts)
	if err == nil {
		s.Close()
		tb.Fatalf("Load succeeded, want an error\nscript:\n%s", src)
	}
	return asScriptError(tb, err)
}

// asScriptError returns err as a *ScriptError or fails the test.
func asScriptError(tb testing.TB, err error) *ScriptError {
	tb.Helper()
	if err == nil {
		tb.Fatal("got no error, want a *ScriptError")
	}
	var se *ScriptError
	if !errors.As(err, &se) {
		tb.Fatalf("got %T (%v), want a *ScriptError", err, err)
	}
	return se
}

// checkScriptError checks the kind, function and place of err and that its
// message contains every one of contains.
func checkScriptError(tb testing.TB, err error, kind Kind, fn, where string, contains ...string) *ScriptError {
	tb.Helper()
	se := asScriptError(tb, err)
	if se.Kind != kind {
		tb.Errorf("Kind = %q, want %q (error: %v)", se.Kind, kind, err)
	}
	if se.Func != fn {
		tb.Errorf("Func = %q, want %q (error: %v)", se.Func, fn, err)
	}
	if se.Where != where {
		tb.Errorf("Where = %q, want %q (error: %v)", se.Where, where, err)
	}
	if Code(err) != string(kind) {
		tb.Errorf("Code = %q, want %q", Code(err), kind)
	}
	text := err.Error()
	for _, c := range contains {
		if !strings.Contains(text, c) {
			tb.Errorf("error %q does not contain %q", text, c)
		}
	}
	return se
}

// lineOf is the 1-based line of the first occurrence of marker in src.
func lineOf(tb testing.TB, src, marker string) int {
	tb.Helper()
	i := strings.Index(src, marker)
	if i < 0 {
		tb.Fatalf("marker %q not in the script", marker)
	}
	return strings.Count(src[:i], "\n") + 1
}

// at is "scripts/x.lua:line".
func at(line int) string { return fmt.Sprintf("%s:%d", testName, line) }

// runWS calls process_websocket_message with message (and empty channel and
// broker data).
func runWS(tb testing.TB, s *Script, message string) (*Action, error) {
	tb.Helper()
	return s.ProcessWebsocketMessage(context.Background(), testChannel(), []byte(message), nil, nil)
}

// wsOK runs process_websocket_message and fails the test on an error.
func wsOK(tb testing.TB, s *Script, message string) *Action {
	tb.Helper()
	a, err := runWS(tb, s, message)
	if err != nil {
		tb.Fatalf("ProcessWebsocketMessage: %v", err)
	}
	if a == nil {
		tb.Fatal("ProcessWebsocketMessage returned a nil action and no error")
	}
	return a
}

// respond runs a script whose process_websocket_message returns
// { websocket_response = <expr> } and returns the response's JSON.
func respond(tb testing.TB, expr string) string {
	tb.Helper()
	s := mustLoad(tb, wsScript("return { websocket_response = "+expr+" }"), Options{})
	return string(wsOK(tb, s, `{}`).Response)
}

// describe renders an action so that two can be compared and a difference read.
func describe(a *Action) string {
	if a == nil {
		return "<nil>"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "channel_data=%s op=%d broker_data=%s response=%s failed=%t close=%t",
		nilOr(a.ChannelData), a.BrokerOp, nilOr(a.BrokerData), nilOr(a.Response), a.ResponseFailed, a.ShouldClose)
	b.WriteString(" messages=[")
	for i, m := range a.BrokerMessages {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%s:%s", m.Target, m.Message)
	}
	b.WriteString("] side_effects=[")
	for i, e := range a.SideEffects {
		if i > 0 {
			b.WriteString(" ")
		}
		b.Write(e)
	}
	b.WriteString("]")
	return b.String()
}

func nilOr(b []byte) string {
	if b == nil {
		return "nil"
	}
	return string(b)
}

// hangBound bounds the wait for a call that must end: a call that escaped
// its time budget would run forever, so the bound tells a call that ended
// from one that hung. It is not a claim about how fast a call ends.
const hangBound = 30 * time.Second

// returns runs call and waits (at most hangBound) for it to return.
func returns(tb testing.TB, what string, call func()) {
	tb.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		call()
	}()
	select {
	case <-done:
	case <-time.After(hangBound):
		tb.Fatalf("%s did not return: it escaped its time budget", what)
	}
}
