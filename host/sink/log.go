// Package sink delivers side effects (SPEC 5.11) to the log, to a webhook
// or to a Redis stream; the last two from a bounded queue, in batches, with
// retries.
package sink

import (
	"context"
	"log/slog"

	"github.com/electric-socket/electric-socket/host/engine"
	"github.com/electric-socket/electric-socket/host/metrics"
)

// Closer is the optional capability of a sink that must flush: Close
// delivers what is queued until ctx ends, then gives up on the rest.
// App.Shutdown calls it after the last on_close.
type Closer interface {
	Close(ctx context.Context) error
}

// Log writes each side effect to the log: the default sink.
type Log struct {
	Log     *slog.Logger
	Metrics *metrics.Metrics // nil-safe
}

// Deliver implements engine.Sink.
func (s Log) Deliver(_ context.Context, e engine.SideEffect) error {
	s.Log.Info("side effect", "integration", e.Integration, "channel", e.Channel,
		"function", e.Function, "effect", string(e.Payload))
	s.Metrics.EffectsSent("log", 1)
	return nil
}
