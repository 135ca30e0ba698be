package luabridge

import (
	lua "github.com/yuin/gopher-lua"
)

// Channel is what a script knows of its connection (SPEC section 2). It is
// immutable once the connection is open and may be shared between goroutines.
type Channel struct {
	ID          string            // unique across instances and restarts
	Integration string            // the integration's name
	Path        string            // the URL path the client opened
	RemoteAddr  string            // the client's address, host:port
	Query       map[string]string // the URL's query parameters (first value of each)
}

// channelMeta builds the metatable of channel views in one state: fields are
// read through __index and every write is an error.
func channelMeta(L *lua.LState) *lua.LTable {
	mt := L.NewTable()
	mt.RawSetString("__index", L.NewFunction(func(L *lua.LState) int {
		ch := L.CheckUserData(1).Value.(*Channel)
		switch L.CheckString(2) {
		case "id":
			L.Push(lua.LString(ch.ID))
		case "integration":
			L.Push(lua.LString(ch.Integration))
		case "path":
			L.Push(lua.LString(ch.Path))
		case "remote_addr":
			L.Push(lua.LString(ch.RemoteAddr))
		case "query":
			// A fresh copy each time: writing to it changes nothing.
			q := L.CreateTable(0, len(ch.Query))
			for k, v := range ch.Query {
				q.RawSetString(k, lua.LString(v))
			}
			L.Push(q)
		default:
			L.Push(lua.LNil)
		}
		return 1
	}))
	mt.RawSetString("__newindex", L.NewFunction(func(L *lua.LState) int {
		L.RaiseError("channel is read-only: cannot set %q", L.ToStringMeta(L.Get(2)).String())
		return 0
	}))
	mt.RawSetString("__tostring", L.NewFunction(func(L *lua.LState) int {
		L.Push(lua.LString("channel " + L.CheckUserData(1).Value.(*Channel).ID))
		return 1
	}))
	mt.RawSetString("__metatable", lua.LFalse)
	return mt
}
