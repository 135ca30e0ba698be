package tests

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/electric-socket/electric-socket/broker/redistest"
	"github.com/electric-socket/electric-socket/tests/testkit"
	"github.com/redis/go-redis/v9"
)

// One shared entity, many writers (SPEC section 6, "Contention"): on the
// shipped defaults (max_retries 10, retry_backoff 1ms), 100 connections
// spread over 1, 2 and 4 instances, one increment in flight each, 200 each
// on ONE key. Every increment is answered with the value it committed, so
// the answers together must be exactly 1..20,000: none lost, none applied
// twice, and no broker_conflict.

const (
	hotConns = 100
	hotEach  = 200
)

// hotLoad is what the clients of one run saw.
type hotLoad struct {
	mu          sync.Mutex
	ok          []int // the values answered
	unavailable int   // broker_unavailable answers
	unknown     int   // broker_outcome_unknown answers
	other       []string
	okCount     atomic.Int64
}

// runHotKey connects hotConns clients round-robin to instances, logs each in
// to counter key, then has each send increments, one in flight, until it has
// hotEach answered with a value. Broker failures (while Redis is down) are
// counted; anything else is recorded in other.
func runHotKey(t *testing.T, instances []*testkit.Process, key string, load *hotLoad) {
	t.Helper()
	clients := make([]*testkit.Client, hotConns)
	for i := range clients {
		in := instances[i%len(instances)]
		clients[i] = testkit.Dial(t, fmt.Sprintf("%s/c%d", in.Name, i), in.Addr, "/counter")
		clients[i].Send(map[string]any{"counter": key})
		clients[i].Expect(map[string]any{"type": "ready"})
	}
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := make([]int, 0, hotEach)
			for len(mine) < hotEach {
				if err := c.TrySend(map[string]any{}); err != nil {
					load.fail("%s: write: %v", c.Name, err)
					return
				}
				v, why := c.Next(redisBound)
				if n, ok := v["n"].(float64); ok {
					mine = append(mine, int(n))
					load.okCount.Add(1)
					continue
				}
				load.mu.Lock()
				switch {
				case v != nil && v["error"] == "broker_unavailable":
					load.unavailable++
				case v != nil && v["error"] == "broker_outcome_unknown":
					load.unknown++
				default:
					load.other = append(load.other, fmt.Sprintf("%s: %s %s", c.Name, testkit.JSON(v), why))
				}
				stop := len(load.other) > 0
				load.mu.Unlock()
				if stop {
					return
				}
			}
			load.mu.Lock()
			load.ok = append(load.ok, mine...)
			load.mu.Unlock()
		}()
	}
	wg.Wait()
	for _, c := range clients {
		c.Open() // no connection was closed
	}
}

// failures is how many broker failures the clients were answered so far.
func (l *hotLoad) failures() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.unavailable + l.unknown
}

func (l *hotLoad) fail(format string, args ...any) {
	l.mu.Lock()
	l.other = append(l.other, fmt.Sprintf(format, args...))
	l.mu.Unlock()
}

// check verifies the answers against the entity Redis holds: the values
// answered are distinct, and every committed increment was answered
// (outcome-unknown answers aside, which may or may not have committed).
func (l *hotLoad) check(t *testing.T, raw *redis.Client, entity string) {
	t.Helper()
	for _, o := range l.other {
		t.Errorf("unexpected answer: %s", o)
	}
	if t.Failed() {
		return
	}
	if len(l.ok) != hotConns*hotEach {
		t.Fatalf("%d increments answered with a value, want %d", len(l.ok), hotConns*hotEach)
	}
	slices.Sort(l.ok)
	for i := 1; i < len(l.ok); i++ {
		if l.ok[i] == l.ok[i-1] {
			t.Fatalf("the value %d was answered twice: an update was applied on a stale value", l.ok[i])
		}
	}
	got, err := raw.Get(context.Background(), entity).Result()
	if err != nil {
		t.Fatalf("GET %s: %v", entity, err)
	}
	var n int
	if _, err := fmt.Sscanf(got, `{"n":%d}`, &n); err != nil {
		t.Fatalf("GET %s = %q", entity, got)
	}
	if n < len(l.ok) || n > len(l.ok)+l.unknown || l.ok[len(l.ok)-1] > n {
		t.Fatalf("the entity holds n = %d after %d answered increments (%d of unknown outcome, %d unavailable): an update was lost or applied twice",
			n, len(l.ok), l.unknown, l.unavailable)
	}
}

// TestHotKeyOnDefaults: 100 connections x 200 increments of one key over 1,
// 2 and 4 instances, on the defaults: every increment answered ok, n ==
// 20,000, no broker_conflict; and afterwards Redis holds the entity and a
// bounded number of bookkeeping keys, nothing per update.
func TestHotKeyOnDefaults(t *testing.T) {
	srv := redistest.New(t)
	raw := srv.Client(t)
	bin := testkit.Binary(t)
	for _, n := range []int{1, 2, 4} {
		t.Run(fmt.Sprintf("%d instances", n), func(t *testing.T) {
			prefix := srv.Prefix(t)
			cfg := writeRedisConfig(t, srv.URL, prefix)
			var ins []*testkit.Process
			for i := range n {
				ins = append(ins, startInstance(t, fmt.Sprint("I", i), bin, cfg))
			}
			load := &hotLoad{}
			runHotKey(t, ins, "hot", load)
			if load.unavailable > 0 || load.unknown > 0 {
				t.Errorf("%d broker_unavailable and %d broker_outcome_unknown answers with Redis up", load.unavailable, load.unknown)
			}
			load.check(t, raw, prefix+"counter.hot")
			for _, in := range ins {
				in.Alive(t)
			}
			keys, err := raw.Keys(context.Background(), prefix+"*").Result()
			if err != nil {
				t.Fatal(err)
			}
			// The entity, one operation record per instance, each
			// instance's lease and connection records; nothing per update.
			var records []string
			for _, k := range keys {
				if strings.Contains(k, ":op:") {
					records = append(records, k)
				}
			}
			if len(records) > n || len(keys) > 1+3*n {
				t.Errorf("after %d updates Redis holds %d keys (%d operation records) for %d instances, want the entity and a few per instance: %v",
					hotConns*hotEach, len(keys), len(records), n, keys)
			}
		})
	}
}

// TestHotKeyRedisRestarted: the same load on two instances while
// redis-server is killed and started again (it keeps its data: appendfsync
// always): clients get broker_unavailable (or, for an update in flight at
// the kill, broker_outcome_unknown) while it is down and nothing else, no
// connection closes, and the entity ends holding exactly what was answered.
func TestHotKeyRedisRestarted(t *testing.T) {
	srv := redistest.NewPersistent(t)
	prefix := srv.Prefix(t)
	raw := srv.Client(t)
	bin := testkit.Binary(t)
	cfg := writeRedisConfig(t, srv.URL, prefix)
	ins := []*testkit.Process{startInstance(t, "A", bin, cfg), startInstance(t, "B", bin, cfg)}

	load := &hotLoad{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		runHotKey(t, ins, "hot", load)
	}()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(redisBound)
		for !cond() {
			select {
			case <-done:
				t.Fatalf("the load ended before %s", what)
			case <-time.After(time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("not within %v: %s", redisBound, what)
			}
		}
	}
	// Kill Redis a third of the way in; start it again once clients were
	// answered that it is down.
	waitFor("a third of the increments answered", func() bool { return load.okCount.Load() >= hotConns*hotEach/3 })
	srv.Stop(t)
	waitFor("a client told the broker is unavailable", func() bool { return load.failures() > 0 })
	srv.Start(t)
	<-done
	load.check(t, raw, prefix+"counter.hot")
	for _, in := range ins {
		in.Alive(t)
	}
	t.Logf("%d increments answered, %d broker_unavailable, %d broker_outcome_unknown", len(load.ok), load.unavailable, load.unknown)
}

// TestBrokerConflictStillSaid: with max_retries lowered to 0, an update
// that loses its compare-and-set to another instance even once is answered
// broker_conflict, the connection stays open, and nothing of it was
// committed: the entity holds exactly the increments answered with a value.
func TestBrokerConflictStillSaid(t *testing.T) {
	srv := redistest.New(t)
	prefix := srv.Prefix(t)
	raw := srv.Client(t)
	bin := testkit.Binary(t)
	path := writeRedisConfig(t, srv.URL, prefix)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(data), "[broker]\n", "[broker]\nmax_retries = 0\n", 1)
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ins := []*testkit.Process{startInstance(t, "A", bin, path), startInstance(t, "B", bin, path)}
	const conns, most = 40, 2000 // each client sends at most this many
	var conflicts, ok atomic.Int64
	var wg sync.WaitGroup
	var other sync.Map
	clients := make([]*testkit.Client, conns)
	for i := range clients { // all logged in before any increments
		in := ins[i%2]
		clients[i] = testkit.Dial(t, fmt.Sprintf("%s/c%d", in.Name, i), in.Addr, "/counter")
		clients[i].Send(map[string]any{"counter": "contended"})
		clients[i].Expect(map[string]any{"type": "ready"})
	}
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range most {
				if conflicts.Load() >= 10 {
					return
				}
				if err := c.TrySend(map[string]any{}); err != nil {
					other.Store(c.Name, err.Error())
					return
				}
				v, why := c.Next(redisBound)
				switch {
				case v["n"] != nil:
					ok.Add(1)
				case v["error"] == "broker_conflict":
					conflicts.Add(1)
				default:
					other.Store(c.Name, testkit.JSON(v)+" "+why)
					return
				}
			}
			c.Open()
		}()
	}
	wg.Wait()
	other.Range(func(k, v any) bool { t.Errorf("%s: %s", k, v); return true })
	if conflicts.Load() == 0 {
		t.Fatalf("no broker_conflict in %d increments from two instances with max_retries = 0", ok.Load())
	}
	got, err := raw.Get(context.Background(), prefix+"counter.contended").Result()
	if err != nil || got != fmt.Sprintf(`{"n":%d}`, ok.Load()) {
		t.Fatalf("the entity holds %q (%v) after %d increments answered ok and %d broker_conflict", got, err, ok.Load(), conflicts.Load())
	}
	t.Logf("%d increments ok, %d broker_conflict", ok.Load(), conflicts.Load())
}
