package luabridge

import (
	lua "github.com/yuin/gopher-lua"
)

// The strings es.ABORT and es.DELETE stand for; scripts may use either.
const (
	abortValue  = "swap/abort"
	deleteValue = "swap/delete"
)

// esLoader returns the loader of the `es` module (SPEC section 3) for one
// state, bound to that state's marks. secrets are the named values of the
// config's [secrets] table, read by es.secret(name).
func esLoader(m *Marks, maxDepth int, secrets map[string]string) lua.LGFunction {
	return func(L *lua.LState) int {
		mod := L.NewTable()
		setCryptoFuncs(L, mod)
		mod.RawSetString("secret", L.NewFunction(func(L *lua.LState) int {
			name := L.CheckString(1)
			v, ok := secrets[name]
			if !ok {
				L.RaiseError("es.secret: no secret named %q (the config's [secrets] table names them)", name)
			}
			L.Push(lua.LString(v))
			return 1
		}))
		mod.RawSetString("ABORT", lua.LString(abortValue))
		mod.RawSetString("DELETE", lua.LString(deleteValue))
		mod.RawSetString("null", m.Null)
		mod.RawSetString("fail", L.NewFunction(func(L *lua.LState) int {
			body := L.Get(1)
			switch body.(type) {
			case *lua.LTable:
			case *lua.LNilType:
				body = L.NewTable()
			default:
				L.ArgError(1, "es.fail expects a table body, got "+body.Type().String())
			}
			L.Push(m.NewFail(L, body))
			return 1
		}))
		mod.RawSetString("array", L.NewFunction(func(L *lua.LState) int {
			t, ok := L.Get(1).(*lua.LTable)
			if !ok {
				if L.Get(1) != lua.LNil {
					L.ArgError(1, "es.array expects a table")
				}
				t = L.NewTable()
			}
			L.SetMetatable(t, m.Array)
			L.Push(t)
			return 1
		}))
		mod.RawSetString("is_array", L.NewFunction(func(L *lua.LState) int {
			t, ok := L.Get(1).(*lua.LTable)
			L.Push(lua.LBool(ok && m.IsArray(t)))
			return 1
		}))
		mod.RawSetString("json_encode", L.NewFunction(func(L *lua.LState) int {
			b, err := AppendJSON(nil, m, L.Get(1), "value", maxDepth)
			if err != nil {
				L.RaiseError("es.json_encode: %s", err.Error())
			}
			L.Push(lua.LString(b))
			return 1
		}))
		mod.RawSetString("json_decode", L.NewFunction(func(L *lua.LState) int {
			v, err := DecodeJSON(L, m, []byte(L.CheckString(1)), maxDepth)
			if err != nil {
				L.RaiseError("es.json_decode: %s", err.Error())
			}
			L.Push(v)
			return 1
		}))
		L.Push(mod)
		return 1
	}
}
