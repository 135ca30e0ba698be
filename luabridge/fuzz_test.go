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

// The pattern functions never fail in Go (an index out of range would be
// reported by gopher-lua as a panic), and end within their budget.
func FuzzPatterns(f *testing.F) {
	for _, s := range [][2]string{{"hello world", "(%w+) (%w+)"}, {"aaa", ".-.-b"}, {"f(a(b)c)", "%b()"},
		{"THE fox", "%f[%a]%a+"}, {"abcabc", "(a)(b)c%1%2"}, {"a]b", "[]]"}, {"x", "[%"}, {"", "()"}, {"ab", "^(a?)%1$"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, subject, pattern string) {
		L, _ := NewState("fuzz", fuzzDepth, nil)
		defer L.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		L.SetContext(ctx)
		L.SetGlobal("s", lua.LString(subject))
		L.SetGlobal("p", lua.LString(pattern))
		err := L.DoString(`
			pcall(string.find, s, p)
			pcall(string.find, s, p, 2)
			pcall(string.match, s, p)
			pcall(string.gsub, s, p, "<%0>")
			pcall(string.gsub, s, p, function(...) return select("#", ...) end)
			pcall(function() local n = 0 for a in string.gmatch(s, p) do n = n + 1 if n > 100 then break end end end)`)
		if err != nil && ctx.Err() == nil {
			t.Fatalf("find(%q, %q): %v", subject, pattern, err)
		}
		var ae *lua.ApiError
		if errors.As(err, &ae) && ae.Type == lua.ApiErrorPanic || err != nil && strings.Contains(err.Error(), "runtime error") {
			t.Fatalf("find(%q, %q) panicked: %v", subject, pattern, err)
		}
	})
}
