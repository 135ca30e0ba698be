package luabridge

import lua "github.com/yuin/gopher-lua"

// Marks holds one Lua state's sentinels: es.null, the array metatable and the
// metatable of es.fail values. They are created once per state (never shared
// between states: gopher-lua states are not goroutine-safe).
type Marks struct {
	// Null is es.null, the Lua stand-in for JSON null. Its metatable has
	// __tostring returning "null" and __metatable = false, so scripts can
	// neither read nor replace it.
	Null *lua.LUserData
	// Array is the metatable marking a table as a JSON array (so that an
	// empty one encodes as [] rather than {}). It is deliberately a plain,
	// unprotected table (field __name = "es.array") so that es.array(t) can
	// setmetatable(t, it).
	Array *lua.LTable
	// Fail is the metatable of es.fail(body) values, which are tables
	// {body = <value>}; field __name = "es.fail".
	Fail *lua.LTable
}

// NewMarks creates the sentinels for L. Call it once per state and keep the
// result next to the state.
func NewMarks(L *lua.LState) *Marks {
	nullMeta := L.CreateTable(0, 3)
	nullMeta.RawSetString("__name", lua.LString("es.null"))
	nullMeta.RawSetString("__tostring", L.NewFunction(func(L *lua.LState) int {
		L.Push(lua.LString("null"))
		return 1
	}))
	nullMeta.RawSetString("__metatable", lua.LFalse)
	null := L.NewUserData()
	null.Metatable = nullMeta

	array := L.CreateTable(0, 1)
	array.RawSetString("__name", lua.LString("es.array"))

	fail := L.CreateTable(0, 1)
	fail.RawSetString("__name", lua.LString("es.fail"))

	return &Marks{Null: null, Array: array, Fail: fail}
}

// IsArray reports whether t carries the array metatable.
func (m *Marks) IsArray(t *lua.LTable) bool {
	mt, ok := t.Metatable.(*lua.LTable)
	return ok && mt == m.Array
}

// FailBody returns the body of an es.fail value and true, or nil,false when v
// is not one.
func (m *Marks) FailBody(v lua.LValue) (lua.LValue, bool) {
	t, ok := v.(*lua.LTable)
	if !ok || !m.isFail(t) {
		return nil, false
	}
	return t.RawGetString("body"), true
}

// NewFail builds an es.fail(body) value.
func (m *Marks) NewFail(L *lua.LState, body lua.LValue) lua.LValue {
	t := L.CreateTable(0, 1)
	t.RawSetString("body", body)
	t.Metatable = m.Fail
	return t
}

func (m *Marks) isFail(t *lua.LTable) bool {
	mt, ok := t.Metatable.(*lua.LTable)
	return ok && mt == m.Fail
}
