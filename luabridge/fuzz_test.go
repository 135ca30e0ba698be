package luabridge

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"
)

// Fuzz targets. .ci/run runs each for a few seconds; RELIABILITY.md says how
// to run them longer, e.g.
//
//	go test ./luabridge -run '^$' -fuzz '^FuzzJSONRoundTrip$' -fuzztime 10m

const fuzzDepth = 32

// JSON -> Lua -> JSON is faithful: what DecodeJSON accepts, AppendJSON
// encodes back to the same JSON value (as encoding/json reads both), and a
// second round trip gives the same bytes.
func FuzzJSONRoundTrip(f *testing.F) {
	for _, s := range []string{`{}`, `[]`, `{"a":[1,2,{"b":null}],"c":"\u00e9\ud83d\ude00"}`, `[[],{},[[]]]`,
		`{"n":9007199254740993,"f":1.5e300,"z":-0}`, `"\ufffd\u0000"`, `{"a":1,"a":2}`, `[1e400]`, `{"":true}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		L, m := NewState("fuzz", fuzzDepth, nil)
		defer L.Close()
		v, err := DecodeJSON(L, m, data, fuzzDepth)
		if err != nil {
			var de *DataError
			if !errors.As(err, &de) || (de.Code != codeInvalidJSON && de.Code != codeTooDeep) {
				t.Fatalf("DecodeJSON(%q): %v is not a DataError", data, err)
			}
			return
		}
		enc, err := AppendJSON(nil, m, v, "value", fuzzDepth)
		if err != nil {
			t.Fatalf("AppendJSON of decoded %q: %v", data, err)
		}
		var want, got any
		if err := json.Unmarshal(data, &want); err != nil {
			t.Fatalf("DecodeJSON accepted %q, encoding/json does not: %v", data, err)
		}
		if err := json.Unmarshal(enc, &got); err != nil {
			t.Fatalf("AppendJSON wrote invalid JSON %q: %v", enc, err)
		}
		if !reflect.DeepEqual(want, got) {
			t.Fatalf("round trip changed the value:\n in  %s\n out %s", data, enc)
		}
		v2, err := DecodeJSON(L, m, enc, fuzzDepth)
		if err != nil {
			t.Fatalf("DecodeJSON of its own output %q: %v", enc, err)
		}
		enc2, err := AppendJSON(nil, m, v2, "value", fuzzDepth)
		if err != nil || string(enc2) != string(enc) {
			t.Fatalf("second round trip: %q, %v; first gave %q", enc2, err, enc)
		}
	})
}

var fuzzScript = sync.OnceValues(func() (*Script, error) {
	return Load("fuzz.lua", []byte(wsScript("return {}")), Options{PoolSize: 1, Timeout: time.Second})
})

// Action validation never panics: any table (decoded from JSON, then
// mutated by sel with values JSON cannot hold) gives either a checked
// action whose every field is valid JSON, or a field or data error.
func FuzzActionValidation(f *testing.F) {
	for _, s := range []string{`{"websocket_response":{"a":1}}`, `{"broker_data":"swap/delete"}`, `{"broker_data":"swap/abort"}`,
		`{"broker_messages":[{"target":"x","message":{}}]}`, `{"should_close":true,"side_effects":[{}]}`,
		`{"error_namespace":"e","websocket_response":{}}`, `{"channel_data":{"a":[]}}`, `{"x":1}`, `[]`, `"s"`,
		`{"broker_messages":[{"message":{}}]}`, `{"broker_messages":{}}`, `{"side_effects":[1]}`} {
		for sel := range 8 {
			f.Add([]byte(s), uint8(sel))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, sel uint8) {
		s, err := fuzzScript()
		if err != nil {
			t.Fatal(err)
		}
		st, err := s.pool.get(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer s.pool.put(st, false)
		v, err := DecodeJSON(st.L, st.marks, data, fuzzDepth)
		if err != nil {
			return
		}
		if tb, ok := v.(*lua.LTable); ok {
			switch sel % 8 {
			case 1: // a failure response
				if r, ok := tb.RawGetString("websocket_response").(*lua.LTable); ok {
					tb.RawSetString("websocket_response", st.marks.NewFail(st.L, r))
				}
			case 2: // a function somewhere
				tb.RawSetString("channel_data", st.L.NewFunction(func(*lua.LState) int { return 0 }))
			case 3: // a cycle
				tb.RawSetString("websocket_response", tb)
			case 4: // es.fail returned in place of the action
				v = st.marks.NewFail(st.L, tb)
			case 5: // a number key beside string keys
				tb.RawSetInt(1, lua.LTrue)
			case 6: // es.null as a field
				tb.RawSetString("broker_data", st.marks.Null)
			}
		}
		fn := Function(int(sel/8) % int(numFunctions))
		a, err := toAction(st, fn, v, "comm", fuzzDepth)
		if err != nil {
			var fe *fieldError
			var de *DataError
			if !errors.As(err, &fe) && !errors.As(err, &de) {
				t.Fatalf("toAction(%q, sel %d): unexpected error type %T: %v", data, sel, err, err)
			}
			return
		}
		for name, b := range map[string][]byte{"channel_data": a.ChannelData, "broker_data": a.BrokerData, "websocket_response": a.Response} {
			if b != nil && !json.Valid(b) {
				t.Fatalf("%s is not valid JSON: %q", name, b)
			}
		}
		for _, m := range a.BrokerMessages {
			if !json.Valid(m.Message) {
				t.Fatalf("broker message is not valid JSON: %q", m.Message)
			}
		}
		for _, e := range a.SideEffects {
			if !json.Valid(e) {
				t.Fatalf("side effect is not valid JSON: %q", e)
			}
		}
	})
}

// patternOps are the calls FuzzPatterns makes: each pattern function,
// called from Go (not through Lua's pcall, which turns a Go panic into an
// ordinary error value), with the results as text.
var patternOps = []struct {
	name string
	run  func(L *lua.LState, s, p string) (string, error)
}{
	{"find", func(L *lua.LState, s, p string) (string, error) {
		return callString(L, "find", lua.LString(s), lua.LString(p))
	}},
	{"find from 2", func(L *lua.LState, s, p string) (string, error) {
		return callString(L, "find", lua.LString(s), lua.LString(p), lua.LNumber(2))
	}},
	{"match", func(L *lua.LState, s, p string) (string, error) {
		return callString(L, "match", lua.LString(s), lua.LString(p))
	}},
	{"gsub", func(L *lua.LState, s, p string) (string, error) {
		return callString(L, "gsub", lua.LString(s), lua.LString(p), lua.LString("<%0>"))
	}},
	{"gsub with a function", func(L *lua.LState, s, p string) (string, error) {
		if err := L.DoString(`return function(...) return select("#", ...) end`); err != nil {
			return "", err
		}
		f := L.Get(-1)
		L.Pop(1)
		return callString(L, "gsub", lua.LString(s), lua.LString(p), f)
	}},
	{"gmatch", func(L *lua.LState, s, p string) (string, error) {
		if err := L.CallByParam(lua.P{Fn: L.GetField(L.GetGlobal("string"), "gmatch"), NRet: 1, Protect: true},
			lua.LString(s), lua.LString(p)); err != nil {
			return "", err
		}
		next := L.Get(-1)
		L.Pop(1)
		var out []string
		for range 100 {
			top := L.GetTop()
			if err := L.CallByParam(lua.P{Fn: next, NRet: lua.MultRet, Protect: true}); err != nil {
				return "", err
			}
			vals := results(L, top)
			if len(vals) == 0 || vals[0] == "nil" {
				break
			}
			out = append(out, strings.Join(vals, ","))
		}
		return strings.Join(out, ";"), nil
	}},
}

// callString calls string.<name>(args...) in protected mode and returns
// its results as text.
func callString(L *lua.LState, name string, args ...lua.LValue) (string, error) {
	top := L.GetTop()
	if err := L.CallByParam(lua.P{Fn: L.GetField(L.GetGlobal("string"), name), NRet: lua.MultRet, Protect: true}, args...); err != nil {
		return "", err
	}
	return strings.Join(results(L, top), ","), nil
}

// results pops the values above top as text.
func results(L *lua.LState, top int) []string {
	var vals []string
	for i := top + 1; i <= L.GetTop(); i++ {
		vals = append(vals, L.Get(i).Type().String()+":"+L.Get(i).String())
	}
	L.SetTop(top)
	return vals
}

// checkPatternError fails when err is not an ordinary Lua error: a Go
// panic in a pattern function (an index out of range) comes back from
// PCall as an ApiErrorPanic.
func checkPatternError(t *testing.T, op, subject, pattern string, err error) {
	t.Helper()
	var ae *lua.ApiError
	if !errors.As(err, &ae) || ae.Type != lua.ApiErrorRun || strings.Contains(err.Error(), "runtime error") {
		t.Fatalf("%s(%q, %q) failed in Go: %v", op, subject, pattern, err)
	}
}

// isBudgetError reports whether err is the error of a call whose budget
// ran out: the matcher's "pattern matching stopped: ...", or the
// interpreter's own (in a gsub callback).
func isBudgetError(err error) bool {
	return err != nil && strings.Contains(err.Error(), context.DeadlineExceeded.Error())
}

// The pattern functions never fail in Go, and respect the call's budget:
// with a budget that is already spent, each call either finishes what
// little work it has (fewer steps than the matcher runs between two looks
// at the context), with the results it gives with a budget, or fails with
// the budget's error, never another.
func FuzzPatterns(f *testing.F) {
	for _, s := range [][2]string{{"hello world", "(%w+) (%w+)"}, {"aaa", ".-.-b"}, {"f(a(b)c)", "%b()"},
		{"THE fox", "%f[%a]%a+"}, {"abcabc", "(a)(b)c%1%2"}, {"a]b", "[]]"}, {"x", "[%"}, {"", "()"}, {"ab", "^(a?)%1$"},
		{strings.Repeat("a", 60), ".-.-.-b"}, {strings.Repeat("a", 400), ".-.-.-b"}, {strings.Repeat("ab", 3000), "a"},
		{"x", "%1"}, {"abc", "(()"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, subject, pattern string) {
		L, _ := NewState("fuzz", fuzzDepth, nil)
		defer L.Close()
		for _, op := range patternOps {
			// With a budget (a pattern bomb ends at it, with its error).
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			L.SetContext(ctx)
			want, werr := op.run(L, subject, pattern)
			cancel()
			if werr != nil {
				checkPatternError(t, op.name, subject, pattern, werr)
			}
			// With a budget spent before the call.
			spent, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
			L.SetContext(spent)
			got, err := op.run(L, subject, pattern)
			cancel()
			L.RemoveContext()
			switch {
			case err == nil && werr == nil && got != want:
				t.Fatalf("%s(%q, %q) gave %.200q with its budget spent, %.200q with a budget", op.name, subject, pattern, got, want)
			case err == nil && werr != nil:
				// With a budget it failed: a pattern error, which a spent
				// budget cannot hide, or the budget's, which means more work
				// than a spent budget allows.
				t.Fatalf("%s(%q, %q) succeeded with its budget spent, failed with a budget: %v", op.name, subject, pattern, werr)
			case err != nil && !isBudgetError(err):
				checkPatternError(t, op.name, subject, pattern, err)
				if werr == nil || werr.Error() != err.Error() {
					t.Fatalf("%s(%q, %q) with its budget spent: %v, not the budget's error (with a budget: %v)", op.name, subject, pattern, err, werr)
				}
			}
		}
	})
}

// A spent budget ends every pattern function that has more than a few
// thousand steps of work with the budget's error: the matcher looks at the
// call's context while it works, it does not run to the end.
func TestPatternBudgetSpent(t *testing.T) {
	L, _ := NewState("budget", fuzzDepth, nil)
	defer L.Close()
	spent, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	bomb, long := strings.Repeat("a", 60), strings.Repeat("ab", 20000)
	for _, tt := range []struct {
		op, subject, pattern string
		spends               bool // the work is more than a look at the context allows
	}{
		{"find", bomb, ".-.-.-b", true},
		{"find from 2", bomb, ".-.-.-b", true},
		{"match", bomb, "(.-)(.-)(.-)b", true},
		{"gsub", long, "a", true},
		{"gsub with a function", "aaa", "a", true}, // the callback is Lua: the interpreter stops it
		{"gmatch", long, "ax", true},               // one call scans the whole subject
		{"find", "hello", "l+", false},
		{"gsub", "hello", "l", false},
		{"gmatch", "a b c", "%a", false},
	} {
		var run func(L *lua.LState, s, p string) (string, error)
		for _, op := range patternOps {
			if op.name == tt.op {
				run = op.run
			}
		}
		L.SetContext(spent)
		got, err := run(L, tt.subject, tt.pattern)
		L.RemoveContext()
		if tt.spends && !isBudgetError(err) {
			t.Errorf("%s(%.20q..., %q) with its budget spent: %.60q, %v; want the budget's error", tt.op, tt.subject, tt.pattern, got, err)
		}
		if !tt.spends && err != nil {
			t.Errorf("%s(%q, %q): %v; want it to finish its few steps", tt.op, tt.subject, tt.pattern, err)
		}
	}
}
