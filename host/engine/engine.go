// Package engine runs the protocol of SPEC section 5 for every connection:
// sessions, their event queues, the registry of who answers to which key,
// and the integration functions called inside broker updates; it knows no
// transport and no configuration file.
package engine

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/electric-socket/electric-socket/broker"
	"github.com/electric-socket/electric-socket/host/auth"
	"github.com/electric-socket/electric-socket/host/metrics"
	"github.com/electric-socket/electric-socket/luabridge"
)

// Integration is one configured script served at a path. The script it runs
// can be swapped while connections are live (hot reload): every call loads
// the current version.
type Integration struct {
	Name   string // broker namespace
	Path   string // WebSocket path
	Source string // the script's file, for reloads ("" when not on disk)
	// Auth verifies the clients' tokens ([integration.auth]); nil: none.
	// The transport checks a token of the handshake; the engine one in the
	// first message, and closes the connection when the token expires.
	Auth *auth.Verifier
	// Recorder, when set, records every connection ([integration] record,
	// record.go); it is set before the first connection opens.
	Recorder Recorder
	script   atomic.Pointer[luabridge.Script]
	// observer, when set, is told of every call of the script's
	// functions: the version that ran it and its error (nil when it
	// returned). The host's reload watch uses it (host/rollback.go).
	observer atomic.Pointer[func(*luabridge.Script, error)]
}

// Observe makes f hear of every later call of in's functions: the version
// that ran it and the call's error (nil when it returned). f runs on the
// caller's goroutine and must be quick; nil stops it.
func (in *Integration) Observe(f func(*luabridge.Script, error)) {
	if f == nil {
		in.observer.Store(nil)
		return
	}
	in.observer.Store(&f)
}

func (in *Integration) observe(s *luabridge.Script, err error) {
	if f := in.observer.Load(); f != nil {
		(*f)(s, err)
	}
}

// NewIntegration returns an integration serving s.
func NewIntegration(name, path string, s *luabridge.Script) *Integration {
	in := &Integration{Name: name, Path: path}
	in.script.Store(s)
	return in
}

// Script returns the version that serves new calls.
func (in *Integration) Script() *luabridge.Script { return in.script.Load() }

// Swap makes s serve every later call and returns the previous version.
// Calls in flight finish on the version they started with.
func (in *Integration) Swap(s *luabridge.Script) *luabridge.Script { return in.script.Swap(s) }

// Options tune the engine. Zero values mean the defaults.
type Options struct {
	MaxDepth    int           // JSON nesting limit of client messages; zero means 32
	AuthTimeout time.Duration // no initial message within it: close 1008; zero means 10s, below zero never
	// Spawn runs a session's queued events and must start run at once; nil
	// means on a new goroutine. The server passes its worker pool (host/ws),
	// which starts it on a warm goroutine; the fixture runner delivers
	// synchronously.
	Spawn func(run func())
	// OnScriptError, when set, is told of every script error after it was
	// logged and answered (the fixture runner fails the test with it).
	OnScriptError func(ch *luabridge.Channel, err error)
	// Metrics, when set, are kept up to date; nil costs nothing.
	Metrics *metrics.Metrics
}

// Engine runs SPEC section 5 for every session of every integration. It is
// safe for concurrent use.
type Engine struct {
	broker  broker.Broker
	sink    Sink
	log     *slog.Logger
	opts    Options
	reg     *registry
	metrics *metrics.Metrics // nil-safe
	fleet   Fleet            // nil without a fleet (SetFleet)
	// inProcess: the broker never waits for the network, so a keyless
	// session's lone message may run on its reader (MessageNow).
	inProcess bool

	mu       sync.Mutex
	sessions map[*Session]struct{}
	closing  bool
	idle     chan struct{} // closed when closing and no session is left
}

// New returns an engine on broker b handing side effects to sink.
func New(b broker.Broker, sink Sink, log *slog.Logger, opts Options) *Engine {
	if opts.MaxDepth <= 0 {
		opts.MaxDepth = 32
	}
	if opts.AuthTimeout == 0 {
		opts.AuthTimeout = 10 * time.Second
	}
	if opts.Spawn == nil {
		opts.Spawn = func(run func()) { go run() }
	}
	reg := newRegistry(b)
	reg.metrics = opts.Metrics
	_, inProcess := b.(broker.InProcess)
	return &Engine{
		inProcess: inProcess,
		broker:    b, sink: sink, log: log, opts: opts, reg: reg, metrics: opts.Metrics,
		sessions: make(map[*Session]struct{}), idle: make(chan struct{}),
	}
}

// Transport is what the engine needs of a connection. Both methods may be
// called from any goroutine and must not block for long: they queue.
type Transport interface {
	// Send queues one text message. After Close it is dropped.
	Send(msg []byte)
	// Close queues a close frame with code and reason, then ends the
	// connection. Only the first call counts.
	Close(code CloseCode, reason string)
}

// Corker is implemented by a transport that can hold back what a session
// sends while it runs a burst of events and write it together when the
// burst ends: one write (one writev) for a burst of responses instead of
// one per response. Cork and Uncork are called by the session's runner,
// in pairs; frames queued while corked must still go out after Uncork.
type Corker interface {
	Cork()
	Uncork()
}

// Open starts the session of a new connection. The transport reports what
// happens on the connection through the session's methods. Open returns nil
// when the engine is shutting down (the transport should close 1001).
func (e *Engine) Open(in *Integration, ch *luabridge.Channel, t Transport) *Session {
	s := &Session{engine: e, integration: in, channel: ch, transport: countSent(e.metrics, in.Name, t), opened: time.Now()}
	s.corker, _ = t.(Corker)
	s.runFn = s.run
	if in.Recorder != nil {
		if r := in.Recorder.Open(ch); r != nil {
			s.rec = &recording{rec: r}
		}
	}
	e.mu.Lock()
	if e.closing {
		e.mu.Unlock()
		return nil
	}
	e.sessions[s] = struct{}{}
	e.mu.Unlock()
	e.metrics.ConnOpened(in.Name)
	e.log.Info("connection opened", "channel", ch.ID, "integration", in.Name, "remote", ch.RemoteAddr)
	if e.opts.AuthTimeout > 0 {
		s.mu.Lock() // the timer may fire before the assignment is done
		s.authTimer = time.AfterFunc(e.opts.AuthTimeout, func() { s.enqueue(event{kind: evAuthTimeout}) })
		s.mu.Unlock()
	}
	return s
}

// SetFleet makes f record the engine's sessions (on_close after a crash,
// SPEC 5.12); it is called once, before the first session opens.
func (e *Engine) SetFleet(f Fleet) { e.fleet = f }

// CloseAll closes every open session with 1001, running on_close for the
// authorised ones, without refusing new sessions.
func (e *Engine) CloseAll() {
	e.Each(func(s *Session) { s.enqueue(event{kind: evShutdown}) })
}

// Each calls f for every session open when it is called, outside the
// engine's lock.
func (e *Engine) Each(f func(*Session)) {
	e.mu.Lock()
	list := make([]*Session, 0, len(e.sessions))
	for s := range e.sessions {
		list = append(list, s)
	}
	e.mu.Unlock()
	for _, s := range list {
		f(s)
	}
}

// Metrics returns the metrics the engine keeps; nil when none.
func (e *Engine) Metrics() *metrics.Metrics { return e.metrics }

// Sessions returns how many sessions are open.
func (e *Engine) Sessions() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.sessions)
}

// Subscriptions returns how many broker keys this instance is subscribed to.
func (e *Engine) Subscriptions() int { return e.reg.subscriptions() }

func (e *Engine) forget(s *Session) {
	e.mu.Lock()
	delete(e.sessions, s)
	if e.closing && len(e.sessions) == 0 {
		select {
		case <-e.idle:
		default:
			close(e.idle)
		}
	}
	e.mu.Unlock()
}

// Shutdown refuses new sessions, closes every open one with 1001 (running
// on_close for the authorised ones) and waits until all are done or ctx
// ends. spread > 0 spreads the closes evenly over that window, so clients do
// not all reconnect at once.
func (e *Engine) Shutdown(ctx context.Context, spread time.Duration) error {
	e.mu.Lock()
	e.closing = true
	list := make([]*Session, 0, len(e.sessions))
	for s := range e.sessions {
		list = append(list, s)
	}
	if len(e.sessions) == 0 {
		select {
		case <-e.idle:
		default:
			close(e.idle)
		}
	}
	e.mu.Unlock()
	var step time.Duration
	if spread > 0 && len(list) > 1 {
		step = spread / time.Duration(len(list))
	}
	for _, s := range list {
		s.enqueue(event{kind: evShutdown})
		if step > 0 {
			select {
			case <-time.After(step):
			case <-ctx.Done():
			}
		}
	}
	select {
	case <-e.idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
