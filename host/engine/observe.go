package engine

import (
	"context"
	"log/slog"
	"time"
)

// logClosed writes the line of a connection that ended and counts it. The
// code is the one the server closed with; "by" says who ended it, since a
// connection the client closed (or the network dropped) has no server code.
func (s *Session) logClosed() {
	d := time.Since(s.opened)
	by := "server"
	if s.closeCode == 0 {
		by = "client"
	}
	s.engine.metrics.ConnClosed(s.integration.Name, int(s.closeCode))
	s.engine.log.LogAttrs(context.Background(), slog.LevelInfo, "connection closed",
		slog.String("channel", s.channel.ID), slog.String("integration", s.integration.Name),
		slog.Int("code", int(s.closeCode)), slog.String("by", by),
		slog.Duration("duration", d.Round(time.Millisecond)))
}
