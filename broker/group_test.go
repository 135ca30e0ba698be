package broker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/electric-socket/electric-socket/broker/redistest"
	"github.com/electric-socket/electric-socket/tests/testkit"
)

// groupBound bounds every wait of these tests.
const groupBound = 10 * time.Second

// waitingIn reports how many updates wait in key's line on b (the leader
// running a group excluded).
func waitingIn(b *Redis, key string) int {
	b.line.mu.Lock()
	defer b.line.mu.Unlock()
	if l := b.line.keys[key]; l != nil {
		return len(l.waiting)
	}
	return 0
}

// holdLine starts an update of tp on b whose function blocks until release
// is closed, and returns once it runs: later updates of tp on b wait in the
// line behind it and form the next group. The update adds 1 to the counter.
func holdLine(t *testing.T, b *Redis, tp Topic) (release chan struct{}, done chan error) {
	t.Helper()
	release, done, running := make(chan struct{}), make(chan error, 1), make(chan struct{})
	var once sync.Once
	go func() {
		done <- b.Update(context.Background(), tp, func(cur []byte, _ bool) ([]byte, Op, error) {
			once.Do(func() { close(running) })
			<-release
			return counterNext(cur, 1), Set, nil
		})
	}()
	select {
	case <-running:
	case <-time.After(groupBound):
		t.Fatal("the first update did not run")
	}
	return release, done
}

func counterOf(t *testing.T, v []byte) int {
	t.Helper()
	if v == nil {
		return 0
	}
	n, err := strconv.Atoi(string(v))
	if err != nil {
		t.Fatalf("counter value %q", v)
	}
	return n
}

func counterNext(cur []byte, d int) []byte {
	n, _ := strconv.Atoi(string(cur))
	return []byte(strconv.Itoa(n + d))
}

// casCount counts the compare-and-sets a client sends.
type casCount struct{ roundTrips }

func (h *casCount) n() int64 { return h.roundTrips.n.Load() }

// TestRedisGroupCommit: updates that wait behind a running one form one
// group: each function runs once, on what the one before it produced, a
// failing member fails alone and an aborting one aborts alone, and the group
// commits with ONE compare-and-set.
func TestRedisGroupCommit(t *testing.T) {
	srv := redistest.New(t)
	b := newTestRedis(t, srv, RedisOptions{MaxRetries: DefaultMaxRetries, RetryBackoff: DefaultRetryBackoff})
	if err := casScript.Load(context.Background(), srv.Client(t)).Err(); err != nil {
		t.Fatal(err) // so that no NOSCRIPT reply adds a round trip below
	}
	h := &casCount{}
	b.client.AddHook(h)
	tp := Topic{"group", "commit"}
	key := b.name(tp)
	release, first := holdLine(t, b, tp)

	boom := errors.New("boom")
	type result struct {
		name string
		err  error
		saw  []byte
		runs int
	}
	members := []struct {
		name string
		fn   func(cur []byte) ([]byte, Op, error)
	}{
		{"add", func(cur []byte) ([]byte, Op, error) { return counterNext(cur, 10), Set, nil }},
		{"fail", func(cur []byte) ([]byte, Op, error) { return counterNext(cur, 1000), Set, boom }},
		{"abort", func(cur []byte) ([]byte, Op, error) { return nil, Abort, nil }},
		{"add again", func(cur []byte) ([]byte, Op, error) { return counterNext(cur, 100), Set, nil }},
	}
	results := make(chan result, len(members))
	for i, m := range members {
		go func() {
			var saw []byte
			runs := 0
			err := b.Update(context.Background(), tp, func(cur []byte, retried bool) ([]byte, Op, error) {
				runs++
				saw = append([]byte(nil), cur...)
				return m.fn(cur)
			})
			results <- result{m.name, err, saw, runs}
		}()
		testkit.Eventually(t, groupBound, fmt.Sprintf("%d updates waiting", i+1), func() bool { return waitingIn(b, key) == i+1 })
	}
	before := h.n()
	close(release)
	if err := <-first; err != nil {
		t.Fatalf("first update: %v", err)
	}
	got := map[string]result{}
	for range members {
		select {
		case r := <-results:
			got[r.name] = r
		case <-time.After(groupBound):
			t.Fatal("a member of the group never returned")
		}
	}
	for name, r := range got {
		if r.runs != 1 {
			t.Errorf("%s ran %d times, want once (no conflict)", name, r.runs)
		}
	}
	if got["add"].err != nil || got["abort"].err != nil || got["add again"].err != nil {
		t.Errorf("add: %v, abort: %v, add again: %v; want all nil", got["add"].err, got["abort"].err, got["add again"].err)
	}
	if !errors.Is(got["fail"].err, boom) {
		t.Errorf("fail: %v, want its own error", got["fail"].err)
	}
	// Each saw the value the one before it produced: 1 (the first update),
	// 11 (add), 11 (fail left it), 11 (abort left it).
	for name, want := range map[string]int{"add": 1, "fail": 11, "abort": 11, "add again": 11} {
		if n := counterOf(t, got[name].saw); n != want {
			t.Errorf("%s saw %d, want %d", name, n, want)
		}
	}
	if n := h.n() - before; n != 2 {
		t.Errorf("the held update and the group of 4 behind it took %d round trips, want 2 compare-and-sets", n)
	}
	if v, _ := b.get(context.Background(), key); counterOf(t, v) != 111 {
		t.Errorf("the entity holds %s, want 111", v)
	}
}

// TestRedisGroupRetriesAsAWhole: when another writer changes the entity
// while a group runs, the group's compare-and-set loses and every member
// runs again, with retried = true, on the new value; each result is
// committed once.
func TestRedisGroupRetriesAsAWhole(t *testing.T) {
	srv := redistest.New(t)
	raw := srv.Client(t)
	b := newTestRedis(t, srv, RedisOptions{MaxRetries: DefaultMaxRetries, RetryBackoff: DefaultRetryBackoff})
	tp := Topic{"group", "retry"}
	key := b.name(tp)
	release, first := holdLine(t, b, tp)

	var wrote atomic.Bool
	type run struct {
		saw     int
		retried bool
	}
	var mu sync.Mutex
	runs := map[int][]run{}
	errs := make(chan error, 2)
	for i := range 2 {
		go func() {
			errs <- b.Update(context.Background(), tp, func(cur []byte, retried bool) ([]byte, Op, error) {
				mu.Lock()
				runs[i] = append(runs[i], run{counterOf(t, cur), retried})
				mu.Unlock()
				if i == 0 && wrote.CompareAndSwap(false, true) {
					// Another program writes while the group runs.
					if err := raw.Set(context.Background(), key, "1000", 0).Err(); err != nil {
						t.Error(err)
					}
				}
				return counterNext(cur, 1), Set, nil
			})
		}()
		testkit.Eventually(t, groupBound, "updates waiting", func() bool { return waitingIn(b, key) == i+1 })
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	want := map[int][]run{0: {{1, false}, {1000, true}}, 1: {{2, false}, {1001, true}}}
	for i := range 2 {
		if fmt.Sprint(runs[i]) != fmt.Sprint(want[i]) {
			t.Errorf("member %d ran %v, want %v", i, runs[i], want[i])
		}
	}
	if v, _ := b.get(context.Background(), key); counterOf(t, v) != 1002 {
		t.Errorf("the entity holds %s, want 1002", v)
	}
}

// TestRedisGroupWaitingCallerLeaves: an update whose context ends while it
// waits in the line leaves it, with the context's error, and never runs.
func TestRedisGroupWaitingCallerLeaves(t *testing.T) {
	srv := redistest.New(t)
	b := newTestRedis(t, srv, RedisOptions{MaxRetries: DefaultMaxRetries, RetryBackoff: DefaultRetryBackoff})
	tp := Topic{"group", "leave"}
	release, first := holdLine(t, b, tp)
	ctx, cancel := context.WithCancel(context.Background())
	ran := atomic.Bool{}
	errc := make(chan error, 1)
	go func() {
		errc <- b.Update(ctx, tp, func(cur []byte, _ bool) ([]byte, Op, error) {
			ran.Store(true)
			return counterNext(cur, 1), Set, nil
		})
	}()
	testkit.Eventually(t, groupBound, "the update waiting", func() bool { return waitingIn(b, b.name(tp)) == 1 })
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	case <-time.After(groupBound):
		t.Fatal("a cancelled waiting update did not return while the line was held")
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if ran.Load() {
		t.Fatal("the cancelled update ran")
	}
	if v, _ := b.get(context.Background(), b.name(tp)); counterOf(t, v) != 1 {
		t.Fatalf("the entity holds %s, want 1", v)
	}
}

// TestRedisGroupPanicReachesItsCaller: a function that panics while another
// caller leads its group panics in its own caller; the leader and the other
// members carry on.
func TestRedisGroupPanicReachesItsCaller(t *testing.T) {
	srv := redistest.New(t)
	b := newTestRedis(t, srv, RedisOptions{MaxRetries: DefaultMaxRetries, RetryBackoff: DefaultRetryBackoff})
	tp := Topic{"group", "panic"}
	release, first := holdLine(t, b, tp)
	panicked := make(chan any, 1)
	go func() {
		defer func() { panicked <- recover() }()
		b.Update(context.Background(), tp, func([]byte, bool) ([]byte, Op, error) { panic("script host bug") })
	}()
	testkit.Eventually(t, groupBound, "the panicking update waiting", func() bool { return waitingIn(b, b.name(tp)) == 1 })
	okc := make(chan error, 1)
	go func() {
		okc <- b.Update(context.Background(), tp, func(cur []byte, _ bool) ([]byte, Op, error) { return counterNext(cur, 1), Set, nil })
	}()
	testkit.Eventually(t, groupBound, "two updates waiting", func() bool { return waitingIn(b, b.name(tp)) == 2 })
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if err := <-okc; err != nil {
		t.Fatalf("the member after the panicking one: %v", err)
	}
	select {
	case v := <-panicked:
		if v == nil || !strings.Contains(fmt.Sprint(v), "script host bug") {
			t.Fatalf("recovered %v, want the function's panic", v)
		}
	case <-time.After(groupBound):
		t.Fatal("the panicking update did not return")
	}
	if v, _ := b.get(context.Background(), b.name(tp)); counterOf(t, v) != 2 {
		t.Fatalf("the entity holds %s, want 2", v)
	}
}

// TestRedisTurns: an instance whose compare-and-set lost gets the key's
// turn: another instance's write is refused (it waits in line) until the
// first has written, even when that other write would have matched; then
// the line moves on. A turn not used in time passes to the next in line.
func TestRedisTurns(t *testing.T) {
	srv := redistest.New(t)
	raw := srv.Client(t)
	prefix := srv.Prefix(t)
	x := newTestRedis(t, srv, RedisOptions{Prefix: prefix})
	y := newTestRedis(t, srv, RedisOptions{Prefix: prefix})
	ctx := context.Background()
	send := func(b *Redis, key string, seen, next []byte) casResult {
		t.Helper()
		c := casRequest{key: key, record: opKey(key, b.opPrefix), op: operation{id: b.opPrefix + "." + strconv.FormatUint(b.opSeq.Add(1), 36), keep: time.Minute},
			instance: b.opPrefix, turn: b.turn, seen: seen, next: next}
		res, _, err := b.compareAndSet(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}

	t.Run("the loser goes first", func(t *testing.T) {
		key := x.name(Topic{"turns", "a"})
		raw.Set(ctx, key, "1", 0)
		if res := send(x, key, []byte("0"), []byte("1")); res != casConflict {
			t.Fatalf("x with a stale value: %v, want a conflict", res)
		}
		if res := send(y, key, []byte("1"), []byte("2")); res != casTurn {
			t.Fatalf("y while x has the turn: %v, want casTurn (refused, in line)", res)
		}
		if res := send(x, key, []byte("1"), []byte("2")); res != casApplied {
			t.Fatalf("x on its turn: %v, want applied", res)
		}
		if res := send(y, key, []byte("2"), []byte("3")); res != casApplied {
			t.Fatalf("y after x wrote: %v, want applied (its turn)", res)
		}
		if n, _ := raw.Exists(ctx, slotKey(key, ":turns"), slotKey(key, ":turn")).Result(); n != 0 {
			t.Fatalf("the line is left in Redis after everyone wrote (%d keys)", n)
		}
	})

	t.Run("an unused turn runs out", func(t *testing.T) {
		key := x.name(Topic{"turns", "b"})
		raw.Set(ctx, key, "1", 0)
		if res := send(x, key, nil, []byte("1")); res != casConflict {
			t.Fatalf("x: %v, want a conflict", res)
		}
		refused := 0
		deadline := time.Now().Add(groupBound)
		for send(y, key, []byte("1"), []byte("2")) == casTurn { // x never uses its turn
			refused++
			if time.Now().After(deadline) {
				t.Fatalf("y still refused after %v: x's turn (%v) never ran out", groupBound, x.turn)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if refused == 0 {
			t.Fatal("y was never refused while x had the turn")
		}
		if v, _ := raw.Get(ctx, key).Result(); v != "2" {
			t.Fatalf("the entity holds %q, want 2", v)
		}
	})

	t.Run("leaving the line", func(t *testing.T) {
		key := x.name(Topic{"turns", "c"})
		raw.Set(ctx, key, "1", 0)
		send(x, key, nil, []byte("1")) // x has the turn
		x.leaveLine(key, opKey(key, x.opPrefix), operation{id: "leave", keep: time.Minute})
		if res := send(y, key, []byte("1"), []byte("2")); res != casApplied {
			t.Fatalf("y after x left the line: %v, want applied", res)
		}
	})
}

// TestRedisContentionAcrossInstances: 4 brokers (instances) x 10 goroutines
// x 100 increments of ONE key on the defaults: nothing lost, no
// broker_conflict, every instance progresses; and nothing is kept per
// update (one operation record per instance).
func TestRedisContentionAcrossInstances(t *testing.T) {
	srv := redistest.New(t)
	raw := srv.Client(t)
	prefix := srv.Prefix(t)
	const instances, goroutines, each = 4, 10, 100
	tp := Topic{"hot", "k"}
	var wg sync.WaitGroup
	errs := make(chan error, instances*goroutines)
	for range instances {
		b := newTestRedis(t, srv, RedisOptions{Prefix: prefix, MaxRetries: DefaultMaxRetries, RetryBackoff: DefaultRetryBackoff})
		for range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range each {
					if err := b.Update(context.Background(), tp, func(cur []byte, _ bool) ([]byte, Op, error) {
						return counterNext(cur, 1), Set, nil
					}); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	v, err := raw.Get(context.Background(), prefix+"hot.k").Result()
	if err != nil || v != strconv.Itoa(instances*goroutines*each) {
		t.Fatalf("the entity holds %q (%v), want %d", v, err, instances*goroutines*each)
	}
	keys, _ := raw.Keys(context.Background(), "*"+prefix+"hot.k*").Result()
	if len(keys) > 1+instances {
		t.Fatalf("%d updates left %d keys, want the entity and at most one record per instance: %v", instances*goroutines*each, len(keys), keys)
	}
}
