package luabridge

import (
	"fmt"
	"sort"
	"strings"

	lua "github.com/yuin/gopher-lua"

	"github.com/electric-socket/electric-socket/broker"
)

// Action is a checked action table (SPEC section 4), its data already
// encoded as JSON so it outlives the Lua state that produced it.
type Action struct {
	ChannelData    []byte    // nil: unchanged
	BrokerOp       broker.Op // Abort when broker_data is absent
	BrokerData     []byte    // with BrokerOp == broker.Set
	Response       []byte    // nil: nothing to send; for a failure, the body with its id
	ResponseFailed bool      // websocket_response was es.fail(...)
	BrokerMessages []Message
	ShouldClose    bool
	SideEffects    [][]byte
}

// Message is one entry of broker_messages.
type Message struct {
	Target  string
	Message []byte // JSON
}

// actionFields lists the fields of an action table; onCloseFields those
// on_close may return.
var (
	actionFields = map[string]bool{
		"channel_data": true, "broker_data": true, "websocket_response": true, "broker_messages": true,
		"should_close": true, "side_effects": true, "error_namespace": true,
	}
	onCloseFields = map[string]bool{"broker_data": true, "broker_messages": true, "side_effects": true, "channel_data": true}
)

// fieldError is a problem in a returned action; the caller wraps it in a
// ScriptError that names the function and file:line.
type fieldError struct{ field, msg string }

// key is the action field the error is about ("" when none): the first
// segment of field, or the unknown field an "unknown field" error names.
func (e *fieldError) key() string {
	if e.field != "" {
		return topKey(e.field)
	}
	if rest, ok := strings.CutPrefix(e.msg, "unknown field "); ok {
		name, _, _ := strings.Cut(rest, " ")
		return name
	}
	return ""
}

func (e *fieldError) Error() string {
	if e.field == "" {
		return e.msg
	}
	return e.field + ": " + e.msg
}

// toAction checks and encodes the action table v returned by f.
// defaultNamespace is the id of a failure body without error_namespace.
func toAction(st *state, f Function, v lua.LValue, defaultNamespace string, maxDepth int) (*Action, error) {
	a := &Action{}
	if v == lua.LNil {
		return a, nil // no action: nothing changes, nothing is sent
	}
	if _, ok := st.marks.FailBody(v); ok {
		return nil, &fieldError{msg: "returned es.fail(...) instead of an action table; return { websocket_response = es.fail(...) }"}
	}
	t, ok := v.(*lua.LTable)
	if !ok {
		return nil, &fieldError{msg: "must return an action table or nil, got " + v.Type().String()}
	}
	allowed := actionFields
	if f == OnClose {
		allowed = onCloseFields
	}
	var bad []string
	for k, _ := t.Next(lua.LNil); k != lua.LNil; k, _ = t.Next(k) { // Next, not ForEach: no closure to allocate
		ks, ok := k.(lua.LString)
		if !ok {
			bad = append(bad, fmt.Sprintf("a %s key", k.Type()))
		} else if !allowed[string(ks)] {
			if actionFields[string(ks)] {
				bad = append(bad, string(ks)+" (not allowed in on_close: the connection is closing)")
			} else {
				bad = append(bad, string(ks))
			}
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return nil, &fieldError{msg: fmt.Sprintf("unknown field %s in the action table", bad[0])}
	}

	namespace := defaultNamespace
	switch ns := t.RawGetString("error_namespace").(type) {
	case *lua.LNilType:
	case lua.LString:
		namespace = string(ns)
	default:
		return nil, &fieldError{"error_namespace", "must be a string, got " + ns.Type().String()}
	}

	var err error
	switch cd := t.RawGetString("channel_data").(type) {
	case *lua.LNilType:
	case *lua.LTable:
		if _, isFail := st.marks.FailBody(cd); isFail {
			return nil, &fieldError{"channel_data", "must be a table, got es.fail(...)"}
		}
		if a.ChannelData, err = st.encode(cd, "channel_data", maxDepth); err != nil {
			return nil, err
		}
	default:
		return nil, &fieldError{"channel_data", "must be a table, got " + cd.Type().String()}
	}

	switch bd := t.RawGetString("broker_data").(type) {
	case *lua.LNilType:
	case lua.LString:
		switch string(bd) {
		case abortValue:
		case deleteValue:
			a.BrokerOp = broker.Delete
		default:
			return nil, &fieldError{"broker_data", fmt.Sprintf("must be a table, es.ABORT or es.DELETE, got the string %q", string(bd))}
		}
	case *lua.LTable:
		if _, isFail := st.marks.FailBody(bd); isFail {
			return nil, &fieldError{"broker_data", "must be a table, es.ABORT or es.DELETE, got es.fail(...)"}
		}
		if a.BrokerData, err = st.encode(bd, "broker_data", maxDepth); err != nil {
			return nil, err
		}
		a.BrokerOp = broker.Set
	default:
		return nil, &fieldError{"broker_data", "must be a table, es.ABORT or es.DELETE, got " + bd.Type().String()}
	}

	if f != OnClose {
		switch r := t.RawGetString("websocket_response").(type) {
		case *lua.LNilType:
		case *lua.LTable:
			if body, isFail := st.marks.FailBody(r); isFail {
				a.ResponseFailed = true
				if a.Response, err = encodeFailure(st, body, namespace, "websocket_response", maxDepth); err != nil {
					return nil, err
				}
			} else if a.Response, err = st.encode(r, "websocket_response", maxDepth); err != nil {
				return nil, err
			}
		default:
			return nil, &fieldError{"websocket_response", "must be a table or es.fail(...), got " + r.Type().String()}
		}
		switch sc := t.RawGetString("should_close").(type) {
		case *lua.LNilType:
		case lua.LBool:
			a.ShouldClose = bool(sc)
		default:
			return nil, &fieldError{"should_close", "must be a boolean, got " + sc.Type().String()}
		}
	}

	if a.BrokerMessages, err = brokerMessages(st, t.RawGetString("broker_messages"), maxDepth); err != nil {
		return nil, err
	}
	if a.SideEffects, err = sideEffects(st, t.RawGetString("side_effects"), maxDepth); err != nil {
		return nil, err
	}
	return a, nil
}

// sequence returns the elements of an array-like table, or an error naming
// field when v is not one.
func sequence(field string, v lua.LValue) ([]lua.LValue, error) {
	t, ok := v.(*lua.LTable)
	if !ok {
		return nil, &fieldError{field, "must be an array of tables, got " + v.Type().String()}
	}
	n := t.Len()
	count := 0
	mixed := false
	t.ForEach(func(k, _ lua.LValue) {
		count++
		if num, ok := k.(lua.LNumber); !ok || float64(num) != float64(int(num)) || int(num) < 1 || int(num) > n {
			mixed = true
		}
	})
	if mixed || count != n {
		return nil, &fieldError{field, "must be an array (a sequence 1..n) of tables"}
	}
	out := make([]lua.LValue, n)
	for i := range out {
		out[i] = t.RawGetInt(i + 1)
	}
	return out, nil
}

func brokerMessages(st *state, v lua.LValue, maxDepth int) ([]Message, error) {
	if v == lua.LNil {
		return nil, nil
	}
	items, err := sequence("broker_messages", v)
	if err != nil {
		return nil, err
	}
	out := make([]Message, 0, len(items))
	for i, item := range items {
		path := fmt.Sprintf("broker_messages[%d]", i+1)
		m, ok := item.(*lua.LTable)
		if !ok {
			return nil, &fieldError{path, "must be a table { target = string, message = table }, got " + item.Type().String()}
		}
		var bad string
		m.ForEach(func(k, _ lua.LValue) {
			if ks, ok := k.(lua.LString); !ok || (ks != "target" && ks != "message") {
				if bad == "" {
					bad = k.String()
				}
			}
		})
		if bad != "" {
			return nil, &fieldError{path, fmt.Sprintf("unknown field %s (a broker message has target and message)", bad)}
		}
		target, ok := m.RawGetString("target").(lua.LString)
		if !ok {
			return nil, &fieldError{path + ".target", "must be a string, got " + m.RawGetString("target").Type().String()}
		}
		body, ok := m.RawGetString("message").(*lua.LTable)
		if !ok {
			return nil, &fieldError{path + ".message", "must be a table, got " + m.RawGetString("message").Type().String()}
		}
		enc, err := st.encode(body, path+".message", maxDepth)
		if err != nil {
			return nil, err
		}
		out = append(out, Message{Target: string(target), Message: enc})
	}
	return out, nil
}

func sideEffects(st *state, v lua.LValue, maxDepth int) ([][]byte, error) {
	if v == lua.LNil {
		return nil, nil
	}
	items, err := sequence("side_effects", v)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, 0, len(items))
	for i, item := range items {
		path := fmt.Sprintf("side_effects[%d]", i+1)
		if _, ok := item.(*lua.LTable); !ok {
			return nil, &fieldError{path, "must be a table, got " + item.Type().String()}
		}
		enc, err := st.encode(item, path, maxDepth)
		if err != nil {
			return nil, err
		}
		out = append(out, enc)
	}
	return out, nil
}

// encodeFailure encodes a failure body with its id set to namespace.
func encodeFailure(st *state, body lua.LValue, namespace, root string, maxDepth int) ([]byte, error) {
	src, ok := body.(*lua.LTable)
	if !ok {
		return nil, &fieldError{root, "es.fail body must be a table"}
	}
	cp := st.L.CreateTable(0, 4)
	src.ForEach(func(k, v lua.LValue) { cp.RawSet(k, v) })
	cp.RawSetString("id", lua.LString(namespace))
	return st.encode(cp, root, maxDepth)
}
