package luabridge

import (
	"fmt"
	"log/slog"
	"strings"

	lua "github.com/yuin/gopher-lua"
)

// Global names removed from every state: impure (clock, files, randomness,
// the garbage collector) or able to load code from outside the script.
var forbiddenGlobals = []string{
	"os", "io", "debug", "load", "loadstring", "dofile", "loadfile",
	"collectgarbage", "module", "package", "getfenv", "setfenv", "_printregs",
	"newproxy", "channel",
}

// maxStringBytes caps the strings the Go built-ins build (string.rep,
// string.format, string.gsub, table.concat): gopher-lua's timeout cannot
// interrupt a built-in, so an unbounded one could stall a call or exhaust
// memory (limits.go).
const maxStringBytes = 16 << 20

// newSandbox opens the pure standard libraries into a fresh state and
// removes what SPEC section 3 forbids. require serves only the modules in
// preload (by name), nothing from disk. print writes to log (nil: slog's
// default logger).
func newSandbox(log *slog.Logger, preload map[string]lua.LGFunction) *lua.LState {
	L := lua.NewState(lua.Options{
		SkipOpenLibs:    true,
		CallStackSize:   200,     // deep recursion becomes "stack overflow", not a crash
		RegistrySize:    1024,    // initial value stack
		RegistryMaxSize: 1 << 20, // ... and its bound
		// gopher-lua grows the value stack by this many slots at a time:
		// with its default of 32, pushing n values (unpack, string.byte,
		// select) copied the stack n/32 times, minutes for a million.
		RegistryGrowStep: 1 << 14,
	})
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.StringLibName, lua.OpenString},
		{lua.MathLibName, lua.OpenMath},
		{lua.CoroutineLibName, lua.OpenCoroutine},
	} {
		L.Push(L.NewFunction(lib.open))
		L.Push(lua.LString(lib.name))
		L.Call(1, 0)
	}
	for _, name := range forbiddenGlobals {
		L.SetGlobal(name, lua.LNil)
	}
	if m, ok := L.GetGlobal("math").(*lua.LTable); ok {
		m.RawSetString("random", lua.LNil)
		m.RawSetString("randomseed", lua.LNil)
	}
	if s, ok := L.GetGlobal("string").(*lua.LTable); ok {
		s.RawSetString("dump", lua.LNil)
	}
	installLimits(L)
	if co, ok := L.GetGlobal("coroutine").(*lua.LTable); ok {
		limitCoroutines(L, co)
	}
	L.SetGlobal("print", L.NewFunction(func(L *lua.LState) int {
		parts := make([]string, L.GetTop())
		for i := range parts {
			parts[i] = L.ToStringMeta(L.Get(i + 1)).String()
		}
		lg := log
		if lg == nil {
			lg = slog.Default()
		}
		// L.Where(1) is the caller's "file:line:".
		lg.Info("lua print", "at", strings.TrimSuffix(L.Where(1), ":"), "text", strings.Join(parts, "\t"))
		return 0
	}))
	loaded := L.NewTable()
	L.SetGlobal("require", L.NewFunction(func(L *lua.LState) int {
		name := L.CheckString(1)
		if v := loaded.RawGetString(name); v != lua.LNil {
			L.Push(v)
			return 1
		}
		open, ok := preload[name]
		if !ok {
			L.RaiseError("module %q not found: only the host's modules (es) can be required", name)
		}
		L.Push(L.NewFunction(open))
		L.Call(0, 1)
		v := L.Get(-1)
		loaded.RawSetString(name, v)
		return 1
	}))
	return L
}

// maxCoroutineDepth bounds how deeply coroutines may resume one another.
// Each coroutine is a thread with a call stack of its own, so CallStackSize
// does not bound their nesting: without a limit a script nests them until
// memory runs out (some 40 KB each), and an error or the timeout unwinding
// through n nested threads takes time quadratic in n, far past the call's
// budget (20,000 levels took 20 s).
const maxCoroutineDepth = 16

// limitCoroutines replaces coroutine.resume and coroutine.wrap with versions
// that refuse to resume a coroutine more than maxCoroutineDepth deep.
func limitCoroutines(L *lua.LState, co *lua.LTable) {
	resume, ok1 := co.RawGetString("resume").(*lua.LFunction)
	wrap, ok2 := co.RawGetString("wrap").(*lua.LFunction)
	if !ok1 || !ok2 || !resume.IsG || !wrap.IsG {
		return
	}
	co.RawSetString("resume", L.NewFunction(func(L *lua.LState) int {
		checkCoroutineDepth(L)
		return resume.GFunction(L)
	}))
	co.RawSetString("wrap", L.NewFunction(func(L *lua.LState) int {
		wrap.GFunction(L) // pushes the function that resumes the new coroutine
		inner := L.Get(-1)
		L.Pop(1)
		L.Push(L.NewFunction(func(L *lua.LState) int {
			checkCoroutineDepth(L)
			L.Insert(inner, 1)
			L.Call(L.GetTop()-1, lua.MultRet)
			return L.GetTop()
		}))
		return 1
	}))
}

// checkCoroutineDepth raises an error when the running thread L is already
// maxCoroutineDepth coroutines deep. The walk is bounded: gopher-lua lets a
// coroutine resume one that is waiting on it, which makes the chain a cycle.
func checkCoroutineDepth(L *lua.LState) {
	depth := 0
	for p := L.Parent; p != nil && depth < maxCoroutineDepth; p = p.Parent {
		depth++
	}
	if depth >= maxCoroutineDepth {
		L.RaiseError("coroutines nested deeper than %d", maxCoroutineDepth)
	}
}

// lockGlobals makes assigning a new global an error from now on: the
// script's top level may define globals, its integration functions may not
// (they are pure, and a state is reused across connections).
func lockGlobals(L *lua.LState) {
	mt := L.NewTable()
	mt.RawSetString("__newindex", L.NewFunction(func(L *lua.LState) int {
		L.RaiseError("assignment to global %s: integration functions must not keep state in globals (use local)", fmt.Sprint(L.Get(2)))
		return 0
	}))
	// Protected, or setmetatable(_G, nil) would lift the lock.
	mt.RawSetString("__metatable", lua.LFalse)
	L.SetMetatable(L.Get(lua.GlobalsIndex), mt)
}
