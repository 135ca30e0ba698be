// Package luabridge runs integration scripts: it compiles each script once,
// keeps a bounded pool of sandboxed Lua states per compiled version, converts
// data between JSON and Lua tables, checks what the functions return, and
// turns every failure into an error that names the function and the
// script's file:line.
//
// luabridge knows nothing of sockets: the host calls a Script's methods.
package luabridge

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"time"

	lua "github.com/yuin/gopher-lua"
)

// Function names one of the seven integration functions (SPEC section 1).
type Function int

const (
	InitialAuthorisation Function = iota
	ChannelIdentifier
	BrokerKey
	BrokerAuthorisation
	ProcessWebsocketMessage
	ProcessBrokerMessage
	OnClose
	numFunctions
)

var functionNames = [numFunctions]string{
	"initial_authorisation", "channel_identifier", "broker_key", "broker_authorisation",
	"process_websocket_message", "process_broker_message", "on_close",
}

// required functions have no default.
var required = [numFunctions]bool{InitialAuthorisation: true, ProcessWebsocketMessage: true}

func (f Function) String() string { return functionNames[f] }

// Options tune how a script runs. Zero values mean the defaults.
type Options struct {
	Timeout  time.Duration // per call; zero means 1s
	PoolSize int           // Lua states kept for the script; zero means 2*GOMAXPROCS
	MaxDepth int           // nesting limit of data crossing to and from Lua; zero means 32
	// Log receives what the script prints (print), with the caller's
	// file:line; nil means slog's default logger. The host gives the
	// configured logger, with the integration's name.
	Log *slog.Logger
	// Secrets are the values es.secret(name) returns, by name (the
	// config's [secrets], read from the environment); nil: none.
	Secrets map[string]string
}

func (o Options) withDefaults() Options {
	if o.Timeout <= 0 {
		o.Timeout = time.Second
	}
	if o.PoolSize <= 0 {
		o.PoolSize = 2 * runtime.GOMAXPROCS(0)
	}
	if o.MaxDepth <= 0 {
		o.MaxDepth = 32
	}
	return o
}

// Script is one compiled version of an integration script. It is immutable
// after Load and safe for concurrent use: each call borrows a state of its
// own from the pool.
type Script struct {
	Name string // the path errors name, as the configuration gave it
	Hash string // the first 12 hex digits of the source's SHA-256: which version this is

	opts    Options
	proto   *lua.FunctionProto
	defined [numFunctions]bool
	lines   [numFunctions]int // the line each defined function starts on
	protos  [numFunctions]*lua.FunctionProto
	pool    *pool
}

// LoadFile reads and loads the script at path; name is how errors call it.
func LoadFile(path, name string, opts Options) (*Script, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, &ScriptError{Kind: KindLoad, Where: name, Msg: "cannot read script: " + unwrapPathError(err)}
	}
	return Load(name, src, opts)
}

func unwrapPathError(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// Load compiles src once and checks it: its top level runs, returns a table,
// and that table has the required functions (and only functions under the
// seven names). The state used for the check becomes the pool's first.
func Load(name string, src []byte, opts Options) (*Script, error) {
	opts = opts.withDefaults()
	proto, err := Compile(name, src)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(src)
	s := &Script{Name: name, Hash: hex.EncodeToString(sum[:6]), opts: opts, proto: proto}
	s.pool = newPool(opts.PoolSize, s.newState)
	st, err := s.newState()
	if err != nil {
		return nil, err
	}
	for f := Function(0); f < numFunctions; f++ {
		if st.fns[f] != nil {
			s.defined[f] = true
			s.lines[f] = st.fns[f].Proto.LineDefined
			s.protos[f] = st.fns[f].Proto
		}
	}
	s.pool.seed(st)
	return s, nil
}

// Defined reports whether the script defines f (else the host's default runs).
func (s *Script) Defined(f Function) bool { return s.defined[f] }

// where is "file:line" of f's definition, or the file alone.
func (s *Script) where(f Function) string {
	if s.lines[f] > 0 {
		return fmt.Sprintf("%s:%d", s.Name, s.lines[f])
	}
	return s.Name
}

// Close drops the idle states; calls in flight finish normally.
func (s *Script) Close() { s.pool.drain() }

// state is one sandboxed Lua state with the script's top level run in it.
// It is used by one goroutine at a time.
type state struct {
	L         *lua.LState
	marks     *Marks
	channelMT *lua.LTable
	views     channelViews // channel.query and query_all of the current call
	fns       [numFunctions]*lua.LFunction

	ctx     *callContext   // the context of its calls, reused (callctx.go)
	guarded guardedCall    // its entry in the memory guard's calls
	inGuard bool           // guarded is in guard.calls
	argv    [4]lua.LValue  // the arguments of the current call (action), cleared after it
	chanUD  *lua.LUserData // the channel view of the last call: the next call of the same connection reuses it
	scratch []byte         // encode's buffer
}

// newState builds a state: the sandbox, the es module, the script's top
// level (under the call timeout), and its functions looked up once.
func (s *Script) newState() (*state, error) {
	var marks *Marks
	preload := map[string]lua.LGFunction{}
	L := newSandbox(s.opts.Log, preload)
	liveStates.Add(1)
	marks = NewMarks(L)
	preload["es"] = esLoader(marks, s.opts.MaxDepth, s.opts.Secrets)
	st := &state{L: L, marks: marks, ctx: newCallContext()}
	st.channelMT = st.channelMeta()

	ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
	defer cancel()
	L.SetContext(ctx)
	L.Push(L.NewFunctionFromProto(s.proto))
	err := L.PCall(0, 1, nil)
	L.RemoveContext()
	if err != nil {
		closeState(L)
		if ctx.Err() != nil {
			return nil, &ScriptError{Kind: KindLoad, Where: s.Name, Msg: "top level did not finish within " + s.opts.Timeout.String()}
		}
		where, msg := s.splitLuaError(err)
		return nil, &ScriptError{Kind: KindLoad, Where: where, Msg: "top level failed: " + msg}
	}
	ret := L.Get(-1)
	L.Pop(1)
	mod, ok := ret.(*lua.LTable)
	if !ok {
		closeState(L)
		return nil, &ScriptError{Kind: KindLoad, Where: s.Name,
			Msg: "the script must return a table of functions (return M), got " + ret.Type().String()}
	}
	if err := checkModuleKeys(s.Name, mod); err != nil {
		closeState(L)
		return nil, err
	}
	for f := Function(0); f < numFunctions; f++ {
		switch v := mod.RawGetString(f.String()).(type) {
		case *lua.LFunction:
			st.fns[f] = v
		case *lua.LNilType:
			if required[f] {
				closeState(L)
				return nil, &ScriptError{Kind: KindLoad, Where: s.Name, Msg: f.String() + " not found or not a function"}
			}
		default:
			closeState(L)
			return nil, &ScriptError{Kind: KindLoad, Where: s.Name,
				Msg: fmt.Sprintf("%s must be a function, got %s", f, v.Type())}
		}
	}
	lockGlobals(L)
	return st, nil
}

// close releases the state.
func (st *state) close() {
	st.ctx.close()
	closeState(st.L)
}

func closeState(L *lua.LState) {
	L.Close()
	liveStates.Add(-1)
}
