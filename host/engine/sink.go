package engine

import (
	"context"
	"encoding/json"
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
// redis_stream sinks of host/sink do).
type Sink interface {
	Deliver(ctx context.Context, e SideEffect) error
}
