package engine

import "time"

// MessageNow is Message for a lone message: one the transport read with
// nothing after it yet. When the session is idle (no event waits or runs)
// and the message can wait for nothing but its own Lua call (the session
// has no broker key, and its broker is in process, so neither an update
// nor a publish waits), the message runs on the caller's goroutine, which
// returns once it has run, and what it sends leaves from there too
// (Corker). That saves the hand-off to a worker. Otherwise it is Message:
// a message that may wait for an update (a hot key's line, Redis) or a
// publish (Redis) runs on a worker while the reader goes on reading and
// answering pings.
//
// The caller is the connection's reader: while the message runs it reads
// nothing, so ReaderHeld is true then, as when Message waits. Events that
// arrive meanwhile (a broker message, the connection's end) are queued and
// run on a worker once this message has run, in order.
func (s *Session) MessageNow(data []byte) {
	s.mu.Lock()
	if s.running || s.done || !s.runsNow() {
		s.mu.Unlock()
		s.Message(data)
		return
	}
	s.running = true
	s.mu.Unlock()
	s.engine.metrics.MessageIn(s.integration.Name)
	s.readerHeld.Store(true)
	if s.corker != nil {
		s.corker.Cork()
	}
	s.handleRecovering(event{kind: evMessage, data: data})
	s.heldUntil.Store(time.Now().UnixNano())
	s.readerHeld.Store(false)
	s.mu.Lock()
	more := !s.stopIfIdle()
	s.mu.Unlock()
	if s.corker != nil {
		s.corker.Uncork()
	}
	if more {
		s.engine.opts.Spawn(s.runFn)
	}
}

// runsNow reports whether a message may run on the reader: the session is
// authorised and open (the initial message verifies a token and runs
// broker_authorisation: it goes to a worker), it has no broker key, and
// its broker does not wait for the network. Called under mu with the queue
// idle, so the runner's fields are settled.
func (s *Session) runsNow() bool {
	return s.authorised && !s.closed && !s.identity.HasKey && s.engine.inProcess
}
