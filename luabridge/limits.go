package luabridge

// Caps on the Go built-ins a script can call. gopher-lua's per-call timeout
// is checked between Lua instructions only: a built-in runs to its end
// however long it takes, and allocates whatever it is asked to. Each
// built-in that could run long or build a large value is replaced here by
// one that is bounded: in the size of what it builds (maxStringBytes) or in
// time (it looks at the call's context while it works).

import (
	"fmt"
	"strings"

	lua "github.com/yuin/gopher-lua"
)

// installLimits replaces the unbounded built-ins of a sandboxed state.
func installLimits(L *lua.LState) {
	if s, ok := L.GetGlobal("string").(*lua.LTable); ok {
		s.RawSetString("rep", L.NewFunction(stringRep))
		s.RawSetString("find", L.NewFunction(strFind))
		s.RawSetString("match", L.NewFunction(strMatch))
		s.RawSetString("gmatch", L.NewFunction(strGmatch))
		s.RawSetString("gfind", L.NewFunction(strGmatch))
		s.RawSetString("gsub", L.NewFunction(strGsub))
		if f, ok := s.RawGetString("format").(*lua.LFunction); ok && f.IsG {
			s.RawSetString("format", L.NewFunction(limitedFormat(f.GFunction)))
		}
	}
	if t, ok := L.GetGlobal("table").(*lua.LTable); ok {
		t.RawSetString("concat", L.NewFunction(tableConcat))
		if f, ok := t.RawGetString("sort").(*lua.LFunction); ok && f.IsG {
			t.RawSetString("sort", L.NewFunction(limitedSort(f.GFunction)))
		}
	}
}

// stringRep is string.rep with a cap on the result's size.
func stringRep(L *lua.LState) int {
	s := L.CheckString(1)
	n := L.CheckInt(2)
	if n <= 0 || s == "" {
		L.Push(lua.LString(""))
		return 1
	}
	// Divide rather than multiply: len(s)*n can overflow int64 (string.rep("abcd", 2^62)).
	if n > maxStringBytes/len(s) {
		L.RaiseError("string.rep: result of %.0f bytes is over the limit of %d", float64(len(s))*float64(n), maxStringBytes)
	}
	L.Push(lua.LString(strings.Repeat(s, n)))
	return 1
}

// limitedFormat checks a format string before gopher-lua's string.format
// runs it: widths and precisions of at most two digits (as Lua 5.1 demands;
// Go would pad to a million characters per item), and a result that cannot
// go over maxStringBytes.
func limitedFormat(format lua.LGFunction) lua.LGFunction {
	return func(L *lua.LState) int {
		f := L.CheckString(1)
		size := len(f)
		arg := 1
		for i := 0; i < len(f); i++ {
			if f[i] != '%' {
				continue
			}
			i++
			if i < len(f) && f[i] == '%' {
				continue
			}
			start := i
			for i < len(f) && strings.IndexByte("-+ #0", f[i]) >= 0 {
				i++
			}
			if i-start > 5 {
				L.RaiseError("invalid format (repeated flags)")
			}
			digits := func() {
				d := i
				for i < len(f) && '0' <= f[i] && f[i] <= '9' {
					i++
				}
				if i-d > 2 {
					L.RaiseError("invalid format (width or precision too long)")
				}
			}
			digits()
			if i < len(f) && f[i] == '.' {
				i++
				digits()
			}
			arg++
			item := 128 + 99 + 309 // padding, precision, the digits of the largest float
			if i < len(f) && (f[i] == 's' || f[i] == 'q') && arg <= L.GetTop() {
				item += 2 * len(L.ToStringMeta(L.Get(arg)).String())
			}
			size += item
			if size > maxStringBytes {
				L.RaiseError("string.format: result over the limit of %d bytes", maxStringBytes)
			}
		}
		return format(L)
	}
}

// tableConcat is table.concat built with one buffer (gopher-lua's pushes
// every element onto the stack) and capped at maxStringBytes. Like
// gopher-lua's, it clamps i and j to the table's length.
func tableConcat(L *lua.LState) int {
	tbl := L.CheckTable(1)
	sep := L.OptString(2, "")
	n := tbl.Len()
	i := L.OptInt(3, 1)
	j := L.OptInt(4, n)
	if L.GetTop() == 3 && (i > n || i < 1) {
		L.Push(lua.LString(""))
		return 1
	}
	i = max(min(i, n), 1)
	j = min(j, n)
	if i > j {
		L.Push(lua.LString(""))
		return 1
	}
	var b strings.Builder
	for k := i; k <= j; k++ {
		v := tbl.RawGetInt(k)
		if !lua.LVCanConvToString(v) {
			L.RaiseError("invalid value (%s) at index %d in table for concat", v.Type().String(), k)
		}
		s := lua.LVAsString(v)
		if b.Len()+len(s)+len(sep) > maxStringBytes {
			L.RaiseError("table.concat: result over the limit of %d bytes", maxStringBytes)
		}
		b.WriteString(s)
		if k != j {
			b.WriteString(sep)
		}
	}
	L.Push(lua.LString(b.String()))
	return 1
}

// limitedSort is table.sort that ends within the call's budget. A Lua
// comparator is interrupted by the timeout like any Lua code; without one,
// gopher-lua sorts in Go, which took seconds for the tens of millions of
// numbers a script can build within its budget. The default order is then
// given as a Go comparator that looks at the context every
// patternCheckEvery comparisons (1,000,000 numbers: 1.4 s against 0.3 s
// natively); tables of up to sortNativeMax elements (some 60 ms at most)
// keep gopher-lua's native order.
func limitedSort(sortFn lua.LGFunction) lua.LGFunction {
	return func(L *lua.LState) int {
		t := L.CheckTable(1)
		if L.GetTop() >= 2 && L.Get(2) != lua.LNil || t.Len() <= sortNativeMax {
			return sortFn(L)
		}
		ctx := L.Context()
		var done <-chan struct{}
		if ctx != nil {
			done = ctx.Done()
		}
		calls := 0
		L.SetTop(1)
		L.Push(L.NewFunction(func(L *lua.LState) int {
			calls++
			if done != nil && calls%patternCheckEvery == 0 {
				select {
				case <-done:
					L.RaiseError("table.sort stopped: %v", contextErr(ctx))
				default:
				}
			}
			L.Push(lua.LBool(L.LessThan(L.Get(1), L.Get(2))))
			return 1
		}))
		return sortFn(L)
	}
}

const sortNativeMax = 1 << 18

// maxJSONBytes caps the JSON the host encodes from a Lua value (action
// fields, es.json_encode). Encoding runs in Go, outside the call's budget,
// and a table may hold the same subtable many times: doubling it 30 times
// (`for i = 1, 30 do t = {t, t} end`, within max_depth) describes a
// document of 2^30 leaves, minutes of encoding and gigabytes. The cap is
// the one on strings: no value a script makes the host build in one Go
// call is over 16 MiB.
const maxJSONBytes = maxStringBytes

var tooLargeMessage = fmt.Sprintf("cannot encode: the JSON is over the limit of %d bytes", maxJSONBytes)
