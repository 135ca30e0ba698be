// Package broker holds the state that connections of one integration share
// (an entity per key) and routes broker messages between connections, on
// one instance (Memory) or across many (Redis, later).
//
// The broker knows nothing of Lua or sockets: entities are JSON documents and
// messages are envelopes of JSON.
package broker

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// Topic names one entity and its message channel: integration Namespace
// (the integration's name) and Key (what broker_key returned).
type Topic struct {
	Namespace string
	Key       string
}

// String is the topic's name without any prefix: "<namespace>.<key>".
func (t Topic) String() string { return t.Namespace + "." + t.Key }

// Op says what an update does with the entity.
type Op uint8

const (
	// Abort leaves the entity as it was (es.ABORT, or no broker_data).
	Abort Op = iota
	// Set replaces the entity with the returned JSON.
	Set
	// Delete removes the entity (es.DELETE).
	Delete
)

// UpdateFunc computes the next value of an entity from current, its JSON
// (nil when the entity does not exist). retried is true when an earlier
// attempt lost a compare-and-set: the function may run several times and
// only the attempt whose result commits counts. An error aborts the update
// with nothing committed and is returned by Update as it is.
type UpdateFunc func(current []byte, retried bool) (next []byte, op Op, err error)

// Envelope is a broker message as it travels between instances:
// {target, message, broker_key, source}. Source is the channel id of the
// connection that published it; it never receives its own message.
type Envelope struct {
	Target    string          `json:"target"`
	Message   json.RawMessage `json:"message"`
	BrokerKey string          `json:"broker_key"`
	Source    string          `json:"source"`
}

// Handler receives the envelopes published on a subscribed topic. It must
// not block: the broker calls it from a delivery goroutine (the Redis
// broker has one per subscription connection, so calls may be concurrent).
type Handler func(Envelope)

// Broker is what the host needs from shared state. All methods may be called
// concurrently.
type Broker interface {
	// Update runs fn on the entity of t and commits its result atomically,
	// running fn again (retried = true) when another writer got in first.
	// After the configured number of retries it fails with ErrConflict and
	// nothing is committed.
	Update(ctx context.Context, t Topic, fn UpdateFunc) error
	// Subscribe delivers every envelope later published on t to h until the
	// returned Subscription is closed. When Subscribe returns, the
	// subscription is active: a message published afterwards is delivered.
	Subscribe(ctx context.Context, t Topic, h Handler) (Subscription, error)
	// Publish sends env to every subscriber of t, on every instance. Delivery
	// is at most once.
	Publish(ctx context.Context, t Topic, env Envelope) error
	// Close releases the broker's resources.
	Close() error
}

// InProcess is implemented by a broker whose updates and publishes never
// wait for the network (the memory broker): an update waits only for the
// other updates of its key in this process. The host may then run a
// message that updates no key on the goroutine that read it.
type InProcess interface {
	InProcess()
}

// Subscription is an active subscription; Close ends it and may be called
// more than once.
type Subscription interface {
	Close() error
}

// The defaults of the host's configuration ([broker] max_retries and
// retry_backoff), which tests of contention run on.
const (
	DefaultMaxRetries   = 10
	DefaultRetryBackoff = time.Millisecond
)

// Errors a broker returns. The host turns them into the error codes of the
// same name for the client.
var (
	// ErrConflict: the compare-and-set kept losing until the retry limit.
	ErrConflict = errors.New("broker_conflict: the entity kept changing; retry limit reached")
	// ErrUnavailable: the broker cannot be reached.
	ErrUnavailable = errors.New("broker_unavailable: the broker cannot be reached")
	// ErrOutcomeUnknown: the broker became unreachable after the update was
	// sent and before its answer came, so it may or may not have been
	// committed. An error that matches it also matches ErrUnavailable.
	ErrOutcomeUnknown = errors.New("broker_outcome_unknown: the update may have been applied")
)
