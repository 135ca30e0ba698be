package luabridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/electric-socket/electric-socket/broker"
)

func TestRuntimeErrors(t *testing.T) {
	tests := []struct {
		name     string
		body     string
		marker   string // Where is this text's line; "" means the function's definition
		contains []string
	}{
		{"error()", "local x = 1\n\nerror(\"boom\")\nreturn {}", `error("boom")`, []string{"boom"}},
		{"error() with a formatted message", "error(string.format(\"bad %s\", message.kind))", "error(", []string{"bad join"}},
		{"indexing nil", "local t = nil\nreturn t.field", "t.field", []string{"attempt to index", "field"}},
		{"indexing a missing field", "return { websocket_response = message.nope.deeper }", "message.nope.deeper", []string{"attempt to index"}},
		{"calling nil", "\nreturn missing_function()", "missing_function()", []string{"attempt to call"}},
		{"arithmetic on a table", "local x = {}\nreturn x + 1", "x + 1", []string{"cannot perform add operation between table and number"}},
		{"concatenating nil", "return { websocket_response = { s = \"a\" .. message.nope } }", `"a" ..`, []string{"cannot perform concat operation between string and nil"}},
		{"deep recursion", "local function f()\n  return f() + 1\nend\nreturn f()", "return f() + 1", []string{"stack overflow"}},
		{"deep recursion through a metamethod", "local t = setmetatable({}, { __index = function(t, k)\n  return t[k]\nend })\nreturn t.x",
			"return t[k]", []string{"stack overflow"}},
		{"error at level 0", "error(\"plain\", 0)", "", []string{"plain"}},
		{"error with a table value", "error({ code = 1 })", "", []string{"table"}},
		{"a host function raising", "\nreturn es.json_decode(\"[\")", "es.json_decode(", []string{"es.json_decode"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := wsScript(tt.body)
			s := mustLoad(t, src, Options{})
			a, err := runWS(t, s, `{"kind":"join"}`)
			where := at(wsFuncLine)
			if tt.marker != "" {
				where = at(lineOf(t, src, tt.marker))
			}
			checkScriptError(t, err, KindRuntime, "process_websocket_message", where, tt.contains...)
			if a != nil {
				t.Errorf("got an action %s with the error", describe(a))
			}
			if strings.Contains(err.Error(), "stack traceback") {
				t.Errorf("the error carries a traceback: %q", err)
			}
			// The pool keeps serving after the error.
			s2 := mustLoad(t, wsScript("if message.ok then return { websocket_response = { ok = true } } end\n"+tt.body), Options{PoolSize: 1})
			if _, err := runWS(t, s2, `{}`); err == nil {
				t.Fatal("want the error again")
			}
			if a := wsOK(t, s2, `{"ok":true}`); string(a.Response) != `{"ok":true}` {
				t.Errorf("after the error: response %s", a.Response)
			}
		})
	}
}

func TestRuntimeErrorsNameTheFunction(t *testing.T) {
	ctx := context.Background()
	ch := testChannel()
	env := broker.Envelope{Target: "ann", Message: []byte(`{}`)}
	calls := map[string]func(s *Script) error{
		"initial_authorisation": func(s *Script) error { _, err := s.InitialAuthorisation(ctx, ch, []byte(`{}`)); return err },
		"channel_identifier":    func(s *Script) error { _, err := s.Identify(ctx, ch, nil); return err },
		"broker_key":            func(s *Script) error { _, err := s.Identify(ctx, ch, nil); return err },
		"broker_authorisation":  func(s *Script) error { _, err := s.BrokerAuthorisation(ctx, ch, nil, nil); return err },
		"process_broker_message": func(s *Script) error {
			_, err := s.ProcessBrokerMessage(ctx, ch, env, nil, nil)
			return err
		},
		"on_close": func(s *Script) error { _, err := s.OnClose(ctx, ch, nil, nil); return err },
	}
	for fn, call := range calls {
		t.Run(fn, func(t *testing.T) {
			src := `local M = {}
function M.initial_authorisation() return {} end
function M.process_websocket_message() end
function M.` + fn + `(channel)
  local id = channel.id
  error("failed in " .. id)
end
return M
`
			s := mustLoad(t, src, Options{})
			checkScriptError(t, call(s), KindRuntime, fn, at(6), "failed in ch-1")
		})
	}
}

// counterScript counts calls in a module-level local: a fresh state starts at
// one, a reused one goes on counting. A message {spin = true} never returns.
const counterScript = `local es = require("es")
local calls = 0
local M = {}
function M.initial_authorisation() return {} end
function M.process_websocket_message(channel, message)
  calls = calls + 1
  if message.spin then
    while true do end
  end
  return { websocket_response = { calls = calls } }
end
return M
`

// callCount runs counterScript's process_websocket_message and returns its count.
func callCount(tb testing.TB, s *Script) int {
	tb.Helper()
	a := wsOK(tb, s, `{}`)
	var r struct{ Calls int }
	if err := json.Unmarshal(a.Response, &r); err != nil {
		tb.Fatalf("response %s: %v", a.Response, err)
	}
	return r.Calls
}

func TestTimeout(t *testing.T) {
	const timeout = 100 * time.Millisecond
	s := mustLoad(t, counterScript, Options{Timeout: timeout, PoolSize: 1})
	if n := callCount(t, s); n != 1 {
		t.Fatalf("first call: calls = %d, want 1", n)
	}
	if n := callCount(t, s); n != 2 {
		t.Fatalf("second call: calls = %d, want 2 (the state is reused)", n)
	}
	for round := range 2 {
		var a *Action
		var err error
		returns(t, "the endless call", func() { a, err = runWS(t, s, `{"spin":true}`) })
		checkScriptError(t, err, KindTimeout, "process_websocket_message", at(5), "did not finish within 100ms")
		if a != nil {
			t.Errorf("got an action with the timeout")
		}
		// The pool keeps working, and the state that timed out is gone.
		if n := callCount(t, s); n != 1 {
			t.Errorf("round %d: after a timeout calls = %d, want 1 (a fresh state)", round, n)
		}
		if n := callCount(t, s); n != 2 {
			t.Errorf("round %d: calls = %d, want 2", round, n)
		}
	}
}

// A script cannot escape its time budget: each way of looping ends in a
// script_timeout, the state that ran it is discarded, and the script keeps
// answering on a fresh state.
func TestTimeoutCannotBeDodged(t *testing.T) {
	const timeout = 100 * time.Millisecond
	for _, tt := range []struct{ name, body string }{
		{"pcall around the loop", "while true do pcall(function() while true do end end) end"},
		{"xpcall with a looping handler", "xpcall(function() while true do end end, function() while true do end end)"},
		{"endless tail calls", "local function f() return f() end\nreturn f()"},
		{"a loop in a sort comparator", "table.sort({ 3, 2, 1 }, function(a, b) while true do end end)"},
		{"a loop in a gsub callback", `string.gsub("aaa", "a", function() while true do end end)`},
		{"a loop in a coroutine", "coroutine.wrap(function() while true do end end)()"},
		{"a loop in __index", "local t = setmetatable({}, { __index = function() while true do end end })\nreturn t.x"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// counterScript with tt.body as what {spin = true} runs.
			src := strings.Replace(counterScript, "    while true do end\n", tt.body+"\n", 1)
			if src == counterScript {
				t.Fatal("counterScript has no loop to replace")
			}
			s := mustLoad(t, src, Options{Timeout: timeout, PoolSize: 1})
			if n := callCount(t, s); n != 1 {
				t.Fatalf("before: calls = %d, want 1", n)
			}
			var err error
			returns(t, "the call", func() { _, err = runWS(t, s, `{"spin":true}`) })
			se := asScriptError(t, err)
			if se.Kind != KindTimeout || se.Func != "process_websocket_message" {
				t.Errorf("got %v (kind %s), want a timeout of process_websocket_message", err, se.Kind)
			}
			// The script still answers, on a fresh state (a reused one would count 3).
			if n := callCount(t, s); n != 1 {
				t.Errorf("after the timeout: calls = %d, want 1 (the state that timed out is discarded)", n)
			}
		})
	}
}

func TestCallerContext(t *testing.T) {
	t.Run("cancelled while running", func(t *testing.T) {
		s := mustLoad(t, counterScript, Options{Timeout: 10 * time.Second, PoolSize: 1})
		if n := callCount(t, s); n != 1 {
			t.Fatalf("calls = %d, want 1", n)
		}
		ctx, cancel := context.WithCancel(context.Background())
		timer := time.AfterFunc(50*time.Millisecond, cancel)
		defer timer.Stop()
		var err error
		returns(t, "the cancelled call", func() {
			_, err = s.ProcessWebsocketMessage(ctx, testChannel(), []byte(`{"spin":true}`), nil, nil)
		})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want context.Canceled", err)
		}
		if Code(err) != "" {
			t.Errorf("Code = %q: the caller's cancellation is not the script's fault", Code(err))
		}
		if !strings.Contains(err.Error(), "process_websocket_message") {
			t.Errorf("error %q does not name the function", err)
		}
		// The interrupted state is not reused.
		if n := callCount(t, s); n != 1 {
			t.Errorf("after the cancelled call calls = %d, want 1 (a fresh state)", n)
		}
	})
	t.Run("cancelled before the call", func(t *testing.T) {
		s := mustLoad(t, counterScript, Options{PoolSize: 1})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := s.ProcessWebsocketMessage(ctx, testChannel(), []byte(`{}`), nil, nil)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want context.Canceled", err)
		}
		if n := callCount(t, s); n != 1 {
			t.Errorf("calls = %d, want 1: the cancelled call must not have run", n)
		}
	})
	t.Run("the caller's deadline comes first", func(t *testing.T) {
		s := mustLoad(t, counterScript, Options{Timeout: 10 * time.Second, PoolSize: 1})
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		var err error
		returns(t, "the call", func() {
			_, err = s.ProcessWebsocketMessage(ctx, testChannel(), []byte(`{"spin":true}`), nil, nil)
		})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v, want context.DeadlineExceeded", err)
		}
	})
	t.Run("waiting for a state", func(t *testing.T) {
		s := mustLoad(t, counterScript, Options{PoolSize: 1})
		st, err := s.pool.get(context.Background()) // the only state is busy
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		defer cancel()
		_, err = s.ProcessWebsocketMessage(ctx, testChannel(), []byte(`{}`), nil, nil)
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "waiting for a Lua state") {
			t.Errorf("got %v, want a deadline while waiting for a Lua state", err)
		}
		type outcome struct {
			a   *Action
			err error
		}
		done := make(chan outcome, 1)
		go func() {
			a, err := s.ProcessWebsocketMessage(context.Background(), testChannel(), []byte(`{}`), nil, nil)
			done <- outcome{a, err}
		}()
		select {
		case o := <-done:
			t.Fatalf("a call ran (%v, %v) while the only state was borrowed", describe(o.a), o.err)
		case <-time.After(50 * time.Millisecond):
		}
		s.pool.put(st, false)
		select {
		case o := <-done:
			if o.err != nil || string(o.a.Response) != `{"calls":1}` {
				t.Errorf("got %s, %v; want the response {\"calls\":1}", describe(o.a), o.err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the waiting call did not run after the state came back")
		}
	})
}

func TestPoolConcurrency(t *testing.T) {
	src := `local es = require("es")
local sid = tostring({})
local calls = 0
local M = {}
function M.initial_authorisation() return {} end
function M.process_websocket_message(channel, message, channel_data, broker_data)
  calls = calls + 1
  local sum = 0
  for i = 1, 2000 do sum = sum + i end
  return {
    websocket_response = { sid = sid, calls = calls, n = message.n, user = channel_data.user, sum = sum },
    broker_data = { last = message.n, seen = broker_data.seen },
  }
end
return M
`
	before := LiveStates()
	s := mustLoad(t, src, Options{PoolSize: 2})
	const goroutines, perGoroutine = 20, 10
	type result struct {
		sid   string
		calls int
	}
	results := make(chan result, goroutines*perGoroutine)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range perGoroutine {
				n := g*perGoroutine + i
				user := fmt.Sprintf("u%d", g)
				a, err := s.ProcessWebsocketMessage(context.Background(), testChannel(),
					fmt.Appendf(nil, `{"n":%d}`, n), fmt.Appendf(nil, `{"user":%q}`, user), fmt.Appendf(nil, `{"seen":%d}`, g))
				if err != nil {
					t.Errorf("goroutine %d call %d: %v", g, i, err)
					return
				}
				var r struct {
					Sid   string
					Calls int
					N     int
					User  string
					Sum   int
				}
				if err := json.Unmarshal(a.Response, &r); err != nil {
					t.Errorf("response %s: %v", a.Response, err)
					return
				}
				if r.N != n || r.User != user || r.Sum != 2001000 {
					t.Errorf("goroutine %d got the response %s, want n=%d user=%s", g, a.Response, n, user)
				}
				if want := fmt.Sprintf(`{"last":%d,"seen":%d}`, n, g); string(a.BrokerData) != want {
					t.Errorf("broker data %s, want %s", a.BrokerData, want)
				}
				results <- result{r.Sid, r.Calls}
			}
		})
	}
	wg.Wait()
	close(results)
	if live := LiveStates() - before; live < 1 || live > 2 {
		t.Errorf("%d states alive for a pool of 2", live)
	}
	seen := map[string]map[int]bool{}
	total := 0
	for r := range results {
		total++
		if seen[r.sid] == nil {
			seen[r.sid] = map[int]bool{}
		}
		if seen[r.sid][r.calls] {
			t.Errorf("state %s reported call %d twice: two goroutines shared it at once", r.sid, r.calls)
		}
		seen[r.sid][r.calls] = true
	}
	if total != goroutines*perGoroutine {
		t.Fatalf("%d calls succeeded, want %d", total, goroutines*perGoroutine)
	}
	if len(seen) > 2 {
		t.Errorf("%d states served calls, want at most the pool size 2", len(seen))
	}
	reused := false
	for sid, calls := range seen {
		for i := 1; i <= len(calls); i++ {
			if !calls[i] {
				t.Errorf("state %s: calls %v are not 1..%d", sid, calls, len(calls))
				break
			}
		}
		reused = reused || len(calls) > 1
	}
	if !reused {
		t.Error("no state served more than one call")
	}
}

// benchChatScript is a typical small integration: it answers a chat message
// and records it in the room's broker data.
const benchChatScript = `local es = require("es")
local M = {}
function M.initial_authorisation(channel, message) return { user = message.user } end
function M.process_websocket_message(channel, message, channel_data, broker_data)
  if message.type ~= "message" then
    return { websocket_response = es.fail({ error = "unknown type" }) }
  end
  return {
    websocket_response = { type = "sent", id = message.id, at = message.ts },
    broker_data = {
      members = broker_data.members or es.array({}),
      count = (broker_data.count or 0) + 1,
      last = { from = channel_data.user, text = message.text },
    },
  }
end
return M
`

// benchWSMessage is a typical small chat message from a client.
const benchWSMessage = `{"type":"message","id":"01HQZX3G5T8N2K7VJ4M9R6P1WD","room":"lobby",` +
	`"text":"Hello everyone! The meeting moved to 3pm.","ts":1718031234567,"mentions":["u_67890"],"reply_to":null}`

func BenchmarkProcessWebsocketMessage(b *testing.B) {
	s := mustLoad(b, benchChatScript, Options{PoolSize: 1})
	ctx := context.Background()
	ch := testChannel()
	msg := []byte(benchWSMessage)
	cd := []byte(`{"user":"ann"}`)
	bd := []byte(`{"members":["ann","bob","cy"],"count":41,"last":{"from":"bob","text":"hi"}}`)
	a, err := s.ProcessWebsocketMessage(ctx, ch, msg, cd, bd)
	if err != nil {
		b.Fatal(err)
	}
	if !strings.Contains(string(a.BrokerData), `"count":42`) || a.Response == nil || a.ResponseFailed {
		b.Fatalf("unexpected action %s", describe(a))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.ProcessWebsocketMessage(ctx, ch, msg, cd, bd); err != nil {
			b.Fatal(err)
		}
	}
}

func TestTimeoutPatternMatching(t *testing.T) {
	const timeout = 100 * time.Millisecond
	s := mustLoad(t, wsScript(`string.find(string.rep("a", 400), ".-.-.-b")
return {}`), Options{Timeout: timeout})
	var err error
	returns(t, "the call", func() { _, err = runWS(t, s, `{}`) })
	if se := asScriptError(t, err); se.Kind != KindTimeout {
		t.Errorf("got %v, want a timeout", err)
	}
}
