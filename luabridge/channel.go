package luabridge

import (
	"encoding/json"
	"net/url"
	"reflect"
	"sort"

	lua "github.com/yuin/gopher-lua"
)

// Channel is what a script knows of its connection (SPEC section 2). It is
// immutable once the connection is open and may be shared between goroutines.
type Channel struct {
	ID          string            // unique across instances and restarts
	Integration string            // the integration's name
	Path        string            // the URL path the client opened
	RemoteAddr  string            // the client's address, host:port
	Query       map[string]string // the URL's query parameters: the first value of each
	// QueryAll holds the parameters given more than once, with every value
	// in the order of the URL; nil when there are none (most connections).
	// Scripts see every parameter's values in channel.query_all.
	QueryAll map[string][]string
	// Claims are the verified token's claims as a JSON object (the host's
	// [integration.auth]); nil without a token. Scripts read them as
	// channel.claims, a table made afresh for each call (nil without).
	Claims []byte
}

// SplitQuery gives a URL's parameters as Channel wants them: the first
// value of each, and all the values of those given more than once (nil
// maps when there are none).
func SplitQuery(v url.Values) (first map[string]string, repeated map[string][]string) {
	for k, vals := range v {
		if len(vals) == 0 {
			continue
		}
		if first == nil {
			first = make(map[string]string, len(v))
		}
		first[k] = vals[0]
		if len(vals) > 1 {
			if repeated == nil {
				repeated = make(map[string][]string)
			}
			repeated[k] = vals
		}
	}
	return first, repeated
}

// values is every value of parameter k.
func (ch *Channel) values(k string) []string {
	if all, ok := ch.QueryAll[k]; ok {
		return all
	}
	if v, ok := ch.Query[k]; ok {
		return []string{v}
	}
	return nil
}

// maxClaimsDepth bounds the nesting of a token's claims as Lua tables (a
// token is at most a few KiB, verified before it gets here).
const maxClaimsDepth = 32

// channelViews are the tables a state has handed out for channel.query
// and channel.query_all during the current call: one of each per call,
// checked when the call ends (check) and forgotten.
type channelViews struct {
	ch       *Channel
	query    *lua.LTable
	queryAll *lua.LTable
	claims   *lua.LTable // channel.claims: a new decoding each call, so a change never outlives it
	marks    *Marks
	lists    map[string]*lua.LTable // the arrays in queryAll
	readOnly *lua.LTable            // their metatable
}

// channelMeta builds the metatable of channel views in st: fields are read
// through __index and every write is an error. channel.query and
// channel.query_all are plain tables (SPEC section 2), made once per call,
// whose metatable refuses new keys at once (and cannot be changed); a
// change of an existing key, which no metamethod sees, fails the call when
// it returns (channelViews.check).
func (st *state) channelMeta() *lua.LTable {
	L := st.L
	v := &st.views
	v.readOnly = L.NewTable()
	v.readOnly.RawSetString("__newindex", L.NewFunction(func(L *lua.LState) int {
		name := "channel.query"
		switch L.CheckTable(1) {
		case v.query:
		case v.claims:
			name = "channel.claims"
		default:
			name = "channel.query_all"
		}
		L.RaiseError("%s is read-only: cannot set %s", name, L.ToStringMeta(L.Get(2)).String())
		return 0
	}))
	v.readOnly.RawSetString("__metatable", lua.LFalse)
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
			v.use(L, ch)
			if v.query == nil {
				v.query = L.CreateTable(0, len(ch.Query))
				for k, s := range ch.Query {
					v.query.RawSetString(k, lua.LString(s))
				}
				v.query.Metatable = v.readOnly
			}
			L.Push(v.query)
		case "claims":
			v.use(L, ch)
			if ch.Claims == nil {
				L.Push(lua.LNil)
				break
			}
			if v.claims == nil {
				c, err := DecodeJSON(L, st.marks, ch.Claims, maxClaimsDepth)
				t, ok := c.(*lua.LTable)
				if err != nil || !ok {
					L.RaiseError("channel.claims: the claims are not a JSON object")
				}
				t.Metatable = v.readOnly
				v.claims, v.marks = t, st.marks
			}
			L.Push(v.claims)
		case "query_all":
			v.use(L, ch)
			if v.queryAll == nil {
				v.queryAll = L.CreateTable(0, len(ch.Query))
				v.lists = make(map[string]*lua.LTable, len(ch.Query))
				for k := range ch.Query {
					vals := ch.values(k)
					list := L.CreateTable(len(vals), 0)
					for _, s := range vals {
						list.Append(lua.LString(s))
					}
					list.Metatable = v.readOnly
					v.lists[k] = list
					v.queryAll.RawSetString(k, list)
				}
				v.queryAll.Metatable = v.readOnly
			}
			L.Push(v.queryAll)
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

// use makes the views those of ch (a call sees one channel; a script that
// kept another call's channel view gets tables of its own).
func (v *channelViews) use(L *lua.LState, ch *Channel) {
	if v.ch != ch {
		if v.ch != nil {
			L.RaiseError("a channel view kept from another call cannot be read")
		}
		v.ch = ch
	}
}

// check reports whether the views handed out in this call are as they
// were made (else the name of one that is not), and forgets them.
func (v *channelViews) check() (ok bool, name string) {
	ch, query, queryAll, lists, claims := v.ch, v.query, v.queryAll, v.lists, v.claims
	v.ch, v.query, v.queryAll, v.lists, v.claims = nil, nil, nil, nil, nil
	if claims != nil && !sameJSON(v.marks, claims, ch.Claims) {
		return false, "channel.claims"
	}
	if query != nil && !sameStrings(query, ch.Query) {
		return false, "channel.query"
	}
	if queryAll == nil {
		return true, ""
	}
	keys := make([]string, 0, len(lists))
	for k := range lists {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	n := 0
	for k, val := queryAll.Next(lua.LNil); k != lua.LNil; k, val = queryAll.Next(k) {
		n++
		s, ok := k.(lua.LString)
		if !ok || val != lists[string(s)] {
			return false, "channel.query_all"
		}
	}
	if n != len(lists) {
		return false, "channel.query_all"
	}
	for _, k := range keys {
		list, vals := lists[k], ch.values(k)
		if list.MaxN() != len(vals) {
			return false, "channel.query_all." + k
		}
		for i, s := range vals {
			if list.RawGetInt(i+1) != lua.LString(s) {
				return false, "channel.query_all." + k
			}
		}
		if k2, _ := list.Next(lua.LNumber(len(vals))); k2 != lua.LNil || len(vals) == 0 {
			return false, "channel.query_all." + k
		}
	}
	return true, ""
}

// sameJSON reports whether the table t still encodes the JSON object want
// (a change of an existing claim, which no metamethod sees).
func sameJSON(m *Marks, t *lua.LTable, want []byte) bool {
	mt := t.Metatable
	t.Metatable = lua.LNil
	got, err := AppendJSON(nil, m, t, "channel.claims", maxClaimsDepth)
	t.Metatable = mt
	if err != nil {
		return false
	}
	var a, b any
	if json.Unmarshal(got, &a) != nil || json.Unmarshal(want, &b) != nil {
		return false
	}
	return reflect.DeepEqual(a, b)
}

// sameStrings reports whether t holds exactly the strings of m.
func sameStrings(t *lua.LTable, m map[string]string) bool {
	n := 0
	for k, v := t.Next(lua.LNil); k != lua.LNil; k, v = t.Next(k) {
		n++
		s, ok := k.(lua.LString)
		if !ok {
			return false
		}
		want, ok := m[string(s)]
		if !ok || v != lua.LString(want) {
			return false
		}
	}
	return n == len(m)
}
