package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/electric-socket/electric-socket/broker"
	"github.com/electric-socket/electric-socket/luabridge"
)

// authorise runs SPEC 5.2 for the initial message.
func (s *Session) authorise(msg []byte) {
	ctx := context.Background()
	if err := luabridge.CheckMessage(msg, s.engine.opts.MaxDepth); err != nil {
		s.reject(err, CloseInvalidData)
		return
	}
	script := s.integration.Script()
	m, name := s.engine.metrics, s.integration.Name
	start := m.Now()
	auth, err := script.InitialAuthorisation(ctx, s.channel, msg)
	m.LuaCall(name, luabridge.InitialAuthorisation.String(), start)
	s.integration.observe(script, err)
	if err != nil {
		s.reject(err, CloseInternal)
		return
	}
	if auth.Failed {
		s.send(auth.Body)
		s.close(ClosePolicy, "authorisation failed")
		return
	}
	start = m.Now()
	id, err := script.Identify(ctx, s.channel, auth.ChannelData)
	m.LuaCall(name, "identify", start)
	s.integration.observe(script, err)
	if err != nil {
		s.reject(err, CloseInternal)
		return
	}
	s.identity = id

	// Join the registry (and so the instance's subscription) before the
	// update commits: from the commit on, other connections see this one in
	// the entity and may address it at once. Broker messages arriving
	// meanwhile wait in the queue and run once it is authorised.
	if id.HasKey {
		if err := s.engine.reg.join(ctx, s.topic(), id.ID, id.HasID, s); err != nil {
			s.reject(fmt.Errorf("subscribe to %s: %w", s.topic(), err), CloseInternal)
			return
		}
	}
	act, err := s.update(ctx, luabridge.BrokerAuthorisation, func(script *luabridge.Script, bd []byte) (*luabridge.Action, error) {
		act, err := script.BrokerAuthorisation(ctx, s.channel, auth.ChannelData, bd)
		if err == nil && act.ResponseFailed {
			// A refused login is a failed call (SPEC 5.2, 5.7): it commits
			// nothing, publishes nothing and hands no side effect on; only
			// its failure body is sent.
			act = &luabridge.Action{BrokerOp: broker.Abort, Response: act.Response, ResponseFailed: true}
		}
		return act, err
	})
	if err != nil || act.ResponseFailed {
		if id.HasKey {
			s.engine.reg.leave(s.topic(), id.ID, id.HasID, s)
		}
	}
	if err != nil {
		s.reject(err, CloseInternal) // broker failures close too during authorisation
		return
	}
	s.channelData = auth.ChannelData
	if act.ChannelData != nil {
		s.channelData = act.ChannelData
	}
	s.authorised = !act.ResponseFailed
	if s.authorised {
		if f := s.engine.fleet; f != nil {
			f.Authorised(s.conn()) // recorded before the response is sent (SPEC 5.12)
		}
	}
	s.apply(luabridge.BrokerAuthorisation, act)
	if act.ResponseFailed {
		s.close(ClosePolicy, "authorisation failed")
	} else if act.ShouldClose {
		s.close(CloseNormal, "")
	}
}

// message runs SPEC 5.3 for a later message.
func (s *Session) message(msg []byte) {
	ctx := context.Background()
	if err := luabridge.CheckMessage(msg, s.engine.opts.MaxDepth); err != nil {
		s.reject(err, CloseInvalidData)
		return
	}
	act, err := s.update(ctx, luabridge.ProcessWebsocketMessage, func(script *luabridge.Script, bd []byte) (*luabridge.Action, error) {
		return script.ProcessWebsocketMessage(ctx, s.channel, msg, s.channelData, bd)
	})
	s.acted(luabridge.ProcessWebsocketMessage, act, err)
}

// brokerEnvelope runs process_broker_message for an envelope (SPEC 5.4).
// A script without one gets the default, which sends the message on and
// reads and writes no broker data: it runs without a broker update, so
// a message to a room of 1,000 is not 1,000 updates of the room's key.
func (s *Session) brokerEnvelope(env broker.Envelope) {
	ctx := context.Background()
	if script := s.integration.Script(); !script.Defines(luabridge.ProcessBrokerMessage) {
		act, err := script.ProcessBrokerMessage(ctx, s.channel, env, s.channelData, nil)
		s.acted(luabridge.ProcessBrokerMessage, act, err)
		return
	}
	act, err := s.update(ctx, luabridge.ProcessBrokerMessage, func(script *luabridge.Script, bd []byte) (*luabridge.Action, error) {
		return script.ProcessBrokerMessage(ctx, s.channel, env, s.channelData, bd)
	})
	s.acted(luabridge.ProcessBrokerMessage, act, err)
}

// acted handles the outcome of a call on an authorised session.
func (s *Session) acted(f luabridge.Function, act *luabridge.Action, err error) {
	if err != nil {
		if code := BrokerCode(err); code != "" {
			// A broker failure keeps the connection open (SPEC 5.7).
			s.logBrokerError(err)
			s.send(errorFrame(code, brokerMessage(code)))
			return
		}
		s.reject(err, CloseInternal)
		return
	}
	if act.ChannelData != nil {
		s.channelData = act.ChannelData
		if f := s.engine.fleet; f != nil {
			f.Changed(s.conn())
		}
	}
	s.apply(f, act)
	if act.ShouldClose {
		s.close(CloseNormal, "")
	}
}

// onClose runs on_close inside the update and publishes its messages
// (SPEC 5.5), then leaves the registry.
func (s *Session) onClose() {
	ctx := context.Background()
	if f := s.engine.fleet; f != nil {
		ctx = f.CloseContext(ctx, s.channel.ID) // applies once, wherever it runs
	}
	act, err := s.update(ctx, luabridge.OnClose, func(script *luabridge.Script, bd []byte) (*luabridge.Action, error) {
		return script.OnClose(ctx, s.channel, s.channelData, bd)
	})
	if s.identity.HasKey {
		s.engine.reg.leave(s.topic(), s.identity.ID, s.identity.HasID, s)
	}
	s.authorised = false
	if err != nil && !errors.Is(err, broker.ErrApplied) { // applied: a survivor ran it (host/fleet)
		if BrokerCode(err) != "" {
			s.logBrokerError(err)
		} else {
			s.logScriptError(err)
		}
	} else if err == nil {
		s.apply(luabridge.OnClose, act)
	}
	if f := s.engine.fleet; f != nil {
		f.Closed(s.channel.ID, err)
	}
}

// update runs call inside the broker update of the session's key, or once
// with no broker data when it has none. Only the attempt that commits is
// returned: an attempt that lost its compare-and-set is discarded whole.
func (s *Session) update(ctx context.Context, f luabridge.Function,
	call func(*luabridge.Script, []byte) (*luabridge.Action, error)) (*luabridge.Action, error) {
	script := s.integration.Script()
	m, name := s.engine.metrics, s.integration.Name
	if !s.identity.HasKey {
		start := m.Now()
		act, err := call(script, nil)
		m.LuaCall(name, f.String(), start)
		s.integration.observe(script, err)
		return act, err
	}
	var committed *luabridge.Action
	updateStart := m.Now()
	err := s.engine.broker.Update(ctx, s.topic(), func(current []byte, retried bool) ([]byte, broker.Op, error) {
		if retried {
			m.BrokerRetry(name)
		}
		if s.rec != nil {
			s.rec.update = RecordedUpdate{Ran: true, Seen: current} // not a local: captured, it would escape on every update
		}
		start := m.Now()
		act, err := call(script, current)
		m.LuaCall(name, f.String(), start)
		s.integration.observe(script, err)
		if err != nil {
			return nil, broker.Abort, err
		}
		committed = act
		return act.BrokerData, act.BrokerOp, nil
	})
	m.BrokerUpdate(name, updateStart, BrokerCode(err))
	if s.rec != nil {
		s.recordCommit(s.rec.update, committed, err)
		s.rec.update = RecordedUpdate{}
	}
	if err != nil {
		return nil, err
	}
	return committed, nil
}

// apply acts on a committed action: side effects, broker messages, then the
// response (SPEC 5.2, 5.3, 5.11).
func (s *Session) apply(f luabridge.Function, act *luabridge.Action) {
	for _, fx := range act.SideEffects {
		s.recordOut(Output{SideEffect: fx})
		err := s.engine.sink.Deliver(context.Background(), SideEffect{
			Integration: s.integration.Name, Channel: s.channel.ID, Function: f.String(), Payload: fx,
		})
		if err != nil {
			s.engine.log.Error("side effect not delivered", "integration", s.integration.Name,
				"channel", s.channel.ID, "function", f.String(), "err", err)
		}
	}
	if len(act.BrokerMessages) > 0 {
		if !s.identity.HasKey {
			s.engine.log.Warn("broker messages dropped: the connection has no broker key",
				"integration", s.integration.Name, "channel", s.channel.ID, "function", f.String())
		} else {
			for _, m := range act.BrokerMessages {
				s.recordOut(Output{Publish: &m})
				env := broker.Envelope{Target: m.Target, Message: m.Message, BrokerKey: s.identity.Key, Source: s.channel.ID}
				if err := s.engine.broker.Publish(context.Background(), s.topic(), env); err != nil {
					s.engine.log.Error("broker message not published", "integration", s.integration.Name,
						"channel", s.channel.ID, "target", m.Target, "err", err)
				} else {
					s.engine.metrics.BrokerPublished(s.integration.Name)
				}
			}
		}
	}
	if act.Response != nil {
		s.send(act.Response)
	}
}

// reject answers a failed call with an error frame and closes with code
// (SPEC 5.7): the code of a data error is always 1007.
func (s *Session) reject(err error, code CloseCode) {
	errCode := luabridge.Code(err)
	var de *luabridge.DataError
	if errors.As(err, &de) {
		code = CloseInvalidData
	}
	text := err.Error()
	if bc := BrokerCode(err); bc != "" {
		errCode, text = bc, brokerMessage(bc) // the broker's address is not the client's business
		s.logBrokerError(err)
	}
	if errCode == "" {
		errCode = CodeInternal
	}
	var se *luabridge.ScriptError
	if errors.As(err, &se) {
		s.logScriptError(err)
	}
	s.send(errorFrame(errCode, text))
	s.close(code, errCode)
}

func (s *Session) logScriptError(err error) {
	s.engine.metrics.ScriptError(s.integration.Name, luabridge.Code(err))
	s.engine.log.LogAttrs(context.Background(), slog.LevelError, "script error",
		slog.String("integration", s.integration.Name), slog.String("channel", s.channel.ID),
		slog.String("code", luabridge.Code(err)), slog.String("err", err.Error()))
	if h := s.engine.opts.OnScriptError; h != nil {
		h(s.channel, err)
	}
}

func (s *Session) logBrokerError(err error) {
	s.engine.log.Warn("broker error", "integration", s.integration.Name, "channel", s.channel.ID,
		"key", s.identity.Key, "err", err)
}

// brokerMessage is what a client is told of a broker failure.
func brokerMessage(code string) string {
	switch code {
	case CodeBrokerConflict:
		return "the shared state kept changing; nothing was committed, try again"
	case CodeBrokerOutcomeUnknown:
		return "the broker stopped answering after the update was sent; it may have been applied"
	case luabridge.CodeBrokerDataInvalid:
		return "the shared state stored for this connection is not valid JSON; nothing was committed"
	}
	return "the broker cannot be reached; nothing was committed, try again later"
}

// BrokerCode is the error code a client is sent for a broker failure
// (broker_unavailable, broker_conflict, broker_outcome_unknown,
// broker_data_invalid); "" when err is not one.
func BrokerCode(err error) string {
	switch {
	case errors.Is(err, broker.ErrOutcomeUnknown): // before ErrUnavailable, which it matches too
		return CodeBrokerOutcomeUnknown
	case errors.Is(err, broker.ErrConflict):
		return CodeBrokerConflict
	case errors.Is(err, broker.ErrUnavailable):
		return CodeBrokerUnavailable
	case errors.Is(err, luabridge.ErrBrokerData):
		return luabridge.CodeBrokerDataInvalid
	}
	return ""
}
