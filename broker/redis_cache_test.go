package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/electric-socket/electric-socket/broker/redistest"
	"github.com/electric-socket/electric-socket/tests/testkit"
)

// commandCounts counts the commands a client sends, by name ("get",
// "evalsha", ...); a pipeline counts each of its commands.
type commandCounts struct {
	mu sync.Mutex
	n  map[string]int
}

func countCommands(r *Redis) *commandCounts {
	c := &commandCounts{n: map[string]int{}}
	r.client.AddHook(c)
	return c
}

func (c *commandCounts) add(cmd redis.Cmder) {
	c.mu.Lock()
	c.n[strings.ToLower(cmd.Name())]++
	c.mu.Unlock()
}

func (c *commandCounts) get(name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[name]
}

func (c *commandCounts) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *commandCounts) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.add(cmd)
		return next(ctx, cmd)
	}
}

func (c *commandCounts) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			c.add(cmd)
		}
		return next(ctx, cmds)
	}
}

// counter is the entity of these tests: {"n": n}.
type counter struct {
	N int `json:"n"`
}

// attempt is one run of an update function.
type attempt struct {
	n       int // the counter it saw; -1: absent
	retried bool
}

// increment returns an update function that adds 1 to the counter and
// appends each of its runs to *runs (when not nil).
func increment(t *testing.T, runs *[]attempt) UpdateFunc {
	return func(cur []byte, retried bool) ([]byte, Op, error) {
		c := counter{}
		seen := -1
		if cur != nil {
			if err := json.Unmarshal(cur, &c); err != nil {
				t.Errorf("entity %q: %v", cur, err)
			}
			seen = c.N
		}
		if runs != nil {
			*runs = append(*runs, attempt{seen, retried})
		}
		c.N++
		next, err := json.Marshal(c)
		return next, Set, err
	}
}

func counterAt(t *testing.T, raw *redis.Client, key string) int {
	t.Helper()
	v, err := raw.Get(context.Background(), key).Bytes()
	if err != nil {
		t.Fatalf("GET %s: %v", key, err)
	}
	var c counter
	if err := json.Unmarshal(v, &c); err != nil {
		t.Fatalf("GET %s = %q: %v", key, v, err)
	}
	return c.N
}

// TestRedisSingleWriterSkipsTheGet: one broker updating one key in turn
// needs one round trip per update (the compare-and-set), not two: the GET
// of the first update only.
func TestRedisSingleWriterSkipsTheGet(t *testing.T) {
	srv := redistest.New(t)
	b := newTestRedis(t, srv, RedisOptions{MaxRetries: 3})
	raw := srv.Client(t)
	cmds := countCommands(b)
	tp := Topic{"chat", "room1"}
	const n = 50
	var runs []attempt
	for i := 0; i < n; i++ {
		if err := b.Update(context.Background(), tp, increment(t, &runs)); err != nil {
			t.Fatal(err)
		}
	}
	if got := counterAt(t, raw, b.name(tp)); got != n {
		t.Fatalf("counter = %d, want %d", got, n)
	}
	if len(runs) != n {
		t.Fatalf("fn ran %d times for %d updates, want once each", len(runs), n)
	}
	// EVAL: once, when the server does not have the script yet (NOSCRIPT).
	gets, evalsha, eval := cmds.get("get"), cmds.get("evalsha"), cmds.get("eval")
	if gets > 1 || evalsha != n || eval > 1 {
		t.Fatalf("%d updates sent %d GET, %d EVALSHA and %d EVAL, want at most 1 GET, %d EVALSHA and at most 1 EVAL",
			n, gets, evalsha, eval, n)
	}
	t.Logf("%d updates: %d GET, %d EVALSHA, %d EVAL", n, gets, evalsha, eval)
}

// TestRedisTwoInstancesAlternate: two brokers take turns updating one
// counter. Each one's cached value is out of date whenever the other wrote
// last: its compare-and-set loses, and fn runs again on the current value
// with retried = true. After that the entry is no longer trusted, and the
// broker reads the entity first, as it did without a cache: fn runs once
// per update again.
func TestRedisTwoInstancesAlternate(t *testing.T) {
	srv := redistest.New(t)
	prefix := srv.Prefix(t)
	a := newTestRedis(t, srv, RedisOptions{Prefix: prefix, MaxRetries: 3})
	b := newTestRedis(t, srv, RedisOptions{Prefix: prefix, MaxRetries: 3})
	raw := srv.Client(t)
	tp := Topic{"game", "score"}
	const n = 30
	var runsA, runsB []attempt
	for i := 0; i < n; i++ {
		if err := a.Update(context.Background(), tp, increment(t, &runsA)); err != nil {
			t.Fatal(err)
		}
		if err := b.Update(context.Background(), tp, increment(t, &runsB)); err != nil {
			t.Fatal(err)
		}
	}
	if got := counterAt(t, raw, a.name(tp)); got != 2*n {
		t.Fatalf("counter = %d, want %d", got, 2*n)
	}
	// a's second update ran on its cache (1, written by itself) while b had
	// written 2: it lost, and ran again on 2, retried.
	if len(runsA) < 3 || runsA[1] != (attempt{1, false}) || runsA[2] != (attempt{2, true}) {
		t.Fatalf("a's runs = %v, want [{-1 false} {1 false} {2 true} ...]", runsA)
	}
	// Likewise b's second: it had written 2 itself, a had written 3 since.
	if len(runsB) < 3 || runsB[0] != (attempt{1, false}) || runsB[1] != (attempt{2, false}) || runsB[2] != (attempt{3, true}) {
		t.Fatalf("b's runs = %v, want [{1 false} {2 false} {3 true} ...]", runsB)
	}
	// From then on each reads first, and sees the other's last write.
	for i := 2; i < n; i++ {
		if a, b := runsA[i+1], runsB[i+1]; a != (attempt{2 * i, false}) || b != (attempt{2*i + 1, false}) {
			t.Fatalf("update %d: a ran on %v, b on %v, want {%d false} and {%d false}", i, a, b, 2*i, 2*i+1)
		}
	}
	// One lost guess each; then a GET before every update.
	if len(runsA) != n+1 || len(runsB) != n+1 {
		t.Fatalf("fn ran %d and %d times for %d updates each, want %d: a broker whose cache kept being wrong kept guessing",
			len(runsA), len(runsB), n, n+1)
	}
}

// TestRedisTwoInstancesConcurrent: two brokers, four goroutines each,
// updating one counter: no update is lost or applied twice.
func TestRedisTwoInstancesConcurrent(t *testing.T) {
	srv := redistest.New(t)
	prefix := srv.Prefix(t)
	brokers := []*Redis{
		newTestRedis(t, srv, RedisOptions{Prefix: prefix, MaxRetries: DefaultMaxRetries, RetryBackoff: DefaultRetryBackoff}),
		newTestRedis(t, srv, RedisOptions{Prefix: prefix, MaxRetries: DefaultMaxRetries, RetryBackoff: DefaultRetryBackoff}),
	}
	raw := srv.Client(t)
	tp := Topic{"game", "score"}
	const each = 40
	var wg sync.WaitGroup
	for _, b := range brokers {
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < each; i++ {
					if err := b.Update(context.Background(), tp, increment(t, nil)); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	if got := counterAt(t, raw, prefix+"game.score"); got != 2*4*each {
		t.Fatalf("counter = %d, want %d", got, 2*4*each)
	}
}

// TestRedisCacheSeesAnOutsideWrite: a value written behind the broker's
// back (another program's SET) makes the cached guess lose; fn runs again
// on that value. The lost guess does not count against MaxRetries (0
// here): it stands for the GET the cache saved. An abort decided on the
// cached value is checked the same way.
func TestRedisCacheSeesAnOutsideWrite(t *testing.T) {
	srv := redistest.New(t)
	b := newTestRedis(t, srv, RedisOptions{MaxRetries: 0})
	raw := srv.Client(t)
	cmds := countCommands(b)
	ctx := context.Background()
	tp := Topic{"chat", "room1"}
	key := b.name(tp)

	mustUpdate(t, b, tp, increment(t, nil)) // 1
	raw.Set(ctx, key, `{"n":41}`, 0)
	var runs []attempt
	mustUpdate(t, b, tp, increment(t, &runs))
	if fmt.Sprint(runs) != "[{1 false} {41 true}]" {
		t.Fatalf("runs = %v, want [{1 false} {41 true}]", runs)
	}
	if got := counterAt(t, raw, key); got != 42 {
		t.Fatalf("counter = %d, want 42", got)
	}

	// Abort: the GET finds another value; fn runs again on it.
	raw.Set(ctx, key, `{"n":100}`, 0)
	mustUpdate(t, b, tp, increment(t, nil)) // a GET first (the entry lost its trust), then 101
	if got := counterAt(t, raw, key); got != 101 {
		t.Fatalf("counter = %d, want 101", got)
	}
	mustUpdate(t, b, tp, increment(t, nil)) // the GET found the cached value: trusted again, 102
	raw.Set(ctx, key, `{"n":7}`, 0)
	runs = nil
	gets := cmds.get("get")
	mustUpdate(t, b, tp, func(cur []byte, retried bool) ([]byte, Op, error) {
		var c counter
		json.Unmarshal(cur, &c)
		runs = append(runs, attempt{c.N, retried})
		return nil, Abort, nil
	})
	if fmt.Sprint(runs) != "[{102 false} {7 true}]" {
		t.Fatalf("abort runs = %v, want [{102 false} {7 true}]: an abort must not stand on a stale cache", runs)
	}
	if got := cmds.get("get") - gets; got != 1 {
		t.Fatalf("the abort sent %d GET, want 1", got)
	}
	// An error from fn is checked the same way.
	boom := errors.New("boom")
	runs = nil
	err := b.Update(ctx, tp, func(cur []byte, retried bool) ([]byte, Op, error) {
		var c counter
		json.Unmarshal(cur, &c)
		runs = append(runs, attempt{c.N, retried})
		return nil, Abort, boom
	})
	if !errors.Is(err, boom) || fmt.Sprint(runs) != "[{7 false}]" {
		t.Fatalf("err = %v, runs = %v, want boom after [{7 false}]", err, runs)
	}
	if got := counterAt(t, raw, key); got != 7 {
		t.Fatalf("counter = %d, want 7", got)
	}
}

// TestRedisCacheKnowsAbsent: after a delete the broker knows the entity is
// absent and creates it again without a GET; an entity created behind its
// back meanwhile is seen.
func TestRedisCacheKnowsAbsent(t *testing.T) {
	srv := redistest.New(t)
	b := newTestRedis(t, srv, RedisOptions{MaxRetries: 3})
	raw := srv.Client(t)
	cmds := countCommands(b)
	ctx := context.Background()
	tp := Topic{"chat", "room1"}
	key := b.name(tp)

	mustUpdate(t, b, tp, increment(t, nil))
	mustUpdate(t, b, tp, func([]byte, bool) ([]byte, Op, error) { return nil, Delete, nil })
	if raw.Exists(ctx, key).Val() != 0 {
		t.Fatal("delete left the entity")
	}
	var runs []attempt
	mustUpdate(t, b, tp, increment(t, &runs))
	if fmt.Sprint(runs) != "[{-1 false}]" {
		t.Fatalf("runs = %v, want [{-1 false}]", runs)
	}
	if got := cmds.get("get"); got != 1 {
		t.Fatalf("%d GET, want 1 (the first update's)", got)
	}
	if got := counterAt(t, raw, key); got != 1 {
		t.Fatalf("counter = %d, want 1", got)
	}

	// An empty value is a delete too.
	mustUpdate(t, b, tp, func([]byte, bool) ([]byte, Op, error) { return nil, Set, nil })
	raw.Set(ctx, key, `{"n":9}`, 0) // created behind the broker's back
	runs = nil
	mustUpdate(t, b, tp, increment(t, &runs))
	if fmt.Sprint(runs) != "[{-1 false} {9 true}]" {
		t.Fatalf("runs = %v, want [{-1 false} {9 true}]", runs)
	}
	// Deleted behind its back: the cached value loses to absent.
	raw.Del(ctx, key)
	// The entry (10) lost its trust above: this abort reads first and
	// finds the entity absent; the next update's read agrees with that.
	mustUpdate(t, b, tp, func([]byte, bool) ([]byte, Op, error) { return nil, Abort, nil })
	runs = nil
	mustUpdate(t, b, tp, increment(t, &runs))
	if got := counterAt(t, raw, key); got != 1 || fmt.Sprint(runs) != "[{-1 false}]" {
		t.Fatalf("counter = %d after runs %v, want 1 after [{-1 false}]", got, runs)
	}
}

// TestRedisCacheDroppedWhenUnsure: when Update cannot tell whether its
// compare-and-set was applied, the key's value is forgotten, and the next
// update reads the entity again.
func TestRedisCacheDroppedWhenUnsure(t *testing.T) {
	srv := redistest.NewLocal(t)
	b := newTestRedis(t, srv, RedisOptions{MaxRetries: 3})
	tp := Topic{"chat", "room1"}
	key := b.name(tp)
	mustUpdate(t, b, tp, increment(t, nil))
	if _, ok := b.cache.get(key); !ok {
		t.Fatal("the written value is not cached")
	}
	srv.Stop(t)
	err := b.Update(context.Background(), tp, increment(t, nil))
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("update with Redis down: %v, want ErrUnavailable", err)
	}
	if _, ok := b.cache.get(key); ok {
		t.Fatal("the value is still cached after an update of unknown outcome")
	}
	srv.Start(t) // empty: nothing was saved
	testkit.Eventually(t, waitBound, "an update after the restart", func() bool {
		return b.Update(context.Background(), tp, increment(t, nil)) == nil
	})
	raw := srv.Client(t)
	if got := counterAt(t, raw, key); got != 1 {
		t.Fatalf("counter = %d, want 1", got)
	}
}

// TestRedisCacheWrongType: a key that came to hold something else than a
// string fails the update with a plain error, cached or not.
func TestRedisCacheWrongType(t *testing.T) {
	srv := redistest.New(t)
	b := newTestRedis(t, srv, RedisOptions{MaxRetries: 3})
	raw := srv.Client(t)
	ctx := context.Background()
	tp := Topic{"chat", "list"}
	key := b.name(tp)
	for _, o := range []Op{Set, Abort} {
		mustUpdate(t, b, tp, func([]byte, bool) ([]byte, Op, error) { return []byte(`{"n":1}`), Set, nil })
		raw.Del(ctx, key)
		raw.RPush(ctx, key, "x")
		err := b.Update(ctx, tp, func([]byte, bool) ([]byte, Op, error) { return []byte(`{"n":2}`), o, nil })
		if err == nil || errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "WRONGTYPE") {
			t.Fatalf("op %d on a list: err = %v, want a WRONGTYPE error, not ErrUnavailable", o, err)
		}
		raw.Del(ctx, key)
	}
}

// TestRedisCacheLargeValueNotCached: a value over cacheMaxValue is read
// again by every update.
func TestRedisCacheLargeValueNotCached(t *testing.T) {
	srv := redistest.New(t)
	b := newTestRedis(t, srv, RedisOptions{MaxRetries: 3})
	cmds := countCommands(b)
	tp := Topic{"chat", "big"}
	big := []byte(`"` + strings.Repeat("x", cacheMaxValue) + `"`)
	for i := 0; i < 3; i++ {
		mustUpdate(t, b, tp, func([]byte, bool) ([]byte, Op, error) { return big, Set, nil })
	}
	if got := cmds.get("get"); got != 3 {
		t.Fatalf("%d GET for 3 updates of a large value, want 3", got)
	}
	if n, size := b.cache.len(); n != 0 || size != 0 {
		t.Fatalf("cache holds %d entries, %d bytes, want none", n, size)
	}
}

// TestValueCacheBounded: the cache keeps at most cacheMaxKeys entries and
// cacheMaxBytes, and its byte count stays exact.
func TestValueCacheBounded(t *testing.T) {
	var c valueCache
	check := func(what string) {
		t.Helper()
		n, size := c.len()
		sum := 0
		c.mu.Lock()
		for k, e := range c.entries {
			sum += len(k) + len(e.value)
		}
		c.mu.Unlock()
		if n > cacheMaxKeys || size > cacheMaxBytes || size != sum {
			t.Fatalf("%s: %d entries, %d bytes (counted %d), want at most %d entries, %d bytes",
				what, n, size, sum, cacheMaxKeys, cacheMaxBytes)
		}
	}
	for i := 0; i < cacheMaxKeys+500; i++ {
		c.put(fmt.Sprint("k", i), []byte(fmt.Sprint(i)), true)
	}
	check("small values")
	if n, _ := c.len(); n != cacheMaxKeys {
		t.Fatalf("%d entries, want %d", n, cacheMaxKeys)
	}
	last, ok := c.get(fmt.Sprint("k", cacheMaxKeys+499))
	if !ok || string(last.current()) != fmt.Sprint(cacheMaxKeys+499) {
		t.Fatalf("the last value put is not cached: %+v %v", last, ok)
	}
	value := make([]byte, cacheMaxValue)
	for i := 0; i < 3*cacheMaxBytes/cacheMaxValue; i++ {
		c.put(fmt.Sprint("big", i), value, true)
	}
	check("large values")
	c.put("k0", []byte("x"), true)
	c.put("k0", nil, false) // absent
	if e, ok := c.get("k0"); !ok || e.exists || e.current() != nil || e.trusted {
		t.Fatalf("absent entry = %+v, %v", e, ok)
	}
	c.put("k0", []byte{}, true)
	if e, _ := c.get("k0"); !e.exists || e.current() == nil || !e.same([]byte{}) || e.same(nil) {
		t.Fatalf("empty entry = %+v", e)
	}
	c.put("k0", make([]byte, cacheMaxValue+1), true) // too long: forgotten
	if _, ok := c.get("k0"); ok {
		t.Fatal("a value over cacheMaxValue is cached")
	}
	check("after replacing")
	for i := 0; i < 3*cacheMaxBytes/cacheMaxValue; i++ {
		c.drop(fmt.Sprint("big", i))
	}
	check("after dropping")
}

// TestValueCacheConcurrent: puts, gets and drops from many goroutines (run
// with -race).
func TestValueCacheConcurrent(t *testing.T) {
	var c valueCache
	var wg sync.WaitGroup
	var hits atomic.Int64
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 5000; i++ {
				k := fmt.Sprint("k", (g*31+i)%(cacheMaxKeys+100))
				switch i % 3 {
				case 0:
					c.put(k, []byte(k), true)
				case 1:
					if e, ok := c.get(k); ok && e.same([]byte(k)) {
						hits.Add(1)
					}
				case 2:
					c.drop(k)
				}
			}
		}()
	}
	wg.Wait()
	n, size := c.len()
	if n > cacheMaxKeys || size > cacheMaxBytes {
		t.Fatalf("%d entries, %d bytes", n, size)
	}
}
