package luabridge

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/electric-socket/electric-socket/broker"
)

func TestSandboxForbiddenNames(t *testing.T) {
	names := []string{
		"os", "io", "debug", "load", "loadstring", "dofile", "loadfile", "collectgarbage",
		"package", "module", "getfenv", "setfenv", "newproxy",
		"math.random", "math.randomseed", "string.dump", `("").dump`,
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			got := respond(t, "{ absent = ("+name+" == nil), kind = type("+name+") }")
			if got != `{"absent":true,"kind":"nil"}` {
				t.Errorf("%s inside an integration function: got %s, want it absent", name, got)
			}
		})
	}
}

func TestSandboxPureLibrariesPresent(t *testing.T) {
	// What a pure integration needs is still there.
	got := respond(t, `{
		floor = math.floor(2.5), max = math.max(1, 5), upper = string.upper("ab"),
		fmt = string.format("%03d", 7), concat = table.concat({ "a", "b" }, ","),
		n = select("#", 1, 2, 3), num = tonumber("12"), str = tostring(3),
		sorted = (function() local t = { 3, 1, 2 } table.sort(t) return t end)(),
		ok = pcall(error, "x") == false,
		gen = (function()
			local co = coroutine.wrap(function() for i = 1, 3 do coroutine.yield(i) end end)
			return { co(), co(), co() }
		end)(),
	}`)
	want := `{"concat":"a,b","floor":2,"fmt":"007","gen":[1,2,3],"max":5,"n":3,"num":12,"ok":true,"sorted":[1,2,3],"str":"3","upper":"AB"}`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestSandboxRequire(t *testing.T) {
	t.Run("es", func(t *testing.T) {
		got := respond(t, `(function()
			local again = require("es")
			return { same = (again == es), has_fail = type(again.fail) == "function" }
		end)()`)
		if got != `{"has_fail":true,"same":true}` {
			t.Errorf("require(\"es\") in a function: got %s", got)
		}
	})
	for _, mod := range []string{"os", "io", "debug", "anything", "es.testing", "string"} {
		t.Run(mod, func(t *testing.T) {
			src := wsScript(`local m = require("` + mod + `")
return {}`)
			s := mustLoad(t, src, Options{})
			_, err := runWS(t, s, `{}`)
			checkScriptError(t, err, KindRuntime, "process_websocket_message", at(wsFuncLine+1),
				`module "`+mod+`" not found`)
		})
	}
}

func TestSandboxGlobals(t *testing.T) {
	src := `local es = require("es")
LIMIT = 3
function double(x) return x * 2 end
local M = {}
function M.initial_authorisation(channel, message) return {} end
function M.process_websocket_message(channel, message, channel_data, broker_data)
  if message.leak then
    counter = 1
  end
  return { websocket_response = { limit = LIMIT, twice = double(21), unknown = undefined_global == nil } }
end
return M
`
	s := mustLoad(t, src, Options{})
	a := wsOK(t, s, `{}`)
	if got := string(a.Response); got != `{"limit":3,"twice":42,"unknown":true}` {
		t.Errorf("globals from the top level: got %s", got)
	}
	_, err := runWS(t, s, `{"leak":true}`)
	checkScriptError(t, err, KindRuntime, "process_websocket_message", at(lineOf(t, src, "counter = 1")),
		"assignment to global counter")
	// The failed assignment left nothing behind.
	a = wsOK(t, s, `{}`)
	if got := string(a.Response); got != `{"limit":3,"twice":42,"unknown":true}` {
		t.Errorf("after the failed assignment: got %s", got)
	}
}

func TestSandboxGlobalLockCannotBeLifted(t *testing.T) {
	for _, tt := range []struct{ name, body, contains string }{
		{"setmetatable(_G, nil)", "setmetatable(_G, nil)\nleak = 1\nreturn {}", "cannot change a protected metatable"},
		{"setmetatable(_G, {})", "setmetatable(_G, {})\nleak = 1\nreturn {}", "cannot change a protected metatable"},
		{"getmetatable(_G).__newindex = nil", "getmetatable(_G).__newindex = nil\nleak = 1\nreturn {}", "attempt to index"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := mustLoad(t, wsScript(tt.body), Options{})
			_, err := runWS(t, s, `{}`)
			checkScriptError(t, err, KindRuntime, "process_websocket_message", at(wsFuncLine+1), tt.contains)
		})
	}
}

func TestSandboxStringRep(t *testing.T) {
	tests := []struct {
		name, expr string
		ok         bool
	}{
		{"at the cap", `#string.rep("x", 16 * 1024 * 1024)`, true},
		{"empty", `#string.rep("abc", 0)`, true},
		{"negative", `#string.rep("abc", -5)`, true},
		{"over the cap", `#string.rep("x", 16 * 1024 * 1024 + 1)`, false},
		{"method form over the cap", `#("ab"):rep(2^30)`, false},
		{"huge count", `#string.rep("abcd", 2^62)`, false},
		{"count times length overflows", `#string.rep("abcdefgh", 2^61)`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := wsScript("return { websocket_response = { n = " + tt.expr + " } }")
			s := mustLoad(t, src, Options{Timeout: 5 * time.Second})
			var a *Action
			var err error
			returns(t, "the call", func() { a, err = runWS(t, s, `{}`) })
			if tt.ok {
				if err != nil {
					t.Fatalf("got %v, want success", err)
				}
				return
			}
			checkScriptError(t, err, KindRuntime, "process_websocket_message", at(wsFuncLine+1), "string.rep", "over the limit")
			if a != nil {
				t.Errorf("got an action %s with the error", describe(a))
			}
		})
	}
}

// print goes to the logger the host gives (Options.Log), with the file:line
// of the call, in that logger's format and at its level.
func TestSandboxPrint(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil)).With("integration", "chat")
	src := wsScript("print(\"hello\", 1, nil, true, es.null)\nreturn { websocket_response = { printed = true } }")
	s := mustLoad(t, src, Options{Log: log})
	if got := string(wsOK(t, s, `{}`).Response); got != `{"printed":true}` {
		t.Errorf("got %s", got)
	}
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("the print is not one JSON log line: %v\n%s", err, buf.String())
	}
	want := map[string]any{"level": "INFO", "msg": "lua print", "integration": "chat",
		"at": at(lineOf(t, src, "print(")), "text": "hello\t1\tnil\ttrue\tnull"}
	for k, v := range want {
		if rec[k] != v {
			t.Errorf("%s = %v, want %v (log %s)", k, rec[k], v, buf.String())
		}
	}

	// A logger above info level drops it.
	buf.Reset()
	quiet := mustLoad(t, src, Options{Log: slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	wsOK(t, quiet, `{}`)
	if buf.Len() != 0 {
		t.Errorf("a print reached a logger at warn level: %s", buf.String())
	}
}

func TestSandboxCoroutineNesting(t *testing.T) {
	t.Run("unbounded nesting is an error, within the budget", func(t *testing.T) {
		for _, body := range []string{
			"local function f() local co = coroutine.wrap(f) return co() end\nreturn f()",
			"local function f() local co = coroutine.create(f) local ok, err = coroutine.resume(co) error(err, 0) end\nreturn f()",
		} {
			s := mustLoad(t, wsScript(body), Options{Timeout: 300 * time.Millisecond})
			var err error
			returns(t, "the call", func() { _, err = runWS(t, s, `{}`) })
			se := asScriptError(t, err)
			if se.Kind != KindRuntime || !strings.Contains(se.Msg, "coroutines nested deeper than") {
				t.Errorf("got %v, want a script error about nesting", err)
			}
		}
	})
	t.Run("modest nesting works", func(t *testing.T) {
		got := respond(t, `(function()
			local function nest(n)
				if n == 0 then return 0 end
				return coroutine.wrap(function() return 1 + nest(n - 1) end)()
			end
			local ok, n = coroutine.resume(coroutine.create(nest), 8)
			return { depth = nest(10), ok = ok, n = n }
		end)()`)
		if got != `{"depth":10,"n":8,"ok":true}` {
			t.Errorf("got %s", got)
		}
	})
	t.Run("a coroutine error stays a value for resume", func(t *testing.T) {
		got := respond(t, `(function()
			local ok, err = coroutine.resume(coroutine.create(function() error("inner", 0) end))
			return { ok = ok, err = err }
		end)()`)
		if got != `{"err":"inner","ok":false}` {
			t.Errorf("got %s", got)
		}
	})
}

func TestESFailNamespace(t *testing.T) {
	ctx := context.Background()
	ch := testChannel()
	tests := []struct {
		name string
		fn   string // the function that returns the failure
		ret  string // what it returns
		call func(s *Script) (*Action, error)
		want string
	}{
		{"broker_authorisation default", "broker_authorisation", `{ websocket_response = es.fail({ reason = "full" }) }`,
			func(s *Script) (*Action, error) { return s.BrokerAuthorisation(ctx, ch, nil, nil) },
			`{"id":"auth","reason":"full"}`},
		{"broker_authorisation with error_namespace", "broker_authorisation",
			`{ websocket_response = es.fail({ reason = "full" }), error_namespace = "room" }`,
			func(s *Script) (*Action, error) { return s.BrokerAuthorisation(ctx, ch, nil, nil) },
			`{"id":"room","reason":"full"}`},
		{"process_websocket_message default", "process_websocket_message", `{ websocket_response = es.fail({ reason = "no" }) }`,
			func(s *Script) (*Action, error) { return s.ProcessWebsocketMessage(ctx, ch, []byte(`{}`), nil, nil) },
			`{"id":"comm","reason":"no"}`},
		{"process_websocket_message with error_namespace", "process_websocket_message",
			`{ websocket_response = es.fail({ reason = "no" }), error_namespace = "chat" }`,
			func(s *Script) (*Action, error) { return s.ProcessWebsocketMessage(ctx, ch, []byte(`{}`), nil, nil) },
			`{"id":"chat","reason":"no"}`},
		{"process_broker_message default", "process_broker_message", `{ websocket_response = es.fail({}) }`,
			func(s *Script) (*Action, error) {
				return s.ProcessBrokerMessage(ctx, ch, broker.Envelope{Target: "a", Message: []byte(`{}`)}, nil, nil)
			},
			`{"id":"comm"}`},
		{"no body", "process_websocket_message", `{ websocket_response = es.fail() }`,
			func(s *Script) (*Action, error) { return s.ProcessWebsocketMessage(ctx, ch, []byte(`{}`), nil, nil) },
			`{"id":"comm"}`},
		{"the body's own id is replaced", "process_websocket_message",
			`{ websocket_response = es.fail({ id = "mine", n = 1 }), error_namespace = "game" }`,
			func(s *Script) (*Action, error) { return s.ProcessWebsocketMessage(ctx, ch, []byte(`{}`), nil, nil) },
			`{"id":"game","n":1}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := `local es = require("es")
local M = {}
function M.initial_authorisation() return {} end
function M.process_websocket_message() return nil end
function M.` + tt.fn + `(...) return ` + tt.ret + ` end
return M
`
			s := mustLoad(t, src, Options{})
			a, err := tt.call(s)
			if err != nil {
				t.Fatal(err)
			}
			if !a.ResponseFailed || string(a.Response) != tt.want {
				t.Errorf("got failed=%t response=%s, want failed=true response=%s", a.ResponseFailed, a.Response, tt.want)
			}
		})
	}
	t.Run("initial_authorisation", func(t *testing.T) {
		s := mustLoad(t, `local es = require("es")
local M = {}
function M.initial_authorisation() return es.fail({ success = false }) end
function M.process_websocket_message() return nil end
return M
`, Options{})
		auth, err := s.InitialAuthorisation(ctx, ch, []byte(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		if !auth.Failed || string(auth.Body) != `{"id":"auth","success":false}` {
			t.Errorf("got %+v body %s", auth, auth.Body)
		}
	})
	t.Run("a response that is not a failure has no id", func(t *testing.T) {
		if got := respond(t, `{ ok = true }`); got != `{"ok":true}` {
			t.Errorf("got %s", got)
		}
	})
	t.Run("es.fail with a bad body", func(t *testing.T) {
		s := mustLoad(t, wsScript(`return { websocket_response = es.fail("nope") }`), Options{})
		_, err := runWS(t, s, `{}`)
		checkScriptError(t, err, KindRuntime, "process_websocket_message", at(wsFuncLine+1), "es.fail expects a table body")
	})
}

func TestESBrokerOps(t *testing.T) {
	tests := []struct {
		value string
		op    broker.Op
		data  string
	}{
		{"es.ABORT", broker.Abort, "nil"},
		{"es.DELETE", broker.Delete, "nil"},
		{`"swap/abort"`, broker.Abort, "nil"},
		{`"swap/delete"`, broker.Delete, "nil"},
		{"nil", broker.Abort, "nil"},
		{"{ n = 1 }", broker.Set, `{"n":1}`},
		{"{}", broker.Set, `{}`},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			s := mustLoad(t, wsScript("return { broker_data = "+tt.value+" }"), Options{})
			a := wsOK(t, s, `{}`)
			if a.BrokerOp != tt.op || nilOr(a.BrokerData) != tt.data {
				t.Errorf("got op %d data %s, want op %d data %s", a.BrokerOp, nilOr(a.BrokerData), tt.op, tt.data)
			}
		})
	}
	if got := respond(t, `{ abort = es.ABORT, delete = es.DELETE }`); got != `{"abort":"swap/abort","delete":"swap/delete"}` {
		t.Errorf("es.ABORT/es.DELETE: got %s", got)
	}
}

func TestESNull(t *testing.T) {
	s := mustLoad(t, wsScript(`return { websocket_response = {
  echo = message, is_null = (message.a == es.null), in_array = (message.b[2] == es.null),
  made = es.null, text = tostring(es.null), kind = type(es.null),
} }`), Options{})
	a := wsOK(t, s, `{"a":null,"b":[1,null]}`)
	want := `{"echo":{"a":null,"b":[1,null]},"in_array":true,"is_null":true,"kind":"userdata","made":null,"text":"null"}`
	if string(a.Response) != want {
		t.Errorf("got  %s\nwant %s", a.Response, want)
	}
	// es.null is not something a script can change.
	s = mustLoad(t, wsScript(`setmetatable(es.null, {})`), Options{})
	if _, err := runWS(t, s, `{}`); err == nil {
		t.Error("setmetatable(es.null, {}) succeeded")
	}
}

func TestESArray(t *testing.T) {
	tests := []struct{ expr, want string }{
		{"es.array({})", `[]`},
		{"es.array()", `[]`},
		{"{}", `{}`},
		{"es.array({ 1, 2 })", `[1,2]`},
		{"{ list = es.array({}), obj = {} }", `{"list":[],"obj":{}}`},
		{"{ is = es.is_array(es.array({})), plain = es.is_array({}), decoded = es.is_array(es.json_decode('[]')) }",
			`{"decoded":true,"is":true,"plain":false}`},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			if got := respond(t, "{ v = "+tt.expr+" }"); got != `{"v":`+tt.want+`}` {
				t.Errorf("got %s, want {\"v\":%s}", got, tt.want)
			}
		})
	}
	// An empty array that arrives stays an array on its way back.
	s := mustLoad(t, wsScript("return { websocket_response = message }"), Options{})
	if a := wsOK(t, s, `{"a":[],"b":{},"c":[[]]}`); string(a.Response) != `{"a":[],"b":{},"c":[[]]}` {
		t.Errorf("round trip: got %s", a.Response)
	}
}

func TestESJSON(t *testing.T) {
	t.Run("round trip", func(t *testing.T) {
		got := respond(t, `(function()
			local s = es.json_encode({ b = 1, a = { es.null, true, 2.5, "x" }, e = es.array({}) })
			local back = es.json_decode(s)
			return { s = s, back = back, again = es.json_encode(back), n = es.json_decode("3"), str = es.json_decode('"q"') }
		end)()`)
		enc := strconv.Quote(`{"a":[null,true,2.5,"x"],"b":1,"e":[]}`)
		want := `{"again":` + enc + `,"back":{"a":[null,true,2.5,"x"],"b":1,"e":[]},"n":3,"s":` + enc + `,"str":"q"}`
		if got != want {
			t.Errorf("got  %s\nwant %s", got, want)
		}
	})
	for _, tt := range []struct{ name, expr, contains string }{
		{"decode invalid", `es.json_decode("{")`, "es.json_decode: invalid JSON"},
		{"decode trailing data", `es.json_decode("{} x")`, "es.json_decode: invalid JSON"},
		{"decode not a string", `es.json_decode({})`, "string expected"},
		{"encode a function", `es.json_encode({ f = print })`, "es.json_encode: value.f: cannot encode a function"},
		{"encode a mixed table", `es.json_encode({ 1, a = 2 })`, "cannot encode a table mixing array and string keys"},
		{"encode NaN", `es.json_encode(0/0)`, "cannot encode NaN"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := mustLoad(t, wsScript("local v = "+tt.expr+"\nreturn {}"), Options{})
			_, err := runWS(t, s, `{}`)
			checkScriptError(t, err, KindRuntime, "process_websocket_message", at(wsFuncLine+1), tt.contains)
		})
	}
}

func TestChannelView(t *testing.T) {
	t.Run("read", func(t *testing.T) {
		got := respond(t, `{ id = channel.id, path = channel.path, remote_addr = channel.remote_addr,
			integration = channel.integration, x = channel.query.x, room = channel.query.room,
			missing = channel.query.nope == nil, other = channel.nope == nil, text = tostring(channel),
			mt = getmetatable(channel) }`)
		want := `{"id":"ch-1","integration":"chat","missing":true,"mt":false,"other":true,"path":"/chat","remote_addr":"127.0.0.1:5555","room":"lobby","text":"channel ch-1","x":"42"}`
		if got != want {
			t.Errorf("got  %s\nwant %s", got, want)
		}
	})
	t.Run("no query", func(t *testing.T) {
		s := mustLoad(t, wsScript("return { websocket_response = { q = channel.query, n = next(channel.query) == nil } }"), Options{})
		a, err := s.ProcessWebsocketMessage(context.Background(), &Channel{ID: "c"}, []byte(`{}`), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if string(a.Response) != `{"n":true,"q":{}}` {
			t.Errorf("got %s", a.Response)
		}
	})
	for _, tt := range []struct{ name, stmt string }{
		{"id", "channel.id = 1"},
		{"path", `channel.path = "/other"`},
		{"a new field", "channel.extra = true"},
		{"query", "channel.query = {}"},
	} {
		t.Run("write "+tt.name, func(t *testing.T) {
			src := wsScript(tt.stmt + "\nreturn {}")
			s := mustLoad(t, src, Options{})
			_, err := runWS(t, s, `{}`)
			checkScriptError(t, err, KindRuntime, "process_websocket_message", at(wsFuncLine+1), "channel is read-only")
		})
	}
	t.Run("a channel cannot be encoded", func(t *testing.T) {
		s := mustLoad(t, wsScript("return { websocket_response = { ch = channel } }"), Options{})
		_, err := runWS(t, s, `{}`)
		checkScriptError(t, err, KindMalformed, "process_websocket_message", at(wsFuncLine+1), "websocket_response.ch: cannot encode a userdata")
	})
}
