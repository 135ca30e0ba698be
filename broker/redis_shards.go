package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Pub/sub on a Redis Cluster (the Redis type's doc: Pub/sub).
//
// A broker message travels with SPUBLISH on its entity's name, to the shard
// (the master and its replicas) that serves the entity's slot, instead of
// to every node as PUBLISH does. The broker keeps one subscription
// connection per shard it has channels on (SSUBSCRIBE one channel at a
// time: one SSUBSCRIBE may name channels of one slot only), on a replica of
// the shard when the slot map lists one (Redis lists a replica once it has
// replicated something): Redis delivers a shard's messages to its
// replicas too, and a replica that takes over a killed master keeps its
// subscribers, so pub/sub on that shard goes on without a gap once the
// publishers' slot maps know the new master. (go-redis's own resubscription
// after a reconnect sends every channel of a connection in one SSUBSCRIBE,
// which Redis refuses when they are in several slots: so the broker never
// lets it reconnect one.)
//
// A connection that fails (its node died, it stalled, or Redis unsubscribed
// one of its channels because the slot moved) is closed, its channels wait
// for a connection (Check fails meanwhile), and a loop subscribes them
// again where the slot map, reloaded, says, avoiding the node that failed,
// after 20 ms and then at growing intervals up to ProbeInterval.
//
// Each connection carries a probe channel of its own in a slot of its
// shard ("{<a channel>}:probe:<id>", or the broker's probe channel for the
// shard that carries it), so Check reflects every shard the broker
// subscribes to. Redis serves SPUBLISH even while the cluster is down, so
// each probe also sends a write to its slot (see publishProbe): CLUSTERDOWN
// (the cluster lacks a slot's master) fails Check too.

// startShards starts the loop that gives channels a connection, and opens
// the connection of the shard of the broker's probe channel.
func (r *Redis) startShards(ctx context.Context) error {
	go r.assignLoop()
	r.cmdMu.Lock()
	defer r.cmdMu.Unlock()
	sctx, cancel := context.WithTimeout(ctx, 2*r.timeout)
	defer cancel()
	c, err := r.shardConnFor(sctx, r.probeChan, "")
	if err != nil {
		return fmt.Errorf("%w: opening the subscription connection of %s: %w", ErrUnavailable, r.target, err)
	}
	r.mu.Lock()
	c.chans[r.probeChan] = struct{}{}
	r.chanConn[r.probeChan] = c
	r.mu.Unlock()
	return nil
}

// shardConnFor returns the connection that carries the shard of channel
// name, opening one (on a replica of the shard unless that is avoid, a
// node that just failed) when none does. Called with r.cmdMu held.
func (r *Redis) shardConnFor(ctx context.Context, name, avoid string) (*subConn, error) {
	cc := r.client.(*redis.ClusterClient)
	m, err := cc.MasterForKey(ctx, name)
	if err != nil {
		return nil, err
	}
	master := m.Options().Addr
	r.mu.Lock()
	for c := range r.conns {
		if c.shard == master || c.node == master {
			r.mu.Unlock()
			return c, nil
		}
	}
	r.mu.Unlock()
	node := m
	if rep, err := cc.SlaveForKey(ctx, name); err == nil && rep.Options().Addr != avoid {
		node = rep // its subscribers stay subscribed when it takes over
	}
	addr := node.Options().Addr
	p := &prober{channel: slotKey(name, ":probe:"+r.opPrefix), state: probeState{err: errNoProbeYet, since: time.Now()}}
	if name == r.probeChan {
		p.channel = name
	}
	p.where = "the redis cluster shard of " + master
	if addr != master {
		p.where += " (subscribed on its replica " + addr + ")"
	}
	c := &subConn{kind: subShard, node: addr, shard: master, probe: p, chans: map[string]struct{}{p.channel: {}}}
	c.ps = node.SSubscribe(context.Background())
	if err := c.ps.SSubscribe(ctx, p.channel); err != nil {
		c.ps.Close()
		return nil, fmt.Errorf("the subscription connection to %s: %w", addr, err)
	}
	if !r.startConn(c) {
		return nil, errors.New("the redis broker is closed")
	}
	return c, nil
}

// shardCarrier returns the connection that carries channel name, first
// subscribing name there (SSUBSCRIBE) when subscribe is set. Called with
// r.cmdMu held.
func (r *Redis) shardCarrier(ctx context.Context, name string, subscribe bool) ([]*subConn, error) {
	if !subscribe {
		r.mu.Lock()
		c := r.chanConn[name]
		r.mu.Unlock()
		if c == nil {
			return nil, errors.New("its shard's subscription connection failed and is being opened again")
		}
		return []*subConn{c}, nil
	}
	c, err := r.shardConnFor(ctx, name, "")
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	c.chans[name] = struct{}{}
	r.chanConn[name] = c
	r.mu.Unlock()
	if err := c.ps.SSubscribe(ctx, name); err != nil {
		return nil, fmt.Errorf("%s: %w", c.describe(), err)
	}
	return []*subConn{c}, nil
}

// shardUnsubscribe sends SUNSUBSCRIBE of name on the connection that
// carries it, or closes that connection when name was the last channel it
// carried for the broker's subscribers. Called with r.cmdMu held.
func (r *Redis) shardUnsubscribe(ctx context.Context, name string) {
	r.mu.Lock()
	delete(r.orphans, name)
	c := r.chanConn[name]
	delete(r.chanConn, name)
	empty := false
	if c != nil {
		delete(c.chans, name)
		_, base := c.chans[r.probeChan]
		if empty = !base && len(c.chans) == 1; empty { // its probe channel alone
			r.dropLocked(c, errors.New("its last channel was unsubscribed"))
		}
	}
	r.mu.Unlock()
	switch {
	case c == nil:
	case empty:
		c.close()
	default:
		if err := c.ps.SUnsubscribe(ctx, name); err != nil {
			r.log.Debug("redis broker: unsubscribe failed", r.describe(), slog.String("channel", name), slog.String("node", c.node), slog.Any("err", err))
		}
	}
}

// rebuild closes shard connection c and hands its channels to the loop
// that subscribes them again where the slot map says.
func (r *Redis) rebuild(c *subConn, why error) {
	r.cmdMu.Lock()
	r.mu.Lock()
	if c.gone || r.closed { // (Close closes it)
		r.mu.Unlock()
		r.cmdMu.Unlock()
		return
	}
	r.dropLocked(c, fmt.Errorf("%s failed: %w", c.describe(), why))
	n := 0
	for name := range c.chans {
		if name != r.probeChan && r.chans[name] == nil {
			continue // its own probe channel, or one unsubscribed meanwhile
		}
		r.orphans[name] = c.node
		delete(r.chanConn, name)
		n++
	}
	r.mu.Unlock()
	r.cmdMu.Unlock()
	c.close()
	r.reloadSlots()
	r.log.Warn("redis broker: a shard's subscription connection failed; subscribing its channels again", r.describe(),
		slog.String("node", c.node), slog.Int("channels", n), slog.Any("why", why))
	select {
	case r.assign <- struct{}{}:
	default:
	}
}

// assignLoop gives the channels left without a connection (r.orphans) one,
// when woken and then at growing intervals while some are left.
func (r *Redis) assignLoop() {
	defer close(r.assignDone)
	pause := 20 * time.Millisecond
	var retry <-chan time.Time
	for {
		select {
		case <-r.done:
			return
		case <-r.assign:
		case <-retry:
		}
		if r.assignOrphans() {
			pause, retry = 20*time.Millisecond, nil
			continue
		}
		retry = time.After(pause)
		pause = min(2*pause, r.probeEvery)
	}
}

// assignOrphans subscribes each channel left without a connection on the
// connection of its shard, once the slot map is reloaded; it reports
// whether none is left.
func (r *Redis) assignOrphans() bool {
	r.mu.Lock()
	todo := maps.Clone(r.orphans)
	closed := r.closed
	r.mu.Unlock()
	if closed || len(todo) == 0 {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	r.reloadSlotsNow(ctx)
	r.cmdMu.Lock()
	defer r.cmdMu.Unlock()
	left := 0
	for name, avoid := range todo {
		r.mu.Lock()
		_, still := r.orphans[name]
		r.mu.Unlock()
		if !still {
			continue // unsubscribed meanwhile
		}
		c, err := r.shardConnFor(ctx, name, avoid)
		if err == nil && name != c.probe.channel {
			err = c.ps.SSubscribe(ctx, name)
		}
		if err != nil {
			left++
			r.log.Debug("redis broker: could not subscribe a channel again", r.describe(), slog.String("channel", name), slog.Any("err", err))
			continue
		}
		r.mu.Lock()
		delete(r.orphans, name)
		c.chans[name] = struct{}{}
		r.chanConn[name] = c
		r.mu.Unlock()
	}
	if left == 0 {
		r.log.Info("redis broker: every channel is subscribed again", r.describe(), slog.Int("channels", len(todo)))
	}
	return left == 0
}

// reloadSlotsNow reloads a Cluster's slot map before returning (go-redis's
// ForEachShard does), unless ctx ends first.
func (r *Redis) reloadSlotsNow(ctx context.Context) {
	if cc, ok := r.client.(*redis.ClusterClient); ok {
		_ = cc.ForEachShard(ctx, func(context.Context, *redis.Client) error { return nil })
	}
}

// clusterNode returns go-redis's client of the Cluster node at addr, after
// reloading the slot map; nil when the map does not name it.
func (r *Redis) clusterNode(ctx context.Context, addr string) *redis.Client {
	cc, ok := r.client.(*redis.ClusterClient)
	if !ok {
		return nil
	}
	var mu sync.Mutex
	var found *redis.Client
	_ = cc.ForEachShard(ctx, func(_ context.Context, c *redis.Client) error {
		if c.Options().Addr == addr {
			mu.Lock()
			found = c
			mu.Unlock()
		}
		return nil
	})
	return found
}

// redirection reads a MOVED or ASK error reply: the node to ask instead.
func redirection(err error) (addr string, ask bool) {
	var re redis.Error
	if !errors.As(err, &re) {
		return "", false
	}
	f := strings.Fields(re.Error())
	if len(f) != 3 || f[0] != "MOVED" && f[0] != "ASK" {
		return "", false
	}
	return f[2], f[0] == "ASK"
}
