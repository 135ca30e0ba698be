package luabridge

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"
)

const testMaxDepth = 64

// newConvState returns a fresh state with its marks and these globals:
// es_null (es.null), es_array_mt (the array metatable) and es_array(t), a
// stand-in for es.array that gives t the array metatable.
func newConvState(tb testing.TB) (*lua.LState, *Marks) {
	tb.Helper()
	L := lua.NewState()
	tb.Cleanup(L.Close)
	m := NewMarks(L)
	L.SetGlobal("es_null", m.Null)
	L.SetGlobal("es_array_mt", m.Array)
	L.SetGlobal("es_array", L.NewFunction(func(L *lua.LState) int {
		t := L.CheckTable(1)
		L.SetMetatable(t, m.Array)
		L.Push(t)
		return 1
	}))
	return L, m
}

// evalLua runs code (which must return one value) and returns that value.
func evalLua(tb testing.TB, L *lua.LState, code string) lua.LValue {
	tb.Helper()
	top := L.GetTop()
	if err := L.DoString(code); err != nil {
		tb.Fatalf("lua: %v", err)
	}
	if L.GetTop() != top+1 {
		tb.Fatalf("lua code returned %d values, want 1", L.GetTop()-top)
	}
	v := L.Get(-1)
	L.Pop(1)
	return v
}

func encodeOK(tb testing.TB, m *Marks, v lua.LValue) string {
	tb.Helper()
	out, err := AppendJSON(nil, m, v, "x", testMaxDepth)
	if err != nil {
		tb.Fatalf("AppendJSON: %v", err)
	}
	if !json.Valid(out) {
		tb.Fatalf("AppendJSON produced invalid JSON: %q", out)
	}
	return string(out)
}

func TestRoundTrip(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"nested", `{"b":{"y":[1,2,{"z":[]}],"x":{}},"a":[[],[[]]]}`, `{"a":[[],[[]]],"b":{"x":{},"y":[1,2,{"z":[]}]}}`},
		{"empty array", `[]`, `[]`},
		{"empty object", `{}`, `{}`},
		{"empty array in object", `{"list":[]}`, `{"list":[]}`},
		{"empty object in array", `[{},{}]`, `[{},{}]`},
		{"null top level", `null`, `null`},
		{"null in array", `[1,null,3]`, `[1,null,3]`},
		{"only nulls", `[null,null]`, `[null,null]`},
		{"null in object", `{"a":null,"b":1}`, `{"a":null,"b":1}`},
		{"booleans", `[true,false]`, `[true,false]`},
		{"int 3", `3`, `3`},
		{"int -7", `-7`, `-7`},
		{"int 0", `0`, `0`},
		{"minus zero", `-0`, `0`},
		{"2^53", `9007199254740992`, `9007199254740992`},
		{"-2^53", `-9007199254740992`, `-9007199254740992`},
		{"ints in array", `[3,-7,0,1718031234567]`, `[3,-7,0,1718031234567]`},
		{"integral float", `1.0`, `1`},
		{"exponent integer", `1e2`, `100`},
		// Beyond 2^53 integers become the nearest float64.
		{"2^53+1 rounds", `9007199254740993`, `9007199254740992`},
		{"big int rounds", `123456789012345678`, `123456789012345680`},
		{"float 1.5", `1.5`, `1.5`},
		{"float 0.1", `0.1`, `0.1`},
		{"float 1e-7", `1e-7`, `1e-7`},
		{"float -2.5e-10", `-2.5e-10`, `-2.5e-10`},
		{"float 1e300", `1e300`, `1e+300`},
		{"float 1e21", `1e21`, `1e+21`},
		{"string unicode", `"héllo wörld ✓ 😀 日本"`, `"héllo wörld ✓ 😀 日本"`},
		{"string unicode escapes", `"\u00e9\ud83d\ude00"`, `"é😀"`},
		{"string escapes", `"a\"b\\c\/d"`, `"a\"b\\c/d"`},
		{"string control chars", `"\u0000\u0001\n\t\r\b\f\u001f\u007f"`, `"\u0000\u0001\n\t\r\b\f\u001f` + "\x7f" + `"`},
		{"no html escaping", `"<a href='x'>&amp;</a>"`, `"<a href='x'>&amp;</a>"`},
		{"line separators kept", `"\u2028\u2029"`, "\"\u2028\u2029\""},
		{"keys sorted", `{"b":1,"a":2,"c":{"z":1,"y":2}}`, `{"a":2,"b":1,"c":{"y":2,"z":1}}`},
		{"odd keys sorted bytewise", `{"é":1,"a b":2,"\n":3,"":4}`, `{"":4,"\n":3,"a b":2,"é":1}`},
		{"whitespace", " { \"a\" : [ 1 , 2 ] } \n", `{"a":[1,2]}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			L, m := newConvState(t)
			v, err := DecodeJSON(L, m, []byte(tc.in), testMaxDepth)
			if err != nil {
				t.Fatalf("DecodeJSON(%s): %v", tc.in, err)
			}
			if got := encodeOK(t, m, v); got != tc.want {
				t.Errorf("round trip of %s:\n got %s\nwant %s", tc.in, got, tc.want)
			}
		})
	}
}

// TestDecodeShape checks what Lua code sees after decoding.
func TestDecodeShape(t *testing.T) {
	tests := []struct{ name, in, check string }{
		{"array with null keeps length", `[1,null,3]`, `return #v == 3 and v[1] == 1 and v[2] == es_null and v[3] == 3`},
		{"array has array metatable", `[1]`, `return getmetatable(v) == es_array_mt`},
		{"empty array has array metatable", `[]`, `return getmetatable(v) == es_array_mt and next(v) == nil`},
		{"object has no metatable", `{"a":1}`, `return getmetatable(v) == nil and v.a == 1`},
		{"nested", `{"p":[{"n":"x"}]}`, `return v.p[1].n == "x" and getmetatable(v.p) == es_array_mt`},
		{"null top level", `null`, `return v == es_null`},
		{"null tostring", `null`, `return tostring(v) == "null"`},
		{"null metatable protected", `null`, `return getmetatable(v) == false`},
		{"numbers", `[3, 1.5, -0.25]`, `return v[1] == 3 and v[2] == 1.5 and v[3] == -0.25`},
		{"strings are bytes", `"\u00e9\u0000x"`, `return v == "\195\169\0x" and #v == 4`},
		{"booleans", `{"t":true,"f":false}`, `return v.t == true and v.f == false`},
		{"duplicate key last wins", `{"a":1,"a":2}`, `return v.a == 2`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			L, m := newConvState(t)
			v, err := DecodeJSON(L, m, []byte(tc.in), testMaxDepth)
			if err != nil {
				t.Fatalf("DecodeJSON: %v", err)
			}
			L.SetGlobal("v", v)
			if got := evalLua(t, L, tc.check); got != lua.LTrue {
				t.Errorf("%s: check %q returned %v", tc.in, tc.check, got)
			}
		})
	}
}

func TestEncodeLuaValues(t *testing.T) {
	tests := []struct{ name, code, want string }{
		{"sequence", `return {1,2,3}`, `[1,2,3]`},
		{"object", `return {a=1}`, `{"a":1}`},
		{"empty table is object", `return {}`, `{}`},
		{"es.array empty", `return es_array({})`, `[]`},
		{"es.array sequence", `return es_array({1,2})`, `[1,2]`},
		{"nested es.array", `return {list=es_array({})}`, `{"list":[]}`},
		{"integral float", `return 3.0`, `3`},
		{"division", `return 10/4`, `2.5`},
		{"2^53", `return 2^53`, `9007199254740992`},
		{"negative", `return -7`, `-7`},
		{"large float", `return 2^60`, `1152921504606847000`},
		{"tiny float", `return 1/3`, `0.3333333333333333`},
		{"mixed values", `return {name="x", tags={"a","b"}, n=es_null, ok=true, off=false}`, `{"n":null,"name":"x","off":false,"ok":true,"tags":["a","b"]}`},
		{"nul byte", `return "a\0b"`, `"a\u0000b"`},
		{"nil top level", `return nil`, `null`},
		{"es.null top level", `return es_null`, `null`},
		{"trailing nil removed", `local t = {1,2,3}; t[3] = nil; return t`, `[1,2]`},
		{"all keys removed", `local t = {a=1}; t.a = nil; return t`, `{}`},
		{"assigned indices", `local t = {}; t[1] = "a"; t[2] = "b"; return t`, `["a","b"]`},
		{"explicit indices", `return {[1]=1,[2]=2}`, `[1,2]`},
		{"table.insert", `local t = {}; table.insert(t, 5); table.insert(t, 6); return t`, `[5,6]`},
		{"sibling shared table", `local s = {1}; return {a=s, b=s, c={s, s}}`, `{"a":[1],"b":[1],"c":[[1],[1]]}`},
		{"keys sorted", `return {zeta=1, alpha=2, ["Beta"]=3, ["_"]=4}`, `{"Beta":3,"_":4,"alpha":2,"zeta":1}`},
		{"string escapes", `return "q\"b\\s\n\t\1<&>"`, `"q\"b\\s\n\t\u0001<&>"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			L, m := newConvState(t)
			v := evalLua(t, L, tc.code)
			if got := encodeOK(t, m, v); got != tc.want {
				t.Errorf("%s:\n got %s\nwant %s", tc.code, got, tc.want)
			}
		})
	}
}

func TestEncodeErrors(t *testing.T) {
	tests := []struct {
		name, code, root string
		maxDepth         int
		want, wantCode   string
	}{
		{"function with path", `return {players={{}, {socket=function() end}}}`, "broker_data", testMaxDepth,
			"broker_data.players[2].socket: cannot encode a function", "cannot_encode"},
		{"function top level", `return print`, "x", testMaxDepth, "x: cannot encode a function", "cannot_encode"},
		{"mixed table", `return {1,2,a=1}`, "x", testMaxDepth, "x: cannot encode a table mixing array and string keys", "cannot_encode"},
		{"mixed nested", `return {list={1,n=2}}`, "x", testMaxDepth, "x.list: cannot encode a table mixing array and string keys", "cannot_encode"},
		{"es.array with string keys", `return es_array({a=1})`, "x", testMaxDepth, "x: cannot encode a table mixing array and string keys", "cannot_encode"},
		{"es.array with array and string keys", `return es_array({1, a=1})`, "x", testMaxDepth, "x: cannot encode a table mixing array and string keys", "cannot_encode"},
		{"sparse 1 and 3", `return {[1]=1,[3]=3}`, "x", testMaxDepth, "x: cannot encode a sparse array", "cannot_encode"},
		{"sparse hole", `return {1,nil,3}`, "x", testMaxDepth, "x: cannot encode a sparse array", "cannot_encode"},
		{"sparse no 1", `return {[2]=2}`, "x", testMaxDepth, "x: cannot encode a sparse array", "cannot_encode"},
		{"key zero", `return {[0]=1}`, "x", testMaxDepth, "x: cannot encode a sparse array", "cannot_encode"},
		{"huge index", `return {[2^40]=1}`, "x", testMaxDepth, "x: cannot encode a sparse array", "cannot_encode"},
		{"sparse es.array", `return es_array({[2]=1})`, "x", testMaxDepth, "x: cannot encode a sparse array", "cannot_encode"},
		{"non-integer key", `return {[1.5]=1}`, "x", testMaxDepth, "x: cannot encode a non-integer table key", "cannot_encode"},
		{"boolean key", `return {[true]=1}`, "x", testMaxDepth, "x: cannot encode a table key of type boolean", "cannot_encode"},
		{"table key", `return {a={[{}]=1}}`, "x", testMaxDepth, "x.a: cannot encode a table key of type table", "cannot_encode"},
		{"boolean key next to array", `return {1, [false]=1}`, "x", testMaxDepth, "x: cannot encode a table key of type boolean", "cannot_encode"},
		{"NaN", `return 0/0`, "x", testMaxDepth, "x: cannot encode NaN or infinity", "cannot_encode"},
		{"infinity", `return math.huge`, "x", testMaxDepth, "x: cannot encode NaN or infinity", "cannot_encode"},
		{"one over zero", `return 1/0`, "x", testMaxDepth, "x: cannot encode NaN or infinity", "cannot_encode"},
		{"minus one over zero", `return {-1/0}`, "x", testMaxDepth, "x[1]: cannot encode NaN or infinity", "cannot_encode"},
		{"minus infinity nested", `return {a={1, -math.huge}}`, "x", testMaxDepth, "x.a[2]: cannot encode NaN or infinity", "cannot_encode"},
		{"self cycle", `local t = {}; t.self = t; return t`, "x", testMaxDepth, "x.self: cannot encode a cycle", "cannot_encode"},
		{"indirect cycle", `local a = {}; local b = {a=a}; a.b = b; return {root=a}`, "x", testMaxDepth, "x.root.b.a: cannot encode a cycle", "cannot_encode"},
		{"array cycle", `local t = {}; t[1] = t; return t`, "x", testMaxDepth, "x[1]: cannot encode a cycle", "cannot_encode"},
		{"odd key quoted", `return {["a b"]={f=function() end}}`, "x", testMaxDepth, `x["a b"].f: cannot encode a function`, "cannot_encode"},
		{"digit key quoted", `return {["1a"]=print}`, "x", testMaxDepth, `x["1a"]: cannot encode a function`, "cannot_encode"},
		{"quote key quoted", `return {['q"\n']=print}`, "x", testMaxDepth, `x["q\"\n"]: cannot encode a function`, "cannot_encode"},
		{"empty key quoted", `return {[""]=print}`, "x", testMaxDepth, `x[""]: cannot encode a function`, "cannot_encode"},
		{"identifier key", `return {_a1=print}`, "x", testMaxDepth, `x._a1: cannot encode a function`, "cannot_encode"},
		{"empty root", `return {a={print}}`, "", testMaxDepth, `a[1]: cannot encode a function`, "cannot_encode"},
		{"thread", `return {co=coroutine.create(function() end)}`, "x", testMaxDepth, "x.co: cannot encode a thread", "cannot_encode"},
		{"userdata", `return {u=ud}`, "x", testMaxDepth, "x.u: cannot encode a userdata", "cannot_encode"},
		{"channel", `return {c=ch}`, "x", testMaxDepth, "x.c: cannot encode a channel", "cannot_encode"},
		{"es.fail inside", `return {r=failv}`, "x", testMaxDepth, "x.r: cannot encode es.fail(...) here", "cannot_encode"},
		{"es.fail top level", `return failv`, "x", testMaxDepth, "x: cannot encode es.fail(...) here", "cannot_encode"},
		{"depth 2 with limit 1", `return {a={b=1}}`, "x", 1, "x.a: nested deeper than 1 levels", "too_deep"},
		{"depth 1 with limit 0", `return {}`, "x", 0, "x: nested deeper than 0 levels", "too_deep"},
		{"10000-deep chain", `local root = {}; local cur = root
			for i = 1, 10000 do cur.next = {}; cur = cur.next end
			return root`, "x", testMaxDepth,
			"x" + strings.Repeat(".next", testMaxDepth) + ": nested deeper than 64 levels", "too_deep"},
		{"10000-deep array chain", `local root = {}; local cur = root
			for i = 1, 10000 do cur[1] = {}; cur = cur[1] end
			return root`, "x", 3, "x[1][1][1]: nested deeper than 3 levels", "too_deep"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			L, m := newConvState(t)
			L.SetGlobal("ud", L.NewUserData())
			L.SetGlobal("ch", lua.LChannel(make(chan lua.LValue)))
			L.SetGlobal("failv", m.NewFail(L, L.NewTable()))
			v := evalLua(t, L, tc.code)
			prefix := []byte("prefix")
			out, err := AppendJSON(prefix, m, v, tc.root, tc.maxDepth)
			if err == nil {
				t.Fatalf("AppendJSON succeeded with %s, want error %q", out, tc.want)
			}
			if err.Error() != tc.want {
				t.Errorf("error\n got %q\nwant %q", err.Error(), tc.want)
			}
			var de *DataError
			if !errors.As(err, &de) {
				t.Fatalf("error %T is not a *DataError", err)
			}
			if de.Code != tc.wantCode {
				t.Errorf("Code = %q, want %q", de.Code, tc.wantCode)
			}
			if string(out) != "prefix" {
				t.Errorf("buffer after error = %q, want it unchanged", out)
			}
		})
	}
}

func TestEncodeDeepChainWithinLimit(t *testing.T) {
	L, m := newConvState(t)
	v := evalLua(t, L, `local root = {}; local cur = root
		for i = 1, 10000 do cur.n = {}; cur = cur.n end
		return root`)
	out, err := AppendJSON(nil, m, v, "x", 20000)
	if err != nil {
		t.Fatalf("AppendJSON: %v", err)
	}
	want := strings.Repeat(`{"n":`, 10000) + "{}" + strings.Repeat("}", 10000)
	if string(out) != want {
		t.Errorf("deep chain encoded wrongly (len %d, want %d)", len(out), len(want))
	}
}

func TestEncodeAppends(t *testing.T) {
	L, m := newConvState(t)
	v := evalLua(t, L, `return {a=1}`)
	out, err := AppendJSON([]byte("data: "), m, v, "x", testMaxDepth)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != `data: {"a":1}` {
		t.Errorf("got %q", out)
	}
}

func TestEncodeInvalidUTF8(t *testing.T) {
	tests := []struct{ name, code, want string }{
		{"lone byte", `return "a\255b"`, "\"a\uFFFDb\""},
		{"truncated sequence", `return "\226\130"`, "\"\uFFFD\uFFFD\""},
		{"valid multibyte kept", `return "\226\130\172"`, "\"€\""},
		{"in key", `return {["k\200"]=1}`, "{\"k\uFFFD\":1}"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			L, m := newConvState(t)
			if got := encodeOK(t, m, evalLua(t, L, tc.code)); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name, in string
		maxDepth int
		wantCode string
	}{
		{"empty input", ``, testMaxDepth, "invalid_json"},
		{"unclosed object", `{`, testMaxDepth, "invalid_json"},
		{"missing value", `{"a":}`, testMaxDepth, "invalid_json"},
		{"trailing comma", `[1,]`, testMaxDepth, "invalid_json"},
		{"single quotes", `{'a':1}`, testMaxDepth, "invalid_json"},
		{"bad literal", `nul`, testMaxDepth, "invalid_json"},
		{"bad escape", `"\x"`, testMaxDepth, "invalid_json"},
		{"trailing garbage", `{} x`, testMaxDepth, "invalid_json"},
		{"trailing value", `[1] [2]`, testMaxDepth, "invalid_json"},
		{"trailing number", `1 2`, testMaxDepth, "invalid_json"},
		{"extra brace", `{}}`, testMaxDepth, "invalid_json"},
		{"number out of range", `[1e400]`, testMaxDepth, "invalid_json"},
		{"depth 2 limit 1", `{"a":{"b":1}}`, 1, "too_deep"},
		{"array depth 65 limit 64", strings.Repeat("[", 65) + strings.Repeat("]", 65), 64, "too_deep"},
		{"hostile depth", strings.Repeat("[", 100000) + strings.Repeat("]", 100000), 64, "too_deep"},
		{"hostile depth unclosed", strings.Repeat(`{"a":`, 20000), 64, "too_deep"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			L, m := newConvState(t)
			v, err := DecodeJSON(L, m, []byte(tc.in), tc.maxDepth)
			if err == nil {
				t.Fatalf("DecodeJSON(%.40q) = %v, want error", tc.in, v)
			}
			var de *DataError
			if !errors.As(err, &de) {
				t.Fatalf("error %T is not a *DataError", err)
			}
			if de.Code != tc.wantCode {
				t.Errorf("Code = %q (%v), want %q", de.Code, err, tc.wantCode)
			}
			if de.Path != "" {
				t.Errorf("Path = %q, want empty for decode errors", de.Path)
			}
			if tc.wantCode == "too_deep" {
				if want := "nested deeper than"; !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
		})
	}
}

func TestDecodeDepthLimitInclusive(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		maxDepth int
	}{
		{"object depth 2", `{"a":{"b":1}}`, 2},
		{"array depth 64", strings.Repeat("[", 64) + strings.Repeat("]", 64), 64},
		{"scalar with limit 0", `"s"`, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			L, m := newConvState(t)
			v, err := DecodeJSON(L, m, []byte(tc.in), tc.maxDepth)
			if err != nil {
				t.Fatalf("DecodeJSON: %v", err)
			}
			out, err := AppendJSON(nil, m, v, "x", tc.maxDepth)
			if err != nil {
				t.Fatalf("AppendJSON: %v", err)
			}
			if string(out) != tc.in {
				t.Errorf("got %s, want %s", out, tc.in)
			}
		})
	}
}

func TestEncodeMillionElements(t *testing.T) {
	L, m := newConvState(t)
	const n = 1000000
	tb := L.CreateTable(n, 0)
	for i := 1; i <= n; i++ {
		tb.RawSetInt(i, lua.LNumber(i))
	}
	start := time.Now()
	out, err := AppendJSON(nil, m, tb, "x", testMaxDepth)
	if err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	if !strings.HasPrefix(string(out), "[1,2,3,") || !strings.HasSuffix(string(out), ",999999,1000000]") {
		t.Errorf("unexpected output %.20s...%s", out, out[len(out)-20:])
	}
	if got := strings.Count(string(out), ","); got != n-1 {
		t.Errorf("%d commas, want %d", got, n-1)
	}
	if elapsed > 5*time.Second {
		t.Errorf("encoding 1e6 elements took %v", elapsed)
	}
	back, err := DecodeJSON(L, m, out, testMaxDepth)
	if err != nil {
		t.Fatal(err)
	}
	if bt := back.(*lua.LTable); bt.Len() != n || bt.RawGetInt(n) != lua.LNumber(n) {
		t.Errorf("decoded back: len %d", bt.Len())
	}
}

func TestMarks(t *testing.T) {
	L, m := newConvState(t)
	body := evalLua(t, L, `return {code="x"}`)
	f := m.NewFail(L, body)
	if got, ok := m.FailBody(f); !ok || got != body {
		t.Errorf("FailBody(NewFail(body)) = %v, %v", got, ok)
	}
	for _, v := range []lua.LValue{body, lua.LNil, lua.LString("x"), m.Null, L.NewTable()} {
		if got, ok := m.FailBody(v); ok || got != nil {
			t.Errorf("FailBody(%v) = %v, %v; want nil, false", v, got, ok)
		}
	}
	arr := evalLua(t, L, `return es_array({})`).(*lua.LTable)
	if !m.IsArray(arr) || m.IsArray(L.NewTable()) || m.IsArray(f.(*lua.LTable)) {
		t.Error("IsArray wrong")
	}
	if s := evalLua(t, L, `return tostring(es_null)`); s != lua.LString("null") {
		t.Errorf("tostring(es.null) = %v", s)
	}
	// Marks of another state are different objects.
	L2 := lua.NewState()
	defer L2.Close()
	m2 := NewMarks(L2)
	if m2.Null == m.Null || m2.Array == m.Array || m.IsArray(m2.Array) {
		t.Error("marks shared between states")
	}
	if _, err := AppendJSON(nil, m2, m.Null, "x", 4); err == nil {
		t.Error("another state's es.null encoded without error")
	}
}

// TestConcurrentStates converts in several states at once (each state used
// by one goroutine only), so -race checks the shared encoder pool.
func TestConcurrentStates(t *testing.T) {
	const in = `{"a":[1,2,{"b":null}],"c":"d","e":{}}`
	done := make(chan error, 4)
	for range 4 {
		go func() {
			L := lua.NewState()
			defer L.Close()
			m := NewMarks(L)
			for range 200 {
				v, err := DecodeJSON(L, m, []byte(in), testMaxDepth)
				if err != nil {
					done <- err
					return
				}
				out, err := AppendJSON(nil, m, v, "x", testMaxDepth)
				if err != nil {
					done <- err
					return
				}
				if string(out) != in {
					done <- errors.New("got " + string(out))
					return
				}
			}
			done <- nil
		}()
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

const benchChatMessage = `{"type":"message","channel":"room:lobby","id":"01HQZX3G5T8N2K7VJ4M9R6P1WD",` +
	`"from":{"id":"u_12345","name":"Alice Example","roles":["member","moderator"]},` +
	`"text":"Hello everyone! The meeting moved to 3pm, see the agenda in #planning.",` +
	`"ts":1718031234567,"reply_to":null,"mentions":["u_67890"],"edited":false,"attachments":[]}`

func BenchmarkDecodeJSON(b *testing.B) {
	L, m := newConvState(b)
	data := []byte(benchChatMessage)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeJSON(L, m, data, testMaxDepth); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendJSON(b *testing.B) {
	L, m := newConvState(b)
	v, err := DecodeJSON(L, m, []byte(benchChatMessage), testMaxDepth)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, 1024)
	b.SetBytes(int64(len(benchChatMessage)))
	b.ReportAllocs()
	for b.Loop() {
		buf, err = AppendJSON(buf[:0], m, v, "message", testMaxDepth)
		if err != nil {
			b.Fatal(err)
		}
	}
}
