package engine

import (
	"github.com/electric-socket/electric-socket/broker"
	"github.com/electric-socket/electric-socket/luabridge"
)

// Recorder keeps what happens on an integration's connections ([integration]
// record): every event a session ran and what the host did for it, so that
// the traffic can be replayed through another version of the script
// (host/fixture Replay). Integration.Recorder nil: nothing is recorded.
type Recorder interface {
	// Open starts the record of a new connection; nil: not recorded.
	Open(ch *luabridge.Channel) SessionRecord
}

// SessionRecord is the record of one connection. Its methods are called on
// the session's runner, one at a time.
type SessionRecord interface {
	// Event is called after each event ran, with what it did; ev is the
	// record's from then on.
	Event(ev *Recorded)
	// End is called once, after the session's last event.
	End()
}

// Event kinds of a Recorded.
const (
	RecMessage      = "message"       // a text message from the client
	RecBroker       = "broker"        // a broker message for this connection
	RecClosed       = "closed"        // the client (or the network) ended the connection
	RecFail         = "fail"          // the transport found bad input
	RecAuthTimeout  = "auth_timeout"  // no initial message in time
	RecTokenExpired = "token_expired" // the client's token expired
	RecShutdown     = "shutdown"      // the server shut down
)

// Recorded is one event of a session: its input, the broker data its
// broker updates saw, and what the host did, in order.
type Recorded struct {
	Kind     string
	Text     []byte           // RecMessage: the frame
	Envelope *broker.Envelope // RecBroker
	Code     string           // RecFail: the error code
	Message  string           // RecFail: the error message
	Close    CloseCode        // RecFail: the close code
	Updates  []RecordedUpdate // the broker updates the event ran
	Out      []Output
}

// RecordedUpdate is one broker update of an event.
type RecordedUpdate struct {
	Ran  bool   // the integration function ran (false: the broker failed first)
	Seen []byte // the broker data the committing (or last) attempt saw; nil: none stored
	Err  string // the broker's error code (BrokerCode) when the update failed on the broker's side
}

// Output is one thing the host did; exactly one field is set.
type Output struct {
	Send       []byte             // a frame sent to the client
	Commit     *Commit            // broker data committed
	Publish    *luabridge.Message // a broker message published
	SideEffect []byte             // a side effect handed to the sink
	Close      CloseCode          // the connection closed with this code
}

// Commit is broker data committed: Data with broker.Set, none with
// broker.Delete.
type Commit struct {
	Op   broker.Op
	Data []byte
}

// recording is the record of the event a session runs now (runner-owned).
type recording struct {
	rec    SessionRecord
	cur    *Recorded
	closed bool // the close was recorded: the transport keeps only the first
	ended  bool
	update RecordedUpdate // the broker update running now: what its last attempt saw
}

// startRecord begins the record of ev.
func (s *Session) startRecord(ev event) {
	if s.rec == nil {
		return
	}
	r := &Recorded{}
	switch ev.kind {
	case evMessage:
		r.Kind, r.Text = RecMessage, ev.data
	case evBroker:
		env := ev.env
		r.Kind, r.Envelope = RecBroker, &env
	case evFail:
		r.Kind, r.Code, r.Message, r.Close = RecFail, ev.code, ev.msg, ev.close
	case evClosed:
		r.Kind = RecClosed
	case evAuthTimeout:
		r.Kind = RecAuthTimeout
	case evTokenExpired:
		r.Kind = RecTokenExpired
	case evShutdown:
		r.Kind = RecShutdown
	}
	s.rec.cur = r
}

// endRecord hands the event's record on, and ends the connection's record
// when the session is done.
func (s *Session) endRecord() {
	if s.rec == nil || s.rec.ended {
		return
	}
	defer func() {
		if r := recover(); r != nil { // a recorder's bug stops the record, not the connection
			s.engine.log.Error("panic in the connection's recorder; recording it stops",
				"integration", s.integration.Name, "channel", s.channel.ID, "panic", r)
			s.rec = nil
		}
	}()
	if r := s.rec.cur; r != nil {
		s.rec.cur = nil
		s.rec.rec.Event(r)
	}
	s.mu.Lock()
	done := s.done
	s.mu.Unlock()
	if done {
		s.rec.ended = true
		s.rec.rec.End()
	}
}

func (s *Session) recordOut(o Output) {
	if s.rec != nil && s.rec.cur != nil {
		s.rec.cur.Out = append(s.rec.cur.Out, o)
	}
}

func (s *Session) recordUpdate(u RecordedUpdate) {
	if s.rec != nil && s.rec.cur != nil {
		s.rec.cur.Updates = append(s.rec.cur.Updates, u)
	}
}

// send sends msg to the client (and records it).
func (s *Session) send(msg []byte) {
	if s.rec != nil && !s.rec.closed {
		s.recordOut(Output{Send: msg})
	}
	s.transport.Send(msg)
}

// closeConn closes the connection with code (and records the first close).
func (s *Session) closeConn(code CloseCode, reason string) {
	if s.rec != nil && !s.rec.closed {
		s.rec.closed = true
		s.recordOut(Output{Close: code})
	}
	s.transport.Close(code, reason)
}

// Redo runs a recorded event again on the session, as if it had just
// arrived (host/fixture Replay). Its broker updates are the engine's
// broker's business: a replay gives it one that answers with r.Updates.
func (s *Session) Redo(r *Recorded) {
	switch r.Kind {
	case RecMessage:
		s.Message(r.Text)
	case RecBroker:
		if r.Envelope != nil {
			s.brokerMessage(*r.Envelope)
		}
	case RecFail:
		s.Fail(r.Code, r.Message, r.Close)
	case RecClosed:
		s.Closed()
	case RecAuthTimeout:
		s.enqueue(event{kind: evAuthTimeout})
	case RecTokenExpired:
		s.enqueue(event{kind: evTokenExpired})
	case RecShutdown:
		s.enqueue(event{kind: evShutdown})
	}
}

// recordCommit records a broker update: the data its call saw and, when it
// committed a change, the change.
func (s *Session) recordCommit(u RecordedUpdate, committed *luabridge.Action, err error) {
	u.Err = BrokerCode(err)
	if u.Err == luabridge.CodeBrokerDataInvalid {
		u.Err = "" // the stored data is in Seen: the replay meets it again
	}
	s.recordUpdate(u)
	if err == nil && committed != nil && committed.BrokerOp != broker.Abort {
		s.recordOut(Output{Commit: &Commit{Op: committed.BrokerOp, Data: committed.BrokerData}})
	}
}
