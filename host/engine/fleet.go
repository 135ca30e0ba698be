package engine

import (
	"context"
	"errors"

	"github.com/electric-socket/electric-socket/broker"
	"github.com/electric-socket/electric-socket/luabridge"
)

// Fleet is told of every authorised session, so that another instance can
// run its on_close if this one dies (SPEC 5.12; host/fleet implements it
// with the broker's leases). Its methods are called from the session's
// goroutine and may be called concurrently for different sessions.
type Fleet interface {
	// Authorised records c, whose authorisation committed, before its
	// response is sent.
	Authorised(c Conn)
	// Changed records c again after a committed call changed its channel
	// data.
	Changed(c Conn)
	// CloseContext is the context the on_close of channel runs under (its
	// broker operation id makes it apply once, wherever it runs).
	CloseContext(ctx context.Context, channel string) context.Context
	// Closed is told the outcome of channel's on_close.
	Closed(channel string, err error)
}

// Conn is what another instance needs to run a connection's on_close: its
// channel view, identity and channel data.
type Conn struct {
	Integration string
	Channel     *luabridge.Channel
	Identity    luabridge.Identity
	ChannelData []byte
}

// conn is s as the fleet records it.
func (s *Session) conn() Conn {
	return Conn{Integration: s.integration.Name, Channel: s.channel, Identity: s.identity, ChannelData: s.channelData}
}

// RunOnClose runs on_close for c, a connection that is gone (its instance
// died, or its own on_close could not commit), through the code a closing
// session runs: inside the broker update of its key, under ctx (which
// carries its operation id), then its broker messages and side effects.
// It returns an error when the call should be run again (the broker
// failed, or ctx ended); nil when it ran, had run already
// (broker.ErrApplied), or failed in the script, which another run would
// not change.
func (e *Engine) RunOnClose(ctx context.Context, in *Integration, c Conn) error {
	data := c.ChannelData
	if len(data) == 0 || string(data) == "null" {
		data = []byte("{}")
	}
	s := &Session{engine: e, integration: in, channel: c.Channel, transport: noTransport{},
		channelData: data, identity: c.Identity, closed: true}
	act, err := s.update(ctx, luabridge.OnClose, func(script *luabridge.Script, bd []byte) (*luabridge.Action, error) {
		return script.OnClose(ctx, s.channel, s.channelData, bd)
	})
	switch {
	case errors.Is(err, broker.ErrApplied):
		return nil
	case err != nil && (BrokerCode(err) != "" || ctx.Err() != nil):
		return err
	case err != nil:
		s.logScriptError(err)
		return nil
	}
	s.apply(luabridge.OnClose, act)
	return nil
}

// noTransport is the transport of a connection that is gone.
type noTransport struct{}

func (noTransport) Send([]byte)             {}
func (noTransport) Close(CloseCode, string) {}
