package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Pub/sub on a Sentinel deployment (the Redis type's doc: Pub/sub).
//
// go-redis's failover client moves its command connections to a new master
// when its sentinel announces +switch-master, but not its subscription
// connection, and a sentinel announces the switch about a second after it
// promoted the replica (it learns of the promotion from its next INFO):
// meanwhile publishers still write to the old master. So the broker keeps
// its own subscription connection to EVERY data node the sentinels list,
// each on a client of its own whose OnConnect asks the node's ROLE, and a
// connection delivers only what it receives while it was opened on a
// master. Sentinel closes every client of a node whose role it changes
// (its REPLICAOF is sent in a transaction with CLIENT KILL TYPE normal and
// CLIENT KILL TYPE pubsub), so each connection's role is fixed for its
// life:
//
//   - before a failover, the master's connection delivers; the replicas'
//     receive the master's messages through replication and drop them;
//   - the promoted replica's connection is killed with the promotion, and
//     go-redis opens it again at once: now a master's, it delivers from the
//     promotion on, normally long before a publisher is told of the new
//     master (the sentinels learn of it from their next INFO, sent every
//     second during a failover, and announce it after that);
//   - the old master's connection delivers what publishers that have not
//     switched yet still send it, until the sentinels make it a replica
//     (about ten seconds after a planned failover), which kills it; it
//     comes back as a replica's and delivers nothing.
//
// The two masters of a failover do not replicate each other meanwhile, so
// nothing is delivered twice. The sentinels are watched (+switch-master,
// +slave, ...) and asked again every 10 x ProbeInterval, so that a node
// added or removed gets or loses its connection.
//
// The probe is published through the failover client (to the master it
// knows) and may come back on any connection.

// sentinelEvents are the sentinel channels that may change the data nodes
// or their roles.
var sentinelEvents = []string{"+switch-master", "+slave", "+convert-to-slave", "+promoted-slave", "-sdown", "+reboot"}

// sentinelWatch holds the sentinels of a Sentinel deployment.
type sentinelWatch struct {
	addrs   []string
	clients []*redis.SentinelClient
	subs    []*redis.PubSub
	refresh chan struct{} // capacity 1: ask the sentinels again
	wg      sync.WaitGroup
}

// close stops the watchers and closes the sentinels' clients; nil-safe.
// The broker's done channel is closed first.
func (w *sentinelWatch) close() {
	if w == nil {
		return
	}
	for _, ps := range w.subs {
		ps.Close()
	}
	w.wg.Wait()
	for _, c := range w.clients {
		c.Close()
	}
}

// sentinelOptions are the options of a client of the sentinel at addr.
func sentinelOptions(o *redis.FailoverOptions, addr string) *redis.Options {
	return &redis.Options{
		Addr: addr, ClientName: o.ClientName, Dialer: o.Dialer,
		Username: o.SentinelUsername, Password: o.SentinelPassword,
		DialTimeout: o.DialTimeout, ReadTimeout: o.ReadTimeout, WriteTimeout: o.WriteTimeout,
		TLSConfig: o.TLSConfig, MaxRetries: -1, DialerRetries: 1, PoolSize: 2,
		DisableIdentity: o.DisableIdentity, IdentitySuffix: o.IdentitySuffix,
	}
}

// nodeOptions are the options of a client of the data node at addr.
func nodeOptions(o *redis.FailoverOptions, addr string) *redis.Options {
	return &redis.Options{
		Addr: addr, ClientName: o.ClientName, Dialer: o.Dialer,
		DB: o.DB, Protocol: o.Protocol, Username: o.Username, Password: o.Password,
		DialTimeout: o.DialTimeout, ReadTimeout: o.ReadTimeout, WriteTimeout: o.WriteTimeout,
		TLSConfig: o.TLSConfig, MaxRetries: -1, DialerRetries: 1, PoolSize: 1,
		DisableIdentity: o.DisableIdentity, IdentitySuffix: o.IdentitySuffix,
	}
}

// startSentinel opens a subscription connection to each data node the
// sentinels list and starts watching them.
func (r *Redis) startSentinel(ctx context.Context) error {
	o := r.target.failover
	w := &sentinelWatch{refresh: make(chan struct{}, 1)}
	for _, addr := range o.SentinelAddrs {
		w.addrs = append(w.addrs, addr)
		w.clients = append(w.clients, redis.NewSentinelClient(sentinelOptions(o, addr)))
	}
	r.sentinel = w
	sctx, cancel := context.WithTimeout(ctx, 2*r.timeout)
	err := r.syncSentinel(sctx)
	cancel()
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrUnavailable, r.target, err)
	}
	for i, c := range w.clients {
		// On an error (the sentinel is down) go-redis keeps the channels
		// and subscribes them when the watcher gets it connected.
		ps := c.Subscribe(context.Background(), sentinelEvents...)
		w.subs = append(w.subs, ps)
		w.wg.Add(1)
		go r.watchSentinel(w.addrs[i], ps)
	}
	w.wg.Add(1)
	go r.refreshSentinel()
	return nil
}

// sentinelNodes asks the sentinels, one after another until one answers,
// for the master's address and its replicas'.
func (r *Redis) sentinelNodes(ctx context.Context) (master string, replicas []string, err error) {
	w, name := r.sentinel, r.target.failover.MasterName
	var errs []error
	for i, c := range w.clients {
		hp, err := c.GetMasterAddrByName(ctx, name).Result()
		if err == nil && len(hp) != 2 {
			err = fmt.Errorf("unexpected reply %q", hp)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("SENTINEL GET-MASTER-ADDR-BY-NAME %s on %s: %w", name, w.addrs[i], err))
			continue
		}
		rs, err := c.Replicas(ctx, name).Result()
		if err != nil {
			errs = append(errs, fmt.Errorf("SENTINEL REPLICAS %s on %s: %w", name, w.addrs[i], err))
			continue
		}
		for _, rep := range rs {
			replicas = append(replicas, net.JoinHostPort(rep["ip"], rep["port"]))
		}
		return net.JoinHostPort(hp[0], hp[1]), replicas, nil
	}
	return "", nil, fmt.Errorf("no sentinel gives the nodes of master %s: %w", name, errors.Join(errs...))
}

// syncSentinel gives every data node the sentinels list a subscription
// connection, and drops those of nodes they no longer list (unless it
// delivers: see below).
func (r *Redis) syncSentinel(ctx context.Context) error {
	master, replicas, err := r.sentinelNodes(ctx)
	if err != nil {
		return err
	}
	nodes := append([]string{master}, replicas...)
	r.cmdMu.Lock()
	defer r.cmdMu.Unlock()
	r.mu.Lock()
	have := make(map[string]*subConn)
	var drop []*subConn
	for c := range r.conns {
		switch {
		case slices.Contains(nodes, c.node):
			have[c.node] = c
		case !c.live() || !c.connected.Load():
			r.dropLocked(c, fmt.Errorf("the sentinels no longer list %s", c.node))
			drop = append(drop, c)
		}
		// A master's connection is kept even when the sentinels do not
		// list its node: during a failover the old master is neither the
		// master nor yet a replica for them, and publishers that have not
		// switched still write to it.
	}
	r.mu.Unlock()
	for _, c := range drop {
		r.log.Info("redis broker: the sentinels no longer list a node; its subscription connection is closed", r.describe(), slog.String("node", c.node))
		c.close()
	}
	for _, node := range nodes {
		if have[node] == nil {
			r.openSentinelConn(ctx, node)
		}
	}
	return nil
}

// openSentinelConn opens the subscription connection to the data node at
// addr, subscribed to the probe channel and every channel. Called with
// r.cmdMu held.
func (r *Redis) openSentinelConn(ctx context.Context, addr string) *subConn {
	c := &subConn{kind: subSentinel, node: addr, probe: r.prober}
	opt := nodeOptions(r.target.failover, addr)
	opt.OnConnect = func(ctx context.Context, cn *redis.Conn) error {
		role, err := cn.Do(ctx, "role").Slice()
		master := err == nil && len(role) > 0 && role[0] == "master"
		next := (c.role.Load()>>1 + 1) << 1
		if master {
			next |= 1
		}
		c.role.Store(next)
		return nil // a replica's connection is kept: it delivers once the replica is promoted
	}
	c.own = redis.NewClient(opt)
	r.mu.Lock()
	names := make([]string, 0, len(r.chans)+1)
	names = append(names, r.probeChan)
	for name := range r.chans {
		names = append(names, name)
	}
	r.mu.Unlock()
	c.ps = c.own.Subscribe(context.Background())
	// On an error (the node is down) go-redis keeps the channels and
	// subscribes them when the receive loop gets it connected.
	_ = c.ps.Subscribe(ctx, names...)
	if !r.startConn(c) {
		return nil
	}
	return c
}

// sentinelCarriers returns the Sentinel nodes' connections that Subscribe
// must wait on for channel name: those that deliver (opened on a master)
// and are up; it subscribes name on every node's when subscribe is set.
// Called with r.cmdMu held.
func (r *Redis) sentinelCarriers(ctx context.Context, name string, subscribe bool) ([]*subConn, error) {
	r.mu.Lock()
	conns := r.connsLocked()
	r.mu.Unlock()
	var must []*subConn
	for _, c := range conns {
		needed := c.live() && c.connected.Load()
		if subscribe {
			// go-redis keeps the channel on an error, and subscribes it
			// when the connection is back.
			if err := c.ps.Subscribe(ctx, name); err != nil && needed {
				return nil, fmt.Errorf("%s: %w", c.describe(), err)
			}
		}
		if needed {
			must = append(must, c)
		}
	}
	if len(must) == 0 {
		return nil, errors.New("no subscription connection to a master is up")
	}
	return must, nil
}

// reopenSentinel replaces the connections of the nodes that deliver (they
// answer for the probe, which came back late): each gets a new one first.
func (r *Redis) reopenSentinel() {
	r.cmdMu.Lock()
	defer r.cmdMu.Unlock()
	r.mu.Lock()
	var old []*subConn
	for c := range r.conns {
		if c.live() {
			old = append(old, c)
		}
	}
	r.mu.Unlock()
	for _, c := range old {
		ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
		r.openSentinelConn(ctx, c.node)
		cancel()
		r.mu.Lock()
		r.dropLocked(c, errors.New("the subscription connection delivered nothing and was replaced"))
		r.prober.state.since = time.Now()
		r.mu.Unlock()
		c.close()
	}
}

// watchSentinel reads what the sentinel at addr publishes on
// sentinelEvents, and asks the sentinels again when it concerns the
// broker's master.
func (r *Redis) watchSentinel(addr string, ps *redis.PubSub) {
	w, name := r.sentinel, r.target.failover.MasterName
	defer w.wg.Done()
	failures := 0
	for {
		msg, err := ps.ReceiveMessage(context.Background())
		if err != nil {
			select {
			case <-r.done:
				return
			default:
			}
			failures++
			if !r.backOff(failures) {
				return
			}
			continue
		}
		failures = 0
		if !slices.Contains(strings.Fields(msg.Payload), name) {
			continue
		}
		if msg.Channel == "+switch-master" {
			r.log.Info("redis broker: the sentinels switched to a new master", r.describe(), slog.String("sentinel", addr), slog.String("switch", msg.Payload))
		}
		select {
		case w.refresh <- struct{}{}:
		default:
		}
	}
}

// refreshSentinel asks the sentinels for the data nodes when a watcher
// says so, and every 10 x ProbeInterval.
func (r *Redis) refreshSentinel() {
	w := r.sentinel
	defer w.wg.Done()
	tick := time.NewTicker(10 * r.probeEvery)
	defer tick.Stop()
	for {
		select {
		case <-r.done:
			return
		case <-tick.C:
		case <-w.refresh:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*r.timeout)
		err := r.syncSentinel(ctx)
		cancel()
		if err != nil {
			r.log.Debug("redis broker: could not ask the sentinels for the data nodes", r.describe(), slog.Any("err", err))
		}
	}
}
