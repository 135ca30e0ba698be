package engine

import (
	"context"
	"log/slog"
	"runtime/debug"
)

// handleRecovering handles one event; a panic (a bug in the host, or in a
// sink) ends this connection only: the client gets an internal_error frame
// and a close 1011, on_close is tried, and the session is forgotten. The
// process and every other connection go on.
func (s *Session) handleRecovering(ev event) {
	s.startRecord(ev)
	defer s.endRecord() // deferred first, so it runs after the recover below: a panic's close is recorded too
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		s.engine.log.LogAttrs(context.Background(), slog.LevelError, "panic while handling a connection; it is closed",
			slog.String("integration", s.integration.Name), slog.String("channel", s.channel.ID),
			slog.Any("panic", r), slog.String("stack", string(debug.Stack())))
		if !s.closed {
			s.send(errorFrame(CodeInternal, "internal error; the connection is closed"))
		}
		func() {
			defer func() {
				if r := recover(); r != nil {
					s.engine.log.Error("panic again while closing the connection", "channel", s.channel.ID, "panic", r)
				}
			}()
			s.close(CloseInternal, CodeInternal)
		}()
		s.closed = true
		s.closeConn(CloseInternal, CodeInternal)
		s.finish()
	}()
	s.handle(ev)
}
