package luabridge

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/electric-socket/electric-socket/broker"
)

// minimalScript defines only the two required functions.
const minimalScript = `local M = {}
function M.initial_authorisation(channel, message) return {} end
function M.process_websocket_message(channel, message, channel_data, broker_data) return nil end
return M
`

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name     string
		src      string
		line     int    // 0: Where is the file alone
		lineOf   string // else: Where is the line of this text
		contains []string
	}{
		{
			name:     "syntax error",
			src:      "local M = {}\n\nlocal x = = 1\nreturn M\n",
			line:     3,
			contains: []string{`syntax error near "="`},
		},
		{
			name:     "syntax error in a function",
			src:      "local M = {}\nfunction M.initial_authorisation(c, m)\n  return { a = }\nend\nreturn M\n",
			line:     3,
			contains: []string{"syntax error"},
		},
		{
			name:     "unclosed function at the end of the file",
			src:      "local M = {}\nfunction M.initial_authorisation(\n",
			line:     2,
			contains: []string{"syntax error", "end of the file"},
		},
		{
			name:     "unclosed table at the end of the file, no final newline",
			src:      "local M = {}\n\nreturn {",
			line:     3,
			contains: []string{"syntax error", "end of the file"},
		},
		{
			name:     "unterminated string",
			src:      "local M = {}\nlocal s = \"abc\nreturn M\n",
			line:     2,
			contains: []string{"unterminated string"},
		},
		{
			name:     "compile error: vararg outside a vararg function",
			src:      "local M = {}\nfunction M.f()\n  return ...\nend\nreturn M\n",
			line:     3,
			contains: []string{"compile error", "'...'"},
		},
		{
			name:     "top-level runtime error",
			src:      "local M = {}\n\n\nlocal x = nil\nx.y = 1\nreturn M\n",
			line:     5,
			contains: []string{"top level failed", "attempt to index"},
		},
		{
			name:     "top-level error()",
			src:      "local M = {}\nerror(\"no config\")\nreturn M\n",
			line:     2,
			contains: []string{"top level failed", "no config"},
		},
		{
			name:     "top-level require of a forbidden module",
			src:      "local M = {}\nlocal os = require(\"os\")\nreturn M\n",
			line:     2,
			contains: []string{`module "os" not found`},
		},
		{
			name:     "returns a number",
			src:      "return 42\n",
			contains: []string{"must return a table of functions", "got number"},
		},
		{
			name:     "returns nothing",
			src:      "local M = {}\nfunction M.initial_authorisation() end\n",
			contains: []string{"must return a table of functions", "got nil"},
		},
		{
			name:     "returns a string",
			src:      "return \"M\"\n",
			contains: []string{"must return a table of functions", "got string"},
		},
		{
			name:     "no initial_authorisation",
			src:      "local M = {}\nfunction M.process_websocket_message() end\nreturn M\n",
			contains: []string{"initial_authorisation not found or not a function"},
		},
		{
			name:     "no process_websocket_message",
			src:      "local M = {}\nfunction M.initial_authorisation() end\nreturn M\n",
			contains: []string{"process_websocket_message not found or not a function"},
		},
		{
			name:     "misspelt required function",
			src:      "local M = {}\nfunction M.initial_authorization() end\nfunction M.process_websocket_message() end\nreturn M\n",
			line:     2,
			contains: []string{`the key "initial_authorization", which is not an integration function: did you mean initial_authorisation?`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			se := loadErr(t, tt.src, Options{Timeout: time.Second})
			want := testName
			if tt.line > 0 {
				want = at(tt.line)
			}
			if se.Kind != KindLoad {
				t.Errorf("Kind = %q, want %q", se.Kind, KindLoad)
			}
			if se.Func != "" {
				t.Errorf("Func = %q, want none", se.Func)
			}
			if se.Where != want {
				t.Errorf("Where = %q, want %q (error: %v)", se.Where, want, se)
			}
			if !strings.HasPrefix(se.Error(), want+": ") {
				t.Errorf("Error() = %q, want it to start with %q", se.Error(), want+": ")
			}
			for _, c := range tt.contains {
				if !strings.Contains(se.Error(), c) {
					t.Errorf("error %q does not contain %q", se.Error(), c)
				}
			}
			if n := strings.Count(se.Error(), "syntax error"); n > 1 {
				t.Errorf("error %q says \"syntax error\" %d times", se.Error(), n)
			}
		})
	}
}

func TestLoadFieldNotAFunction(t *testing.T) {
	for f := Function(0); f < numFunctions; f++ {
		for _, v := range []struct{ lua, typ string }{{"42", "number"}, {"{}", "table"}, {`"fn"`, "string"}, {"false", "boolean"}} {
			t.Run(f.String()+"="+v.typ, func(t *testing.T) {
				src := minimalScript[:strings.LastIndex(minimalScript, "return M")] +
					"M." + f.String() + " = " + v.lua + "\nreturn M\n"
				se := loadErr(t, src, Options{})
				if se.Kind != KindLoad || se.Where != testName {
					t.Errorf("got Kind %q Where %q, want %q %q", se.Kind, se.Where, KindLoad, testName)
				}
				want := f.String() + " must be a function, got " + v.typ
				if !strings.Contains(se.Msg, want) {
					t.Errorf("Msg = %q, want it to contain %q", se.Msg, want)
				}
			})
		}
	}
}

func TestLoadTopLevelTimeout(t *testing.T) {
	const timeout = 100 * time.Millisecond
	for _, tt := range []struct{ name, src string }{
		{"while true", "local M = {}\nwhile true do end\nreturn M\n"},
		{"recursion in a loop", "local M = {}\nlocal function f() return 1 end\nwhile f() do end\nreturn M\n"},
		{"pcall cannot swallow the timeout", "local M = {}\nwhile true do pcall(function() while true do end end) end\nreturn M\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			returns(t, "Load", func() { _, err = Load(testName, []byte(tt.src), Options{Timeout: timeout}) })
			se := asScriptError(t, err)
			if se.Kind != KindLoad || se.Where != testName {
				t.Errorf("got Kind %q Where %q, want %q %q", se.Kind, se.Where, KindLoad, testName)
			}
			if !strings.Contains(se.Msg, "did not finish within 100ms") {
				t.Errorf("Msg = %q, want it to say the top level did not finish within 100ms", se.Msg)
			}
		})
	}
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "chat.lua")
	if err := os.WriteFile(path, []byte(minimalScript), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := LoadFile(path, "scripts/chat.lua", Options{})
	if err != nil {
		t.Fatalf("LoadFile: %v", err)
	}
	defer s.Close()
	if s.Name != "scripts/chat.lua" {
		t.Errorf("Name = %q, want the name given, scripts/chat.lua", s.Name)
	}
	from, err := Load("scripts/chat.lua", []byte(minimalScript), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer from.Close()
	if s.Hash != from.Hash {
		t.Errorf("LoadFile hash %q != Load hash %q of the same source", s.Hash, from.Hash)
	}

	_, err = LoadFile(filepath.Join(dir, "missing.lua"), "scripts/missing.lua", Options{})
	se := asScriptError(t, err)
	if se.Kind != KindLoad || se.Where != "scripts/missing.lua" || !strings.Contains(se.Msg, "cannot read script") {
		t.Errorf("missing file: got %#v", se)
	}
	if strings.Contains(se.Error(), dir) {
		t.Errorf("error %q shows the file system path; want only the script's name", se.Error())
	}
}

func TestHash(t *testing.T) {
	a := mustLoad(t, minimalScript, Options{})
	again := mustLoad(t, minimalScript, Options{Timeout: time.Minute, PoolSize: 1})
	changed := mustLoad(t, minimalScript+"-- a comment\n", Options{})
	if !regexp.MustCompile(`^[0-9a-f]{12}$`).MatchString(a.Hash) {
		t.Errorf("Hash = %q, want 12 lowercase hex digits", a.Hash)
	}
	if a.Hash != again.Hash {
		t.Errorf("same source, different hashes: %q and %q", a.Hash, again.Hash)
	}
	if a.Hash == changed.Hash {
		t.Errorf("a changed source kept the hash %q", a.Hash)
	}
}

func TestDefined(t *testing.T) {
	all := `local M = {}
function M.initial_authorisation() return {} end
function M.channel_identifier() return nil end
function M.broker_key() return nil end
function M.broker_authorisation() return nil end
function M.process_websocket_message() return nil end
function M.process_broker_message() return nil end
function M.on_close() return nil end
return M
`
	tests := []struct {
		name string
		src  string
		want map[Function]bool
	}{
		{"minimal", minimalScript, map[Function]bool{InitialAuthorisation: true, ProcessWebsocketMessage: true}},
		{"all seven", all, map[Function]bool{InitialAuthorisation: true, ChannelIdentifier: true, BrokerKey: true,
			BrokerAuthorisation: true, ProcessWebsocketMessage: true, ProcessBrokerMessage: true, OnClose: true}},
		{"some", strings.Replace(minimalScript, "return M", "function M.on_close() end\nM.broker_key = function() end\nreturn M", 1),
			map[Function]bool{InitialAuthorisation: true, ProcessWebsocketMessage: true, OnClose: true, BrokerKey: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustLoad(t, tt.src, Options{})
			for f := Function(0); f < numFunctions; f++ {
				if got := s.Defined(f); got != tt.want[f] {
					t.Errorf("Defined(%s) = %t, want %t", f, got, tt.want[f])
				}
			}
		})
	}
}

func TestFunctionNames(t *testing.T) {
	want := []string{"initial_authorisation", "channel_identifier", "broker_key", "broker_authorisation",
		"process_websocket_message", "process_broker_message", "on_close"}
	for i, name := range want {
		if got := Function(i).String(); got != name {
			t.Errorf("Function(%d).String() = %q, want %q", i, got, name)
		}
	}
}

func TestDefaults(t *testing.T) {
	s := mustLoad(t, minimalScript, Options{})
	ctx := context.Background()
	ch := testChannel()

	id, err := s.Identify(ctx, ch, []byte(`{"user":"ann"}`))
	if err != nil {
		t.Fatalf("Identify: %v", err)
	}
	if id != (Identity{}) {
		t.Errorf("Identify = %+v, want no identifier and no key", id)
	}

	empty := describe(&Action{})
	a, err := s.BrokerAuthorisation(ctx, ch, []byte(`{"user":"ann"}`), []byte(`{"n":1}`))
	if err != nil {
		t.Fatalf("BrokerAuthorisation: %v", err)
	}
	if describe(a) != empty || a.BrokerOp != broker.Abort {
		t.Errorf("BrokerAuthorisation = %s, want the empty action", describe(a))
	}
	a, err = s.OnClose(ctx, ch, []byte(`{"user":"ann"}`), []byte(`{"n":1}`))
	if err != nil {
		t.Fatalf("OnClose: %v", err)
	}
	if describe(a) != empty {
		t.Errorf("OnClose = %s, want the empty action", describe(a))
	}

	msg := json.RawMessage(`{"text":"hi","from":"bob"}`)
	env := broker.Envelope{Target: "ann", Message: msg, BrokerKey: "room1", Source: "ch-2"}
	a, err = s.ProcessBrokerMessage(ctx, ch, env, []byte(`{}`), []byte(`{}`))
	if err != nil {
		t.Fatalf("ProcessBrokerMessage: %v", err)
	}
	want := describe(&Action{Response: msg})
	if describe(a) != want {
		t.Errorf("ProcessBrokerMessage = %s, want %s", describe(a), want)
	}
	msg[2] = 'X' // the response must not alias the envelope
	if string(a.Response) != `{"text":"hi","from":"bob"}` {
		t.Errorf("the default response shares memory with the envelope: %s", a.Response)
	}

	// process_websocket_message returning nil is the empty action too.
	if a := wsOK(t, s, `{"a":1}`); describe(a) != empty {
		t.Errorf("nil action = %s, want the empty action", describe(a))
	}
}

func TestIdentify(t *testing.T) {
	src := `local M = {}
function M.initial_authorisation() return {} end
function M.process_websocket_message() end
function M.channel_identifier(channel, channel_data) return channel_data.user end
function M.broker_key(channel, channel_data) return channel.query.room end
return M
`
	s := mustLoad(t, src, Options{})
	id, err := s.Identify(context.Background(), testChannel(), []byte(`{"user":"ann"}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := (Identity{ID: "ann", HasID: true, Key: "lobby", HasKey: true}); id != want {
		t.Errorf("Identify = %+v, want %+v", id, want)
	}
	id, err = s.Identify(context.Background(), &Channel{ID: "c"}, []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if id != (Identity{}) {
		t.Errorf("nil results: Identify = %+v, want none", id)
	}

	bad := strings.Replace(src, "return channel.query.room", "return 7", 1)
	s = mustLoad(t, bad, Options{})
	_, err = s.Identify(context.Background(), testChannel(), []byte(`{"user":"ann"}`))
	checkScriptError(t, err, KindMalformed, "broker_key", at(lineOf(t, bad, "function M.broker_key")),
		"must return a string or nil, got number")
}

func TestInitialAuthorisation(t *testing.T) {
	src := `local es = require("es")
local M = {}
function M.initial_authorisation(channel, message)
  if message.token ~= "secret" then
    return es.fail({ reason = "bad token", token = message.token })
  end
  return { user = message.user, room = channel.query.room, tags = es.array({}) }
end
function M.process_websocket_message() end
return M
`
	s := mustLoad(t, src, Options{})
	ctx := context.Background()

	auth, err := s.InitialAuthorisation(ctx, testChannel(), []byte(`{"token":"secret","user":"ann"}`))
	if err != nil {
		t.Fatal(err)
	}
	if auth.Failed || auth.Body != nil || string(auth.ChannelData) != `{"room":"lobby","tags":[],"user":"ann"}` {
		t.Errorf("success: got %+v (channel data %s)", auth, auth.ChannelData)
	}

	auth, err = s.InitialAuthorisation(ctx, testChannel(), []byte(`{"token":"wrong"}`))
	if err != nil {
		t.Fatal(err)
	}
	if !auth.Failed || auth.ChannelData != nil || string(auth.Body) != `{"id":"auth","reason":"bad token","token":"wrong"}` {
		t.Errorf("failure: got Failed=%t ChannelData=%s Body=%s", auth.Failed, auth.ChannelData, auth.Body)
	}

	for _, tt := range []struct{ ret, contains string }{
		{"nil", "must return the channel data table or es.fail(body), got nil"},
		{`"ann"`, "got string"},
		{"{ f = print }", "channel_data.f: cannot encode a function"},
	} {
		t.Run("returns "+tt.ret, func(t *testing.T) {
			bad := strings.Replace(src, "return { user = message.user, room = channel.query.room, tags = es.array({}) }", "return "+tt.ret, 1)
			s := mustLoad(t, bad, Options{})
			_, err := s.InitialAuthorisation(ctx, testChannel(), []byte(`{"token":"secret"}`))
			checkScriptError(t, err, KindMalformed, "initial_authorisation", at(3), tt.contains)
		})
	}
}

func TestLiveStatesAfterClose(t *testing.T) {
	before := LiveStates()
	s, err := Load(testName, []byte(minimalScript), Options{PoolSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	if got := LiveStates(); got != before+1 {
		t.Errorf("after Load: %d live states, want %d (the load check's state is kept)", got, before+1)
	}
	for range 3 {
		wsOK(t, s, `{}`)
	}
	s.Close()
	if got := LiveStates(); got != before {
		t.Errorf("after Close: %d live states, want %d", got, before)
	}
	if _, err := Load(testName, []byte("return 1"), Options{}); err == nil {
		t.Fatal("want a load error")
	}
	if got := LiveStates(); got != before {
		t.Errorf("after a failed Load: %d live states, want %d", got, before)
	}
}
