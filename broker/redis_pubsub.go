package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisChan is one subscribed channel and its local subscribers.
type redisChan struct {
	subs map[*redisSub]Handler
}

// redisSub is one local subscription.
type redisSub struct {
	r    *Redis
	name string
	done bool // guarded by r.cmdMu
}

// Subscribe implements Broker. The first local subscription of a topic
// sends SUBSCRIBE; every call then waits for the reply to a PING sent after
// it on the subscription connection, so the subscription is active when
// Subscribe returns.
func (r *Redis) Subscribe(ctx context.Context, t Topic, h Handler) (Subscription, error) {
	name := r.name(t)
	if h == nil {
		return nil, fmt.Errorf("redis broker: subscribe %s: nil handler", name)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("redis broker: subscribe %s: %w", name, err)
	}
	s := &redisSub{r: r, name: name}
	cctx, cancel := context.WithTimeout(ctx, 2*r.timeout)
	defer cancel()

	r.cmdMu.Lock()
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		r.cmdMu.Unlock()
		return nil, r.errClosed("subscribe", name)
	}
	c := r.chans[name]
	first := c == nil
	if first {
		c = &redisChan{subs: make(map[*redisSub]Handler)}
		r.chans[name] = c
	}
	c.subs[s] = h
	r.fenceN++
	token := "es-subscribed-" + strconv.FormatUint(r.fenceN, 10)
	fence := make(chan error, 1)
	r.fences[token] = fence
	r.mu.Unlock()
	ps := r.ps.Load()
	var err error
	if first {
		// On an error go-redis still keeps the channel, and subscribes it
		// when it reconnects; s.Close below makes it forget it again.
		err = ps.Subscribe(cctx, name)
	}
	if err == nil {
		err = ps.Ping(cctx, token)
	}
	r.cmdMu.Unlock()

	if err == nil {
		select {
		case err = <-fence:
		case <-cctx.Done():
			err = fmt.Errorf("no reply on the subscription connection within %v", 2*r.timeout)
		}
	}
	if err != nil {
		r.mu.Lock()
		delete(r.fences, token)
		r.mu.Unlock()
		s.Close()
		return nil, r.fail(ctx, "subscribe", name, err)
	}
	return s, nil
}

// Close implements Subscription; the last local subscription of a channel
// sends UNSUBSCRIBE.
func (s *redisSub) Close() error {
	r := s.r
	r.cmdMu.Lock()
	defer r.cmdMu.Unlock()
	if s.done {
		return nil
	}
	s.done = true
	r.mu.Lock()
	c := r.chans[s.name]
	last := false
	if c != nil {
		delete(c.subs, s)
		if len(c.subs) == 0 {
			delete(r.chans, s.name)
			last = true
		}
	}
	closed := r.closed
	r.mu.Unlock()
	if last && !closed {
		ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
		defer cancel()
		// go-redis forgets the channel before sending, so even when Redis
		// is unreachable it is not subscribed again on reconnection.
		if err := r.ps.Load().Unsubscribe(ctx, s.name); err != nil {
			r.log.Debug("redis broker: unsubscribe failed", r.describe(), slog.String("channel", s.name), slog.Any("err", err))
		}
	}
	return nil
}

// Subscriptions returns how many channels this broker is subscribed to,
// for tests and leak checks.
func (r *Redis) Subscriptions() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.chans)
}

// receive is the receive loop of the subscription connection. It delivers
// messages to the handlers inline, answers Subscribe's PINGs, and keeps
// calling Receive while the connection is down: each call redials, and
// go-redis subscribes every channel again once it is back.
func (r *Redis) receive() {
	defer close(r.loopDone)
	failures := 0
	for {
		ps := r.ps.Load()
		msg, err := ps.Receive(context.Background())
		if err != nil {
			select {
			case <-r.done:
				return
			default:
			}
			if ps != r.ps.Load() {
				continue // replaced by health: read the new one
			}
			r.connected.Store(false)
			r.failFences(err)
			failures++
			if failures == 1 {
				r.log.Warn("redis broker: subscription connection lost; reconnecting", r.describe(), slog.Any("err", err))
			}
			t := time.NewTimer(min(50*time.Millisecond<<min(failures, 5), time.Second))
			select {
			case <-t.C:
			case <-r.done:
				t.Stop()
				return
			}
			continue
		}
		r.lastRecv.Store(time.Now().UnixNano())
		r.connected.Store(true)
		if failures > 0 {
			failures = 0
			r.log.Info("redis broker: subscription connection restored", r.describe(), slog.Int("channels", r.Subscriptions()))
		}
		switch m := msg.(type) {
		case *redis.Message:
			r.deliver(m)
		case *redis.Pong:
			r.mu.Lock()
			fence := r.fences[m.Payload]
			delete(r.fences, m.Payload)
			r.mu.Unlock()
			if fence != nil {
				fence <- nil
			}
		}
	}
}

// deliver hands a message to the local subscribers of its channel.
func (r *Redis) deliver(m *redis.Message) {
	var env Envelope
	if err := json.Unmarshal([]byte(m.Payload), &env); err != nil {
		r.log.Warn("redis broker: dropped a message that is not an envelope", r.describe(),
			slog.String("channel", m.Channel), slog.Any("err", err))
		return
	}
	r.mu.Lock()
	c := r.chans[m.Channel]
	var hs []Handler
	if c != nil {
		hs = make([]Handler, 0, len(c.subs))
		for _, h := range c.subs {
			hs = append(hs, h)
		}
	}
	r.mu.Unlock()
	for _, h := range hs {
		h(env)
	}
}

// failFences fails every Subscribe waiting for a PING reply: its PING went
// on a connection that is gone.
func (r *Redis) failFences(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for token, ch := range r.fences {
		ch <- fmt.Errorf("subscription connection lost: %w", err)
		delete(r.fences, token)
	}
}

// health replaces a subscription connection that went silent: a connection
// whose peer vanished without closing it (a network partition, a frozen
// server) is not noticed by reads. When nothing was received for a while it
// sends a PING; when that gets no reply either, it closes the PubSub and
// opens a new one subscribed to every channel.
func (r *Redis) health() {
	defer close(r.healthDone)
	every := 3 * r.timeout
	tick := time.NewTicker(every)
	defer tick.Stop()
	var pingAt time.Time // the unanswered health PING; zero: none
	for {
		select {
		case <-r.done:
			return
		case <-tick.C:
		}
		if !r.connected.Load() {
			pingAt = time.Time{} // the receive loop is reconnecting already
			continue
		}
		last := time.Unix(0, r.lastRecv.Load())
		switch {
		case !pingAt.IsZero() && !last.Before(pingAt):
			pingAt = time.Time{} // answered
		case !pingAt.IsZero() && time.Since(pingAt) >= every:
			r.log.Warn("redis broker: no reply on the subscription connection; replacing it", r.describe(),
				slog.Duration("silent", time.Since(last)))
			r.replace()
			pingAt = time.Time{}
			continue
		}
		if pingAt.IsZero() && time.Since(last) >= every {
			ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
			r.cmdMu.Lock()
			err := r.ps.Load().Ping(ctx)
			r.cmdMu.Unlock()
			cancel()
			if err == nil {
				pingAt = time.Now()
			}
		}
	}
}

// replace swaps the subscription connection for a new one subscribed to
// every channel, and closes the old one (the receive loop moves on).
func (r *Redis) replace() {
	r.cmdMu.Lock()
	r.mu.Lock()
	names := make([]string, 0, len(r.chans))
	for name := range r.chans {
		names = append(names, name)
	}
	r.mu.Unlock()
	ps := r.client.Subscribe(context.Background())
	if len(names) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
		// On an error go-redis keeps the channels and subscribes them when
		// the receive loop gets it connected.
		_ = ps.Subscribe(ctx, names...)
		cancel()
	}
	old := r.ps.Swap(ps)
	r.failFences(errors.New("replaced after a PING got no reply"))
	r.cmdMu.Unlock()
	old.Close()
}
