package engine

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/electric-socket/electric-socket/broker"
	"github.com/electric-socket/electric-socket/host/metrics"
	"github.com/electric-socket/electric-socket/luabridge"
)

type eventKind uint8

const (
	evMessage      eventKind = iota // a text message from the client
	evBroker                        // a broker message for this session
	evFail                          // the transport found bad input: error frame, close
	evClosed                        // the connection is gone (client close, network)
	evAuthTimeout                   // no initial message in time
	evShutdown                      // the server is shutting down
	evTokenExpired                  // the client's token expired (auth.Verifier.CloseAt)
)

type event struct {
	kind  eventKind
	data  []byte
	env   broker.Envelope
	code  string    // evFail: the error code
	msg   string    // evFail: the error message
	close CloseCode // evFail: the close code
}

// Queue bounds. A client that sends faster than its script runs is slowed
// down (Message blocks its reader). A connection with MaxPendingBroker
// broker messages waiting cannot keep up: it is closed as slow_client
// (1008) rather than lose a message while it stays open (brokerBacklog).
const (
	MaxPendingMessages = 64
	MaxPendingBroker   = 1024
)

// Session is the protocol state of one connection (SPEC section 5). Its
// events run one at a time, in arrival order, on a goroutine that exists
// only while there is work: an idle session holds none.
//
// The exported methods may be called from any goroutine; the fields below
// the mutex are owned by whichever goroutine runs the queue.
type Session struct {
	engine      *Engine
	integration *Integration
	channel     *luabridge.Channel
	transport   Transport
	opened      time.Time
	rec         *recording // nil: not recorded ([integration] record)
	corker      Corker     // the transport, when it can hold back a run's frames
	runFn       func()     // s.run, made once: a method value allocates each time it is taken

	mu         sync.Mutex
	authTimer  *time.Timer
	expiry     *time.Timer // closes the connection when its token expires
	cond       *sync.Cond  // signalled when client messages leave the queue
	queue      []event     // events from head on wait to run
	head       int
	pendingMsg int
	pendingBrk int
	running    bool
	done       bool // closed and on_close has run: every later event is dropped
	slowBroker bool // closed as slow_client for its broker backlog: later broker messages are dropped

	readerHeld atomic.Bool  // Message waits for the queue to shrink
	heldUntil  atomic.Int64 // UnixNano when Message last stopped waiting

	// Owned by the queue's runner.
	started     bool      // the initial message arrived
	authorised  bool      // registered: on_close runs when it closes
	closed      bool      // a close was decided; later client messages are ignored
	closeCode   CloseCode // the code the server closed with; 0: the client or the network did
	channelData []byte
	identity    luabridge.Identity
}

// Channel returns the session's channel view.
func (s *Session) Channel() *luabridge.Channel { return s.channel }

// Message hands the session one complete text message from the client and
// returns at once, so that the connection's reader goes on reading (and
// answering pings, and reading pongs) while the message runs on a worker.
// It blocks only while MaxPendingMessages of the client's messages wait to
// run: a client that sends faster than its script runs is slowed down (TCP
// backpressure); ReaderHeld says when that happened.
// MessageNow (inline.go) runs a lone message on the caller instead, when
// it cannot wait on the network.
func (s *Session) Message(data []byte) {
	s.mu.Lock()
	if s.pendingMsg >= MaxPendingMessages && !s.done && s.running {
		s.readerHeld.Store(true)
		for s.pendingMsg >= MaxPendingMessages && !s.done && s.running {
			if s.cond == nil {
				s.cond = sync.NewCond(&s.mu) // made only for a session that must wait
			}
			s.cond.Wait()
		}
		s.heldUntil.Store(time.Now().UnixNano())
		s.readerHeld.Store(false)
	}
	s.mu.Unlock()
	s.engine.metrics.MessageIn(s.integration.Name)
	s.enqueue(event{kind: evMessage, data: data})
}

// ReaderHeld reports whether Message holds the connection's reader back
// now, or did at some moment after since: a client whose pong was not read
// then is not to blame for it.
func (s *Session) ReaderHeld(since time.Time) bool {
	return s.readerHeld.Load() || s.heldUntil.Load() > since.UnixNano()
}

// Fail reports bad input found by the transport: the client gets an error
// frame with code and message, then a close with closeCode.
func (s *Session) Fail(code, message string, closeCode CloseCode) {
	s.enqueue(event{kind: evFail, code: code, msg: message, close: closeCode})
}

// Closed reports that the connection is gone. on_close runs if the session
// was authorised and has not closed already.
func (s *Session) Closed() { s.enqueue(event{kind: evClosed}) }

func (s *Session) brokerMessage(env broker.Envelope) {
	s.enqueue(event{kind: evBroker, env: env})
}

func (s *Session) enqueue(ev event) {
	if s.push(ev) {
		s.engine.opts.Spawn(s.runFn)
	}
}

// push queues ev; true when the queue was idle: the caller must run it.
func (s *Session) push(ev event) (start bool) {
	s.mu.Lock()
	if s.done {
		s.mu.Unlock()
		return false
	}
	switch ev.kind {
	case evMessage:
		s.pendingMsg++
	case evBroker:
		if s.slowBroker {
			s.mu.Unlock()
			s.engine.metrics.BrokerDropped(s.integration.Name, 1) // it is being closed as slow
			return false
		}
		if s.pendingBrk >= MaxPendingBroker {
			return s.brokerBacklog() // unlocks
		}
		s.pendingBrk++
	}
	if s.head > 0 && s.head >= len(s.queue)/2 {
		// Move what waits to the front, so that a queue that never drains
		// does not grow by what has already run.
		n := copy(s.queue, s.queue[s.head:])
		clear(s.queue[n:])
		s.queue, s.head = s.queue[:n], 0
	}
	s.queue = append(s.queue, ev)
	start = !s.running
	s.running = true
	s.mu.Unlock()
	return start
}

// brokerBacklog closes a session whose broker messages pile up (called
// under mu, which it releases): the client gets the error frame and close
// 1008 slow_client at once, even while a call of its script still runs;
// the broker messages waiting are dropped with the connection (the client
// resynchronises when it reconnects); the event that closes the session
// (on_close, counted and logged in handle) runs next. true: the caller
// must start the queue's runner.
func (s *Session) brokerBacklog() (start bool) {
	s.slowBroker = true
	fail := event{kind: evFail, code: CodeSlowClient, close: ClosePolicy,
		msg: fmt.Sprintf("more than %d broker messages wait for this connection: it cannot keep up", MaxPendingBroker)}
	kept := make([]event, 0, len(s.queue)-s.head-s.pendingBrk+1)
	kept = append(kept, fail)
	dropped := 0
	for _, ev := range s.queue[s.head:] {
		if ev.kind == evBroker {
			dropped++
			continue
		}
		kept = append(kept, ev)
	}
	s.queue, s.head, s.pendingBrk = kept, 0, 0
	start = !s.running
	s.running = true
	s.mu.Unlock()
	s.engine.metrics.BrokerDropped(s.integration.Name, dropped+1)
	s.transport.Send(errorFrame(fail.code, fail.msg))
	s.transport.Close(fail.close, fail.code)
	return start
}

// maxCorked is how many events a run handles before it lets the transport
// write what they sent, so that a long run does not hold back responses.
const maxCorked = 16

// run drains the queue, one event at a time, and returns when it is empty.
// What the events send goes out together when the run ends (or every
// maxCorked events), when the transport can hold it back (Corker).
func (s *Session) run() {
	if s.corker != nil {
		s.corker.Cork()
	}
	for n := 1; ; n++ {
		s.mu.Lock()
		if s.stopIfIdle() {
			s.mu.Unlock()
			if s.corker != nil {
				s.corker.Uncork()
			}
			return
		}
		ev := s.queue[s.head]
		s.queue[s.head] = event{}
		s.head++
		switch ev.kind {
		case evMessage:
			s.pendingMsg--
			if s.cond != nil {
				s.cond.Signal()
			}
		case evBroker:
			s.pendingBrk--
		}
		s.mu.Unlock()
		s.handleRecovering(ev) // a panic closes this connection only (recover.go)
		if s.corker != nil && n%maxCorked == 0 {
			s.corker.Uncork()
			s.corker.Cork()
		}
	}
}

// stopIfIdle ends the queue's run when nothing waits to run (or the
// session is done); true when it did. Called under mu.
func (s *Session) stopIfIdle() bool {
	if s.head < len(s.queue) && !s.done {
		return false
	}
	s.running = false
	// Let the backing array go: an idle session holds none (an event is
	// large, and most sessions are idle).
	s.queue, s.head = nil, 0
	if s.cond != nil {
		s.cond.Broadcast()
	}
	return true
}

func (s *Session) handle(ev event) {
	switch ev.kind {
	case evMessage:
		switch {
		case s.closed:
			// a frame after close is ignored
		case !s.started:
			s.started = true
			s.stopAuthTimer()
			if s.verifyFirstMessage(ev.data) {
				s.authorise(ev.data)
			}
		case s.authorised:
			s.message(ev.data)
		}
	case evBroker:
		if s.authorised && !s.closed {
			s.brokerEnvelope(ev.env)
		}
	case evFail:
		if !s.closed {
			if ev.code == CodeSlowClient {
				s.engine.metrics.SlowClient(s.integration.Name)
				s.engine.log.Warn("client closed as slow", "integration", s.integration.Name,
					"channel", s.channel.ID, "reason", ev.msg)
			}
			s.send(errorFrame(ev.code, ev.msg))
			s.close(ev.close, ev.code)
		}
	case evAuthTimeout:
		if !s.started && !s.closed {
			s.send(errorFrame(CodeAuthTimeout, "no initial message within "+s.engine.opts.AuthTimeout.String()))
			s.close(ClosePolicy, CodeAuthTimeout)
		}
	case evTokenExpired:
		if !s.closed {
			s.send(errorFrame(CodeTokenExpired, "the token expired; connect again with a new one"))
			s.close(ClosePolicy, CodeTokenExpired)
		}
	case evShutdown:
		s.close(CloseGoingAway, "server shutting down")
	case evClosed:
		s.close(0, "")
	}
	if s.closed {
		s.finish()
	}
}

func (s *Session) stopAuthTimer() {
	s.mu.Lock()
	t := s.authTimer
	s.mu.Unlock()
	if t != nil {
		t.Stop()
	}
}

// close decides the connection's end: the transport closes it with code
// (0: it is already gone) and, for an authorised session, on_close runs.
func (s *Session) close(code CloseCode, reason string) {
	if s.closed {
		return
	}
	s.closed = true
	s.closeCode = code
	s.stopAuthTimer()
	s.mu.Lock()
	if s.expiry != nil {
		s.expiry.Stop()
	}
	s.mu.Unlock()
	if code != 0 {
		s.closeConn(code, reason)
	}
	if s.authorised {
		s.onClose()
	}
}

// finish drops every later event and forgets the session.
func (s *Session) finish() {
	s.mu.Lock()
	already := s.done
	s.done = true
	if s.cond != nil {
		s.cond.Broadcast()
	}
	s.mu.Unlock()
	if !already {
		s.closeConn(CloseNormal, "")
		s.engine.forget(s)
		s.logClosed()
	}
}

// countingTransport counts what the engine sends to a client.
type countingTransport struct {
	Transport
	sent interface{ Inc() }
}

func (t countingTransport) Send(msg []byte) {
	t.sent.Inc()
	t.Transport.Send(msg)
}

// countSent wraps t so that its sends are counted; without metrics it is t.
func countSent(m *metrics.Metrics, integration string, t Transport) Transport {
	if m == nil {
		return t
	}
	return countingTransport{Transport: t, sent: m.Sent(integration)}
}

// topic is the broker topic of the session's entity: its key in the
// integration's namespace (meaningful once identity has a key).
func (s *Session) topic() broker.Topic {
	return broker.Topic{Namespace: s.integration.Name, Key: s.identity.Key}
}
