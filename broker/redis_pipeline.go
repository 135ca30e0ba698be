package broker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// Auto-pipelining of Update's compare-and-sets.
//
// Update hands each compare-and-set (one EVALSHA of redis_cas.lua) to the
// broker's casPipeliner instead of sending it itself. A few flusher
// goroutines take whatever is queued (up to casBatchMax requests), send it
// as ONE go-redis pipeline, and hand each command's reply back to its
// caller. While pipelines are in flight new requests queue for the next
// one; there is no timer: a lone request goes out at once (and when no
// other request is in flight at all, its caller sends it directly, with
// compareAndSet, as without pipelining). Under
// concurrency this costs go-redis one pool Get, one write and a read or
// two per pipeline instead of per update.
//
// Exactly once (see the Redis type's doc) holds as without pipelining:
//
//   - go-redis never resends a pipeline: the client's MaxRetries is -1
//     (redis_url.go: one attempt), and each command is a casCmd whose
//     NoRetry makes go-redis's pipeline loop stop after its first attempt
//     whatever MaxRetries says (cmdsContainNoRetry).
//   - When the pipeline fails at the connection level, go-redis stamps the
//     error on every command that has no reply of its own, so each caller
//     sees it, and Update resolves its own request one by one (resolve,
//     which sends directly, as before). A dial error (nothing was sent)
//     comes back as is: replyLost says it is not lost.
//   - Redis error replies come back per command: NOSCRIPT (the script was
//     not run) makes the caller send its own request again, alone, with
//     EVAL (as compareAndSet falls back).
//   - A caller whose context ends while its request is queued (not taken)
//     returns the context's error and the request is never sent. Once taken
//     it may have been sent: the caller also returns the context's error,
//     and Update treats that as it treats a context that ends during a
//     direct send (the outcome is unknown; the cache entry is dropped).
//   - Requests still queued when the broker closes get errPipelineClosed,
//     which replyLost reports as not lost (nothing was sent).
//
// The flushers send with a context of their own (no caller's): the
// client's dial, read and write timeouts bound a pipeline as they bound a
// single command.
//
// When the broker waits for replicas, a pipeline ends with one WAIT: it
// covers every compare-and-set of the pipeline (WAIT waits for the
// connection's last write), and each caller reads its answer beside its own
// reply (casOutcome).
//
// A Cluster client keeps the direct path (one command per Update): its
// pipelines are split by slot and redirected (MOVED, ASK) by go-redis with
// a retry logic of their own, not reviewed for exactly-once here.

// casBatchMax bounds the requests of one pipeline.
const casBatchMax = 128

// casFlushers is how many pipelines may be in flight at once.
const casFlushers = 2

// errNotSent marks an error of a compare-and-set that was never sent to
// Redis (replyLost: not lost).
var errNotSent = errors.New("the compare-and-set was not sent")

// errPipelineClosed is what a request queued when the broker closes gets.
var errPipelineClosed = fmt.Errorf("the redis broker is closed: %w", errNotSent)

// casCall is one queued compare-and-set.
type casCall struct {
	c     casRequest
	state atomic.Int32   // casQueued, casTaken or casAbandoned
	done  chan casAnswer // the flusher's answer; capacity 1
}

const (
	casQueued    = 0
	casTaken     = 1 // a flusher took it: it may be sent
	casAbandoned = 2 // its caller left before a flusher took it: never sent
)

type casAnswer struct {
	cmd  *redis.Cmd
	wait *redis.IntCmd // the pipeline's WAIT, when the broker waits for replicas
	err  error         // set when the request was not sent (the broker closed)
}

// casPipeliner is the queue and the flushers of a Redis broker.
type casPipeliner struct {
	client redis.UniversalClient
	wake   chan struct{} // capacity 1: there is something queued
	stop   chan struct{}
	wg     sync.WaitGroup

	mu     sync.Mutex
	queue  []*casCall
	closed bool

	// busy counts the requests in flight (queued, or sent directly or in
	// a pipeline, until answered).
	busy atomic.Int64

	// flushes counts the pipelines sent (tests).
	flushes atomic.Int64

	// wait makes the WAIT that ends each pipeline; nil: none.
	wait func(context.Context) *redis.IntCmd
}

// newCASPipeliner starts the flushers for client; nil for a Cluster client
// (Update then sends directly). wait, when set, makes the WAIT that ends
// each pipeline.
func newCASPipeliner(client redis.UniversalClient, wait func(context.Context) *redis.IntCmd) *casPipeliner {
	if _, ok := client.(*redis.ClusterClient); ok {
		return nil
	}
	p := &casPipeliner{client: client, wait: wait, wake: make(chan struct{}, 1), stop: make(chan struct{})}
	p.wg.Add(casFlushers)
	for range casFlushers {
		go p.run()
	}
	return p
}

// close stops the flushers, after the pipelines in flight are answered,
// and fails the requests still queued with errPipelineClosed. It may be
// called on a nil p, and more than once.
func (p *casPipeliner) close() {
	if p == nil {
		return
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	left := p.queue
	p.queue = nil
	p.mu.Unlock()
	close(p.stop)
	p.wg.Wait()
	for _, call := range left {
		if call.state.CompareAndSwap(casQueued, casTaken) {
			call.done <- casAnswer{err: errPipelineClosed}
		}
	}
}

// enqueue queues call for the next pipeline.
func (p *casPipeliner) enqueue(call *casCall) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return errPipelineClosed
	}
	p.queue = append(p.queue, call)
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
	return nil
}

// take moves up to casBatchMax queued requests to batch, marking them
// taken (those their caller abandoned are dropped), and wakes another
// flusher when some remain queued.
func (p *casPipeliner) take(batch []*casCall) []*casCall {
	p.mu.Lock()
	n := min(len(p.queue), casBatchMax)
	for _, call := range p.queue[:n] {
		if call.state.CompareAndSwap(casQueued, casTaken) {
			batch = append(batch, call)
		}
	}
	rest := copy(p.queue, p.queue[n:])
	clear(p.queue[rest:])
	p.queue = p.queue[:rest]
	p.mu.Unlock()
	if rest > 0 {
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
	return batch
}

// run is a flusher.
func (p *casPipeliner) run() {
	defer p.wg.Done()
	batch := make([]*casCall, 0, casBatchMax)
	cmds := make([]*redis.Cmd, 0, casBatchMax)
	cmders := make([]redis.Cmder, 0, casBatchMax+1)
	pipe := p.client.Pipeline() // Exec leaves it empty; hooks are looked up at each Exec
	for {
		select {
		case <-p.wake:
		case <-p.stop:
			return
		}
		for {
			batch = p.take(batch[:0])
			if len(batch) == 0 {
				break
			}
			cmds, cmders = p.flush(pipe, batch, cmds[:0], cmders[:0])
			clear(batch)
			clear(cmds)
			clear(cmders)
		}
	}
}

// flush sends batch as one pipeline and answers each request.
func (p *casPipeliner) flush(pipe redis.Pipeliner, batch []*casCall, cmds []*redis.Cmd, cmders []redis.Cmder) ([]*redis.Cmd, []redis.Cmder) {
	ctx := context.Background()
	for _, call := range batch {
		cmd := newCASCmd(ctx, "evalsha", casScript.Hash(), call.c)
		cmds = append(cmds, cmd)
		cmders = append(cmders, casCmd{cmd})
	}
	var wait *redis.IntCmd
	if p.wait != nil {
		// One WAIT after the batch: it waits for the connection's last
		// write, so it covers every compare-and-set before it.
		wait = p.wait(ctx)
		cmders = append(cmders, waitCall{wait})
	}
	_ = pipe.BatchProcess(ctx, cmders...)
	p.flushes.Add(1)
	_, _ = pipe.Exec(ctx) // each command holds its own reply or error
	for i, call := range batch {
		call.done <- casAnswer{cmd: cmds[i], wait: wait}
	}
	return cmds, cmders
}

// newCASCmd is the compare-and-set c as command ("evalsha" with the
// script's hash, or "eval" with its source).
func newCASCmd(ctx context.Context, command, script string, c casRequest) *redis.Cmd {
	args := make([]any, 0, 16)
	args = append(args, command, script, 4, c.key, c.record, slotKey(c.key, ":turns"), slotKey(c.key, ":turn"))
	if c.seen == nil {
		args = append(args, "0", "")
	} else {
		args = append(args, "1", c.seen)
	}
	switch {
	case c.leave:
		args = append(args, "leave", "")
	case c.del:
		args = append(args, "del", "")
	default:
		args = append(args, "set", c.next)
	}
	args = append(args, max(c.op.keep.Milliseconds(), 1), c.op.id, c.instance, max(c.turn.Milliseconds(), 1))
	cmd := redis.NewCmd(ctx, args...)
	cmd.SetFirstKeyPos(3)
	return cmd
}

// casReplyOf reads redis_cas.lua's reply in cmd.
func casReplyOf(cmd *redis.Cmd) (casResult, []byte, error) {
	reply, err := cmd.Slice()
	if err != nil {
		return casConflict, nil, err
	}
	if len(reply) == 0 {
		return casConflict, nil, fmt.Errorf("compare-and-set: empty reply")
	}
	switch n, _ := reply[0].(int64); n {
	case 1:
		return casApplied, nil, nil
	case 2:
		return casAppliedBefore, nil, nil
	case 0, 3:
	default:
		return casConflict, nil, fmt.Errorf("compare-and-set: unexpected reply %v", reply)
	}
	res := casResult(reply[0].(int64))
	if len(reply) > 1 {
		s, _ := reply[1].(string)
		return res, []byte(s), nil
	}
	return res, nil, nil
}

// cas is Update's compare-and-set: through the pipeliner when there is
// one and another request is in flight, else compareAndSet (directly). Its errors are compareAndSet's, plus the
// context's when ctx ends while waiting (the request may have been sent:
// Update treats it as a context that ended during a send), and
// errPipelineClosed (not sent).
func (r *Redis) cas(ctx context.Context, c casRequest) (casResult, []byte, error) {
	if r.pipe == nil {
		return r.compareAndSet(ctx, c)
	}
	defer r.pipe.busy.Add(-1)
	if r.pipe.busy.Add(1) == 1 {
		// Nothing else in flight: no pipeline to share, and a handoff to a
		// flusher would only add latency.
		return r.compareAndSet(ctx, c)
	}
	call := &casCall{c: c, done: make(chan casAnswer, 1)}
	if err := r.pipe.enqueue(call); err != nil {
		return casConflict, nil, err
	}
	var a casAnswer
	select {
	case a = <-call.done:
	case <-ctx.Done():
		// Abandoned before a flusher took it: never sent. Else it may have
		// been: the outcome is unknown, as when a direct send is cut short.
		call.state.CompareAndSwap(casQueued, casAbandoned)
		return casConflict, nil, ctx.Err()
	}
	if a.err != nil {
		return casConflict, nil, a.err
	}
	if err := a.cmd.Err(); err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") { // not run: Redis restarted or flushed its scripts
		cmd, wait, err := r.sendCAS(ctx, "eval", casSource, c) // as compareAndSet falls back
		if err != nil {
			return casConflict, nil, err
		}
		return r.casOutcome(cmd, wait)
	}
	return r.casOutcome(a.cmd, a.wait)
}
