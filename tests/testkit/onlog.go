package testkit

import (
	"context"
	"log/slog"
	"strings"
)

// OnLog is a slog.Handler that calls Do when a record's message contains
// Match, before passing the record on to Handler: a test acts at the
// moment the code under test logs.
type OnLog struct {
	slog.Handler
	Match string
	Do    func()
}

func (h *OnLog) Handle(ctx context.Context, r slog.Record) error {
	if strings.Contains(r.Message, h.Match) {
		h.Do()
	}
	return h.Handler.Handle(ctx, r)
}

func (h *OnLog) WithAttrs(as []slog.Attr) slog.Handler {
	return &OnLog{Handler: h.Handler.WithAttrs(as), Match: h.Match, Do: h.Do}
}

func (h *OnLog) WithGroup(name string) slog.Handler {
	return &OnLog{Handler: h.Handler.WithGroup(name), Match: h.Match, Do: h.Do}
}
