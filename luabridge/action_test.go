package luabridge

import (
	"context"
	"strings"
	"testing"

	lua "github.com/yuin/gopher-lua"

	"github.com/electric-socket/electric-socket/broker"
)

func TestMalformedAction(t *testing.T) {
	tests := []struct {
		name     string
		ret      string // what process_websocket_message returns
		contains []string
	}{
		{"unknown field", `{ websocket_respons = {} }`, []string{"unknown field websocket_respons in the action table"}},
		{"unknown fields are named in order", `{ zeta = 1, alpha = 2 }`, []string{"unknown field alpha"}},
		{"a number key", `{ 1 }`, []string{"unknown field a number key"}},
		{"a number", `42`, []string{"must return an action table or nil, got number"}},
		{"a string", `"ok"`, []string{"must return an action table or nil, got string"}},
		{"true", `true`, []string{"must return an action table or nil, got boolean"}},
		{"a function", `print`, []string{"must return an action table or nil, got function"}},
		{"es.fail directly", `es.fail({ reason = "x" })`, []string{"returned es.fail(...) instead of an action table"}},
		{"channel_data a string", `{ channel_data = "x" }`, []string{"channel_data: must be a table, got string"}},
		{"channel_data es.fail", `{ channel_data = es.fail({}) }`, []string{"channel_data: must be a table, got es.fail(...)"}},
		{"broker_data a bad string", `{ broker_data = "swap/keep" }`, []string{`broker_data: must be a table, es.ABORT or es.DELETE, got the string "swap/keep"`}},
		{"broker_data a number", `{ broker_data = 1 }`, []string{"broker_data: must be a table, es.ABORT or es.DELETE, got number"}},
		{"broker_data es.null", `{ broker_data = es.null }`, []string{"broker_data: must be a table, es.ABORT or es.DELETE, got userdata"}},
		{"broker_data es.fail", `{ broker_data = es.fail({}) }`, []string{"broker_data: must be a table, es.ABORT or es.DELETE, got es.fail(...)"}},
		{"a function inside broker_data", `{ broker_data = { x = function() end } }`, []string{"broker_data.x: cannot encode a function"}},
		{"a function deep inside broker_data", `{ broker_data = { players = { {}, { socket = print } } } }`,
			[]string{"broker_data.players[2].socket: cannot encode a function"}},
		{"a mixed table in channel_data", `{ channel_data = { 1, a = 2 } }`, []string{"channel_data: cannot encode a table mixing array and string keys"}},
		{"es.fail nested in broker_data", `{ broker_data = { f = es.fail({}) } }`, []string{"broker_data.f: cannot encode es.fail(...) here"}},
		{"websocket_response a string", `{ websocket_response = "hello" }`, []string{"websocket_response: must be a table or es.fail(...), got string"}},
		{"a function inside websocket_response", `{ websocket_response = { f = print } }`, []string{"websocket_response.f: cannot encode a function"}},
		{"a function inside a failure body", `{ websocket_response = es.fail({ f = print }) }`, []string{"websocket_response.f: cannot encode a function"}},
		{"should_close a number", `{ should_close = 1 }`, []string{"should_close: must be a boolean, got number"}},
		{"should_close a string", `{ should_close = "true" }`, []string{"should_close: must be a boolean, got string"}},
		{"broker_messages a string", `{ broker_messages = "all" }`, []string{"broker_messages: must be an array of tables, got string"}},
		{"broker_messages not an array", `{ broker_messages = { target = "a", message = {} } }`, []string{"broker_messages: must be an array"}},
		{"broker_messages with a hole", `{ broker_messages = { [1] = { target = "a", message = {} }, [3] = { target = "b", message = {} } } }`,
			[]string{"broker_messages: must be an array"}},
		{"broker message not a table", `{ broker_messages = { "a" } }`, []string{"broker_messages[1]: must be a table { target = string, message = table }, got string"}},
		{"broker message without target", `{ broker_messages = { { target = "a", message = {} }, { message = {} } } }`,
			[]string{"broker_messages[2].target: must be a string, got nil"}},
		{"broker message target a number", `{ broker_messages = { { target = 7, message = {} } } }`, []string{"broker_messages[1].target: must be a string, got number"}},
		{"broker message without message", `{ broker_messages = { { target = "a" } } }`, []string{"broker_messages[1].message: must be a table, got nil"}},
		{"broker message message a string", `{ broker_messages = { { target = "a", message = "hi" } } }`, []string{"broker_messages[1].message: must be a table, got string"}},
		{"broker message extra field", `{ broker_messages = { { target = "a", message = {}, priority = 1 } } }`,
			[]string{"broker_messages[1]: unknown field priority"}},
		{"broker message with a function", `{ broker_messages = { { target = "a", message = { f = print } } } }`,
			[]string{"broker_messages[1].message.f: cannot encode a function"}},
		{"side_effects a table of strings", `{ side_effects = { "mail" } }`, []string{"side_effects[1]: must be a table, got string"}},
		{"side_effects not an array", `{ side_effects = { mail = {} } }`, []string{"side_effects: must be an array"}},
		{"side_effects a boolean", `{ side_effects = true }`, []string{"side_effects: must be an array of tables, got boolean"}},
		{"a function in a side effect", `{ side_effects = { { run = print } } }`, []string{"side_effects[1].run: cannot encode a function"}},
		{"error_namespace a number", `{ error_namespace = 1 }`, []string{"error_namespace: must be a string, got number"}},
		{"error_namespace a table", `{ error_namespace = {} }`, []string{"error_namespace: must be a string, got table"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustLoad(t, wsScript("return "+tt.ret), Options{})
			a, err := runWS(t, s, `{}`)
			contains := append([]string{"malformed result"}, tt.contains...)
			// The line of the return, the one after the function's.
			se := checkScriptError(t, err, KindMalformed, "process_websocket_message", at(wsFuncLine+1), contains...)
			if want := at(wsFuncLine+1) + ": process_websocket_message: "; !strings.HasPrefix(se.Error(), want) {
				t.Errorf("Error() = %q, want it to start with %q", se.Error(), want)
			}
			if a != nil {
				t.Errorf("got an action %s with the error", describe(a))
			}
		})
	}
}

func TestMalformedActionOtherFunctions(t *testing.T) {
	ctx := context.Background()
	ch := testChannel()
	env := broker.Envelope{Target: "ann", Message: []byte(`{"a":1}`), BrokerKey: "k", Source: "ch-2"}
	tests := []struct {
		name, fn, ret string
		call          func(s *Script) (*Action, error)
		contains      string
	}{
		{"on_close websocket_response", "on_close", `{ websocket_response = {} }`,
			func(s *Script) (*Action, error) { return s.OnClose(ctx, ch, nil, nil) },
			"unknown field websocket_response (not allowed in on_close"},
		{"on_close should_close", "on_close", `{ should_close = true }`,
			func(s *Script) (*Action, error) { return s.OnClose(ctx, ch, nil, nil) },
			"unknown field should_close (not allowed in on_close"},
		{"on_close error_namespace", "on_close", `{ error_namespace = "x" }`,
			func(s *Script) (*Action, error) { return s.OnClose(ctx, ch, nil, nil) },
			"unknown field error_namespace"},
		{"on_close a bad broker message", "on_close", `{ broker_messages = { { message = {} } } }`,
			func(s *Script) (*Action, error) { return s.OnClose(ctx, ch, nil, nil) },
			"broker_messages[1].target: must be a string, got nil"},
		{"broker_authorisation unknown field", "broker_authorisation", `{ channel = {} }`,
			func(s *Script) (*Action, error) { return s.BrokerAuthorisation(ctx, ch, nil, nil) },
			"unknown field channel"},
		{"process_broker_message a string", "process_broker_message", `"forward"`,
			func(s *Script) (*Action, error) { return s.ProcessBrokerMessage(ctx, ch, env, nil, nil) },
			"must return an action table or nil, got string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := `local es = require("es")
local M = {}
function M.initial_authorisation() return {} end
function M.process_websocket_message() return nil end


function M.` + tt.fn + `(...)
  return ` + tt.ret + `
end
return M
`
			s := mustLoad(t, src, Options{})
			a, err := tt.call(s)
			checkScriptError(t, err, KindMalformed, tt.fn, at(8), tt.contains) // the return's line
			if a != nil {
				t.Errorf("got an action %s with the error", describe(a))
			}
		})
	}
}

func TestValidAction(t *testing.T) {
	tests := []struct {
		name string
		ret  string
		want *Action
	}{
		{"nil", `nil`, &Action{}},
		{"nothing", ``, &Action{}},
		{"empty table", `{}`, &Action{}},
		{"everything", `{
  channel_data = { user = "ann", n = 3 },
  broker_data = { players = { "ann", "bob" }, empty = es.array({}), obj = {} },
  websocket_response = { type = "ok", z = 1, a = true, half = 0.5 },
  broker_messages = { { target = "bob", message = { text = "hi" } }, { message = { n = 2 }, target = "cy" } },
  should_close = true,
  side_effects = { { kind = "log", at = 1.5 }, { kind = "mail", to = { "a@b" } } },
  error_namespace = "chat",
}`, &Action{
			ChannelData: []byte(`{"n":3,"user":"ann"}`),
			BrokerOp:    broker.Set,
			BrokerData:  []byte(`{"empty":[],"obj":{},"players":["ann","bob"]}`),
			Response:    []byte(`{"a":true,"half":0.5,"type":"ok","z":1}`),
			BrokerMessages: []Message{
				{Target: "bob", Message: []byte(`{"text":"hi"}`)},
				{Target: "cy", Message: []byte(`{"n":2}`)},
			},
			ShouldClose: true,
			SideEffects: [][]byte{[]byte(`{"at":1.5,"kind":"log"}`), []byte(`{"kind":"mail","to":["a@b"]}`)},
		}},
		{"should_close false", `{ should_close = false }`, &Action{}},
		{"empty arrays", `{ broker_messages = {}, side_effects = es.array({}) }`, &Action{}},
		{"echo the message and the data", `{ websocket_response = message, channel_data = channel_data, broker_data = broker_data }`, &Action{
			ChannelData: []byte(`{"user":"ann"}`),
			BrokerOp:    broker.Set,
			BrokerData:  []byte(`{"count":2,"members":["ann"]}`),
			Response:    []byte(`{"big":9007199254740992,"list":[],"n":3,"nested":{"deep":[1,{"x":null}]},"t":"é\n"}`),
		}},
		{"a failure response", `{ websocket_response = es.fail({ why = "no" }), should_close = true }`, &Action{
			Response: []byte(`{"id":"comm","why":"no"}`), ResponseFailed: true, ShouldClose: true,
		}},
		{"unicode and escapes", `{ websocket_response = { s = "é\t\"<>&", ["key with space"] = 1 } }`, &Action{
			Response: []byte(`{"key with space":1,"s":"é\t\"<>&"}`),
		}},
	}
	message := `{"n":3.0,"list":[],"t":"é\n","nested":{"deep":[1,{"x":null}]},"big":9007199254740992}`
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustLoad(t, wsScript("return "+tt.ret), Options{})
			a, err := s.ProcessWebsocketMessage(context.Background(), testChannel(), []byte(message),
				[]byte(`{"user":"ann"}`), []byte(`{"members":["ann"],"count":2}`))
			if err != nil {
				t.Fatal(err)
			}
			if got, want := describe(a), describe(tt.want); got != want {
				t.Errorf("got  %s\nwant %s", got, want)
			}
		})
	}
}

func TestValidOnCloseAction(t *testing.T) {
	src := `local es = require("es")
local M = {}
function M.initial_authorisation() return {} end
function M.process_websocket_message() return nil end
function M.on_close(channel, channel_data, broker_data)
  local members = {}
  for _, m in ipairs(broker_data.members) do
    if m ~= channel_data.user then members[#members + 1] = m end
  end
  return {
    broker_data = { members = es.array(members) },
    broker_messages = { { target = "room", message = { left = channel_data.user } } },
    side_effects = { { event = "left", user = channel_data.user } },
  }
end
return M
`
	s := mustLoad(t, src, Options{})
	a, err := s.OnClose(context.Background(), testChannel(), []byte(`{"user":"ann"}`), []byte(`{"members":["ann"]}`))
	if err != nil {
		t.Fatal(err)
	}
	want := &Action{
		BrokerOp:       broker.Set,
		BrokerData:     []byte(`{"members":[]}`),
		BrokerMessages: []Message{{Target: "room", Message: []byte(`{"left":"ann"}`)}},
		SideEffects:    [][]byte{[]byte(`{"event":"left","user":"ann"}`)},
	}
	if got := describe(a); got != describe(want) {
		t.Errorf("got  %s\nwant %s", got, describe(want))
	}
}

func TestProcessBrokerMessageEnvelope(t *testing.T) {
	src := `local M = {}
function M.initial_authorisation() return {} end
function M.process_websocket_message() return nil end
function M.process_broker_message(channel, message, channel_data, broker_data)
  return { websocket_response = { env = message, me = channel_data.user, n = broker_data.n } }
end
return M
`
	s := mustLoad(t, src, Options{})
	env := broker.Envelope{Target: "ann", Message: []byte(`{"text":"hi","e":[]}`), BrokerKey: "room1", Source: "ch-2"}
	a, err := s.ProcessBrokerMessage(context.Background(), testChannel(), env, []byte(`{"user":"ann"}`), []byte(`{"n":5}`))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"env":{"broker_key":"room1","message":{"e":[],"text":"hi"},"source":"ch-2","target":"ann"},"me":"ann","n":5}`
	if string(a.Response) != want {
		t.Errorf("got  %s\nwant %s", a.Response, want)
	}
}

func TestBadArgumentData(t *testing.T) {
	s := mustLoad(t, wsScript("return {}"), Options{MaxDepth: 3})
	ctx := context.Background()
	for _, tt := range []struct {
		name                  string
		message, cd, bd, code string
	}{
		{"message not JSON", `{`, `{}`, `{}`, "invalid_json"},
		{"channel data too deep", `{}`, `{"a":{"b":{"c":{}}}}`, `{}`, "too_deep"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.ProcessWebsocketMessage(ctx, testChannel(), []byte(tt.message), []byte(tt.cd), []byte(tt.bd))
			if err == nil {
				t.Fatal("want an error")
			}
			if Code(err) != tt.code {
				t.Errorf("Code = %q, want %q (error %v)", Code(err), tt.code, err)
			}
		})
	}
	// The state is still good for the next call.
	if _, err := s.ProcessWebsocketMessage(ctx, testChannel(), []byte(`{}`), nil, nil); err != nil {
		t.Errorf("after bad data: %v", err)
	}
	// Data nested too deep on the way out is a malformed action.
	s = mustLoad(t, wsScript("return { broker_data = { a = { b = { c = {} } } } }"), Options{MaxDepth: 3})
	_, err := runWS(t, s, `{}`)
	checkScriptError(t, err, KindMalformed, "process_websocket_message", at(wsFuncLine+1), "broker_data", "nested deeper than 3 levels")
}

// A malformed result is reported at the line of the return that produced
// it when the function has only one, else at the only line that sets the
// offending field, else at the function's first line.
func TestMalformedActionLine(t *testing.T) {
	tests := []struct {
		name, body, marker string // marker: the text on the line reported; "" = the function's line
	}{
		{"a single return spread over lines", "local out = {}\nlocal x = 1\nreturn {\n  websocket_response = {},\n  shuold_close = true,\n}",
			"return {\n"},
		{"a single return of a table built before", "local out = {}\nout.websocket_respnse = {}\nreturn out", "return out"},
		{"a single tail call returning a bad value", "local function build() return { bad = 1 } end\nreturn build()", "return build()"},
		{"two returns, the bad field set on one line", "if message.a then\n  return { websocket_response = {} }\nend\nreturn {\n  websocket_respnse = {},\n}",
			"return {\n  websocket_respnse"}, // gopher-lua gives a constructor's fields the line it starts on
		{"two returns, a bad nested value set on one line", "if message.a then\n  return {}\nend\nreturn { broker_data = { f = print } }",
			"broker_data = { f = print }"},
		{"two returns, the same field on both", "if message.a then\n  return { should_close = 1 }\nend\nreturn { should_close = 2 }", ""},
		{"two returns, a value that is no table", "if message.a then\n  return 1\nend\nreturn 2", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := wsScript(tt.body)
			s := mustLoad(t, src, Options{})
			want := at(wsFuncLine)
			if tt.marker != "" {
				want = at(lineOf(t, src, tt.marker))
			}
			_, err := runWS(t, s, `{}`)
			if se := asScriptError(t, err); se.Kind != KindMalformed || se.Where != want {
				t.Errorf("got %v (kind %s), want a malformed result at %s", err, se.Kind, want)
			}
		})
	}
}

// benchAction is a typical action: a response, new broker data, a broker message.
const benchAction = `return {
  channel_data = { user = "ann", room = "lobby", joined = 1718031234567 },
  broker_data = { members = { "ann", "bob", "cy" }, count = 12, last = { from = "ann", text = "hello everyone" } },
  websocket_response = { type = "said", from = "ann", text = "hello everyone", seq = 12 },
  broker_messages = { { target = "room", message = { type = "message", from = "ann", text = "hello everyone" } } },
}`

func BenchmarkToAction(b *testing.B) {
	s := mustLoad(b, wsScript("return nil"), Options{PoolSize: 1})
	st, err := s.pool.get(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	defer s.pool.put(st, false)
	fn, err := st.L.LoadString(benchAction)
	if err != nil {
		b.Fatal(err)
	}
	st.L.Push(fn)
	st.L.Call(0, 1)
	v := st.L.Get(-1)
	st.L.Pop(1)
	if _, ok := v.(*lua.LTable); !ok {
		b.Fatalf("benchAction gave %s", v.Type())
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := toAction(st, ProcessWebsocketMessage, v, "comm", 32); err != nil {
			b.Fatal(err)
		}
	}
}
