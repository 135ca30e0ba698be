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
	"math/rand/v2"
	"net"
	"strconv"
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
// Update is an optimistic compare-and-set: GET the entity, run fn, then run
// redis_cas.lua with EVALSHA, which writes (SET or DEL) only when the entity
// still holds what fn saw. When it changed, the script answers with the
// current value, and fn runs again on it (retried = true) after a jittered
// backoff, up to MaxRetries times; then Update fails with ErrConflict and
// nothing was written. Abort writes nothing and costs the GET alone.
//
// The GET is mostly skipped: the broker keeps each key's last known value
// (the one it last read or wrote, bounded: see valueCache), and fn runs
// first on that. When it is out of date (another instance or program wrote
// since), the script's conflict reply brings the current value, as the GET
// would have, and fn runs again on it with retried = true. After such a
// miss the broker GETs the key first again, as without the cache, until a
// GET finds what the cache holds. So an update costs one round trip while
// this broker is the key's only writer, and two, as before, when writers
// on several instances take turns. An Abort (or an error from fn) decided
// on a cached value is checked with a GET. Details in Update's doc. (The
// figures below that compare with WATCH/MULTI/EXEC predate the cache.)
//
// The script beat WATCH/MULTI/EXEC (go-redis Tx: WATCH, GET, then MULTI,
// SET, EXEC in one pipeline; updateWatch in redis_bench_test.go) on every
// measure, against a local redis-server 7.0.15 on a 2-core machine (go
// 1.26.8, go-redis v9.23.0, max_retries 1000, retry_backoff 1ms; median of
// 3 runs of a counter update):
//
//	                           Lua compare-and-set            WATCH/MULTI/EXEC
//	                           updates/s  round trips  fn     updates/s  round trips  fn
//	1 goroutine                  9 100      2.00       1.00     6 500      3.00       1.00
//	8 goroutines, one key       10 700      2.02       1.02     6 700      3.68       1.23
//	8 goroutines, 1000 keys     40 700      2.00       1.00    27 700      3.00       1.00
//
// ("round trips" and "fn" are per committed update; fn is how many times the
// update function ran.) Per update the script also allocates less (22 allocs,
// 954 B against 57, 2855 B). A retry costs the script one round trip (the
// conflict reply carries the current value) against three. Without backoff,
// 8 goroutines on one key ran fn 4.9 times per update with either method:
// the host's default retry_backoff of 1ms trades a little throughput for far
// fewer wasted script runs.
// Measured with
//
//	go test ./broker -run '^$' -bench 'RedisUpdate' -benchtime 3s -count 3
//
// Those figures predate the operation record (Exactly once, below): one
// more SET inside the script, no more round trips. Measured again with it,
// on the same machine while other test runs shared it (so with a spread of
// about 40% between runs of the same code), the script still led: 18,800
// against 16,500 updates/s on 1 goroutine, 14,600 against 9,700 on one key,
// 27,700 against 20,500 on 1,000 keys (medians of 3).
//
// Skipping the GET (the cache above), on the same machine, again shared
// with other runs (load about 2.5 on its 2 cores), before and after back
// to back, medians of 3 runs of
//
//	go test ./broker -run '^$' -bench 'RedisUpdate/lua' -benchtime 2s
//
//	                           before                   after
//	                           updates/s  round trips   updates/s  round trips
//	1 goroutine                 16 700      2.00          23 300      1.00
//	8 goroutines, one key       11 800      2.02          19 800      1.01
//	8 goroutines, 1000 keys     27 800      2.00          36 300      1.01
//
// (the 1000 keys' first updates still GET), and 21 allocs, 698 B per update
// against 26, 913 B. On loopback a round trip costs little; over a network
// the gain nears 2x.
//
// # Pub/sub
//
// Each Redis broker holds ONE subscription connection (a go-redis PubSub),
// drained by its own receive loop that calls the handlers inline (they do not
// block, by contract), so go-redis never drops a message. Local Subscribe
// calls on one topic share one Redis SUBSCRIBE; the last Close unsubscribes.
// Subscribe returns once Redis has answered a PING sent after the SUBSCRIBE
// on the subscription connection: replies come in order on a connection, so
// the subscription is active from then on (SPEC 5.9). A "subscribe"
// confirmation alone cannot say which SUBSCRIBE it answers (an earlier one of
// the same channel, or go-redis's resubscription after a reconnect), a PING
// with a unique payload can.
//
// # Exactly once
//
// go-redis never resends a command here (its own retry would resend a
// compare-and-set whose first reply was lost, and the update could apply
// twice) and dials once per attempt. Instead every Update is an operation
// with an id (random, or the caller's: WithOperation), and the script
// writes a record of it, {<entity>}:op:<id>, atomically with the entity and
// kept for a while (15s, or 20 x Timeout when longer). When the reply of a
// compare-and-set is lost (the connection broke, a read timed out), Update
// sends the very same request again, on a new connection, until Redis
// answers or 5 x Timeout passed: the script answers "applied already" when
// the record exists (the first send was applied: Update succeeds, and the
// committed result is the one that send carried), else it compares and
// sets as usual. So a logical update is applied once, and its caller learns
// that it was. Only when Redis stays unreachable longer than that does
// Update fail with ErrUnavailable while it may have been committed; the
// error says so. A record costs Redis about 130 bytes for 15s: 2 MB per
// 1,000 updates/s (RELIABILITY.md).
//
// # Faults
//
// While Redis is unreachable Update, Publish and Subscribe fail within
// Timeout with an error that matches ErrUnavailable and names the call, the
// key and the server. A cancelled context gives the context's error. When
// the subscription connection breaks, go-redis redials and subscribes every
// channel again when Redis is back; messages published meanwhile are lost
// (delivery is at most once).
//
// # Probe
//
// A subscription connection can also stay open and deliver nothing (a
// proxy or a network path that stalls, a server that stopped writing). So
// the broker publishes a probe to a channel of its own, <prefix>_probe:<id>,
// every ProbeInterval and expects to receive it on its subscription
// connection within ProbeTimeout. When a probe is late and nothing else
// arrived meanwhile, the connection is replaced by a new one subscribed to
// every channel. Check (the Checker capability, for /readyz) fails from the
// moment the subscription connection is lost, a probe is late or cannot be
// published, until a probe comes back.
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

	// cmdMu orders the commands sent on the subscription connection
	// (SUBSCRIBE, UNSUBSCRIBE, PING) with the changes of chans they go
	// with, and guards replacing ps.
	cmdMu sync.Mutex
	ps    atomic.Pointer[redis.PubSub]

	mu     sync.Mutex
	chans  map[string]*redisChan // channel name -> local subscribers
	fences map[string]chan error // PING payload -> Subscribe waiting for it
	fenceN uint64
	closed bool

	lastRecv   atomic.Int64 // UnixNano of the last reply on the subscription connection
	connected  atomic.Bool  // the receive loop's last read succeeded
	done       chan struct{}
	loopDone   chan struct{}
	healthDone chan struct{}

	// Operations (redis_cas.lua's records).
	opPrefix   string        // random, unique to this broker
	opSeq      atomic.Uint64 // the last operation number
	opKeep     time.Duration // how long a record is kept
	resolveFor time.Duration // how long a lost reply is asked about again

	cache valueCache // each key's last known value, to skip Update's GET

	pipe *casPipeliner // Update's compare-and-sets, auto-pipelined (redis_pipeline.go); nil: sent directly

	// The probe (redis_pubsub.go).
	probeChan    string
	probeEvery   time.Duration
	probeTimeout time.Duration
	probe        probeState // guarded by mu
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
		chans: make(map[string]*redisChan), fences: make(map[string]chan error),
		done: make(chan struct{}), loopDone: make(chan struct{}), healthDone: make(chan struct{}),
		opPrefix: id, opKeep: max(15*time.Second, 20*o.Timeout), resolveFor: max(time.Second, 5*o.Timeout),
		probeChan: o.Prefix + "_probe:" + id, probeEvery: o.ProbeInterval, probeTimeout: o.ProbeTimeout,
		probe: probeState{err: errNoProbeYet, since: time.Now()},
	}
	r.pipe = newCASPipeliner(client)
	r.ps.Store(client.Subscribe(context.Background(), r.probeChan))
	r.connected.Store(true)
	r.lastRecv.Store(time.Now().UnixNano())
	go r.receive()
	go r.probeLoop()
	return r, nil
}

// randomID returns 64 random bits in hex.
func randomID() string {
	var b [8]byte
	crand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// name is the Redis key and channel of t.
func (r *Redis) name(t Topic) string { return r.prefix + t.Namespace + "." + t.Key }

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
	return fmt.Errorf("%w: %s %s on %s: %w", ErrUnavailable, op, name, r.target, err)
}

// Update implements Broker with the compare-and-set of redis_cas.lua, as
// one operation (see the type's doc: Exactly once).
//
// fn runs first on the value the broker's cache holds for the key (see
// valueCache) when there is a trusted one, else on what a GET finds. When
// the cached value was out of date, the compare-and-set loses and answers
// with the current value, and fn runs again on it with retried = true, as
// on any lost compare-and-set (SPEC 6: the update function gets retried =
// true on a retry); only that loss does not count against MaxRetries and is
// not followed by a backoff: it stands for the GET the cache saved, so
// MaxRetries still bounds the losses against values read during this very
// update, and fn runs at most MaxRetries + 2 times. When fn aborts or fails
// on a cached value, a GET checks that value first: if the entity changed,
// fn runs again (retried = true) on what Redis holds, so an abort or error
// is always decided on a value Redis held during the update.
func (r *Redis) Update(ctx context.Context, t Topic, fn UpdateFunc) error {
	key := r.name(t)
	if r.isClosed() {
		return r.errClosed("update", key)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redis broker: update %s: %w", key, err)
	}
	op, given := operationFrom(ctx)
	if !given {
		op.id = r.opPrefix + "." + strconv.FormatUint(r.opSeq.Add(1), 36)
	}
	if op.keep <= 0 {
		op.keep = r.opKeep
	}
	// cur is what fn runs on. fresh: Redis held it during this update (a GET
	// or a conflict reply found it); else it is guess, from the cache.
	// trusted is what the cache entry's trust becomes.
	var cur []byte
	guess, cached := r.cache.get(key)
	fresh, trusted := false, true
	if cached && guess.trusted {
		cur = guess.current()
	} else {
		got, err := r.get(ctx, key)
		if err != nil {
			r.cache.drop(key)
			return r.fail(ctx, "update", key, err)
		}
		cur, fresh = got, true
		trusted = !cached || guess.same(got) // the entry would have been right
		r.cache.put(key, got, trusted)
	}
	lost := false  // a send whose reply was lost may have been applied
	conflicts := 0 // compare-and-sets lost against a fresh value
	for runs := 1; ; runs++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		next, o, err := fn(cur, runs > 1)
		if err == nil {
			if o == Set && len(next) == 0 {
				o = Delete // as in Memory: an empty value is no entity
			}
			switch o {
			case Abort, Set, Delete:
			default:
				return fmt.Errorf("redis broker: update %s: unknown op %d", key, o)
			}
		}
		if err != nil || o == Abort {
			if !fresh { // decided on the cache's guess: does Redis still hold it?
				now, gerr := r.get(ctx, key)
				if gerr != nil {
					r.cache.drop(key)
					return r.fail(ctx, "update", key, gerr)
				}
				if !guess.same(now) {
					trusted = false
					r.cache.put(key, now, trusted)
					cur, fresh = now, true
					continue
				}
			}
			return err // nil for Abort
		}
		c := casRequest{key: key, op: op, seen: cur, del: o == Delete, next: next}
		res, now, err := r.cas(ctx, c)
		if err != nil && replyLost(err) && ctx.Err() == nil {
			lost = true
			res, now, err = r.resolve(ctx, c, err)
		}
		if err != nil {
			r.cache.drop(key) // it may have been applied
			return r.fail(ctx, "update", key, err)
		}
		switch res {
		case casApplied:
			r.cache.put(key, c.written(), trusted)
			return nil
		case casAppliedBefore:
			if lost {
				r.cache.put(key, c.written(), trusted)
				return nil // the send whose reply was lost applied this very result
			}
			r.cache.drop(key) // another run of the operation wrote something
			return fmt.Errorf("redis broker: update %s: operation %s: %w", key, op.id, ErrApplied)
		}
		if !fresh {
			trusted = false // the cache's guess was out of date
		}
		r.cache.put(key, now, trusted)
		if fresh {
			if conflicts >= r.maxRetries {
				return fmt.Errorf("%w: update %s: %d attempts", ErrConflict, key, runs)
			}
			if err := r.wait(ctx, conflicts); err != nil {
				return err
			}
			conflicts++
		}
		cur, fresh = now, true
	}
}

// get reads the entity at key: nil when absent.
func (r *Redis) get(ctx context.Context, key string) ([]byte, error) {
	cur, err := r.client.Get(ctx, key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	return cur, err
}

// casCmd is the compare-and-set call. go-redis never resends it, whatever
// the client's options: Update alone decides, with the operation id that
// makes a resend harmless.
type casCmd struct{ *redis.Cmd }

func (casCmd) NoRetry() bool { return true }

// casRequest is one compare-and-set: write next (or delete) at key when it
// still holds seen (nil: absent), as operation op.
type casRequest struct {
	key  string
	op   operation
	seen []byte
	del  bool
	next []byte
}

// written is what c leaves at its key when applied: nil for absent.
func (c casRequest) written() []byte {
	if c.del {
		return nil
	}
	return c.next
}

// casResult is what redis_cas.lua answered.
type casResult int

const (
	casConflict      casResult = 0 // the entity changed: nothing written
	casApplied       casResult = 1 // written, with the operation's record
	casAppliedBefore casResult = 2 // the operation's record exists: nothing written
)

// opKey is the Redis key of operation id's record on the entity at key: in
// the entity's Cluster slot. When the entity's name holds a hash tag of its
// own, that tag decides the slot and the suffix alone is enough.
func opKey(key, id string) string {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			return key + ":op:" + id
		}
	}
	return "{" + key + "}:op:" + id
}

// compareAndSet runs redis_cas.lua for c. On casConflict, now is what the
// entity holds (nil: absent).
func (r *Redis) compareAndSet(ctx context.Context, c casRequest) (res casResult, now []byte, err error) {
	run := func(command, script string) *redis.Cmd {
		cmd := newCASCmd(ctx, command, script, c)
		_ = r.client.Process(ctx, casCmd{cmd})
		return cmd
	}
	cmd := run("evalsha", casScript.Hash())
	if redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") { // not run: Redis restarted or flushed its scripts
		cmd = run("eval", casSource)
	}
	return casReplyOf(cmd)
}

// replyLost reports whether err may have come after Redis received the
// request, so that it may have run: anything but an error reply of Redis's
// or a failure to connect (nothing was sent: Redis is down, and the caller
// gets broker_unavailable at once).
func replyLost(err error) bool {
	if errors.Is(err, errNotSent) {
		return false
	}
	var re redis.Error
	if errors.As(err, &re) {
		return false
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return false
	}
	return true
}

// resolve finds out what became of compare-and-set c whose reply was lost
// (first): it sends c again, on a new connection, until Redis answers or
// r.resolveFor passed. The operation's record makes the resend harmless:
// the script answers casAppliedBefore when the first send was applied, and
// otherwise compares and sets as the first would have.
func (r *Redis) resolve(ctx context.Context, c casRequest, first error) (casResult, []byte, error) {
	deadline := time.Now().Add(r.resolveFor)
	pause := 10 * time.Millisecond
	err := first
	for tries := 1; ; tries++ {
		if time.Now().After(deadline) {
			return casConflict, nil, fmt.Errorf("the reply to the compare-and-set was lost and Redis did not answer it again within %v: the update may have been committed: %w", r.resolveFor, err)
		}
		t := time.NewTimer(min(pause, time.Until(deadline)))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return casConflict, nil, ctx.Err()
		}
		pause = min(2*pause, 500*time.Millisecond)
		var res casResult
		var now []byte
		res, now, err = r.compareAndSet(ctx, c)
		if err == nil {
			r.log.Info("redis broker: a lost compare-and-set reply was resolved", r.describe(),
				slog.String("key", c.key), slog.String("operation", c.op.id),
				slog.Bool("applied_before", res == casAppliedBefore), slog.Int("tries", tries), slog.Any("lost", first))
			return res, now, nil
		}
		if ctx.Err() != nil {
			return casConflict, nil, ctx.Err()
		}
	}
}

// wait sleeps before retry attempt+1: a random time up to
// backoff * 2^attempt, at most 64 * backoff.
func (r *Redis) wait(ctx context.Context, attempt int) error {
	if r.backoff <= 0 {
		return nil
	}
	limit := r.backoff << min(attempt, 6)
	t := time.NewTimer(rand.N(limit) + 1)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// pubCmd is PUBLISH, never resent: delivery is at most once.
type pubCmd struct{ *redis.IntCmd }

func (pubCmd) NoRetry() bool { return true }

// Publish implements Broker: PUBLISH of env's JSON on t's channel.
func (r *Redis) Publish(ctx context.Context, t Topic, env Envelope) error {
	name := r.name(t)
	if r.isClosed() {
		return r.errClosed("publish", name)
	}
	data, err := json.Marshal(env)
	if err != nil {
		return fmt.Errorf("redis broker: publish %s: %w", name, err)
	}
	cmd := redis.NewIntCmd(ctx, "publish", name, data)
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

// Close implements Broker: it ends the subscription connection and the
// client; later calls fail with ErrUnavailable.
func (r *Redis) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.chans = make(map[string]*redisChan)
	for token, ch := range r.fences {
		ch <- errors.New("the redis broker is closed")
		delete(r.fences, token)
	}
	r.mu.Unlock()
	close(r.done)
	<-r.healthDone // no more replacing of the subscription connection
	r.cmdMu.Lock()
	ps := r.ps.Load()
	r.cmdMu.Unlock()
	ps.Close()
	<-r.loopDone
	r.pipe.close()
	return r.client.Close()
}

// String names the broker's deployment, e.g. "redis 127.0.0.1:6379".
func (r *Redis) String() string { return r.target.String() }

// describe is how log lines name the broker.
func (r *Redis) describe() slog.Attr {
	return slog.String("redis", strings.TrimPrefix(r.target.String(), "redis "))
}
