package sink

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/electric-socket/electric-socket/host/config"
	"github.com/electric-socket/electric-socket/host/engine"
	"github.com/electric-socket/electric-socket/host/metrics"
)

// New builds the side-effect sink the [sink] table names: "log" writes
// to log; "webhook" and "redis_stream" deliver in batches from a bounded
// queue (see batcher). The redis_stream sink checks that Redis answers.
func New(c config.SinkConfig, log *slog.Logger, m *metrics.Metrics) (engine.Sink, error) {
	switch c.Kind {
	case "", "log":
		return Log{Log: log, Metrics: m}, nil
	case "webhook":
		return newWebhookSink(c, log, m)
	case "redis_stream":
		return newStreamSink(c, log, m)
	}
	return nil, fmt.Errorf("sink: unknown kind %q", c.Kind)
}

// deliveredEffect is a side effect as the webhook and redis_stream sinks
// send it. ID is unique to this server's run and increases in delivery
// order, so that a receiver can drop the duplicates at-least-once delivery
// allows; Time is when the committed call handed it over.
type deliveredEffect struct {
	ID          string          `json:"id"`
	Integration string          `json:"integration"`
	Channel     string          `json:"channel"`
	Function    string          `json:"function"`
	Effect      json.RawMessage `json:"effect"`
	Time        time.Time       `json:"time"`
}

// Errors of Deliver: the side effect was not queued and is lost.
var (
	errSinkFull   = errors.New("side-effect queue full: side effect dropped")
	errSinkClosed = errors.New("side-effect sink closed: side effect dropped")
)

// batcher is the delivery machinery of the webhook and redis_stream sinks.
// Deliver queues a side effect and returns at once, so a slow receiver
// never stalls a connection; one goroutine sends the queue in order, in
// batches of up to BatchSize, and retries a failed batch with jittered
// exponential backoff until it is accepted: delivery is at least once (a
// batch whose reply was lost is sent again) and in order, so per
// connection too. What does not fit the bounded queue is dropped, logged
// and counted; so is a batch after MaxAttempts (when set), and what is
// still queued when Close's context ends.
//
// Deliver and Close may be called concurrently.
type batcher struct {
	kind    string // the sink kind, for logs and metrics
	send    func(ctx context.Context, batch []deliveredEffect) error
	opts    config.SinkConfig
	log     *slog.Logger
	metrics *metrics.Metrics
	prefix  string // of effect ids: random per run

	mu        sync.Mutex
	queue     []deliveredEffect
	seq       uint64
	closing   bool
	abandoned int // effects of the batch in flight when Close gave up

	wake   chan struct{} // a token when the queue or closing changed
	ctx    context.Context
	cancel context.CancelFunc // Close gives up: abort the attempt in flight
	done   chan struct{}      // the sender ended
}

func newBatcher(kind string, opts config.SinkConfig, send func(context.Context, []deliveredEffect) error,
	log *slog.Logger, m *metrics.Metrics) *batcher {
	var r [6]byte
	crand.Read(r[:])
	ctx, cancel := context.WithCancel(context.Background())
	b := &batcher{
		kind: kind, send: send, opts: opts, log: log, metrics: m, prefix: hex.EncodeToString(r[:]) + "-",
		wake: make(chan struct{}, 1), ctx: ctx, cancel: cancel, done: make(chan struct{}),
	}
	if m != nil {
		m.GaugeFunc("side_effects_queued", "Side effects waiting for delivery.", func() float64 {
			b.mu.Lock()
			defer b.mu.Unlock()
			return float64(len(b.queue))
		})
	}
	go b.run()
	return b
}

// Deliver implements Sink: it queues e, or drops it when the queue is full.
func (b *batcher) Deliver(_ context.Context, e engine.SideEffect) error {
	b.mu.Lock()
	if b.closing || len(b.queue) >= b.opts.QueueSize {
		err, reason := errSinkFull, "queue_full"
		if b.closing {
			err, reason = errSinkClosed, "shutdown"
		}
		b.mu.Unlock()
		b.metrics.EffectsLost(b.kind, reason, 1)
		return err
	}
	b.seq++
	b.queue = append(b.queue, deliveredEffect{
		ID: b.prefix + strconv.FormatUint(b.seq, 10), Integration: e.Integration, Channel: e.Channel,
		Function: e.Function, Effect: e.Payload, Time: time.Now().UTC(),
	})
	b.mu.Unlock()
	b.signal()
	return nil
}

func (b *batcher) signal() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// Queued returns how many side effects wait for delivery (the batch in
// flight not included).
func (b *batcher) Queued() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queue)
}

func (b *batcher) run() {
	defer close(b.done)
	for {
		batch := b.next()
		if batch == nil {
			return
		}
		b.deliver(batch)
	}
}

// next waits for queued effects and takes up to BatchSize of them; nil
// when closing with nothing queued, or when Close gave up.
func (b *batcher) next() []deliveredEffect {
	for {
		b.mu.Lock()
		if n := min(len(b.queue), b.opts.BatchSize); n > 0 {
			batch := make([]deliveredEffect, n)
			copy(batch, b.queue)
			clear(b.queue[:n])
			b.queue = b.queue[n:]
			b.mu.Unlock()
			return batch
		}
		closing := b.closing
		b.mu.Unlock()
		if closing {
			return nil
		}
		select {
		case <-b.wake:
		case <-b.ctx.Done():
			return nil
		}
	}
}

// deliver sends batch until it is accepted, MaxAttempts is reached, or
// Close gives up.
func (b *batcher) deliver(batch []deliveredEffect) {
	backoff := b.opts.RetryBackoff
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(b.ctx, b.opts.Timeout)
		err := b.send(ctx, batch)
		cancel()
		if err == nil {
			b.metrics.EffectsSent(b.kind, len(batch))
			if attempt > 1 {
				b.log.Info("side effects delivered after retries", "sink", b.kind,
					"effects", len(batch), "attempts", attempt)
			}
			return
		}
		b.metrics.EffectAttemptFailed(b.kind)
		if b.ctx.Err() != nil {
			b.abandon(batch)
			return
		}
		if b.opts.MaxAttempts > 0 && attempt >= b.opts.MaxAttempts {
			b.metrics.EffectsLost(b.kind, "max_attempts", len(batch))
			b.log.Error("side effects dropped: delivery kept failing", "sink", b.kind,
				"effects", len(batch), "first", batch[0].ID, "attempts", attempt, "err", err)
			return
		}
		wait := backoff/2 + rand.N(backoff/2+1) // between half and all of backoff
		backoff = min(2*backoff, b.opts.MaxBackoff)
		b.log.Warn("side-effect delivery failed; retrying", "sink", b.kind, "effects", len(batch),
			"attempt", attempt, "retry_in", wait.Round(time.Millisecond), "err", err)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-b.ctx.Done():
			t.Stop()
			b.abandon(batch)
			return
		}
	}
}

func (b *batcher) abandon(batch []deliveredEffect) {
	b.mu.Lock()
	b.abandoned += len(batch)
	b.mu.Unlock()
}

// Close implements Closer: no more side effects are taken; what is
// queued is delivered until ctx ends, and the rest is dropped, logged,
// counted and reported in the error.
func (b *batcher) Close(ctx context.Context) error {
	b.mu.Lock()
	b.closing = true
	b.mu.Unlock()
	b.signal()
	select {
	case <-b.done:
	case <-ctx.Done():
		b.cancel()
		<-b.done
	}
	b.cancel()
	b.mu.Lock()
	lost := len(b.queue) + b.abandoned
	b.queue, b.abandoned = nil, 0
	b.mu.Unlock()
	if lost == 0 {
		return nil
	}
	b.metrics.EffectsLost(b.kind, "shutdown", lost)
	b.log.Error("side effects not delivered before the shutdown timeout", "sink", b.kind, "effects", lost)
	return fmt.Errorf("%s sink: %d side effects not delivered before the shutdown timeout", b.kind, lost)
}
