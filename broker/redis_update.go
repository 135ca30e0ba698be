package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Update implements Broker with group commit (group.go) and the
// compare-and-set of redis_cas.lua: fn waits for the updates of the same
// key that came before it on this broker, then runs, with those waiting
// beside it, in one group whose result is one compare-and-set.
//
// The group's functions run first on the value the broker's cache holds
// for the key (see valueCache) when there is a trusted one, else on what a
// GET finds. When the cached value was out of date, the compare-and-set
// loses and answers with the current value, and the group runs again on it
// with retried = true, as on any lost compare-and-set (SPEC 6); only that
// loss does not count against MaxRetries: it stands for the GET the cache
// saved. When every function of a group aborts or fails on a cached value,
// a GET checks that value first: if the entity changed, the group runs
// again on what Redis holds, so an abort or error is always decided on a
// value Redis held during the update.
//
// Between instances, a compare-and-set that loses gives its instance the
// key's turn (redis_cas.lua): the other instances' writes of that key are
// refused until it has written, so it cannot lose again to them; they wait
// in line, asking again after a short, growing pause (RetryBackoff), and
// each gets its turn in the order it came. So MaxRetries bounds only the
// losses to writers that do not take turns (other programs writing the
// entity) and the rare races at the moment a turn ends; waiting in line is
// bounded by lineWait instead.
func (r *Redis) Update(ctx context.Context, t Topic, fn UpdateFunc) error {
	key := r.name(t)
	if r.isClosed() {
		return r.errClosed("update", key)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redis broker: update %s: %w", key, err)
	}
	m := &member{ctx: ctx, fn: fn}
	m.op, m.named = operationFrom(ctx)
	return r.line.do(key, m, func(g []*member) { r.commitGroup(key, g) })
}

// commitGroup runs group g of updates of key (see group.go) and sets each
// member's outcome.
func (r *Redis) commitGroup(key string, g []*member) {
	ctx := g[0].ctx
	if len(g) > 1 {
		ctx = context.WithoutCancel(ctx) // a group is not one caller's to cancel
	}
	failAll := func(err error) {
		for _, m := range g {
			if m.err == nil {
				m.err = err
			}
		}
	}
	// The operation of this compare-and-set, and its record: the group's
	// own on this entity and instance, or the named operation's.
	op, record := g[0].op, opKey(key, r.opPrefix)
	if g[0].named {
		record = opKey(key, op.id)
	} else {
		op.id = r.opPrefix + "." + strconv.FormatUint(r.opSeq.Add(1), 36)
	}
	if op.keep <= 0 {
		op.keep = r.opKeep
	}

	// base is what the group runs on. fresh: Redis held it during this
	// update (a GET or a compare-and-set's reply found it); else it is
	// guess, from the cache. trusted is what the cache entry's trust becomes.
	var base []byte
	guess, cached := r.cache.get(key)
	fresh, trusted := false, true
	if cached && guess.trusted {
		base = guess.current()
	} else {
		got, err := r.get(ctx, key)
		if err != nil {
			r.cache.drop(key)
			failAll(r.fail(ctx, "update", key, err))
			return
		}
		base, fresh = got, true
		trusted = !cached || guess.same(got) // the entry would have been right
		r.cache.put(key, got, trusted)
	}
	inLine := false // this broker may be in the key's line of turns
	leave := func() {
		if inLine {
			r.leaveLine(key, record, op)
		}
	}
	lost := false  // a send whose reply was lost may have been applied
	conflicts := 0 // compare-and-sets lost against a fresh value
	for {
		next, changed := runGroup(g, base)
		if !changed {
			if !fresh { // decided on the cache's guess: does Redis still hold it?
				now, err := r.get(ctx, key)
				if err != nil {
					r.cache.drop(key)
					failAll(r.fail(ctx, "update", key, err))
					leave()
					return
				}
				if !guess.same(now) {
					trusted = false
					r.cache.put(key, now, trusted)
					base, fresh = now, true
					continue
				}
			}
			leave() // nothing to write: let the next instance in line go
			return  // each member's outcome is its own
		}
		c := casRequest{key: key, record: record, op: op, instance: r.opPrefix, turn: r.turn,
			seen: base, del: next == nil, next: next}
		res, now, err := r.sendInLine(ctx, c, &lost, &inLine)
		if errors.Is(err, ErrConflict) { // waited in line too long
			failAll(err)
			leave()
			return
		}
		if err != nil {
			r.cache.drop(key) // it may have been applied
			failAll(r.fail(ctx, "update", key, err))
			return
		}
		switch res {
		case casApplied:
			r.cache.put(key, c.written(), trusted)
			return
		case casAppliedBefore:
			if lost {
				r.cache.put(key, c.written(), trusted)
				return // the send whose reply was lost applied this very result
			}
			r.cache.drop(key) // another run of the operation wrote something
			failAll(fmt.Errorf("redis broker: update %s: operation %s: %w", key, op.id, ErrApplied))
			return
		}
		// casConflict: the entity changed; this instance now has the turn.
		inLine = true
		if !fresh {
			trusted = false // the cache's guess was out of date
		}
		r.cache.put(key, now, trusted)
		if fresh {
			if conflicts >= r.maxRetries {
				failAll(fmt.Errorf("%w: update %s: %d attempts", ErrConflict, key, conflicts+1))
				leave()
				return
			}
			conflicts++
		}
		base, fresh = now, true
	}
}

// sendInLine sends c, and sends it again for as long as another instance
// has the key's turn (casTurn: this instance waits in line, and inLine is
// set), pausing between sends, at most r.lineWait in all. It returns the
// first other answer. lost is set when a reply was lost and resolved.
func (r *Redis) sendInLine(ctx context.Context, c casRequest, lost, inLine *bool) (casResult, []byte, error) {
	var waited time.Duration
	for {
		res, now, err := r.cas(ctx, c)
		if err != nil && replyLost(err) && ctx.Err() == nil {
			*lost = true
			res, now, err = r.resolve(ctx, c, err, func(cause error) {
				// Redis does not answer: until it does, the key's next
				// updates are told so at once, instead of waiting behind
				// this one for the outage to end.
				r.line.refuse(c.key, fmt.Errorf("%w: update %s on %s: an earlier update of this key is waiting for Redis to answer again (%v); nothing of this one was committed",
					ErrUnavailable, c.key, r.target, cause))
			})
		}
		if err != nil || res != casTurn {
			return res, now, err
		}
		*inLine = true
		if waited >= r.lineWait {
			return res, now, fmt.Errorf("%w: update %s: waited %v for other instances' turns", ErrConflict, c.key, waited.Round(time.Millisecond))
		}
		if !sameValue(now, c.seen) {
			r.cache.put(c.key, now, false)
		}
		pause, err := r.pause(ctx, waited)
		if err != nil {
			return res, now, err
		}
		waited += pause
	}
}

// runGroup runs the functions of g one after another from base, each on
// what the one before produced, and returns the value the group leaves
// and whether any member changed it. Each member's err is its own outcome:
// an error, or nil (its result, if any, is part of next).
func runGroup(g []*member, base []byte) (next []byte, changed bool) {
	cur := base
	for _, m := range g {
		m.err = nil
		if err := m.ctx.Err(); err != nil && m.runs == 0 {
			m.err = err // its caller left before it ran
			continue
		}
		v, o, err := m.run(cur)
		if err == nil && o == Set && len(v) == 0 {
			o = Delete // as in Memory: an empty value is no entity
		}
		switch {
		case err != nil:
			m.err = err
		case o == Abort:
		case o == Set:
			cur, changed = v, true
		case o == Delete:
			cur, changed = nil, true
		default:
			m.err = fmt.Errorf("redis broker: update: unknown op %d", o)
		}
	}
	return cur, changed
}

func sameValue(a, b []byte) bool { return (a == nil) == (b == nil) && string(a) == string(b) }

// pause sleeps while another instance has the turn, after waited so far: a
// random time between half and all of RetryBackoff * 2^n, doubling up to
// 16 * RetryBackoff (n counts the pauses so far, known from waited). It
// returns how long it slept.
func (r *Redis) pause(ctx context.Context, waited time.Duration) (time.Duration, error) {
	step := max(r.backoff, 100*time.Microsecond)
	limit := step
	for limit < 16*step && limit <= waited {
		limit *= 2
	}
	d := limit/2 + rand.N(limit/2+1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return d, nil
	case <-r.done:
		return 0, r.errClosed("update", "")
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// leaveLine takes this broker out of key's line of turns, when a group it
// waited for ends without writing. Best effort: an instance that does not
// leave loses its turn when the turn runs out.
func (r *Redis) leaveLine(key, record string, op operation) {
	c := casRequest{key: key, record: record, op: op, instance: r.opPrefix, turn: r.turn, leave: true}
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	if _, _, err := r.compareAndSet(ctx, c); err != nil {
		r.log.Debug("redis broker: could not leave a key's line of turns", r.describe(), slog.String("key", key), slog.Any("err", err))
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
// still holds seen (nil: absent), as operation op recorded at record, by
// instance, whose turn lasts turn; or, with leave, leave key's line.
type casRequest struct {
	key, record string
	op          operation
	instance    string
	turn        time.Duration
	seen        []byte
	del, leave  bool
	next        []byte
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
	casAppliedBefore casResult = 2 // the record holds this operation: nothing written
	casTurn          casResult = 3 // another instance has the turn: nothing written
)

// opKey is the Redis key of the record named id on the entity at key (id
// is an instance's for group commits, or an operation's own): in the
// entity's Cluster slot. When the entity's name holds a hash tag of its
// own, that tag decides the slot and the suffix alone is enough.
func opKey(key, id string) string { return slotKey(key, ":op:"+id) }

// slotKey is the key named suffix beside the entity at key, in its slot.
func slotKey(key, suffix string) string {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			return key + suffix
		}
	}
	return "{" + key + "}" + suffix
}

// compareAndSet runs redis_cas.lua for c. On casConflict and casTurn, now
// is what the entity holds (nil: absent). When the broker waits for
// replicas and the script wrote the entity, too few acknowledging it is an
// error matching ErrOutcomeUnknown (see sendCAS).
func (r *Redis) compareAndSet(ctx context.Context, c casRequest) (res casResult, now []byte, err error) {
	cmd, wait, err := r.sendCAS(ctx, "evalsha", casScript.Hash(), c)
	if err == nil && redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") { // not run: Redis restarted or flushed its scripts
		cmd, wait, err = r.sendCAS(ctx, "eval", casSource, c)
	}
	if err != nil {
		return casConflict, nil, err
	}
	return r.casOutcome(cmd, wait)
}

// sendCAS sends compare-and-set c as command ("evalsha" or "eval" with
// script). When the broker waits for replicas (and c is not a "leave"),
// WAIT follows it on the same connection, in one pipeline: on a Cluster,
// on go-redis's client of the master of c's key, asking again once where a
// MOVED or ASK reply says (the script did not run). err is set only when
// nothing was sent.
func (r *Redis) sendCAS(ctx context.Context, command, script string, c casRequest) (*redis.Cmd, *redis.IntCmd, error) {
	cmd := newCASCmd(ctx, command, script, c)
	if r.replicas == 0 || c.leave {
		_ = r.client.Process(ctx, casCmd{cmd})
		return cmd, nil, nil
	}
	var pipe redis.Pipeliner
	cc, cluster := r.client.(*redis.ClusterClient)
	if cluster {
		node, err := cc.MasterForKey(ctx, c.key)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %w", errNotSent, err)
		}
		pipe = node.Pipeline()
	} else {
		pipe = r.client.Pipeline()
	}
	wait := r.waitCmd(ctx)
	_ = pipe.Process(ctx, casCmd{cmd})
	_ = pipe.Process(ctx, waitCall{wait})
	_, _ = pipe.Exec(ctx)
	if addr, ask := redirection(cmd.Err()); cluster && addr != "" {
		r.reloadSlots()
		node := r.clusterNode(ctx, addr)
		if node == nil {
			return cmd, wait, nil // the script did not run: the caller gets the MOVED error
		}
		cmd, wait = newCASCmd(ctx, command, script, c), r.waitCmd(ctx)
		pipe = node.Pipeline()
		if ask {
			_ = pipe.Process(ctx, redis.NewStatusCmd(ctx, "asking"))
		}
		_ = pipe.Process(ctx, casCmd{cmd})
		_ = pipe.Process(ctx, waitCall{wait})
		_, _ = pipe.Exec(ctx)
	}
	return cmd, wait, nil
}

// waitCmd is WAIT for r.replicas replicas, at most r.replicaTimeout.
func (r *Redis) waitCmd(ctx context.Context) *redis.IntCmd {
	return redis.NewIntCmd(ctx, "wait", r.replicas, max(r.replicaTimeout.Milliseconds(), 1))
}

// waitCall is WAIT, never resent (a casCmd's pipeline is not anyway).
type waitCall struct{ *redis.IntCmd }

func (waitCall) NoRetry() bool { return true }

// casOutcome reads redis_cas.lua's reply in cmd and, when it wrote the
// entity (casApplied) or a resend found it written (casAppliedBefore) and
// wait is set, WAIT's reply: too few replicas acknowledging is an error
// matching ErrOutcomeUnknown; a WAIT whose reply was lost is an error that
// replyLost accepts, so that Update asks again (the resend answers
// casAppliedBefore, and WAITs again).
func (r *Redis) casOutcome(cmd *redis.Cmd, wait *redis.IntCmd) (casResult, []byte, error) {
	res, now, err := casReplyOf(cmd)
	if err != nil || wait == nil || res != casApplied && res != casAppliedBefore {
		return res, now, err
	}
	n, err := wait.Result()
	switch {
	case err != nil && replyLost(err):
		return casConflict, nil, fmt.Errorf("the reply to WAIT after the compare-and-set was lost: %w", err)
	case err != nil:
		return casConflict, nil, fmt.Errorf("%w: the update is written on the master, but WAIT failed: %w", ErrOutcomeUnknown, err)
	case n < int64(r.replicas):
		return casConflict, nil, fmt.Errorf("%w: the update is written on the master, but %d of the %d replicas asked for acknowledged it within %v, and a failover may lose it",
			ErrOutcomeUnknown, n, r.replicas, r.replicaTimeout)
	}
	return res, now, nil
}

// unreachable reports whether err says that Redis cannot be reached now:
// connecting failed, or a request got no answer within the timeout.
func unreachable(err error) bool {
	var ne net.Error
	return !replyLost(err) && !errors.Is(err, ErrOutcomeUnknown) || errors.As(err, &ne) && ne.Timeout()
}

// replyLost reports whether err may have come after Redis received the
// request, so that it may have run: anything but an error reply of Redis's
// or a failure to connect (nothing was sent: Redis is down, and the caller
// gets broker_unavailable at once).
func replyLost(err error) bool {
	if errors.Is(err, errNotSent) || errors.Is(err, ErrOutcomeUnknown) {
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
// otherwise compares and sets as the first would have. When Redis does not
// answer in time the outcome is unknown, and the error says so
// (ErrOutcomeUnknown).
//
// stuck is called once, when asking again failed because Redis could not
// be reached or did not answer in time (not when a resend's reply was lost
// in turn: Redis answers, but connections are being cut).
func (r *Redis) resolve(ctx context.Context, c casRequest, first error, stuck func(error)) (casResult, []byte, error) {
	deadline := time.Now().Add(r.resolveFor)
	pause := 10 * time.Millisecond
	err := first
	for tries := 1; ; tries++ {
		if r.isClosed() {
			return casConflict, nil, fmt.Errorf("%w: the reply to the compare-and-set was lost and the redis broker was closed before it could ask again: %w", ErrOutcomeUnknown, err)
		}
		if time.Now().After(deadline) {
			return casConflict, nil, fmt.Errorf("%w: the reply to the compare-and-set was lost and Redis did not answer it again within %v: %w", ErrOutcomeUnknown, r.resolveFor, err)
		}
		t := time.NewTimer(min(pause, time.Until(deadline)))
		select {
		case <-t.C:
		case <-r.done:
			t.Stop()
		case <-ctx.Done():
			t.Stop()
			return casConflict, nil, ctx.Err()
		}
		pause = min(2*pause, 500*time.Millisecond)
		var res casResult
		var now []byte
		res, now, err = r.compareAndSet(ctx, c)
		if errors.Is(err, ErrOutcomeUnknown) {
			return casConflict, nil, err // written, and known to be, but not acknowledged by enough replicas
		}
		if err == nil {
			r.log.Info("redis broker: a lost compare-and-set reply was resolved", r.describe(),
				slog.String("key", c.key), slog.String("operation", c.op.id),
				slog.Bool("applied_before", res == casAppliedBefore), slog.Int("tries", tries), slog.Any("lost", first))
			return res, now, nil
		}
		if ctx.Err() != nil {
			return casConflict, nil, ctx.Err()
		}
		if stuck != nil && unreachable(err) {
			stuck(err)
			stuck = nil
		}
		r.reloadSlots() // the key's master may have moved
	}
}
