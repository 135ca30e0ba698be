package luabridge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	lua "github.com/yuin/gopher-lua"

	"github.com/electric-socket/electric-socket/broker"
)

// Auth is the result of initial_authorisation.
type Auth struct {
	ChannelData []byte // the new channel data (JSON) on success
	Failed      bool   // es.fail(body) was returned
	Body        []byte // the failure body with its id, when Failed
}

// Identity is what channel_identifier and broker_key returned; empty
// strings with Has* false mean nil.
type Identity struct {
	ID, Key       string
	HasID, HasKey bool
}

// call borrows a state, pushes f and its arguments (built by args), runs it
// under the timeout and hands its single result to result. Whatever goes
// wrong comes back as a *ScriptError naming f and the script's file:line,
// or as the *DataError of an argument that could not be converted.
func (s *Script) call(ctx context.Context, f Function, args func(st *state) ([]lua.LValue, error),
	result func(st *state, ret lua.LValue) error) (err error) {
	st, err := s.pool.get(ctx)
	if err != nil {
		var se *ScriptError
		if errors.As(err, &se) {
			return err
		}
		return fmt.Errorf("%s: waiting for a Lua state: %w", f, err)
	}
	discard := false
	defer func() {
		if r := recover(); r != nil {
			discard = true
			err = &ScriptError{Kind: KindRuntime, Func: f.String(), Where: s.where(f), Msg: fmt.Sprintf("the host panicked: %v", r)}
		}
		s.pool.put(st, discard)
	}()

	argv, err := args(st)
	if err != nil {
		return err
	}
	L := st.L
	fn := st.fns[f]
	callCtx := guardCall(st, ctx, s.opts.Timeout) // the timeout and the memory guard (limits_memory.go)
	defer guardEnd(st)
	L.SetContext(callCtx)
	L.Push(fn)
	for _, a := range argv {
		L.Push(a)
	}
	cerr := L.PCall(len(argv), 1, nil)
	L.RemoveContext()
	clear(st.argv[:]) // they are garbage once the call returned
	if ok, view := st.views.check(); !ok && cerr == nil {
		return &ScriptError{Kind: KindRuntime, Func: f.String(), Where: s.where(f),
			Msg: view + " was written to: the channel view is read-only"}
	}
	if cerr != nil {
		if callCtx.Err() != nil && ctx.Err() == nil {
			discard = true // interrupted mid-instruction: do not trust its state
			return s.interrupted(f, callCtx)
		}
		var ae *lua.ApiError
		if errors.As(cerr, &ae) && ae.Type == lua.ApiErrorPanic {
			discard = true
		}
		if ctx.Err() != nil {
			// The caller gave up (cancelled, or its own deadline): the call was
			// interrupted mid-instruction just like a timeout.
			discard = true
			return fmt.Errorf("%s: %w", f, ctx.Err())
		}
		where, msg := s.splitLuaError(cerr)
		if where == "" {
			where = s.where(f)
		}
		return &ScriptError{Kind: KindRuntime, Func: f.String(), Where: where, Msg: msg}
	}
	ret := L.Get(-1)
	L.Pop(1)
	if err := result(st, ret); err != nil {
		var fe *fieldError
		var de *DataError
		switch {
		case errors.As(err, &fe):
			return &ScriptError{Kind: KindMalformed, Func: f.String(), Where: s.resultWhere(f, fe.key()), Msg: "malformed result: " + fe.Error()}
		case errors.As(err, &de):
			return &ScriptError{Kind: KindMalformed, Func: f.String(), Where: s.resultWhere(f, topKey(de.Path)), Msg: "malformed result: " + de.Error()}
		}
		return err
	}
	return nil
}

// splitLuaError separates the "file:line:" gopher-lua puts before an error
// raised in the script from the message.
func (s *Script) splitLuaError(err error) (where, msg string) {
	var ae *lua.ApiError
	text := err.Error()
	if errors.As(err, &ae) && ae.Object != nil {
		text = ae.Object.String()
	}
	prefix := s.Name + ":"
	if strings.HasPrefix(text, prefix) {
		rest := text[len(prefix):]
		if i := strings.Index(rest, ":"); i > 0 && isDigits(rest[:i]) {
			return s.Name + ":" + rest[:i], strings.TrimSpace(rest[i+1:])
		}
	}
	return "", text
}

func isDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

func (st *state) channel(ch *Channel) lua.LValue {
	if ud := st.chanUD; ud != nil && ud.Value == ch && ud.Metatable == st.channelMT {
		return ud // the same connection again: its view holds nothing of the last call (views are per call)
	}
	ud := st.L.NewUserData()
	ud.Value = ch
	ud.Metatable = st.channelMT
	st.chanUD = ud
	return ud
}

// decode converts JSON arguments; nil or empty data becomes an empty table.
func (st *state) decode(data []byte, maxDepth int) (lua.LValue, error) {
	if len(data) == 0 {
		// Not NewTable, which preallocates 32 array slots and a 32-entry
		// map (3 KB) for a table that usually stays empty; a table made
		// this way grows like any other when the script writes to it.
		return st.L.CreateTable(0, 0), nil
	}
	return DecodeJSON(st.L, st.marks, data, maxDepth)
}

// InitialAuthorisation runs initial_authorisation(channel, message).
// message is a JSON object, already checked by CheckMessage.
func (s *Script) InitialAuthorisation(ctx context.Context, ch *Channel, message []byte) (Auth, error) {
	var out Auth
	err := s.call(ctx, InitialAuthorisation, func(st *state) ([]lua.LValue, error) {
		msg, err := st.decode(message, s.opts.MaxDepth)
		return []lua.LValue{st.channel(ch), msg}, err
	}, func(st *state, ret lua.LValue) error {
		if body, ok := st.marks.FailBody(ret); ok {
			enc, err := encodeFailure(st, body, "auth", "es.fail body", s.opts.MaxDepth)
			out = Auth{Failed: true, Body: enc}
			return err
		}
		t, ok := ret.(*lua.LTable)
		if !ok {
			return &fieldError{msg: "must return the channel data table or es.fail(body), got " + ret.Type().String()}
		}
		enc, err := st.encode(t, "channel_data", s.opts.MaxDepth)
		out.ChannelData = enc
		return err
	})
	return out, err
}

// Identify runs channel_identifier and broker_key (defaults: nil).
func (s *Script) Identify(ctx context.Context, ch *Channel, channelData []byte) (Identity, error) {
	var id Identity
	for _, f := range []Function{ChannelIdentifier, BrokerKey} {
		if !s.defined[f] {
			continue
		}
		err := s.call(ctx, f, func(st *state) ([]lua.LValue, error) {
			cd, err := st.decode(channelData, s.opts.MaxDepth)
			return []lua.LValue{st.channel(ch), cd}, err
		}, func(st *state, ret lua.LValue) error {
			var v string
			switch r := ret.(type) {
			case *lua.LNilType:
				return nil
			case lua.LString:
				v = string(r)
			default:
				return &fieldError{msg: "must return a string or nil, got " + ret.Type().String()}
			}
			if f == ChannelIdentifier {
				id.ID, id.HasID = v, true
			} else {
				id.Key, id.HasKey = v, true
			}
			return nil
		})
		if err != nil {
			return Identity{}, err
		}
	}
	return id, nil
}

// BrokerAuthorisation runs broker_authorisation(channel, channel_data,
// broker_data); its default is an empty action.
func (s *Script) BrokerAuthorisation(ctx context.Context, ch *Channel, channelData, brokerData []byte) (*Action, error) {
	if !s.defined[BrokerAuthorisation] {
		return &Action{}, nil
	}
	return s.action(ctx, BrokerAuthorisation, "auth", ch, nil, channelData, brokerData)
}

// ProcessWebsocketMessage runs process_websocket_message(channel, message,
// channel_data, broker_data).
func (s *Script) ProcessWebsocketMessage(ctx context.Context, ch *Channel, message, channelData, brokerData []byte) (*Action, error) {
	return s.action(ctx, ProcessWebsocketMessage, "comm", ch, func(st *state) (lua.LValue, error) {
		return st.decode(message, s.opts.MaxDepth)
	}, channelData, brokerData)
}

// Defines reports whether the script defines f (else its default runs).
func (s *Script) Defines(f Function) bool { return s.defined[f] }

// ProcessBrokerMessage runs process_broker_message(channel, envelope,
// channel_data, broker_data). Its default sends the envelope's message to
// the client.
func (s *Script) ProcessBrokerMessage(ctx context.Context, ch *Channel, env broker.Envelope, channelData, brokerData []byte) (*Action, error) {
	if !s.defined[ProcessBrokerMessage] {
		return &Action{Response: append([]byte(nil), env.Message...)}, nil
	}
	return s.action(ctx, ProcessBrokerMessage, "comm", ch, func(st *state) (lua.LValue, error) {
		msg, err := st.decode(env.Message, s.opts.MaxDepth)
		if err != nil {
			return nil, err
		}
		t := st.L.CreateTable(0, 4)
		t.RawSetString("target", lua.LString(env.Target))
		t.RawSetString("message", msg)
		t.RawSetString("broker_key", lua.LString(env.BrokerKey))
		t.RawSetString("source", lua.LString(env.Source))
		return t, nil
	}, channelData, brokerData)
}

// OnClose runs on_close(channel, channel_data, broker_data); its default
// is an empty action.
func (s *Script) OnClose(ctx context.Context, ch *Channel, channelData, brokerData []byte) (*Action, error) {
	if !s.defined[OnClose] {
		return &Action{}, nil
	}
	return s.action(ctx, OnClose, "comm", ch, nil, channelData, brokerData)
}

// action runs f(channel, [message,] channel_data, broker_data) and checks
// the action table it returns.
func (s *Script) action(ctx context.Context, f Function, namespace string, ch *Channel,
	message func(*state) (lua.LValue, error), channelData, brokerData []byte) (*Action, error) {
	var out *Action
	err := s.call(ctx, f, func(st *state) ([]lua.LValue, error) {
		args := append(st.argv[:0], st.channel(ch)) // no allocation: call clears st.argv after the call
		if message != nil {
			m, err := message(st)
			if err != nil {
				return nil, err
			}
			args = append(args, m)
		}
		cd, err := st.decode(channelData, s.opts.MaxDepth)
		if err != nil {
			return nil, err
		}
		bd, err := st.decode(brokerData, s.opts.MaxDepth)
		if err != nil {
			// Written by another program (SPEC section 6): not the client's
			// fault, and not a *DataError, which the host answers with 1007.
			return nil, fmt.Errorf("%w: %v", ErrBrokerData, err)
		}
		return append(args, cd, bd), nil
	}, func(st *state, ret lua.LValue) error {
		a, err := toAction(st, f, ret, namespace, s.opts.MaxDepth)
		out = a
		return err
	})
	return out, err
}

// maxScratch bounds the encoding buffer a state keeps between calls.
const maxScratch = 64 << 10

// encode is AppendJSON into the state's scratch buffer, copied out at its
// exact size: one allocation per value instead of one per doubling of a
// buffer grown from nothing.
func (st *state) encode(v lua.LValue, root string, maxDepth int) ([]byte, error) {
	enc, err := AppendJSON(st.scratch[:0], st.marks, v, root, maxDepth)
	if cap(enc) <= maxScratch {
		st.scratch = enc[:0]
	}
	if err != nil {
		return nil, err
	}
	return bytes.Clone(enc), nil
}
