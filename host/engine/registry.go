package engine

import (
	"context"
	"sync"

	"github.com/electric-socket/electric-socket/broker"
	"github.com/electric-socket/electric-socket/host/metrics"
)

// registry knows which local sessions answer to which (identifier, key),
// and holds one broker subscription per key that has local sessions: the
// first session on a key subscribes, the last one to leave unsubscribes.
//
// All methods may be called concurrently.
type registry struct {
	broker  broker.Broker
	metrics *metrics.Metrics // nil-safe

	mu     sync.Mutex
	topics map[broker.Topic]*topicEntry
}

type topicEntry struct {
	ready   chan struct{} // closed once the subscription attempt ended
	err     error         // the subscription's error, set before ready closes
	sub     broker.Subscription
	count   int                              // sessions joined, with or without identifier
	members map[string]map[*Session]struct{} // identifier -> sessions
}

func newRegistry(b broker.Broker) *registry {
	return &registry{broker: b, topics: make(map[broker.Topic]*topicEntry)}
}

// join registers s under (id, t) and returns once the instance's
// subscription to t is active (SPEC 5.9), or with the subscription's error,
// in which case s is not registered.
func (r *registry) join(ctx context.Context, t broker.Topic, id string, hasID bool, s *Session) error {
	r.mu.Lock()
	e := r.topics[t]
	first := e == nil
	if first {
		e = &topicEntry{ready: make(chan struct{}), members: make(map[string]map[*Session]struct{})}
		r.topics[t] = e
	}
	e.count++
	if hasID {
		set := e.members[id]
		if set == nil {
			set = make(map[*Session]struct{})
			e.members[id] = set
		}
		set[s] = struct{}{}
	}
	r.mu.Unlock()

	if first {
		sub, err := r.broker.Subscribe(ctx, t, func(env broker.Envelope) { r.deliver(t, env) })
		r.mu.Lock()
		e.sub, e.err = sub, err
		r.mu.Unlock()
		close(e.ready)
	} else {
		select {
		case <-e.ready:
		case <-ctx.Done():
			r.leave(t, id, hasID, s)
			return ctx.Err()
		}
	}
	r.mu.Lock()
	err := e.err
	r.mu.Unlock()
	if err != nil {
		r.leave(t, id, hasID, s)
		return err
	}
	return nil
}

// leave removes s; the last session on t ends the subscription.
func (r *registry) leave(t broker.Topic, id string, hasID bool, s *Session) {
	r.mu.Lock()
	e := r.topics[t]
	if e == nil {
		r.mu.Unlock()
		return
	}
	if hasID {
		if set := e.members[id]; set != nil {
			delete(set, s)
			if len(set) == 0 {
				delete(e.members, id)
			}
		}
	}
	e.count--
	var sub broker.Subscription
	if e.count == 0 {
		delete(r.topics, t)
		sub = e.sub
	}
	r.mu.Unlock()
	if sub != nil {
		sub.Close()
	}
}

// deliver hands env to every local session on t whose identifier is its
// target, except the session that published it.
func (r *registry) deliver(t broker.Topic, env broker.Envelope) {
	r.mu.Lock()
	e := r.topics[t]
	var targets []*Session
	if e != nil {
		for s := range e.members[env.Target] {
			if s.channel.ID != env.Source {
				targets = append(targets, s)
			}
		}
	}
	r.mu.Unlock()
	r.metrics.BrokerDelivered(t.Namespace, len(targets))
	for _, s := range targets {
		s.brokerMessage(env)
	}
}

// subscriptions returns how many keys this instance is subscribed to.
func (r *registry) subscriptions() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.topics)
}

// Receives reports whether a broker message env published on t reaches a
// session of e: one whose identifier is its target and that did not
// publish it (SPEC 5.4), as registry.deliver chooses them. The fixture
// runner's fleet asks it.
func (e *Engine) Receives(t broker.Topic, env broker.Envelope) bool {
	e.reg.mu.Lock()
	defer e.reg.mu.Unlock()
	if te := e.reg.topics[t]; te != nil {
		for s := range te.members[env.Target] {
			if s.channel.ID != env.Source {
				return true
			}
		}
	}
	return false
}
