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
			r.probeSubscribed(ps, false)
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
			r.mu.Lock()
			r.probe.since = time.Now() // the confirmation is awaited from now on
			r.mu.Unlock()
			r.log.Info("redis broker: subscription connection restored", r.describe(), slog.Int("channels", r.Subscriptions()))
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Channel == r.probeChan && m.Kind == "subscribe" {
				r.probeSubscribed(ps, true)
			}
		case *redis.Message:
			if m.Channel == r.probeChan {
				r.probeReceived(m.Payload)
				continue
			}
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

// errNoProbeYet is the probe's state until the first probe came back.
var errNoProbeYet = errors.New("no probe came back yet")

// probeState is the state of the end-to-end probe of the subscription
// (the type's doc: Probe). Guarded by Redis.mu.
type probeState struct {
	// subscribed: Redis confirmed the probe channel's SUBSCRIBE on the
	// current subscription connection. A probe published before that could
	// reach Redis first and be lost, so none is sent until then.
	subscribed bool
	since      time.Time // when the current connection began waiting for that
	token      string    // the probe awaited; "" when none
	sentAt     time.Time // when it was published
	seq        uint64
	err        error // why the subscription counts as broken; nil: it delivers
}

// Check implements Checker: nil while the subscription connection is up
// and the last probe came back in time.
func (r *Redis) Check(ctx context.Context) error {
	if r.isClosed() {
		return r.errClosed("check", r.target.String())
	}
	if !r.connected.Load() {
		return fmt.Errorf("%w: the subscription connection to %s is down", ErrUnavailable, r.target)
	}
	r.mu.Lock()
	err := r.probe.err
	r.mu.Unlock()
	if err != nil {
		return fmt.Errorf("%w: pub/sub on %s: %v", ErrUnavailable, r.target, err)
	}
	return nil
}

// probeSubscribed is called by the receive loop when Redis confirms a
// subscription on ps; subscribed false marks ps's subscriptions as gone
// (the connection broke; go-redis subscribes again when it reconnects).
func (r *Redis) probeSubscribed(ps *redis.PubSub, subscribed bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ps != r.ps.Load() {
		return // a replaced connection
	}
	if !subscribed && r.probe.subscribed {
		r.probe.since = time.Now()
	}
	r.probe.subscribed = subscribed
}

// probeReceived is called by the receive loop for a message on the probe
// channel.
func (r *Redis) probeReceived(payload string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if payload != r.probe.token {
		return // a late probe: the one awaited decides
	}
	if r.probe.err != nil && r.probe.err != errNoProbeYet {
		r.log.Info("redis broker: pub/sub delivers again", r.describe())
	}
	r.probe.token, r.probe.err = "", nil
}

// probeLoop publishes a probe to the broker's own channel every
// r.probeEvery, and replaces the subscription connection when a probe is
// late by r.probeTimeout and nothing else arrived meanwhile (or when it is
// late by ten times that whatever arrived: the connection delivers, but not
// the probe), or when Redis did not confirm the probe channel's SUBSCRIBE
// within r.probeTimeout. A connection that is down is the receive loop's
// business.
func (r *Redis) probeLoop() {
	defer close(r.healthDone)
	tick := time.NewTicker(r.probeEvery)
	defer tick.Stop()
	for {
		if !r.probeOnce() {
			continue // at once: the connection was replaced, or the subscription just confirmed
		}
		select {
		case <-r.done:
			return
		case <-tick.C:
		}
	}
}

// probeOnce is one step of probeLoop; it returns whether the loop should
// wait for the next tick.
func (r *Redis) probeOnce() bool {
	select {
	case <-r.done:
		return true
	default:
	}
	if !r.connected.Load() {
		r.mu.Lock()
		r.probe.token = "" // the receive loop reconnects; Check says so meanwhile
		r.mu.Unlock()
		return true
	}
	r.mu.Lock()
	p := r.probe
	r.mu.Unlock()
	var why error
	switch {
	case !p.subscribed:
		if wait := time.Since(p.since); wait >= r.probeTimeout {
			why = fmt.Errorf("Redis did not confirm the subscription within %v; the subscription connection was replaced",
				wait.Round(time.Millisecond))
			break
		}
		// Wait for the confirmation, a little at a time.
		select {
		case <-r.done:
		case <-time.After(min(r.probeEvery, r.probeTimeout) / 4):
		}
		return false
	case p.token != "":
		late := time.Since(p.sentAt)
		if late < r.probeTimeout {
			return true
		}
		silent := time.Since(time.Unix(0, r.lastRecv.Load()))
		if silent < r.probeTimeout && late < 10*r.probeTimeout {
			return true // busy delivering: the probe waits behind other messages
		}
		why = fmt.Errorf("no probe came back within %v (nothing received for %v); the subscription connection was replaced",
			late.Round(time.Millisecond), silent.Round(time.Millisecond))
	}
	if why != nil {
		r.log.Warn("redis broker: the subscription delivers nothing; replacing its connection", r.describe(), slog.Any("why", why))
		r.mu.Lock()
		r.probe.token, r.probe.err = "", why
		r.mu.Unlock()
		r.replace()
		return false
	}
	r.mu.Lock()
	r.probe.seq++
	token := r.opPrefix + "." + strconv.FormatUint(r.probe.seq, 10)
	r.probe.token, r.probe.sentAt = token, time.Now()
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	cmd := redis.NewIntCmd(ctx, "publish", r.probeChan, token)
	cmd.SetFirstKeyPos(1)
	err := r.client.Process(ctx, pubCmd{cmd})
	cancel()
	if err != nil {
		r.mu.Lock()
		if r.probe.token == token {
			r.probe.token, r.probe.err = "", fmt.Errorf("cannot publish a probe: %w", err)
		}
		r.mu.Unlock()
	}
	return true
}

// replace swaps the subscription connection for a new one subscribed to
// every channel, and closes the old one (the receive loop moves on).
func (r *Redis) replace() {
	r.cmdMu.Lock()
	r.mu.Lock()
	names := make([]string, 0, len(r.chans)+1)
	names = append(names, r.probeChan)
	for name := range r.chans {
		names = append(names, name)
	}
	r.mu.Unlock()
	ps := r.client.Subscribe(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	// On an error go-redis keeps the channels and subscribes them when the
	// receive loop gets it connected.
	_ = ps.Subscribe(ctx, names...)
	cancel()
	r.mu.Lock()
	old := r.ps.Swap(ps)
	r.probe.subscribed, r.probe.since = false, time.Now()
	r.mu.Unlock()
	r.failFences(errors.New("the subscription connection delivered nothing and was replaced"))
	r.cmdMu.Unlock()
	old.Close()
}
