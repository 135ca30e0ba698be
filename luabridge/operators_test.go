package luabridge

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"
	"github.com/yuin/gopher-lua/parse"
)

// operatorCases exercise `..` and `#` in every place an expression can
// stand, with every kind of operand OP_CONCAT and OP_LEN handle. Each is
// the body of a function whose result (or error) is compared between
// gopher-lua's own instructions and the capped builtins.
var operatorCases = []string{
	`return "a" .. "b"`,
	`return "a" .. "b" .. "c" .. "d" .. "e"`,
	`return 1 .. 2`,
	`return 1.5 .. "|" .. -0.25 .. "|" .. 1e100 .. "|" .. 2^53 .. "|" .. -7`,
	`return "" .. ""`,
	`return ("a" .. "b") .. ("c" .. ("d" .. "e"))`,
	`local x = "q" x = x .. x .. x return x`,
	`local function f() return "p", "q", "r" end return "a" .. f()`,
	`local function f() return "p", "q", "r" end return f() .. "a"`,
	`local function f() return "p", "q", "r" end return "[" .. f() .. f() .. "]"`,
	`local function f() return "p", "q" end local t = { "x" .. f() } return #t .. t[1]`,
	`local function f() return "p", "q" end local function g(...) return select("#", ...) end return g("x" .. f())`,
	`local function v(...) return ... .. "!" end return v("a", "b", "c")`,
	`local function v(...) return "!" .. ... end return v("a", "b", "c")`,
	`local s = "ab" return s:upper() .. s:rep(2)`,
	`local t = {} t["k" .. 1] = "v" .. 2 return t.k1`,
	`local t = { ["k" .. 1] = "v" .. 2, "a" .. "b" } return t.k1 .. t[1]`,
	`if "a" .. "b" == "ab" then return "yes" .. "" end return "no"`,
	`local n = 0 for i = 1, #("ab" .. "cd") do n = n + 1 end return n .. ""`,
	`local r = "" for _, v in ipairs({ "a" .. "1", "b" .. "2" }) do r = r .. v end return r`,
	`local i, r = 0, "" while #(r .. "") < 3 do r = r .. i i = i + 1 end return r`,
	`local r = "" repeat r = r .. "x" until r == "x" .. "x" .. "x" return r`,
	`local t = { f = {} } function t.f.g() return "g" .. "!" end return t.f.g()`,
	`local t = {} function t:m(a) return self.n .. a end t.n = "n" return t:m("a" .. "b")`,
	`return (function(a) return a .. a end)("z")`,
	`return not ("a" .. "b") and "x" or "y" .. "z"`,
	`return -("1" .. "2")`,
	`return ("1" .. "2") + 1`,
	`return ("a" .. "b") < ("a" .. "c")`,
	`do local x = "d" .. "o" return x end`,
	// metamethods, on either side, in the middle of a chain
	`local mt = { __concat = function(a, b) return "<" .. tostring(type(a)) .. "," .. tostring(type(b)) .. ">" end }
	 local t = setmetatable({}, mt)
	 return "a" .. t .. "b" .. "c"`,
	`local mt = { __concat = function(a, b) return (type(a) == "table" and "T" or a) .. (type(b) == "table" and "T" or b) end }
	 local t = setmetatable({}, mt)
	 return t .. "x" .. t .. t .. 1 .. t`,
	`local mt = { __concat = function(a, b) return 42 end }
	 local t = setmetatable({}, mt)
	 return type("a" .. t)`,
	`local A = setmetatable({}, { __concat = function() return "A" end })
	 local B = setmetatable({}, { __concat = function() return "B" end })
	 return (A .. B) .. (B .. A) .. ("s" .. B) .. (A .. "s")`,
	// `#`
	`return #"abc" .. #"" .. #{} .. #{ 1, 2, 3 } .. #{ n = 1 }`,
	`local t = { 1, 2, 3 } t[#t + 1] = 4 t[#t + 1] = 5 return #t`,
	`local t = { 1, 2, nil, 4 } return #t`,
	`local t = { 1, 2, 3 } t[3] = nil return #t`,
	`local function v(...) return #... end return v("abcd", "x")`,
	`local function f() return { 1, 2 }, { 1 } end return #f()`,
	`return #setmetatable({ 1, 2 }, { __len = function() return 7 end })`,
	`return #setmetatable({ 1, 2 }, { __len = function() return "x" end })`,
	`return #setmetatable({ 1, 2 }, { __index = {} })`,
	`return -#"ab" + #"c" * 2`,
	`local s = "abc" return #s:upper()`,
	`return #nil`,
	`return #5`,
	`return #true`,
	`local t = {} for i = 1, 100 do t[#t + 1] = i end return #t .. "," .. t[#t]`,
	// errors: the message and the line
	`return "a" .. nil`,
	`return "a" .. {}`,
	`return true .. "a"`,
	`local t = setmetatable({}, { __concat = 1 }) return "a" .. t`,
	`return "a" .. "b" .. nil .. "c"`,
	`local x = {}
	 return "a" ..
	   x`,
}

// runConcatCase compiles `return function() <body> end` under name with
// compile and runs the function in L, returning its first result as a
// string or the error's text.
func runConcatCase(t *testing.T, L *lua.LState, proto *lua.FunctionProto) string {
	t.Helper()
	L.Push(L.NewFunctionFromProto(proto))
	if err := L.PCall(0, 1, nil); err != nil {
		t.Fatalf("top level: %v", err)
	}
	fn := L.Get(-1)
	L.Pop(1)
	L.Push(fn)
	if err := L.PCall(0, 1, nil); err != nil {
		if ae, ok := err.(*lua.ApiError); ok && ae.Object != nil {
			return "error: " + ae.Object.String()
		}
		return "error: " + err.Error()
	}
	v := L.Get(-1)
	L.Pop(1)
	return v.Type().String() + " " + v.String()
}

// The capped builtins give what OP_CONCAT and OP_LEN give: the same
// strings and lengths, the same metamethod calls, the same errors on the
// same lines.
func TestOperatorsAgreeWithGopherLua(t *testing.T) {
	for _, body := range operatorCases {
		src := "return function()\n" + body + "\nend\n"
		chunk, err := parse.Parse(strings.NewReader(src), testName)
		if err != nil {
			t.Fatalf("parse %q: %v", body, err)
		}
		plain, err := lua.Compile(chunk, testName)
		if err != nil {
			t.Fatalf("compile %q: %v", body, err)
		}
		if !hasUncapped(plain) {
			t.Fatalf("%q: gopher-lua compiled no OP_CONCAT or OP_LEN: the reference does not test anything", body)
		}
		capped, err := Compile(testName, []byte(src))
		if err != nil {
			t.Fatalf("Compile %q: %v", body, err)
		}
		if hasUncapped(capped) {
			t.Errorf("%q: OP_CONCAT or OP_LEN left in the compiled code", body)
		}
		ref := lua.NewState()
		want := runConcatCase(t, ref, plain)
		ref.Close()
		L, _ := NewState("x", 0, nil)
		got := runConcatCase(t, L, capped)
		L.Close()
		if got != want {
			t.Errorf("%s\n got  %q\n want %q (gopher-lua's instructions)", body, got, want)
		}
	}
}

// A script that concatenates past the cap is stopped by the cap before the
// string is built, whatever its budget: the error names the limit and the
// line. It is the cap, not the timeout or the memory guard.
func TestConcatCapped(t *testing.T) {
	for _, tt := range []struct {
		name, body string
		ok         bool
	}{
		{"doubling 40 times", `local s = "x" for i = 1, 40 do s = s .. s end`, false},
		{"a chain over the cap", `local s = string.rep("x", 1024 * 1024) local t = s .. s .. s .. s .. s .. s .. s .. s .. s .. s .. s .. s .. s .. s .. s .. s .. "!"`, false},
		{"numbers in a chain over the cap", `local s = string.rep("x", 16 * 1024 * 1024 - 1) local t = s .. 12`, false},
		{"a chain at the cap", `local s = string.rep("x", 1024 * 1024) local t = s .. s .. s .. s .. s .. s .. s .. s .. s .. s .. s .. s .. s .. s .. s .. s
		 if #t ~= 16 * 1024 * 1024 then error("got " .. #t) end`, true},
		{"one byte under", `local s = string.rep("x", 16 * 1024 * 1024 - 2) local t = s .. 1 if #t ~= 16 * 1024 * 1024 - 1 then error("got " .. #t) end`, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			src := wsScript("\n" + tt.body + "\nreturn {}")
			s := mustLoad(t, src, Options{Timeout: 10 * time.Minute, PoolSize: 1})
			_, err := runWithin(t, s, endBound, `{}`)
			if tt.ok {
				if err != nil {
					t.Fatalf("got %v, want success", err)
				}
				return
			}
			checkScriptError(t, err, KindRuntime, "process_websocket_message", at(wsFuncLine+2),
				"string concatenation", "over the limit of 16777216")
		})
	}
}

// hasUncapped, the check Compile relies on, finds OP_CONCAT and OP_LEN in
// a nested function.
func TestHasUncapped(t *testing.T) {
	for _, src := range [][]byte{
		[]byte("local function f() return function(a) return a .. a end end\nreturn f"),
		[]byte("local function f() return function(a) return #a end end\nreturn f"),
	} {
		testHasUncapped(t, src)
	}
}

func testHasUncapped(t *testing.T, src []byte) {
	chunk, err := parse.Parse(bytes.NewReader(src), "x")
	if err != nil {
		t.Fatal(err)
	}
	proto, err := lua.Compile(chunk, "x")
	if err != nil {
		t.Fatal(err)
	}
	if !hasUncapped(proto) {
		t.Errorf("hasUncapped missed the instruction of a nested function in %s", src)
	}
	capped, err := Compile("x", src)
	if err != nil {
		t.Fatal(err)
	}
	if hasUncapped(capped) {
		t.Errorf("Compile left OP_CONCAT or OP_LEN in %s", src)
	}
}

// A script cannot reach around the cap: the binding is not a name it can
// write, and replacing the global after load changes nothing.
func TestConcatCannotBeReplaced(t *testing.T) {
	s := mustLoad(t, wsScript(`
_G["(concat)"] = function(a, b) return "hijacked" end
local s = "x" for i = 1, 30 do s = s .. s end
return {}`), Options{Timeout: 10 * time.Minute, PoolSize: 1})
	_, err := runWithin(t, s, endBound, `{}`)
	checkScriptError(t, err, KindRuntime, "process_websocket_message", at(wsFuncLine+3), "over the limit")
}

// BenchmarkOperators compares the capped builtins with gopher-lua's
// OP_CONCAT and OP_LEN on the same loop, in the same run
// (go test ./luabridge -run '^$' -bench Operators).
func BenchmarkOperators(b *testing.B) {
	for _, bench := range []struct{ name, src string }{
		{"concat", "return function(n) local r = 0 for i = 1, n do local s = \"user:\" .. i .. \":\" .. \"room\" r = r + (s .. \"!\"):len() end return r end"},
		{"len", "return function(n) local t, r = { 1, 2, 3 }, 0 for i = 1, n do r = r + #t + #\"abc\" end return r end"},
	} {
		chunk, err := parse.Parse(strings.NewReader(bench.src), "bench")
		if err != nil {
			b.Fatal(err)
		}
		plain, err := lua.Compile(chunk, "bench")
		if err != nil {
			b.Fatal(err)
		}
		capped, err := Compile("bench", []byte(bench.src))
		if err != nil {
			b.Fatal(err)
		}
		for _, c := range []struct {
			name  string
			proto *lua.FunctionProto
			L     func() *lua.LState
		}{
			{"gopher-lua", plain, func() *lua.LState { return lua.NewState() }},
			{"capped", capped, func() *lua.LState { L, _ := NewState("bench", 0, nil); return L }},
		} {
			b.Run(bench.name+"/"+c.name, func(b *testing.B) {
				L := c.L()
				defer L.Close()
				L.SetContext(context.Background())
				L.Push(L.NewFunctionFromProto(c.proto))
				L.Call(0, 1)
				fn := L.Get(-1)
				L.Pop(1)
				const n = 1000
				b.ReportAllocs()
				for b.Loop() {
					L.Push(fn)
					L.Push(lua.LNumber(n))
					L.Call(1, 1)
					L.Pop(1)
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/iteration")
			})
		}
	}
}

// A sequence cannot grow past maxArrayLen unnoticed: `#t` and the table
// functions that count it raise an error naming the limit instead of
// counting the array part only (`t[#t + 1] = v` would overwrite the same
// element for ever). Up to the limit everything works.
func TestSequenceLimit(t *testing.T) {
	const fill = `local t = {} for i = 1, 2^20 + 3 do t[i] = i end `
	for _, tt := range []struct {
		name, body, err string // err "": success
	}{
		{"appending with #", `local t = {} for i = 1, 2^20 + 3 do t[#t + 1] = i end`, "#: the table is longer than 1048576 elements"},
		{"table.insert", `local t = {} for i = 1, 2^20 + 3 do table.insert(t, i) end`, "table.insert: the table has 1048576 elements"},
		{"table.insert at a position", `local t = {} for i = 1, 2^20 do t[i] = i end table.insert(t, 1, 0)`, "table.insert: the table has 1048576 elements"},
		{"# of a longer one", fill + `local n = #t`, "#: the table is longer"},
		{"table.getn", fill + `table.getn(t)`, "table.getn: the table is longer"},
		{"table.remove", fill + `table.remove(t)`, "table.remove: the table is longer"},
		{"table.concat", fill + `table.concat(t, ",")`, "table.concat: the table is longer"},
		{"table.sort", fill + `table.sort(t)`, "table.sort: the table is longer"},
		{"at the limit", `local t = {} for i = 1, 2^20 do t[#t + 1] = i end
			if #t ~= 2^20 or t[#t] ~= 2^20 then error("got " .. #t) end
			table.sort(t, function(a, b) return a > b end)
			if table.remove(t) ~= 1 or #t ~= 2^20 - 1 then error("remove") end
			table.insert(t, 1)
			if #table.concat(t, ",", 2^20 - 2) ~= #"3,2,1" then error("concat") end`, ""},
		{"ipairs past the limit", fill + `local n = 0 for _ in ipairs(t) do n = n + 1 end if n ~= 2^20 + 3 then error("got " .. n) end`, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := mustLoad(t, wsScript("\n"+tt.body+"\nreturn {}"), Options{Timeout: 10 * time.Minute, PoolSize: 1})
			_, err := runWithin(t, s, time.Minute, `{}`)
			if tt.err == "" {
				if err != nil {
					t.Fatalf("got %v, want success", err)
				}
				return
			}
			checkScriptError(t, err, KindRuntime, "process_websocket_message", at(wsFuncLine+2), tt.err, "the most a sequence may have")
		})
	}
}
