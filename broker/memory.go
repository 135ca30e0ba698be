package broker

import (
	"context"
	"fmt"
	"sync"
)

// Memory is the in-process broker: one instance, no network. Entities are
// kept as JSON, as the redis broker keeps them, so both behave the same.
//
// Updates of one key are serialised by a per-key lock held while fn runs, so
// on their own they never conflict; ForceConflicts makes the next updates of
// a key lose their compare-and-set, to test how scripts handle retries.
//
// All methods may be called concurrently.
type Memory struct {
	maxRetries int

	mu      sync.Mutex
	keys    map[Topic]*memEntry
	subs    map[Topic]map[*memSub]struct{}
	closed  bool
	nextSub uint64
}

type memEntry struct {
	mu        sync.Mutex // held while an update of this key runs
	value     []byte     // nil: the entity does not exist
	users     int        // updates waiting for or holding mu; the entry is dropped at 0 when value is nil
	conflicts int        // forced conflicts left
}

type memSub struct {
	m     *Memory
	topic Topic
	h     Handler
	once  sync.Once
}

var _ Broker = (*Memory)(nil)

// NewMemory returns an empty memory broker. maxRetries bounds how many times
// an update is retried after a (forced) conflict; below 0 means 0.
func NewMemory(maxRetries int) *Memory {
	if maxRetries < 0 {
		maxRetries = 0
	}
	return &Memory{
		maxRetries: maxRetries,
		keys:       make(map[Topic]*memEntry),
		subs:       make(map[Topic]map[*memSub]struct{}),
	}
}

func (m *Memory) acquire(t Topic) (*memEntry, error) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, ErrUnavailable
	}
	e := m.keys[t]
	if e == nil {
		e = &memEntry{}
		m.keys[t] = e
	}
	e.users++
	m.mu.Unlock()
	e.mu.Lock()
	return e, nil
}

func (m *Memory) release(t Topic, e *memEntry) {
	e.mu.Unlock()
	m.mu.Lock()
	e.users--
	if e.users == 0 && e.value == nil && e.conflicts == 0 {
		delete(m.keys, t)
	}
	m.mu.Unlock()
}

// Update implements Broker.
func (m *Memory) Update(ctx context.Context, t Topic, fn UpdateFunc) error {
	e, err := m.acquire(t)
	if err != nil {
		return err
	}
	defer m.release(t, e)
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		next, op, err := fn(e.value, attempt > 0)
		if err != nil {
			return err
		}
		m.mu.Lock()
		conflict := e.conflicts > 0
		if conflict {
			e.conflicts--
		}
		m.mu.Unlock()
		if conflict {
			if attempt >= m.maxRetries {
				return ErrConflict
			}
			continue
		}
		switch op {
		case Set:
			e.value = append([]byte(nil), next...)
		case Delete:
			e.value = nil
		}
		return nil
	}
}

// InProcess marks Memory as a broker that never waits for the network.
func (*Memory) InProcess() {}

// ForceConflicts makes the next n update attempts on t lose their
// compare-and-set, as if another instance had written in between: the
// attempt's result is discarded and fn runs again with retried = true.
func (m *Memory) ForceConflicts(t Topic, n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.keys[t]
	if e == nil {
		e = &memEntry{}
		m.keys[t] = e
	}
	e.conflicts += n
}

// Get returns the JSON of the entity of t, or nil when it does not exist.
func (m *Memory) Get(t Topic) []byte {
	m.mu.Lock()
	e := m.keys[t]
	m.mu.Unlock()
	if e == nil {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.value == nil {
		return nil
	}
	return append([]byte(nil), e.value...)
}

// Set replaces the entity of t (nil deletes it), outside any script.
func (m *Memory) Set(t Topic, value []byte) error {
	return m.Update(context.Background(), t, func([]byte, bool) ([]byte, Op, error) {
		if value == nil {
			return nil, Delete, nil
		}
		return value, Set, nil
	})
}

// Len returns how many entities exist, for tests and leak checks.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, e := range m.keys {
		if e.value != nil {
			n++
		}
	}
	return n
}

// Subscribe implements Broker.
func (m *Memory) Subscribe(_ context.Context, t Topic, h Handler) (Subscription, error) {
	if h == nil {
		return nil, fmt.Errorf("broker: subscribe %s: nil handler", t)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrUnavailable
	}
	s := &memSub{m: m, topic: t, h: h}
	set := m.subs[t]
	if set == nil {
		set = make(map[*memSub]struct{})
		m.subs[t] = set
	}
	set[s] = struct{}{}
	return s, nil
}

// Close implements Subscription.
func (s *memSub) Close() error {
	s.once.Do(func() {
		s.m.mu.Lock()
		defer s.m.mu.Unlock()
		set := s.m.subs[s.topic]
		delete(set, s)
		if len(set) == 0 {
			delete(s.m.subs, s.topic)
		}
	})
	return nil
}

// Subscriptions returns how many topics have at least one subscriber, for
// tests and leak checks.
func (m *Memory) Subscriptions() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.subs)
}

// Publish implements Broker. Handlers run on the caller's goroutine, in
// subscription order; they must not block.
func (m *Memory) Publish(_ context.Context, t Topic, env Envelope) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrUnavailable
	}
	set := m.subs[t]
	hs := make([]Handler, 0, len(set))
	for s := range set {
		hs = append(hs, s.h)
	}
	m.mu.Unlock()
	for _, h := range hs {
		h(env)
	}
	return nil
}

// Close implements Broker: later calls fail with ErrUnavailable.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	m.subs = make(map[Topic]map[*memSub]struct{})
	return nil
}
