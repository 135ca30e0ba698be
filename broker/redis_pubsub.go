package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Pub/sub (see the Redis type's doc): the subscription connections, their
// receive loops, Subscribe's fences and the probes behind Check. Where the
// connections go depends on the deployment: redis_sentinel.go (one on
// every data node) and redis_shards.go (one per Cluster shard); one server
// has one, made by go-redis's client.

// subKind says how a subscription connection is bound to its server.
type subKind uint8

const (
	// subPlain: the client's (one server); go-redis redials it and
	// subscribes every channel again.
	subPlain subKind = iota
	// subSentinel: a data node of a Sentinel deployment, on a client of
	// its own; it delivers only messages received on a connection that was
	// opened while the node was a master (see redis_sentinel.go).
	subSentinel
	// subShard: a Cluster shard, with SSUBSCRIBE; on any error it is
	// closed and its channels subscribed again where the slot map says
	// (redis_shards.go).
	subShard
)

// subConn is one subscription connection (a go-redis PubSub) and what its
// receive loop knows of it.
type subConn struct {
	kind  subKind
	ps    *redis.PubSub
	own   *redis.Client // a client of its own, closed with it; nil: none
	node  string        // the address of its server ("" for subPlain)
	shard string        // subShard: the address of its shard's master when it was opened
	probe *prober       // the probe it answers for

	// role (subSentinel): how many connections its client opened << 1,
	// | 1 when the last one was opened on a master (OnConnect asks ROLE).
	role atomic.Uint64

	connected atomic.Bool  // its last read succeeded
	lastRecv  atomic.Int64 // UnixNano of the last reply it delivered

	// Guarded by Redis.mu.
	chans     map[string]struct{} // subShard: the channels it carries, its probe channel included
	fences    []fence             // Subscribe calls waiting for a PING reply on it
	errReply  error               // an error reply that came since the last PING reply
	confirmed bool                // Redis confirmed its probe channel's subscription on its current connection
	gone      bool                // replaced or dropped: its loop ends
}

// live reports whether c delivers what it receives: a Sentinel node's
// connection only when it was opened on a master.
func (c *subConn) live() bool { return c.kind != subSentinel || c.role.Load()&1 == 1 }

// describe names c's server for logs and errors.
func (c *subConn) describe() string {
	if c.node == "" {
		return "the subscription connection"
	}
	return "the subscription connection to " + c.node
}

// fence is a Subscribe waiting for the reply to its PING.
type fence struct {
	token string
	done  chan error // capacity 1
}

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
// sends SUBSCRIBE (SSUBSCRIBE on a Cluster) on the connections that carry
// it; every call then waits for the reply to a PING sent after it on each
// of them that must deliver it, so the subscription is active when
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
	r.mu.Unlock()
	// On an error go-redis still keeps the channel, and subscribes it when
	// it reconnects; s.Close below makes it forget it again.
	carriers, err := r.carriers(cctx, name, first)
	var waits []chan error
	if err == nil {
		waits, err = r.sendFences(cctx, carriers)
	}
	r.cmdMu.Unlock()

	for _, w := range waits {
		if err != nil {
			break
		}
		select {
		case err = <-w:
		case <-cctx.Done():
			err = fmt.Errorf("no reply on the subscription connection within %v", 2*r.timeout)
		}
	}
	if err != nil {
		s.Close()
		return nil, r.fail(ctx, "subscribe", name, err)
	}
	return s, nil
}

// carriers returns the connections that must carry channel name for
// Subscribe to wait on, sending SUBSCRIBE (or SSUBSCRIBE) on those that
// carry it when subscribe is set. Called with r.cmdMu held.
func (r *Redis) carriers(ctx context.Context, name string, subscribe bool) ([]*subConn, error) {
	switch {
	case r.isCluster():
		return r.shardCarrier(ctx, name, subscribe)
	case r.sentinel != nil:
		return r.sentinelCarriers(ctx, name, subscribe)
	}
	r.mu.Lock()
	c := r.main
	r.mu.Unlock()
	if subscribe {
		if err := c.ps.Subscribe(ctx, name); err != nil {
			return nil, err
		}
	}
	return []*subConn{c}, nil
}

// sendFences sends a PING with a token of its own on each of conns and
// returns the channels its replies (or the connections' failures) come
// on. Called with r.cmdMu held.
func (r *Redis) sendFences(ctx context.Context, conns []*subConn) ([]chan error, error) {
	var waits []chan error
	for _, c := range conns {
		r.mu.Lock()
		r.fenceN++
		f := fence{token: "es-subscribed-" + strconv.FormatUint(r.fenceN, 10), done: make(chan error, 1)}
		c.fences = append(c.fences, f)
		r.mu.Unlock()
		if err := c.ps.Ping(ctx, f.token); err != nil {
			r.mu.Lock()
			c.fences = slices.DeleteFunc(c.fences, func(o fence) bool { return o.token == f.token })
			r.mu.Unlock()
			return nil, err
		}
		waits = append(waits, f.done)
	}
	return waits, nil
}

// Close implements Subscription; the last local subscription of a channel
// sends UNSUBSCRIBE (SUNSUBSCRIBE).
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
		r.unsubscribe(s.name)
	}
	return nil
}

// unsubscribe sends UNSUBSCRIBE (SUNSUBSCRIBE) of name where it is
// subscribed. go-redis forgets the channel before sending, so even when
// Redis is unreachable it is not subscribed again on reconnection. Called
// with r.cmdMu held.
func (r *Redis) unsubscribe(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	if r.isCluster() {
		r.shardUnsubscribe(ctx, name)
		return
	}
	r.mu.Lock()
	conns := r.connsLocked()
	r.mu.Unlock()
	for _, c := range conns {
		if err := c.ps.Unsubscribe(ctx, name); err != nil {
			r.log.Debug("redis broker: unsubscribe failed", r.describe(), slog.String("channel", name), slog.String("node", c.node), slog.Any("err", err))
		}
	}
}

// Subscriptions returns how many channels this broker is subscribed to,
// for tests and leak checks.
func (r *Redis) Subscriptions() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.chans)
}

// connsLocked returns the broker's subscription connections. r.mu held.
func (r *Redis) connsLocked() []*subConn {
	conns := make([]*subConn, 0, len(r.conns))
	for c := range r.conns {
		conns = append(conns, c)
	}
	return conns
}

// startConn registers c and starts its receive loop; false (and c is
// closed) when the broker is closed.
func (r *Redis) startConn(c *subConn) bool {
	c.connected.Store(true)
	c.lastRecv.Store(time.Now().UnixNano())
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		c.close()
		return false
	}
	r.conns[c] = struct{}{}
	r.loops.Add(1)
	r.mu.Unlock()
	go r.receive(c)
	return true
}

// dropLocked takes c out of the broker (its loop ends) and fails the
// Subscribe calls waiting on it. r.mu held; the caller closes c.
func (r *Redis) dropLocked(c *subConn, why error) {
	c.gone = true
	delete(r.conns, c)
	r.failFencesLocked(c, why)
}

// close closes c's PubSub and its own client.
func (c *subConn) close() {
	c.ps.Close()
	if c.own != nil {
		c.own.Close()
	}
}

// isGone reports whether c was replaced or dropped.
func (r *Redis) isGone(c *subConn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return c.gone
}

// receive is the receive loop of subscription connection c. It delivers
// messages to the handlers inline, answers Subscribe's PINGs, and, for a
// connection go-redis redials, keeps calling Receive while it is down:
// each call redials, and go-redis subscribes every channel again once it
// is back. A Cluster shard's connection is rebuilt instead.
func (r *Redis) receive(c *subConn) {
	defer r.loops.Done()
	failures := 0
	for {
		before := c.role.Load()
		msg, err := c.ps.Receive(context.Background())
		if err != nil {
			if r.isClosed() || r.isGone(c) {
				return
			}
			var re redis.Error
			if errors.As(err, &re) {
				// An error reply (a (S)SUBSCRIBE refused): the connection
				// is sound; the next PING reply carries it to its Subscribe.
				r.mu.Lock()
				c.errReply = err
				pending := len(c.fences)
				r.mu.Unlock()
				if addr, _ := redirection(err); addr != "" && c.kind == subShard {
					r.reloadSlots()
					if pending == 0 { // a resubscription refused: the connection is on the wrong node
						r.rebuild(c, err)
						return
					}
				}
				continue
			}
			c.connected.Store(false)
			r.connLost(c, err)
			if c.kind == subShard {
				r.rebuild(c, err)
				return
			}
			failures++
			if failures == 1 {
				level := slog.LevelWarn
				if !c.live() {
					level = slog.LevelInfo // a replica's: it delivers nothing anyway
				}
				r.log.Log(context.Background(), level, "redis broker: subscription connection lost; reconnecting", r.describe(), slog.String("node", c.node), slog.Any("err", err))
			}
			if !r.backOff(failures) {
				return
			}
			continue
		}
		live := c.live()
		if live {
			c.lastRecv.Store(time.Now().UnixNano())
		}
		c.connected.Store(true)
		if failures > 0 {
			failures = 0
			r.mu.Lock()
			if !r.confirmedLocked(c.probe) {
				c.probe.state.since = time.Now() // the confirmation is awaited from now on
			}
			r.mu.Unlock()
			r.log.Info("redis broker: subscription connection restored", r.describe(), slog.String("node", c.node), slog.Int("channels", r.Subscriptions()))
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if why := r.subscribed(c, m); why != nil {
				r.rebuild(c, why)
				return
			}
		case *redis.Message:
			if c.kind == subSentinel && (c.role.Load() != before || before&1 == 0) {
				// Received on a connection opened on a replica (replicated
				// from its master, whose own connection delivers it), or
				// read while the connection changed: dropped.
				continue
			}
			if m.Channel == c.probe.channel {
				r.probeReceived(c.probe, m.Payload)
				continue
			}
			r.deliver(m)
		case *redis.Pong:
			r.mu.Lock()
			i := slices.IndexFunc(c.fences, func(f fence) bool { return f.token == m.Payload })
			var f fence
			if i >= 0 {
				f = c.fences[i]
				c.fences = slices.Delete(c.fences, i, i+1)
			}
			err := c.errReply
			c.errReply = nil
			r.mu.Unlock()
			if i >= 0 {
				f.done <- err
			}
		}
	}
}

// subscribed handles a subscription reply on c: the confirmation of its
// probe channel, or (Cluster) Redis unsubscribing a channel itself because
// its slot moved to another shard, which calls for a rebuild of c (the
// error says why).
func (r *Redis) subscribed(c *subConn, m *redis.Subscription) error {
	switch m.Kind {
	case "subscribe", "ssubscribe":
		if m.Channel != c.probe.channel {
			return nil
		}
		r.mu.Lock()
		c.confirmed = true
		r.mu.Unlock()
		select {
		case r.probeNow <- struct{}{}:
		default:
		}
	case "sunsubscribe":
		r.mu.Lock()
		_, wanted := c.chans[m.Channel]
		r.mu.Unlock()
		if wanted { // not ours: the slot left this node
			return fmt.Errorf("Redis unsubscribed %s: its slot moved", m.Channel)
		}
	}
	return nil
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

// connLost marks c's subscriptions as gone (go-redis subscribes again when
// it reconnects) and fails the Subscribe calls waiting on it: their PING
// went on a connection that is gone.
func (r *Redis) connLost(c *subConn, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	wasConfirmed := r.confirmedLocked(c.probe)
	c.confirmed = false
	if wasConfirmed && !r.confirmedLocked(c.probe) {
		c.probe.state.since = time.Now()
	}
	r.failFencesLocked(c, fmt.Errorf("subscription connection lost: %w", err))
}

func (r *Redis) failFencesLocked(c *subConn, err error) {
	for _, f := range c.fences {
		f.done <- err
	}
	c.fences = nil
	c.errReply = nil
}

// errNoProbeYet is the probe's state until the first probe came back.
var errNoProbeYet = errors.New("no probe came back yet")

// prober is one end-to-end probe: a channel the broker publishes to and
// expects back on the connections that answer for it (c.probe == p): the
// connection to one server, every Sentinel node's (a probe reaches the
// master's), or one Cluster shard's.
type prober struct {
	channel string
	where   string     // what it probes, for errors: "redis 127.0.0.1:6379", "the shard of 127.0.0.1:7000"
	state   probeState // guarded by Redis.mu
}

// probeState is the state of a probe (the Redis type's doc: Probe).
// Guarded by Redis.mu.
type probeState struct {
	since  time.Time // when its connections began waiting for the probe channel's confirmation
	token  string    // the probe awaited; "" when none
	sentAt time.Time // when it was published
	seq    uint64
	err    error // why pub/sub counts as broken; nil: it delivers
	ackErr error // (replicas > 0) why the master's replicas count as missing; nil: enough acknowledged the last probe
}

// answering returns the connections that answer for p. r.mu held.
func (r *Redis) answeringLocked(p *prober) []*subConn {
	var cs []*subConn
	for c := range r.conns {
		if c.probe == p {
			cs = append(cs, c)
		}
	}
	return cs
}

// confirmedLocked reports whether a connection that answers for p and
// delivers (live) has Redis's confirmation of p's channel. r.mu held.
func (r *Redis) confirmedLocked(p *prober) bool {
	for c := range r.conns {
		if c.probe == p && c.confirmed && c.connected.Load() && c.live() {
			return true
		}
	}
	return false
}

// probers returns the broker's probes: one, or one per Cluster shard
// connection.
func (r *Redis) probers() []*prober {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.prober != nil {
		return []*prober{r.prober}
	}
	var ps []*prober
	for c := range r.conns {
		ps = append(ps, c.probe)
	}
	slices.SortFunc(ps, func(a, b *prober) int { return strings.Compare(a.where, b.where) })
	return ps
}

// Check implements Checker: nil while every subscription connection the
// broker depends on is up, each probe came back in time, and (replicas >
// 0) enough replicas acknowledged the last probe; on a Cluster, also while
// every channel has a connection (its shard is reachable).
func (r *Redis) Check(ctx context.Context) error {
	if r.isClosed() {
		return r.errClosed("check", r.target.String())
	}
	ps := r.probers()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.orphans) > 0 {
		names := make([]string, 0, len(r.orphans))
		for name := range r.orphans {
			names = append(names, name)
		}
		slices.Sort(names)
		return fmt.Errorf("%w: pub/sub on %s: %d channels have no subscription connection (their shard is unreachable), %s first",
			ErrUnavailable, r.target, len(names), names[0])
	}
	if len(ps) == 0 {
		return fmt.Errorf("%w: pub/sub on %s: no subscription connection", ErrUnavailable, r.target)
	}
	for _, p := range ps {
		up := false
		for _, c := range r.answeringLocked(p) {
			if c.connected.Load() && c.live() {
				up = true
			}
		}
		switch {
		case !up:
			return fmt.Errorf("%w: the subscription connection to %s is down", ErrUnavailable, p.where)
		case p.state.err != nil:
			return fmt.Errorf("%w: pub/sub on %s: %v", ErrUnavailable, p.where, p.state.err)
		case p.state.ackErr != nil:
			return fmt.Errorf("%w: %s: %v", ErrUnavailable, p.where, p.state.ackErr)
		}
	}
	return nil
}

// probeReceived is called by a receive loop for a message on p's channel.
func (r *Redis) probeReceived(p *prober, payload string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if payload != p.state.token {
		return // a late probe: the one awaited decides
	}
	if p.state.err != nil && p.state.err != errNoProbeYet {
		r.log.Info("redis broker: pub/sub delivers again", r.describe(), slog.String("on", p.where))
	}
	p.state.token, p.state.err = "", nil
}

// probeLoop probes every r.probeEvery, and at once when a probe channel's
// subscription is confirmed.
func (r *Redis) probeLoop() {
	defer close(r.healthDone)
	tick := time.NewTicker(r.probeEvery)
	defer tick.Stop()
	for {
		ps := r.probers()
		done := make(chan struct{}, len(ps))
		for _, p := range ps {
			go func() {
				r.probeOnce(p)
				done <- struct{}{}
			}()
		}
		for range ps {
			<-done
		}
		select {
		case <-r.done:
			return
		case <-tick.C:
		case <-r.probeNow:
		}
	}
}

// probeOnce is one step of probe p: it publishes a probe to p's channel
// and, when a probe is late by r.probeTimeout and nothing else arrived
// meanwhile (or when it is late by ten times that whatever arrived: the
// connection delivers, but not the probe), or when Redis did not confirm
// the probe channel's subscription within r.probeTimeout, it replaces the
// connections that answer for p. A connection that is down is its receive
// loop's business.
func (r *Redis) probeOnce(p *prober) {
	select {
	case <-r.done:
		return
	default:
	}
	r.mu.Lock()
	up, confirmed := false, r.confirmedLocked(p)
	var last int64
	for _, c := range r.answeringLocked(p) {
		if c.connected.Load() && c.live() {
			up = true
			last = max(last, c.lastRecv.Load())
		}
	}
	if !up {
		p.state.token = "" // the receive loop reconnects; Check says so meanwhile
		r.mu.Unlock()
		return
	}
	st := p.state
	r.mu.Unlock()

	var why error
	switch {
	case !confirmed:
		wait := time.Since(st.since)
		if wait < r.probeTimeout {
			return
		}
		why = fmt.Errorf("Redis did not confirm the subscription within %v; the subscription connection was replaced",
			wait.Round(time.Millisecond))
	case st.token != "":
		late := time.Since(st.sentAt)
		if late < r.probeTimeout {
			return
		}
		silent := time.Since(time.Unix(0, last))
		if silent < r.probeTimeout && late < 10*r.probeTimeout {
			return // busy delivering: the probe waits behind other messages
		}
		why = fmt.Errorf("no probe came back within %v (nothing received for %v); the subscription connection was replaced",
			late.Round(time.Millisecond), silent.Round(time.Millisecond))
	case st.err == nil && time.Since(st.sentAt) < r.probeEvery/2:
		return // one came back a moment ago
	}
	if why != nil {
		r.mu.Lock()
		p.state.token, p.state.err = "", why
		r.mu.Unlock()
		r.log.Warn("redis broker: the subscription delivers nothing; replacing its connection", r.describe(), slog.String("on", p.where), slog.Any("why", why))
		r.replaceFor(p, why)
		return
	}
	r.mu.Lock()
	p.state.seq++
	token := r.opPrefix + "." + strconv.FormatUint(p.state.seq, 10)
	p.state.token, p.state.sentAt = token, time.Now()
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	err, ackErr := r.publishProbe(ctx, p.channel, token)
	cancel()
	r.mu.Lock()
	if err != nil {
		// Even when the probe came back already: a shard that refuses
		// writes does not serve.
		p.state.token, p.state.err = "", fmt.Errorf("cannot publish a probe: %w", err)
	} else {
		p.state.ackErr = ackErr
	}
	r.mu.Unlock()
	if err != nil {
		r.reloadSlots()
	}
}

// publishProbe publishes token on channel (SPUBLISH on a Cluster) and,
// when the broker waits for replicas, asks on the same connection how many
// replicas acknowledged (WAIT): ackErr says when too few did. On a Cluster
// it also sends a write the shard must accept, as updates must: Redis
// serves SPUBLISH while the cluster is down
// (cluster-allow-pubsubshard-when-down), not writes. (The write is PEXPIRE
// of a key named like the probe channel, which nothing creates: it changes
// nothing.)
func (r *Redis) publishProbe(ctx context.Context, channel, token string) (err, ackErr error) {
	command := "publish"
	var write *redis.IntCmd
	if r.isCluster() {
		command = "spublish"
		write = redis.NewIntCmd(ctx, "pexpire", channel, 1)
		write.SetFirstKeyPos(1)
	}
	cmd := redis.NewIntCmd(ctx, command, channel, token)
	cmd.SetFirstKeyPos(1)
	var wait *redis.IntCmd
	if r.replicas == 0 {
		if err := r.client.Process(ctx, pubCmd{cmd}); err != nil {
			return err, nil
		}
		if write != nil {
			_ = r.client.Process(ctx, write)
		}
	} else {
		var pipe redis.Pipeliner
		if cc, ok := r.client.(*redis.ClusterClient); ok {
			node, err := cc.MasterForKey(ctx, channel)
			if err != nil {
				return err, nil
			}
			pipe = node.Pipeline()
		} else {
			pipe = r.client.Pipeline()
		}
		wait = r.waitCmd(ctx)
		_ = pipe.Process(ctx, pubCmd{cmd})
		if write != nil {
			_ = pipe.Process(ctx, write)
		}
		_ = pipe.Process(ctx, waitCall{wait})
		_, _ = pipe.Exec(ctx)
		if err := cmd.Err(); err != nil {
			return err, nil
		}
	}
	if write != nil && write.Err() != nil {
		return fmt.Errorf("the shard refuses writes: %w", write.Err()), nil
	}
	if wait == nil {
		return nil, nil
	}
	switch n, err := wait.Result(); {
	case err != nil:
		return nil, fmt.Errorf("WAIT after the probe: %w", err)
	case n < int64(r.replicas):
		return nil, fmt.Errorf("%d of the %d replicas asked for ([broker] replicas) acknowledged the probe within %v: updates cannot be acknowledged",
			n, r.replicas, r.replicaTimeout)
	}
	return nil, nil
}

// replaceFor replaces the connections that answer for p: they deliver
// nothing.
func (r *Redis) replaceFor(p *prober, why error) {
	switch {
	case r.isCluster():
		r.mu.Lock()
		var c *subConn
		for o := range r.conns {
			if o.probe == p {
				c = o
			}
		}
		r.mu.Unlock()
		if c != nil {
			r.rebuild(c, why)
		}
	case r.sentinel != nil:
		r.reopenSentinel()
	default:
		r.replaceMain()
	}
}

// replaceMain swaps the subscription connection to one server for a new
// one subscribed to every channel, and closes the old one (its receive
// loop ends).
func (r *Redis) replaceMain() {
	r.cmdMu.Lock()
	defer r.cmdMu.Unlock()
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
	c := &subConn{kind: subPlain, ps: ps, probe: r.prober}
	if !r.startConn(c) {
		return
	}
	r.mu.Lock()
	old := r.main
	r.main = c
	r.dropLocked(old, errors.New("the subscription connection delivered nothing and was replaced"))
	c.probe.state.since = time.Now()
	r.mu.Unlock()
	old.close()
}
