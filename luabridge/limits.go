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
	L.SetGlobal(concatName, L.NewFunction(concatBuiltin)) // what `..` compiles to (operators.go)
	L.SetGlobal(lenName, L.NewFunction(lenBuiltin))       // and `#`
	L.SetGlobal("ipairs", L.NewClosure(ipairs, L.NewFunction(ipairsNext)))
	if s, ok := L.GetGlobal("string").(*lua.LTable); ok {
		s.RawSetString("rep", L.NewFunction(stringRep))
		s.RawSetString("find", L.NewFunction(strFind))
		s.RawSetString("match", L.NewFunction(strMatch))
		s.RawSetString("gmatch", L.NewFunction(strGmatch))
		s.RawSetString("gfind", L.NewFunction(strGmatch))
		s.RawSetString("gsub", L.NewFunction(strGsub))
		if f, ok := s.RawGetString("byte").(*lua.LFunction); ok && f.IsG {
			s.RawSetString("byte", L.NewFunction(limitedByte(f.GFunction)))
		}
		if f, ok := s.RawGetString("format").(*lua.LFunction); ok && f.IsG {
			s.RawSetString("format", L.NewFunction(limitedFormat(f.GFunction)))
		}
	}
	if t, ok := L.GetGlobal("table").(*lua.LTable); ok {
		t.RawSetString("concat", L.NewFunction(tableConcat))
		for _, name := range []string{"insert", "remove", "getn"} {
			if f, ok := t.RawGetString(name).(*lua.LFunction); ok && f.IsG {
				t.RawSetString(name, L.NewFunction(limitedLen(name, f.GFunction, name == "insert")))
			}
		}
		if f, ok := t.RawGetString("sort").(*lua.LFunction); ok && f.IsG {
			t.RawSetString("sort", L.NewFunction(limitedSort(f.GFunction)))
		}
	}
}

// maxArrayLen bounds the array part of every table (gopher-lua's
// MaxArrayIndex, set for the whole process when luabridge is loaded). With
// gopher-lua's own bound of 2^26, `t[2^26 - 1] = true` on an empty table
// filled the 67 million slots below it with nil in one instruction: 1 GiB
// and seconds that neither the timeout nor the memory guard could
// interrupt (40 of them took a server to 3.8 GB). Integer keys past the
// bound go to the hash part, as in Lua 5.1, which grows one key per
// instruction. What it costs: gopher-lua's length of a table counts the
// array part only, so a sequence may not be longer than maxArrayLen
// (1,048,576 elements): `#t`, table.insert, table.remove, table.getn,
// table.concat and table.sort of a longer one are errors (seqLen), never
// a wrong length, and it does not encode as a JSON array; ipairs reads on
// past it.
const maxArrayLen = 1 << 20

func init() { lua.MaxArrayIndex = maxArrayLen + 1 }

// seqLen is the length of t as gopher-lua counts it, or an error naming
// what (the operator or function) when t's sequence goes on past
// maxArrayLen, in the hash part, where that count does not look.
func seqLen(L *lua.LState, t *lua.LTable, what string) int {
	n := t.Len()
	if n == maxArrayLen && t.RawGet(lua.LNumber(n+1)) != lua.LNil {
		L.RaiseError("%s: the table is longer than %d elements, the most a sequence may have", what, maxArrayLen)
	}
	return n
}

// ipairs is ipairs whose iterator goes on past maxArrayLen, into the hash
// part, where gopher-lua's (RawGetInt) does not look.
func ipairs(L *lua.LState) int {
	t := L.CheckTable(1)
	L.Push(L.Get(lua.UpvalueIndex(1)))
	L.Push(t)
	L.Push(lua.LNumber(0))
	return 3
}

func ipairsNext(L *lua.LState) int {
	t := L.CheckTable(1)
	i := L.CheckInt(2) + 1
	v := t.RawGetInt(i)
	if v == lua.LNil && i > maxArrayLen {
		v = t.RawGet(lua.LNumber(i))
	}
	if v == lua.LNil {
		return 0
	}
	L.Push(lua.LNumber(i))
	L.Push(v)
	return 2
}

// limitedLen wraps table function name (which takes its table first) with
// seqLen's check; with grow, a call that would make the sequence longer
// than maxArrayLen is an error as well (table.insert).
func limitedLen(name string, f lua.LGFunction, grow bool) lua.LGFunction {
	return func(L *lua.LState) int {
		if n := seqLen(L, L.CheckTable(1), "table."+name); grow && n >= maxArrayLen {
			L.RaiseError("table.%s: the table has %d elements, the most a sequence may have", name, n)
		}
		return f(L)
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
	n := seqLen(L, tbl, "table.concat")
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
		if L.GetTop() >= 2 && L.Get(2) != lua.LNil || seqLen(L, t, "table.sort") <= sortNativeMax {
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

// maxByteResults bounds how many values one string.byte returns: each is
// pushed on the stack by one Go call the timeout cannot interrupt
// (`string.byte(s, 1, -1)` of 2 MiB took 1.3 s, ten times that under
// -race, before it failed on the stack's bound). Lua 5.1 itself refuses a
// slice of more than about 8,000 ("string slice too long").
const maxByteResults = 1 << 16

// limitedByte is string.byte refusing a slice of more than maxByteResults
// bytes before it pushes any. The slice is counted as gopher-lua's
// string.byte takes it (with the string alone, it returns every byte).
func limitedByte(byteFn lua.LGFunction) lua.LGFunction {
	return func(L *lua.LState) int {
		str := L.CheckString(1)
		if L.GetTop() != 2 {
			n := len(str)
			start, end := L.OptInt(2, 1)-1, L.OptInt(3, -1)
			if start < 0 {
				start += n + 1
			}
			if end < 0 {
				end += n + 1
			}
			start, end = max(start, 0), min(end, n)
			if end-start > maxByteResults {
				L.RaiseError("string.byte: string slice too long (%d bytes; at most %d at once)", end-start, maxByteResults)
			}
		}
		return byteFn(L)
	}
}
