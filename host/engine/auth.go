package engine

import (
	"context"
	"time"

	"github.com/electric-socket/electric-socket/host/auth"
)

// ExpireAt closes the connection 1008 token_expired at t (its token's exp
// and the leeway), running on_close when it was authorised. The transport
// calls it after Open for a token verified in the handshake.
func (s *Session) ExpireAt(t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.expiry != nil {
		s.expiry.Stop()
	}
	s.expiry = time.AfterFunc(time.Until(t), func() { s.enqueue(event{kind: evTokenExpired}) })
}

// verifyFirstMessage checks the token in the first message when the
// integration reads it there and the handshake carried none: without a
// valid one the client gets {"id":"error","error":"unauthenticated"} and a
// close 1008, and no script function runs. It reports whether to go on.
func (s *Session) verifyFirstMessage(msg []byte) bool {
	v := s.integration.Auth
	if v == nil || !v.ReadsFirstMessage() || s.channel.Claims != nil {
		return true
	}
	claims, err := v.FromMessage(context.Background(), msg)
	if err != nil {
		s.engine.log.Info("connection refused: token", "channel", s.channel.ID, "integration", s.integration.Name, "remote", s.channel.RemoteAddr, "err", err)
		s.send(errorFrame(CodeUnauthenticated, auth.ClientMessage(err)))
		s.close(ClosePolicy, CodeUnauthenticated)
		return false
	}
	// The channel is not yet seen by the script (nor recorded by the
	// fleet): this session's goroutine is its only reader.
	s.channel.Claims = claims.JSON
	if at, ok := v.CloseAt(claims); ok {
		s.ExpireAt(at)
	}
	return true
}
