package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/electric-socket/electric-socket/broker/redistest"
)

// pipelineCounts counts the pipelines of compare-and-sets a client sends
// (not go-redis's own, e.g. a new connection's HELLO), their commands, and
// those of more than one command that failed.
type pipelineCounts struct {
	pipelines, cmds, largest, failedMulti atomic.Int64
}

func (h *pipelineCounts) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h *pipelineCounts) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (h *pipelineCounts) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if len(cmds) == 0 || cmds[0].Name() != "evalsha" {
			return next(ctx, cmds)
		}
		h.pipelines.Add(1)
		h.cmds.Add(int64(len(cmds)))
		for {
			l := h.largest.Load()
			if int64(len(cmds)) <= l || h.largest.CompareAndSwap(l, int64(len(cmds))) {
				break
			}
		}
		err := next(ctx, cmds)
		if err != nil && len(cmds) > 1 {
			h.failedMulti.Add(1)
		}
		return err
	}
}

// TestRedisUpdatesArePipelined: 64 goroutines updating a key each, 50
// times, share pipelines: far fewer pipelines than updates, and every
// counter ends exact.
func TestRedisUpdatesArePipelined(t *testing.T) {
	srv := redistest.New(t)
	b := newTestRedis(t, srv, RedisOptions{MaxRetries: 3})
	if b.pipe == nil {
		t.Fatal("no pipeliner")
	}
	raw := srv.Client(t)
	h := &pipelineCounts{}
	b.client.AddHook(h)
	const goroutines, updates = 64, 50
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tp := Topic{"pipe", strconv.Itoa(g)}
			for range updates {
				err := b.Update(context.Background(), tp, func(cur []byte, _ bool) ([]byte, Op, error) {
					n, _ := strconv.Atoi(string(cur))
					return []byte(strconv.Itoa(n + 1)), Set, nil
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for g := range goroutines {
		if got := raw.Get(context.Background(), b.name(Topic{"pipe", strconv.Itoa(g)})).Val(); got != strconv.Itoa(updates) {
			t.Errorf("counter %d = %s, want %d", g, got, updates)
		}
	}
	total := int64(goroutines * updates)
	pipes, flushes := h.pipelines.Load(), b.pipe.flushes.Load()
	// (An update sent when no other was in flight goes out alone, directly.)
	if pipes != flushes || h.cmds.Load() > total || h.cmds.Load() < total*3/4 {
		t.Errorf("the hook saw %d pipelines of %d commands, the pipeliner sent %d pipelines for %d updates",
			pipes, h.cmds.Load(), flushes, total)
	}
	if pipes > total/4 {
		t.Errorf("%d updates took %d pipelines, want well below", total, pipes)
	}
	t.Logf("%d updates in %d pipelines (%.1f per pipeline, largest %d)", total, pipes, float64(total)/float64(pipes), h.largest.Load())
}

// TestRedisCutPipelineAppliesOnce: 32 goroutines update 4 entities through
// a proxy that keeps cutting a connection after it forwarded a pipeline of
// compare-and-sets (Redis ran some or all of them, their replies are
// lost). Each logical update records its name in the value it commits:
// each must be there exactly once.
func TestRedisCutPipelineAppliesOnce(t *testing.T) {
	srv := redistest.New(t)
	proxy := redistest.NewProxy(t, srv)
	b, err := NewRedis(context.Background(), RedisOptions{URL: proxy.URL, Prefix: srv.Prefix(t),
		MaxRetries: DefaultMaxRetries, RetryBackoff: DefaultRetryBackoff})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	h := &pipelineCounts{}
	b.client.AddHook(h)
	const goroutines, updates, keys = 32, 30, 16
	// Rounds until several pipelines of more than one compare-and-set were
	// cut (most cuts hit a pipeline of one).
	rounds := 0
	for ; rounds < 20 && (rounds < 1 || h.failedMulti.Load() < 3); rounds++ {
		stop := make(chan struct{})
		armed := make(chan struct{})
		var running atomic.Int64
		running.Store(goroutines)
		var progress atomic.Int64 // updates answered this round
		go func() {
			// Keep cutting while most goroutines run: arm a cut, wait until
			// it happened and a few updates were answered since (so that
			// lost replies can be resolved: a resend is not cut each time),
			// then arm the next.
			defer close(armed)
			wait := func(done func() bool) bool {
				for !done() {
					select {
					case <-stop:
						return false
					case <-time.After(time.Millisecond):
					}
				}
				return true
			}
			for running.Load() > goroutines/2 {
				cuts, answered := proxy.Cuts(), progress.Load()
				proxy.CutReply("evalsha")
				if !wait(func() bool { return proxy.Cuts() > cuts || running.Load() <= goroutines/2 }) ||
					!wait(func() bool { return progress.Load() >= answered+8 || running.Load() <= goroutines/2 }) {
					return
				}
			}
			proxy.CutReply("no such marker")
		}()
		var wg sync.WaitGroup
		for g := range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer running.Add(-1)
				for i := range updates {
					name := fmt.Sprint("r", rounds, ".g", g, ".", i)
					tp := Topic{"cut", strconv.Itoa((g + i) % keys)}
					err := b.Update(context.Background(), tp, func(cur []byte, _ bool) ([]byte, Op, error) {
						e := decodeOnce(t, cur)
						e.N++
						e.Applied[name]++
						next, err := json.Marshal(e)
						return next, Set, err
					})
					if err != nil {
						t.Errorf("update %s: %v", name, err)
						return
					}
					progress.Add(1)
				}
			}()
		}
		wg.Wait()
		close(stop)
		<-armed
		proxy.CutReply("no such marker") // disarm
		if t.Failed() {
			break
		}
	}
	total := rounds * goroutines * updates
	applied := map[string]int{}
	n := 0
	for k := range keys {
		var e onceEntity
		mustUpdate(t, b, Topic{"cut", strconv.Itoa(k)}, func(cur []byte, _ bool) ([]byte, Op, error) {
			e = decodeOnce(t, cur)
			return nil, Abort, nil
		})
		for name, c := range e.Applied {
			applied[name] += c
		}
		n += e.N
	}
	for r := range rounds {
		for g := range goroutines {
			for i := range updates {
				if name := fmt.Sprint("r", r, ".g", g, ".", i); applied[name] != 1 {
					t.Errorf("logical update %s applied %d times, want exactly 1", name, applied[name])
				}
			}
		}
	}
	if n != total || len(applied) != total {
		t.Errorf("n = %d over %d logical updates, want %d", n, len(applied), total)
	}
	if proxy.Cuts() < 5 || h.failedMulti.Load() < 3 {
		t.Errorf("the proxy cut %d replies, %d pipelines of several compare-and-sets failed; want several and some: the test did not lose replies",
			proxy.Cuts(), h.failedMulti.Load())
	}
	t.Logf("%d rounds, %d updates, %d cuts, %d pipelines of %d commands (largest %d), %d pipelines of several commands failed",
		rounds, total, proxy.Cuts(), h.pipelines.Load(), h.cmds.Load(), h.largest.Load(), h.failedMulti.Load())
}

// TestRedisPipelineNoScript: after SCRIPT FLUSH, pipelined compare-and-sets
// answer NOSCRIPT, and each falls back to EVAL on its own.
func TestRedisPipelineNoScript(t *testing.T) {
	srv := redistest.New(t)
	b := newTestRedis(t, srv, RedisOptions{MaxRetries: DefaultMaxRetries, RetryBackoff: DefaultRetryBackoff})
	raw := srv.Client(t)
	for round := range 3 {
		if err := raw.ScriptFlush(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for g := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := b.Update(context.Background(), Topic{"noscript", strconv.Itoa(g)}, func(cur []byte, _ bool) ([]byte, Op, error) {
					n, _ := strconv.Atoi(string(cur))
					return []byte(strconv.Itoa(n + 1)), Set, nil
				}); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		for g := range 16 {
			if got := raw.Get(context.Background(), b.name(Topic{"noscript", strconv.Itoa(g)})).Val(); got != strconv.Itoa(round+1) {
				t.Fatalf("round %d: counter %d = %s, want %d", round, g, got, round+1)
			}
		}
	}
}

// TestRedisPipelineClose: closing the broker while updates are queued
// fails them promptly with ErrUnavailable (nothing resolved for seconds),
// and none is applied twice or half.
func TestRedisPipelineClose(t *testing.T) {
	srv := redistest.New(t)
	b, err := NewRedis(context.Background(), RedisOptions{URL: srv.URL, Prefix: srv.Prefix(t), MaxRetries: DefaultMaxRetries, RetryBackoff: DefaultRetryBackoff})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var ok, unknown atomic.Int64
	start := make(chan struct{})
	for g := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for {
				err := b.Update(context.Background(), Topic{"close", strconv.Itoa(g)}, func(cur []byte, _ bool) ([]byte, Op, error) {
					n, _ := strconv.Atoi(string(cur))
					return []byte(strconv.Itoa(n + 1)), Set, nil
				})
				if err != nil {
					// Ended by Close, not by a timeout: it says so.
					if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "redis broker is closed") && !strings.Contains(err.Error(), "redis broker was closed") {
						t.Errorf("update after close: %v, want ErrUnavailable saying the broker was closed", err)
					}
					if errors.Is(err, ErrOutcomeUnknown) {
						unknown.Add(1)
					}
					return
				}
				ok.Add(1)
			}
		}()
	}
	close(start)
	for ok.Load() < 500 { // Close while updates are in flight
		time.Sleep(time.Millisecond)
	}
	b.Close()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("updates did not end after Close")
	}
	raw := srv.Client(t)
	sum := 0
	for g := range 64 {
		n, _ := strconv.Atoi(raw.Get(context.Background(), b.name(Topic{"close", strconv.Itoa(g)})).Val())
		sum += n
	}
	// An update whose reply Close cut off may have been applied: its caller
	// was told so (ErrOutcomeUnknown).
	if int64(sum) < ok.Load() || int64(sum) > ok.Load()+unknown.Load() {
		t.Errorf("counters sum to %d; %d updates succeeded, %d of unknown outcome", sum, ok.Load(), unknown.Load())
	}
	t.Logf("%d updates before Close, %d of unknown outcome", ok.Load(), unknown.Load())
}

// TestRedisPipelineContextEnds: an update whose context ends while it
// waits returns the context's error.
func TestRedisPipelineContextEnds(t *testing.T) {
	srv := redistest.New(t)
	b := newTestRedis(t, srv, RedisOptions{MaxRetries: DefaultMaxRetries, RetryBackoff: DefaultRetryBackoff})
	var wg sync.WaitGroup
	for g := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i*50)*time.Microsecond)
				err := b.Update(ctx, Topic{"ctx", strconv.Itoa(g)}, func(cur []byte, _ bool) ([]byte, Op, error) {
					n, _ := strconv.Atoi(string(cur))
					return []byte(strconv.Itoa(n + 1)), Set, nil
				})
				cancel()
				if err != nil && !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("update: %v, want nil or the context's error", err)
				}
			}
		}()
	}
	wg.Wait()
	for g := range 64 { // still works, and the cache did not keep a guess it should not
		mustUpdate(t, b, Topic{"ctx", strconv.Itoa(g)}, func(cur []byte, _ bool) ([]byte, Op, error) {
			n, _ := strconv.Atoi(string(cur))
			return []byte(strconv.Itoa(n + 1)), Set, nil
		})
	}
}
