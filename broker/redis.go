package broker

import (
	"context"
	crand "crypto/rand"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// defaultRedisTimeout is RedisOptions.Timeout's zero value.
const defaultRedisTimeout = time.Second

// Redis is the broker many instances share (SPEC section 6). The entity of
// integration N and key K is a Redis string at <prefix>N.<K> holding its
// JSON, and the broker messages of that entity travel over pub/sub on the
// channel of the same name. With Redis Cluster no hash tag is added: the
// entity and its channel have the same name, so they always hash to the
// same slot, and other programs find the keys under the names SPEC 6 gives.
// A key that must share the entity's slot later (for a multi-key script)
// can be named "{<prefix>N.<K>}<suffix>": Redis hashes only what is inside
// the braces, which is the entity's own name. (A "{...}" inside the prefix
// or a key acts as a hash tag as usual.)
//
// # Updates
//
// Update is an optimistic compare-and-set with group commit (group.go,
// redis_update.go): a broker's updates of one key wait in a line, those
// waiting together run one after another on the evolving value and commit
// in ONE run of redis_cas.lua (EVALSHA), which writes (SET or DEL) only when
// the entity still holds what the group saw. When it changed, the script
// answers with the current value and the group runs again on it (retried =
// true); the instance that lost now has the key's turn, and other
// instances' writes are refused (they wait in line) until it has written.
// MaxRetries bounds the losses to writers that take no turns; then Update
// fails with ErrConflict and nothing was written.
//
// The read before the first run is mostly skipped: the broker keeps each
// key's last known value (valueCache) and the group runs first on that; a
// stale guess costs a lost compare-and-set that brings the current value,
// not counted as a retry. So an update costs one round trip while an
// instance is a key's only writer, and a group of updates costs one.
//
// Figures (README, BENCHMARKS.md): go test ./broker -run '^$' -bench
// RedisUpdate, and scenario h of tests/bench/run.sh (one hot key).
//
// # Pub/sub
//
// Subscription connections (go-redis PubSubs) are drained by receive loops
// of their own that call the handlers inline (they do not block, by
// contract), so go-redis never drops a message. Local Subscribe calls on
// one topic share one Redis subscription; the last Close unsubscribes.
// Subscribe returns once Redis has answered a PING sent after the
// subscription on each connection that must deliver it: replies come in
// order on a connection, so the subscription is active from then on (SPEC
// 5.9). A "subscribe" confirmation alone cannot say which SUBSCRIBE it
// answers (an earlier one of the same channel, or go-redis's
// resubscription after a reconnect), a PING with a unique payload can.
//
// Where the connections go depends on the deployment:
//
//   - One server: ONE connection, which go-redis redials and subscribes
//     again.
//   - Sentinel (redis_sentinel.go): one connection to EVERY data node the
//     sentinels list (the master and each replica), subscribed to every
//     channel. A connection delivers only what it receives while it was
//     opened on a master; Redis replicates PUBLISH to replicas, and what a
//     replica's connection receives is dropped (the master's connection
//     delivers it). Sentinel closes every client of a node whose role it
//     changes (REPLICAOF NO ONE on the promoted replica, REPLICAOF on the
//     old master, each with CLIENT KILL TYPE normal and pubsub), so each
//     connection's role is fixed: the promoted replica's connection comes
//     back at once as a master's and delivers from the promotion on,
//     normally long before a publisher learns of the new master (the
//     sentinels learn of it from their next INFO); the old master's keeps
//     delivering what publishers that have not switched yet send it, until
//     it is made a replica. So a failover loses no broker message published
//     after the switch, and duplicates none.
//   - Cluster (redis_shards.go): sharded pub/sub (SSUBSCRIBE, SPUBLISH),
//     one connection per shard, on one of its replicas when it has one
//     (Redis delivers a shard's messages to its replicas too, and a
//     replica's subscribers stay subscribed when it is promoted: a killed
//     master's replica takes over with the subscriptions in place), else on
//     its master. A connection that fails is closed and its channels are
//     subscribed again where the slot map, reloaded, says.
//
// # Cluster slot map
//
// go-redis reloads its slot map on MOVED and ASK replies and every
// ClusterStateReloadInterval (5 s here, 60 s by default) while commands
// flow; a dial error to a dead master reloads nothing. So the broker asks
// for a reload on every failure that may come from a stale map (an update,
// a publish, a probe, a subscription connection), and the keys of a killed
// master are served by its replica as soon as the cluster agrees on it.
//
// # Replicas
//
// With Replicas > 0 every compare-and-set that writes is followed, on the
// same connection and in the same pipeline, by WAIT Replicas T (T: half the
// Timeout): an update is acknowledged only once that many replicas have it;
// when fewer do within T, Update fails with ErrOutcomeUnknown (it is
// written on the master, and a failover may lose it). A pipeline of
// compare-and-sets (redis_pipeline.go) ends with one WAIT that covers them
// all. Replication stays asynchronous; what this guarantees is in the
// README (Sentinel and Cluster).
//
// # Exactly once
//
// go-redis never resends a command here (its own retry would resend a
// compare-and-set whose first reply was lost, and the update could apply
// twice) and dials once per attempt. Instead every compare-and-set is an
// operation with an id, and the script records it atomically with the
// entity: in ONE key per entity and instance, {<entity>}:op:<instance>,
// holding the id of the instance's last write of that entity (an instance
// has one group in flight per key, so one record is enough), kept opKeep
// (15s, or 20 x Timeout when longer) after that write; an update with an
// operation of its own (WithOperation: on_close, which may run on any
// instance) is recorded at {<entity>}:op:<id> instead. When the reply of a
// compare-and-set is lost (the connection broke, a read timed out), Update
// sends the very same request again, on a new connection, until Redis
// answers or 5 x Timeout passed: the script answers "applied already" when
// the record holds the id (the first send was applied: Update succeeds, and
// the committed result is the one that send carried), else it compares and
// sets as usual. So a logical update is applied once, and its caller learns
// that it was. Only when Redis stays unreachable longer does Update fail
// with ErrOutcomeUnknown (which matches ErrUnavailable too): it may have
// been committed, and the error says so.
//
// # Faults
//
// While Redis is unreachable Update, Publish and Subscribe fail within
// Timeout with an error that matches ErrUnavailable and names the call, the
// key and the server. A cancelled context gives the context's error. When
// a subscription connection breaks, it is redialled (or, on a Cluster,
// rebuilt) and every channel subscribed again once Redis is back; messages
// published meanwhile are lost (delivery is at most once).
//
// # Probe
//
// A subscription connection can also stay open and deliver nothing (a
// proxy or a network path that stalls, a server that stopped writing). So
// the broker publishes a probe to a channel of its own, <prefix>_probe:<id>
// (on a Cluster, one per shard connection, in a slot of that shard),
// every ProbeInterval and expects to receive it within ProbeTimeout. When
// a probe is late and nothing else arrived meanwhile, the connection is
// replaced by a new one subscribed to every channel. Check (the Checker
// capability, for /readyz) fails from the moment a subscription connection
// the broker depends on is lost, a probe is late or cannot be published
// (CLUSTERDOWN included), a Cluster channel has no connection, or (Replicas
// > 0) fewer replicas than Replicas acknowledged the last probe, until a
// probe comes back.
//
// # Fleet
//
// The broker also keeps the instances' leases and connection records that
// let a survivor run on_close for a dead instance's connections (the Fleet
// capability, redis_lease.go).
//
// All methods may be called concurrently.
type Redis struct {
	client     redis.UniversalClient
	target     redisTarget
	prefix     string
	maxRetries int
	backoff    time.Duration
	timeout    time.Duration
	log        *slog.Logger

	replicas       int           // WAIT for this many replicas after each write (0: none)
	replicaTimeout time.Duration // WAIT's timeout

	// cmdMu orders the commands sent on the subscription connections
	// (SUBSCRIBE, UNSUBSCRIBE, PING) with the changes of chans they go
	// with, and guards replacing connections.
	cmdMu sync.Mutex

	mu       sync.Mutex
	chans    map[string]*redisChan // channel name -> local subscribers
	conns    map[*subConn]struct{} // the subscription connections
	main     *subConn              // one server: the subscription connection
	chanConn map[string]*subConn   // Cluster: the connection carrying each channel
	orphans  map[string]string     // Cluster: channels without a connection -> the node that failed them
	fenceN   uint64
	closed   bool

	done       chan struct{}
	loops      sync.WaitGroup // the receive loops
	healthDone chan struct{}
	probeNow   chan struct{}  // capacity 1: a probe channel's subscription was confirmed
	sentinel   *sentinelWatch // Sentinel: the sentinels and their watchers (redis_sentinel.go)
	assign     chan struct{}  // Cluster: capacity 1: channels wait for a connection (redis_shards.go)
	assignDone chan struct{}

	// Operations (redis_cas.lua's records).
	opPrefix   string        // random, unique to this broker
	opSeq      atomic.Uint64 // the last operation number
	opKeep     time.Duration // how long a record is kept
	resolveFor time.Duration // how long a lost reply is asked about again

	cache valueCache // each key's last known value, to skip Update's GET

	// Group commit (group.go) and the line of turns between instances
	// (redis_update.go).
	line     updateLine
	turn     time.Duration // how long an instance's turn on a key lasts
	lineWait time.Duration // how long an update may wait in a key's line

	pipe *casPipeliner // Update's compare-and-sets, auto-pipelined (redis_pipeline.go); nil: sent directly

	// The probe (redis_pubsub.go): one server's or the Sentinel nodes';
	// nil on a Cluster, where each shard connection has its own.
	probeChan    string
	probeEvery   time.Duration
	probeTimeout time.Duration
	prober       *prober
}

// RedisOptions configure NewRedis.
type RedisOptions struct {
	// URL names the server, a Sentinel master or a Cluster (see
	// RedisSchemes). Zero value means "redis://127.0.0.1:6379/0".
	URL string
	// Prefix goes before every key and channel name ("es:" in the host's
	// configuration). Zero value means none.
	Prefix string
	// MaxRetries bounds how many times an update is retried after losing
	// its compare-and-set. Below 0 means 0.
	MaxRetries int
	// RetryBackoff: the n-th retry waits a random time up to
	// RetryBackoff * 2^(n-1), at most 64 * RetryBackoff. Zero value means
	// no wait.
	RetryBackoff time.Duration
	// Timeout is the default of the URL's dial_timeout, read_timeout and
	// write_timeout, and bounds the start-up PING and the wait for a
	// subscription to become active (a longer read_timeout in the URL
	// raises these bounds to it). Zero value means 1s.
	Timeout time.Duration
	// Log receives connection losses and recoveries. Nil means none.
	Log *slog.Logger
	// ProbeInterval is how often the subscription is probed end to end.
	// Zero value means 1s.
	ProbeInterval time.Duration
	// ProbeTimeout is how late a probe may come back before the
	// subscription counts as broken. Zero value means 2 * Timeout.
	ProbeTimeout time.Duration
	// Replicas is how many replicas must acknowledge each write of an
	// update (WAIT) before Update reports it done; when fewer do within
	// half the Timeout, Update fails with ErrOutcomeUnknown. Zero value
	// means none: an update is done once the master has it.
	Replicas int

	// dial replaces go-redis's dialer, for tests that inject faults.
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

//go:embed redis_cas.lua
var casSource string

var casScript = redis.NewScript(casSource)

var _ Broker = (*Redis)(nil)

// NewRedis connects to Redis and checks it answers a PING within
// o.Timeout; when it does not, the error matches ErrUnavailable and says
// which server failed.
func NewRedis(ctx context.Context, o RedisOptions) (*Redis, error) {
	if o.URL == "" {
		o.URL = "redis://127.0.0.1:6379/0"
	}
	if o.Timeout <= 0 {
		o.Timeout = defaultRedisTimeout
	}
	if o.MaxRetries < 0 {
		o.MaxRetries = 0
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	target, err := parseRedisURL(o.URL, o.Timeout)
	if err != nil {
		return nil, fmt.Errorf("redis broker: invalid URL: %w", err)
	}
	if o.dial != nil {
		target.setDialer(o.dial)
	}
	if rt := target.readTimeout(); rt > o.Timeout {
		o.Timeout = rt
	}
	client := target.client()
	pctx, cancel := context.WithTimeout(ctx, o.Timeout)
	err = client.Ping(pctx).Err()
	cancel()
	if err != nil {
		client.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("redis broker: connecting to %s: %w", target, ctx.Err())
		}
		return nil, pingError(target, o.Timeout, err) // refused, timed out, or an error reply (redis_log.go)
	}
	if o.ProbeInterval <= 0 {
		o.ProbeInterval = time.Second
	}
	if o.ProbeTimeout <= 0 {
		o.ProbeTimeout = 2 * o.Timeout
	}
	id := randomID()
	r := &Redis{
		client: client, target: target, prefix: o.Prefix,
		maxRetries: o.MaxRetries, backoff: o.RetryBackoff, timeout: o.Timeout, log: o.Log,
		replicas: max(o.Replicas, 0), replicaTimeout: max(o.Timeout/2, time.Millisecond),
		chans: make(map[string]*redisChan), conns: make(map[*subConn]struct{}),
		chanConn: make(map[string]*subConn), orphans: make(map[string]string),
		done: make(chan struct{}), healthDone: make(chan struct{}), probeNow: make(chan struct{}, 1),
		opPrefix: id, opKeep: max(15*time.Second, 20*o.Timeout), resolveFor: max(time.Second, 5*o.Timeout),
		turn: max(100*time.Millisecond, o.Timeout/4), lineWait: 5 * o.Timeout,
		probeChan: o.Prefix + "_probe:" + id, probeEvery: o.ProbeInterval, probeTimeout: o.ProbeTimeout,
	}
	var wait func(context.Context) *redis.IntCmd
	if r.replicas > 0 {
		wait = r.waitCmd
	}
	r.pipe = newCASPipeliner(client, wait)
	var started bool
	defer func() {
		if !started {
			close(r.healthDone) // the probe loop never started
			r.Close()
		}
	}()
	switch {
	case r.isCluster():
		r.assign, r.assignDone = make(chan struct{}, 1), make(chan struct{})
		if err := r.startShards(ctx); err != nil {
			return nil, err
		}
	case target.failover != nil:
		r.prober = &prober{channel: r.probeChan, where: target.String(), state: probeState{err: errNoProbeYet, since: time.Now()}}
		if err := r.startSentinel(ctx); err != nil {
			return nil, err
		}
	default:
		r.prober = &prober{channel: r.probeChan, where: target.String(), state: probeState{err: errNoProbeYet, since: time.Now()}}
		r.main = &subConn{kind: subPlain, ps: client.Subscribe(context.Background(), r.probeChan), probe: r.prober}
		r.startConn(r.main)
	}
	go r.probeLoop()
	started = true
	return r, nil
}

// isCluster reports whether the broker serves a Redis Cluster.
func (r *Redis) isCluster() bool { return r.target.cluster != nil }

// reloadSlots asks go-redis to reload a Cluster's slot map (at most every
// 200 ms, in the background): a failure may come from a stale one.
func (r *Redis) reloadSlots() {
	if cc, ok := r.client.(*redis.ClusterClient); ok {
		cc.ReloadState(context.Background())
	}
}

// randomID returns 64 random bits in hex.
func randomID() string {
	var b [8]byte
	crand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// name is the Redis key and channel of t.
func (r *Redis) name(t Topic) string { return r.prefix + t.Namespace + "." + t.Key }

// backOff waits before a connection's next attempt after failures failed
// in a row: 50 ms doubled by each failure, a second at most. It returns
// false when the broker closed first.
func (r *Redis) backOff(failures int) bool {
	t := time.NewTimer(min(50*time.Millisecond<<min(failures, 5), time.Second))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.done:
		return false
	}
}

func (r *Redis) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

func (r *Redis) errClosed(op, name string) error {
	return fmt.Errorf("%w: %s %s: the redis broker is closed", ErrUnavailable, op, name)
}

// fail turns the error of a Redis call into the broker's errors: the
// context's error when ctx ended, a plain error for a key that holds no
// string, ErrUnavailable for everything else.
func (r *Redis) fail(ctx context.Context, op, name string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("redis broker: %s %s: %w", op, name, cerr)
	}
	if redis.HasErrorPrefix(err, "WRONGTYPE") {
		return fmt.Errorf("redis broker: %s %s on %s: %w", op, name, r.target, err)
	}
	r.reloadSlots()
	return fmt.Errorf("%w: %s %s on %s: %w", ErrUnavailable, op, name, r.target, err)
}

// pubCmd is PUBLISH (SPUBLISH), never resent: delivery is at most once.
type pubCmd struct{ *redis.IntCmd }

func (pubCmd) NoRetry() bool { return true }

// Publish implements Broker: PUBLISH of env's JSON on t's channel
// (SPUBLISH on a Cluster: to the shard of t's key).
func (r *Redis) Publish(ctx context.Context, t Topic, env Envelope) error {
	name := r.name(t)
	if r.isClosed() {
		return r.errClosed("publish", name)
	}
	data, err := json.Marshal(env)
	if err != nil {
		return fmt.Errorf("redis broker: publish %s: %w", name, err)
	}
	command := "publish"
	if r.isCluster() {
		command = "spublish"
	}
	cmd := redis.NewIntCmd(ctx, command, name, data)
	cmd.SetFirstKeyPos(1)
	if err := r.client.Process(ctx, pubCmd{cmd}); err != nil {
		return r.fail(ctx, "publish", name, err)
	}
	return nil
}

// Ping reports whether the broker can serve: Redis answers a PING and the
// subscription delivers (Check). Its error matches ErrUnavailable. The
// host's /readyz finds it by type assertion.
func (r *Redis) Ping(ctx context.Context) error {
	if r.isClosed() {
		return r.errClosed("ping", r.target.String())
	}
	if err := r.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("%w: no answer to PING from %s: %w", ErrUnavailable, r.target, err)
	}
	return r.Check(ctx)
}

// Close implements Broker: it ends the subscription connections and the
// client; later calls fail with ErrUnavailable.
func (r *Redis) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.chans = make(map[string]*redisChan)
	for c := range r.conns {
		r.failFencesLocked(c, errors.New("the redis broker is closed"))
	}
	r.mu.Unlock()
	close(r.done)
	<-r.healthDone // no more replacing of subscription connections
	if r.assignDone != nil {
		<-r.assignDone
	}
	r.sentinel.close()
	r.cmdMu.Lock()
	r.mu.Lock()
	conns := r.connsLocked()
	r.mu.Unlock()
	for _, c := range conns {
		c.close()
	}
	r.cmdMu.Unlock()
	r.loops.Wait()
	r.pipe.close()
	return r.client.Close()
}

// String names the broker's deployment, e.g. "redis 127.0.0.1:6379".
func (r *Redis) String() string { return r.target.String() }

// describe is how log lines name the broker.
func (r *Redis) describe() slog.Attr {
	return slog.String("redis", strings.TrimPrefix(r.target.String(), "redis "))
}
