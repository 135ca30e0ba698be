package host

import (
	"context"
	"encoding/json"
	"log/slog"

	"github.com/electric-socket/electric-socket/host/metrics"
)

// SideEffect is one entry of an action's side_effects, handed to the sink
// after its call committed.
type SideEffect struct {
	Integration string          // the integration's name
	Channel     string          // the id of the connection whose call produced it
	Function    string          // the integration function that returned it
	Payload     json.RawMessage // the side effect table, as JSON
}

// Sink receives side effects, in order per connection, only for committed
// calls (SPEC 5.11). Deliver is called from the connection's goroutine: a
// sink that talks to a slow system must queue and return (the webhook and
// redis_stream sinks do). A sink that holds a queue also implements
// SinkCloser, which App.Shutdown calls after the last on_close.
type Sink interface {
	Deliver(ctx context.Context, e SideEffect) error
}

// SinkCloser is the optional capability of a sink that must flush: Close
// delivers what is queued until ctx ends, then gives up on the rest.
type SinkCloser interface {
	Close(ctx context.Context) error
}

// LogSink writes each side effect to the log: the default sink.
type LogSink struct {
	Log     *slog.Logger
	Metrics *metrics.Metrics // nil-safe
}

// Deliver implements Sink.
func (s LogSink) Deliver(_ context.Context, e SideEffect) error {
	s.Log.Info("side effect", "integration", e.Integration, "channel", e.Channel,
		"function", e.Function, "effect", string(e.Payload))
	s.Metrics.EffectsSent("log", 1)
	return nil
}
