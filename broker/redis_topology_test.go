package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/electric-socket/electric-socket/broker/redistest"
	"github.com/electric-socket/electric-socket/tests/testkit"
)

// Tests against real Redis Cluster and Sentinel deployments, started from
// redis-server processes by broker/redistest: the broker contract,
// counters and pub/sub across two instances, and what a failover does to
// them: no acknowledged update lost with [broker] replicas = 1, none
// applied twice, broker messages after the switch delivered, and Check
// (/readyz) true or false as the deployment serves or not. The subtests
// of one test share its deployment, each under a key prefix of its own;
// those that fail a master over run last.
//
// Beside each load with replicas = 1 runs one with replicas = 0 (the
// default) on another key, through the same failover: it shows what that
// setting loses (logged), and is checked for no increment applied twice.

// newTopologyRedis connects a broker to url, under a prefix of its own
// unless o sets one, closed when the test ends. o's zero retry settings
// are the host's defaults (max_retries 10, retry_backoff 1ms).
func newTopologyRedis(t *testing.T, url string, o RedisOptions) *Redis {
	t.Helper()
	o.URL = url
	if o.MaxRetries == 0 {
		o.MaxRetries = 10
	}
	if o.RetryBackoff == 0 {
		o.RetryBackoff = time.Millisecond
	}
	b, err := NewRedis(context.Background(), o)
	if err != nil {
		t.Fatalf("NewRedis(%s): %v", url, err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// addOne adds one to a JSON number (absent: 0).
func addOne(cur []byte, _ bool) ([]byte, Op, error) {
	n := 0
	if cur != nil {
		if err := json.Unmarshal(cur, &n); err != nil {
			return nil, Abort, err
		}
	}
	return []byte(strconv.Itoa(n + 1)), Set, nil
}

// counterLoad increments one topic from several goroutines on each of
// several brokers, and counts what Update answered.
type counterLoad struct {
	acked    atomic.Int64 // nil: committed once
	conflict atomic.Int64 // ErrConflict: nothing committed
	failed   atomic.Int64 // any other error: committed or not
	moved    atomic.Int64 // those that carry a MOVED or ASK reply (Cluster)

	// For recovery figures: from the moment mark (UnixNano) is set, when
	// the first update begun after it was acknowledged.
	mark, backAfter atomic.Int64

	mu   sync.Mutex
	errs []error // the first few other errors

	stop chan struct{}
	once sync.Once
	wg   sync.WaitGroup
}

// startCounter starts workers goroutines per broker, each making each
// updates, or updates until finish when each is 0.
func startCounter(brokers []*Redis, tp Topic, workers, each int) *counterLoad {
	l := &counterLoad{stop: make(chan struct{})}
	for _, b := range brokers {
		for range workers {
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				for i := 0; each == 0 || i < each; i++ {
					select {
					case <-l.stop:
						return
					default:
					}
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					began := time.Now().UnixNano()
					err := b.Update(ctx, tp, addOne)
					cancel()
					switch {
					case err == nil:
						l.acked.Add(1)
						if m := l.mark.Load(); m != 0 && began > m {
							l.backAfter.CompareAndSwap(0, time.Now().UnixNano())
						}
					case errors.Is(err, ErrConflict):
						l.conflict.Add(1)
					default:
						l.failed.Add(1)
						if msg := err.Error(); strings.Contains(msg, ": MOVED ") || strings.Contains(msg, ": ASK ") {
							l.moved.Add(1)
						}
						l.mu.Lock()
						if len(l.errs) < 3 {
							l.errs = append(l.errs, err)
						}
						l.mu.Unlock()
						// A client waits a little before trying again, rather
						// than spin on a refused dial.
						select {
						case <-l.stop:
							return
						case <-time.After(5 * time.Millisecond):
						}
					}
				}
			}()
		}
	}
	return l
}

// markNow starts the recovery figure: see recovery.
func (l *counterLoad) markNow() { l.mark.Store(time.Now().UnixNano()) }

// recovery is how long after markNow the first update begun after it was
// acknowledged (0 when none was yet).
func (l *counterLoad) recovery() time.Duration {
	back := l.backAfter.Load()
	if back == 0 {
		return 0
	}
	return time.Duration(back - l.mark.Load()).Round(time.Millisecond)
}

// finish stops the load and waits for the updates in flight.
func (l *counterLoad) finish() {
	l.once.Do(func() { close(l.stop) })
	l.wg.Wait()
}

// waitAcked waits until at least n updates were acknowledged.
func (l *counterLoad) waitAcked(t *testing.T, n int64, what string) {
	t.Helper()
	testkit.Eventually(t, waitBound, fmt.Sprintf("%d acknowledged updates %s (have %d; %d failed: %v)", n, what, l.acked.Load(), l.failed.Load(), l.firstErrs()),
		func() bool { return l.acked.Load() >= n })
}

func (l *counterLoad) firstErrs() []error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]error(nil), l.errs...)
}

// String sums the load up for failure messages.
func (l *counterLoad) String() string {
	return fmt.Sprintf("%d acknowledged, %d conflicts, %d failed (first errors: %v)",
		l.acked.Load(), l.conflict.Load(), l.failed.Load(), l.firstErrs())
}

// counterValue reads the counter at key with client (0 when absent).
func counterValue(t *testing.T, client redis.Cmdable, key string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	v, err := client.Get(ctx, key).Result()
	if errors.Is(err, redis.Nil) {
		return 0
	}
	if err != nil {
		t.Fatalf("GET %s: %v", key, err)
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		t.Fatalf("GET %s = %q: %v", key, v, err)
	}
	return n
}

// checkNoLostUpdate fails unless the counter holds every acknowledged
// increment, and no more than those plus the ones that failed (an update
// that failed may have been committed, once).
func checkNoLostUpdate(t *testing.T, got int64, l *counterLoad) {
	t.Helper()
	acked, failed := l.acked.Load(), l.failed.Load()
	if got < acked {
		t.Errorf("the counter holds %d: %d acknowledged increments lost (%v)", got, acked-got, l)
	}
	if got > acked+failed {
		t.Errorf("the counter holds %d: more than the %d acknowledged and %d failed increments (%v)", got, acked, failed, l)
	}
}

// checkNoDuplicate fails if the counter holds more increments than the
// updates of l that were acknowledged or failed (each applied once at
// most), and returns how many acknowledged ones it lost.
func checkNoDuplicate(t *testing.T, got int64, l *counterLoad) int64 {
	t.Helper()
	acked, failed := l.acked.Load(), l.failed.Load()
	if got > acked+failed {
		t.Errorf("the counter holds %d: more than the %d acknowledged and %d failed increments (%v)", got, acked, failed, l)
	}
	return max(acked-got, 0)
}

// checkCounter waits for the counter load l and fails unless every update
// committed or lost its compare-and-set, and the counter holds exactly the
// committed ones.
func checkCounter(t *testing.T, l *counterLoad, got func() int64) {
	t.Helper()
	l.wg.Wait()
	if l.failed.Load() > 0 || l.acked.Load() == 0 {
		t.Fatalf("counter: %v", l)
	}
	if n := got(); n != l.acked.Load() {
		t.Fatalf("the counter holds %d, want %d (%v)", n, l.acked.Load(), l)
	}
}

// checkPubSub subscribes to tp on both brokers and publishes from each:
// every subscriber receives each envelope as it was sent.
func checkPubSub(t *testing.T, a, b *Redis, tp Topic) {
	t.Helper()
	ctx := context.Background()
	gotA, gotB := make(chan Envelope, 4), make(chan Envelope, 4)
	for _, s := range []struct {
		r  *Redis
		ch chan Envelope
	}{{a, gotA}, {b, gotB}} {
		sub, err := s.r.Subscribe(ctx, tp, func(e Envelope) { s.ch <- e })
		if err != nil {
			t.Fatalf("subscribe %s: %v", tp, err)
		}
		t.Cleanup(func() { sub.Close() })
	}
	for i, from := range []*Redis{a, b} {
		env := Envelope{Target: "t" + strconv.Itoa(i), Message: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i)), BrokerKey: tp.Key, Source: "c" + strconv.Itoa(i)}
		if err := from.Publish(ctx, tp, env); err != nil {
			t.Fatalf("publish %s: %v", tp, err)
		}
		for _, ch := range []chan Envelope{gotA, gotB} {
			e := receiveWithin(t, ch, fmt.Sprintf("envelope %d on %s", i, tp))
			if e.Target != env.Target || string(e.Message) != string(env.Message) || e.BrokerKey != env.BrokerKey || e.Source != env.Source {
				t.Fatalf("received %+v, sent %+v", e, env)
			}
		}
	}
}

// waitDelivery publishes on tp from pub until sub's handler channel got
// receives one of those envelopes (a subscription that recovers from a
// failover delivers again).
func waitDelivery(t *testing.T, pub *Redis, tp Topic, got <-chan Envelope, what string) {
	t.Helper()
	deadline := time.Now().Add(waitBound)
	var lastErr error
	for i := 0; ; i++ {
		token := "after-" + strconv.Itoa(i)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		lastErr = pub.Publish(ctx, tp, Envelope{Target: token, Message: json.RawMessage(`{}`), BrokerKey: tp.Key})
		cancel()
		wait := time.NewTimer(50 * time.Millisecond)
	drain:
		for {
			select {
			case e := <-got:
				if strings.HasPrefix(e.Target, "after-") {
					wait.Stop()
					return
				}
			case <-wait.C:
				break drain
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no envelope delivered %s within %v (last publish: %v)", what, waitBound, lastErr)
		}
	}
}

// checkCloseLeavesNoGoroutine opens, uses and closes brokers on url (with
// replicas = 1: the WAIT paths too) and fails if they leave a goroutine
// behind (receive loops, probes, watchers, go-redis's).
func checkCloseLeavesNoGoroutine(t *testing.T, url, prefix string) {
	t.Helper()
	ctx := context.Background()
	before := runtime.NumGoroutine()
	for i := range 2 {
		b, err := NewRedis(ctx, RedisOptions{URL: url, Prefix: prefix, Replicas: i})
		if err != nil {
			t.Fatal(err)
		}
		tp := Topic{"chat", "room1"}
		sub, err := b.Subscribe(ctx, tp, func(Envelope) {})
		if err != nil {
			t.Fatal(err)
		}
		mustUpdate(t, b, tp, addOne)
		if err := b.Publish(ctx, tp, Envelope{Target: "x", Message: json.RawMessage(`1`)}); err != nil {
			t.Fatal(err)
		}
		checkEventually(t, b, true, "Check")
		sub.Close()
		b.Close()
	}
	deadline := time.Now().Add(waitBound)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines before, %d after closing the brokers:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// nameOf returns how b names the entity of namespace ns and key in Redis.
func nameOf(b *Redis, ns string) func(key string) string {
	return func(key string) string { return b.name(Topic{ns, key}) }
}

func TestRedisCluster(t *testing.T) {
	c := redistest.NewCluster(t, 3, 1)

	t.Run("contract", func(t *testing.T) {
		runContract(t, func(t *testing.T) Broker {
			return newTopologyRedis(t, c.URL, RedisOptions{Prefix: c.Prefix(t), MaxRetries: 1000, RetryBackoff: time.Millisecond})
		})
	})

	t.Run("Close leaves no goroutine", func(t *testing.T) {
		checkCloseLeavesNoGoroutine(t, c.URL, c.Prefix(t))
	})

	t.Run("counters on every master from two instances", func(t *testing.T) {
		prefix := c.Prefix(t)
		a := newTopologyRedis(t, c.URL, RedisOptions{Prefix: prefix})
		b := newTopologyRedis(t, c.URL, RedisOptions{Prefix: prefix})
		masters := c.Masters(t)
		if len(masters) != 3 {
			t.Fatalf("%d masters, want 3", len(masters))
		}
		loads := make([]*counterLoad, len(masters))
		keys := make([]string, len(masters))
		for i, m := range masters {
			keys[i] = c.KeyOn(t, m, "n", nameOf(a, "counter"))
			loads[i] = startCounter([]*Redis{a, b}, Topic{"counter", keys[i]}, 4, 50)
		}
		for i, m := range masters {
			// Read on the master itself: the key lives there.
			checkCounter(t, loads[i], func() int64 { return counterValue(t, m.Client(t), a.name(Topic{"counter", keys[i]})) })
		}
	})

	t.Run("pub/sub between two instances on every master", func(t *testing.T) {
		prefix := c.Prefix(t)
		a := newTopologyRedis(t, c.URL, RedisOptions{Prefix: prefix})
		b := newTopologyRedis(t, c.URL, RedisOptions{Prefix: prefix})
		for _, m := range c.Masters(t) {
			checkPubSub(t, a, b, Topic{"chat", c.KeyOn(t, m, "room", nameOf(a, "chat"))})
		}
	})

	t.Run("sharded pub/sub: one connection per shard, on a replica", func(t *testing.T) {
		prefix := c.Prefix(t)
		a := newTopologyRedis(t, c.URL, RedisOptions{Prefix: prefix})
		b := newTopologyRedis(t, c.URL, RedisOptions{Prefix: prefix})
		got := make(chan Envelope, 16)
		var subs []Subscription
		var rooms []Topic
		for _, m := range c.Masters(t) {
			room := Topic{"chat", c.KeyOn(t, m, "room", nameOf(a, "chat"))}
			sub, err := a.Subscribe(context.Background(), room, func(e Envelope) { got <- e })
			if err != nil {
				t.Fatal(err)
			}
			subs, rooms = append(subs, sub), append(rooms, room)
		}
		a.mu.Lock()
		conns := len(a.conns)
		a.mu.Unlock()
		if conns != 3 {
			t.Errorf("%d subscription connections for rooms on 3 shards (and the probe, on one of them), want 3", conns)
		}
		for _, room := range rooms {
			name := a.name(room)
			a.mu.Lock()
			on := a.chanConn[name].node
			a.mu.Unlock()
			m := c.MasterOf(t, name)
			rep := c.ReplicasOf(t, m)[0]
			if on != rep.Addr {
				t.Errorf("%s is subscribed on %s, want on %s, the replica of its master %s", name, on, rep.Addr, m.Addr)
			}
			raw := rep.Client(t)
			if n, err := raw.Do(context.Background(), "pubsub", "shardnumsub", name).Slice(); err != nil || len(n) != 2 || n[1] != int64(1) {
				t.Errorf("PUBSUB SHARDNUMSUB %s on %s: %v %v, want 1", name, rep.Addr, n, err)
			}
			if n := numSub(t, raw, name); n != 0 {
				t.Errorf("PUBSUB NUMSUB %s on %s = %d: a plain subscription", name, rep.Addr, n)
			}
			if err := b.Publish(context.Background(), room, Envelope{Target: name, Message: json.RawMessage(`{}`)}); err != nil {
				t.Fatal(err)
			}
			if e := receiveWithin(t, got, "a message on "+name); e.Target != name {
				t.Fatalf("received %+v on %s", e, name)
			}
		}
		checkEventually(t, a, true, "Check with three shards subscribed")
		for _, sub := range subs {
			sub.Close()
		}
		a.mu.Lock()
		conns = len(a.conns)
		a.mu.Unlock()
		if conns != 1 {
			t.Errorf("%d subscription connections once the rooms are closed, want 1 (the probe's shard)", conns)
		}
	})

	// A manual failover pauses the master's writes until the replica has
	// them all: nothing acknowledged is lost.
	t.Run("CLUSTER FAILOVER under load", func(t *testing.T) {
		prefix := c.Prefix(t)
		a := newTopologyRedis(t, c.URL, RedisOptions{Prefix: prefix})
		b := newTopologyRedis(t, c.URL, RedisOptions{Prefix: prefix})
		m := c.Masters(t)[0]
		replica := c.ReplicasOf(t, m)[0]
		key := c.KeyOn(t, m, "n", nameOf(a, "counter"))
		tp := Topic{"counter", key}
		// With replicas = 1 the broker sends the compare-and-set and WAIT
		// to the key's master itself, and follows a MOVED reply there.
		sa := newTopologyRedis(t, c.URL, RedisOptions{Prefix: prefix, Replicas: 1})
		sb := newTopologyRedis(t, c.URL, RedisOptions{Prefix: prefix, Replicas: 1})
		ts := Topic{"counter", c.KeyOn(t, m, "safe", nameOf(a, "counter"))}
		ls := startCounter([]*Redis{sa, sb}, ts, 4, 0)
		defer ls.finish()
		ls.waitAcked(t, 100, "with replicas = 1, before the failover")
		room := Topic{"chat", c.KeyOn(t, m, "room", nameOf(a, "chat"))}
		got := make(chan Envelope, 1024)
		sub, err := a.Subscribe(context.Background(), room, func(e Envelope) { got <- e })
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()

		l := startCounter([]*Redis{a, b}, tp, 4, 0)
		defer l.finish()
		l.waitAcked(t, 100, "before the failover")
		c.Failover(t, replica)
		if c.MasterOf(t, a.name(tp)) != replica {
			t.Fatalf("after the failover %s serves %s, not the replica %s", c.MasterOf(t, a.name(tp)).Addr, key, replica.Addr)
		}
		l.waitAcked(t, l.acked.Load()+100, "after the failover")
		l.finish()
		checkNoLostUpdate(t, counterValue(t, replica.Client(t), a.name(tp)), l)
		waitDelivery(t, b, room, got, "after the failover")
		checkEventually(t, a, true, "Check after the failover")
		t.Logf("replicas = 0: %v", l)
		// The old master is a replica of the new one: replicas = 1 is met.
		ls.waitAcked(t, ls.acked.Load()+100, "with replicas = 1, after the failover")
		ls.finish()
		checkNoLostUpdate(t, counterValue(t, replica.Client(t), sa.name(ts)), ls)
		t.Logf("replicas = 1: %v", ls)
		if n := ls.moved.Load(); n > 0 {
			t.Errorf("%d updates with replicas = 1 failed with a MOVED or ASK reply: the broker must follow it (%v)", n, ls)
		}
	})

	// The last subtest. The replica takes over; keys of the other masters
	// are served on once the cluster is whole again. (What becomes of the
	// killed master's keys and of a subscription connection to it:
	// TestRedisClusterKilledMaster.)
	t.Run("a master killed", func(t *testing.T) {
		prefix := c.Prefix(t)
		a := newTopologyRedis(t, c.URL, RedisOptions{Prefix: prefix})
		b := newTopologyRedis(t, c.URL, RedisOptions{Prefix: prefix})
		masters := c.Masters(t)
		m, other := masters[0], masters[1]
		if len(c.ReplicasOf(t, m)) == 0 {
			t.Fatalf("master %s has no replica", m.Addr)
		}
		gone := c.KeyOn(t, m, "n", nameOf(a, "counter"))
		tp := Topic{"counter", c.KeyOn(t, other, "n", nameOf(a, "counter"))}
		l := startCounter([]*Redis{a, b}, tp, 4, 0)
		defer l.finish()
		l.waitAcked(t, 100, "before the kill")
		c.Kill(t, m)
		now := c.WaitNewMaster(t, a.name(Topic{"counter", gone}), m)
		if now == m || c.Role(t, now) != "master" {
			t.Fatalf("%s serves the killed master's slots", now.Addr)
		}
		l.waitAcked(t, l.acked.Load()+100, "on another master after the kill")
		l.finish()
		// Until the replica took over, every node answered CLUSTERDOWN
		// (cluster-require-full-coverage): those updates failed.
		checkNoLostUpdate(t, counterValue(t, other.Client(t), a.name(tp)), l)
		c.Restart(t, m)
		if role := c.Role(t, m); role != "replica" {
			t.Fatalf("the restarted master %s is a %s, want a replica of %s", m.Addr, role, now.Addr)
		}
	})
}

// A Cluster master is killed under load, and later a whole shard.
func TestRedisClusterKilledMaster(t *testing.T) {
	c := redistest.NewCluster(t, 3, 1)

	// The replica of a killed master takes over its slots a few seconds
	// later (ClusterNodeTimeout, then an election); until then the keys of
	// that shard fail (the master is unreachable, then every node answers
	// CLUSTERDOWN: cluster-require-full-coverage) and Check fails for the
	// brokers subscribed to the shard. The broker reloads its slot map on
	// those failures, so its updates and publishes reach the new master as
	// soon as the cluster agrees on it; its subscription to the shard is on
	// the replica that takes over, so no broker message published after
	// the kill is lost. With replicas = 1 the new master has no replica
	// until the killed one is back: updates are uncertain meanwhile, and
	// Check says why; none acknowledged is lost. With replicas = 0, what
	// the master acknowledged and had not sent to its replica when it died
	// is lost (a few milliseconds' worth, often none).
	t.Run("a master killed under load", func(t *testing.T) {
		prefix := c.Prefix(t)
		m := c.Masters(t)[0]
		onM := func(ns string) func(string) string {
			return func(key string) string { return prefix + ns + "." + key }
		}
		ls := startLoads(t, c.URL, prefix, c.KeyOn(t, m, "safe", onM("counter")), c.KeyOn(t, m, "fast", onM("counter")))
		safe, fast := ls.safe[0], ls.fast[0]
		room := Topic{"chat", c.KeyOn(t, m, "room", onM("chat"))}
		sub, err := safe.Subscribe(context.Background(), room, func(Envelope) {})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		stream := startStream(t, ls.fast[1], fast, room)
		fast.mu.Lock()
		on := fast.chanConn[fast.name(room)].node
		fast.mu.Unlock()
		if reps := c.ReplicasOf(t, m); len(reps) != 1 || on != reps[0].Addr {
			t.Fatalf("the subscription to %s is on %s, want on the replica of its master %s", room, on, m.Addr)
		}
		checkEventually(t, fast, true, "Check before the kill")
		checkEventually(t, safe, true, "Check before the kill, with replicas = 1")

		c.Kill(t, m)
		at := time.Now()
		ls.markNow()
		checkEventually(t, fast, false, "Check to fail with the master of a subscribed shard down")
		now := c.WaitNewMaster(t, fast.name(ls.tFast), m)
		agreed := time.Since(at).Round(time.Millisecond)
		ls.lFast.waitAcked(t, ls.lFast.acked.Load()+100, "with replicas = 0, after the replica "+now.Addr+" took over")
		t.Logf("the cluster agreed on the new master %v after the kill; with replicas = 0 the first update begun after the kill was acknowledged %v after it",
			agreed, ls.lFast.recovery())
		checkEventually(t, fast, true, "Check once the replica took over")
		n := stream.checkNoneLostAfter(t, at, "after the kill")
		t.Logf("%d broker messages published after the kill", n)
		checkEventuallySays(t, safe, "0 of the 1 replicas", "Check to say the new master has no replica")

		c.Restart(t, m)
		if role := c.Role(t, m); role != "replica" {
			t.Fatalf("the restarted master %s is a %s, want a replica of %s", m.Addr, role, now.Addr)
		}
		ls.lSafe.waitAcked(t, ls.lSafe.acked.Load()+100, "with replicas = 1, once the killed master replicates the new one")
		checkEventually(t, safe, true, "Check once the new master has a replica")
		t.Logf("updates acknowledged again %v after the kill with replicas = 1 (the killed master restarted as a replica)", ls.lSafe.recovery())
		ls.check(t, now.Client(t), "a Cluster master killed")
	})

	// A shard loses its master and its replica: once the other nodes agree
	// the master failed and none can take over, the cluster is down
	// (cluster-require-full-coverage yes, the default) and every node
	// answers CLUSTERDOWN for every key. A broker subscribed only to other
	// shards cannot update anything either: Check fails, its probe (an
	// SPUBLISH, which the cluster refuses too) says CLUSTERDOWN.
	t.Run("CLUSTERDOWN", func(t *testing.T) {
		prefix := c.Prefix(t)
		b := newTopologyRedis(t, c.URL, RedisOptions{Prefix: prefix})
		mine := c.MasterOf(t, b.probeChan)
		var victim *redistest.ClusterNode
		for _, m := range c.Masters(t) {
			if m != mine {
				victim = m
				break
			}
		}
		tp := Topic{"counter", c.KeyOn(t, mine, "n", nameOf(b, "counter"))}
		mustUpdate(t, b, tp, addOne)
		checkEventually(t, b, true, "Check before the shard is lost")
		reps := c.ReplicasOf(t, victim)
		for _, r := range reps {
			c.Kill(t, r)
		}
		c.Kill(t, victim)
		checkEventuallySays(t, b, "CLUSTERDOWN", "Check to fail with the cluster down")
		if err := b.Update(context.Background(), tp, addOne); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "CLUSTERDOWN") {
			t.Fatalf("update on a live shard of a cluster that is down: %v, want broker_unavailable (CLUSTERDOWN)", err)
		}
		c.Restart(t, victim)
		for _, r := range reps {
			c.Restart(t, r)
		}
		checkEventually(t, b, true, "Check once the cluster is whole again")
		mustUpdate(t, b, tp, addOne)
	})
}

// msgStream publishes numbered envelopes on a topic from one broker, one
// every 5 ms, and records which ones a subscription on another received.
type msgStream struct {
	mu       sync.Mutex
	sent     []sentMsg // published without an error, in order
	received map[string]int

	stop, done chan struct{}
	once       sync.Once
}

type sentMsg struct {
	target string
	at     time.Time // when Publish was called
}

func startStream(t *testing.T, pub, sub *Redis, room Topic) *msgStream {
	t.Helper()
	m := &msgStream{received: map[string]int{}, stop: make(chan struct{}), done: make(chan struct{})}
	s, err := sub.Subscribe(context.Background(), room, func(e Envelope) {
		m.mu.Lock()
		m.received[e.Target]++
		m.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	go func() {
		defer close(m.done)
		for i := 0; ; i++ {
			select {
			case <-m.stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			msg := sentMsg{target: "m" + strconv.Itoa(i), at: time.Now()}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			err := pub.Publish(ctx, room, Envelope{Target: msg.target, Message: json.RawMessage(`{}`), BrokerKey: room.Key})
			cancel()
			if err == nil {
				m.mu.Lock()
				m.sent = append(m.sent, msg)
				m.mu.Unlock()
			}
		}
	}()
	t.Cleanup(m.finish)
	return m
}

func (m *msgStream) finish() {
	m.once.Do(func() { close(m.stop) })
	<-m.done
}

// checkNoneLostAfter lets the stream run until delivery is steady after at
// (the last 50 messages published after it, and over 100 ms ago, arrived),
// stops it, waits for its last message, and fails unless every message
// published after at was received, and none twice. It returns how many
// were published after at.
func (m *msgStream) checkNoneLostAfter(t *testing.T, at time.Time, what string) int {
	t.Helper()
	testkit.Eventually(t, waitBound, "steady delivery "+what, func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		var settled []sentMsg
		for _, s := range m.sent {
			if s.at.After(at) && time.Since(s.at) > 100*time.Millisecond {
				settled = append(settled, s)
			}
		}
		if len(settled) < 50 {
			return false
		}
		for _, s := range settled[len(settled)-50:] {
			if m.received[s.target] == 0 {
				return false
			}
		}
		return true
	})
	m.finish()
	m.mu.Lock()
	last := m.sent[len(m.sent)-1].target
	m.mu.Unlock()
	testkit.Eventually(t, waitBound, "the last message delivered", func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.received[last] > 0
	})
	m.mu.Lock()
	defer m.mu.Unlock()
	var lost, twice []string
	after := 0
	var span time.Duration
	for _, s := range m.sent {
		if m.received[s.target] > 1 {
			twice = append(twice, s.target)
		}
		if s.at.After(at) {
			after++
			if m.received[s.target] == 0 {
				lost = append(lost, s.target)
				span = s.at.Sub(at)
			}
		}
	}
	if len(twice) > 0 {
		t.Errorf("%d of the %d broker messages were delivered more than once: %v ...", len(twice), len(m.sent), twice[:min(len(twice), 10)])
	}
	if len(lost) > 0 {
		t.Errorf("%d of the %d broker messages published %s were lost, the last one published %v after it: %v ...",
			len(lost), after, what, span.Round(time.Millisecond), lost[:min(len(lost), 10)])
	}
	return after
}

// checkEventuallySays waits until Check fails with an error that contains
// want.
func checkEventuallySays(t *testing.T, b *Redis, want, what string) {
	t.Helper()
	var err error
	testkit.Eventually(t, waitBound, what, func() bool {
		err = b.Check(context.Background())
		return err != nil && strings.Contains(err.Error(), want)
	})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Check = %v, want an ErrUnavailable", err)
	}
}

// loads are the two counters of a failover test: safe on brokers with
// replicas = 1, fast on brokers with the default (0), each on a key of
// its own.
type loads struct {
	safe, fast   []*Redis
	tSafe, tFast Topic
	lSafe, lFast *counterLoad
}

func startLoads(t *testing.T, url, prefix string, keySafe, keyFast string) *loads {
	t.Helper()
	ls := &loads{tSafe: Topic{"counter", keySafe}, tFast: Topic{"counter", keyFast}}
	for range 2 {
		ls.safe = append(ls.safe, newTopologyRedis(t, url, RedisOptions{Prefix: prefix, Replicas: 1}))
		ls.fast = append(ls.fast, newTopologyRedis(t, url, RedisOptions{Prefix: prefix}))
	}
	ls.lSafe = startCounter(ls.safe, ls.tSafe, 4, 0)
	ls.lFast = startCounter(ls.fast, ls.tFast, 4, 0)
	t.Cleanup(ls.finish)
	ls.lSafe.waitAcked(t, 100, "with replicas = 1, before the fault")
	ls.lFast.waitAcked(t, 100, "with replicas = 0, before the fault")
	return ls
}

func (ls *loads) markNow() {
	ls.lSafe.markNow()
	ls.lFast.markNow()
}

func (ls *loads) finish() {
	ls.lSafe.finish()
	ls.lFast.finish()
}

// check stops the loads and reads their counters with client: replicas =
// 1 lost no acknowledged increment, neither applied one twice; it logs
// what replicas = 0 lost.
func (ls *loads) check(t *testing.T, client redis.Cmdable, what string) {
	t.Helper()
	ls.finish()
	checkNoLostUpdate(t, counterValue(t, client, ls.safe[0].name(ls.tSafe)), ls.lSafe)
	lost := checkNoDuplicate(t, counterValue(t, client, ls.fast[0].name(ls.tFast)), ls.lFast)
	t.Logf("%s: replicas = 1: %d acknowledged, %d failed, none lost; replicas = 0: %d acknowledged, %d failed, %d acknowledged increments lost",
		what, ls.lSafe.acked.Load(), ls.lSafe.failed.Load(), ls.lFast.acked.Load(), ls.lFast.failed.Load(), lost)
}

func TestRedisSentinel(t *testing.T) {
	s := redistest.NewSentinel(t)

	t.Run("contract", func(t *testing.T) {
		runContract(t, func(t *testing.T) Broker {
			return newTopologyRedis(t, s.URL, RedisOptions{Prefix: s.Prefix(t), MaxRetries: 1000, RetryBackoff: time.Millisecond})
		})
	})

	t.Run("Close leaves no goroutine", func(t *testing.T) {
		checkCloseLeavesNoGoroutine(t, s.URL, s.Prefix(t))
	})

	t.Run("a counter from two instances", func(t *testing.T) {
		prefix := s.Prefix(t)
		a := newTopologyRedis(t, s.URL, RedisOptions{Prefix: prefix})
		b := newTopologyRedis(t, s.URL, RedisOptions{Prefix: prefix})
		tp := Topic{"counter", "n"}
		l := startCounter([]*Redis{a, b}, tp, 4, 50)
		checkCounter(t, l, func() int64 { return counterValue(t, s.Master(t).Client(t), a.name(tp)) })
	})

	t.Run("a counter from two instances with replicas = 1", func(t *testing.T) {
		prefix := s.Prefix(t)
		a := newTopologyRedis(t, s.URL, RedisOptions{Prefix: prefix, Replicas: 1})
		b := newTopologyRedis(t, s.URL, RedisOptions{Prefix: prefix, Replicas: 1})
		tp := Topic{"counter", "n"}
		l := startCounter([]*Redis{a, b}, tp, 4, 50)
		// Every acknowledged increment is on the replica when the load ends.
		checkCounter(t, l, func() int64 { return counterValue(t, s.Replica(t).Client(t), a.name(tp)) })
	})

	t.Run("pub/sub between two instances", func(t *testing.T) {
		prefix := s.Prefix(t)
		a := newTopologyRedis(t, s.URL, RedisOptions{Prefix: prefix})
		b := newTopologyRedis(t, s.URL, RedisOptions{Prefix: prefix})
		checkPubSub(t, a, b, Topic{"chat", "room1"})
		// One subscription connection per data node; only the master's
		// delivers.
		a.mu.Lock()
		n := len(a.conns)
		a.mu.Unlock()
		if n != len(s.Nodes) {
			t.Errorf("%d subscription connections, want one per data node (%d)", n, len(s.Nodes))
		}
	})

	// The master is killed: the replica is promoted a few seconds later.
	// With replicas = 1 an update is acknowledged only once the replica
	// has it, so none the old master acknowledged is lost; until the old
	// master is back as the new master's replica there is no replica to
	// acknowledge, and updates are answered broker_outcome_unknown (and
	// Check says why). With replicas = 0 updates resume at the switch;
	// what the old master acknowledged and had not sent to the replica yet
	// (a few milliseconds' worth, often none) is lost.
	t.Run("the master killed under load", func(t *testing.T) {
		prefix := s.Prefix(t)
		ls := startLoads(t, s.URL, prefix, "safe", "fast")
		safe, fast := ls.safe[0], ls.fast[0]
		room := Topic{"chat", "room1"}
		got := make(chan Envelope, 1024)
		sub, err := fast.Subscribe(context.Background(), room, func(e Envelope) { got <- e })
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		switched := s.Events(t, "+switch-master")
		checkEventually(t, fast, true, "Check before the kill")
		checkEventually(t, safe, true, "Check before the kill, with replicas = 1")

		old := s.KillMaster(t)
		ls.markNow()
		checkEventuallySays(t, fast, "is down", "Check to fail with the master down")
		now := s.WaitNewMaster(t, old.Addr)
		var e redistest.SentinelEvent
		select {
		case e = <-switched:
		case <-time.After(waitBound):
			t.Fatalf("no +switch-master within %v", waitBound)
		}
		if want := fmt.Sprintf("%s 127.0.0.1 %s 127.0.0.1 %s", s.MasterName, port(old.Addr), port(now.Addr)); e.Payload != want {
			t.Fatalf("+switch-master from %s: %q, want %q", e.Sentinel, e.Payload, want)
		}
		ls.lFast.waitAcked(t, ls.lFast.acked.Load()+100, "with replicas = 0, after the failover")
		checkEventually(t, fast, true, "Check on the new master")
		waitDelivery(t, ls.fast[1], room, got, "after the failover")
		checkEventuallySays(t, safe, "0 of the 1 replicas", "Check to say the new master has no replica")
		t.Logf("updates acknowledged again %v after the kill with replicas = 0", ls.lFast.recovery())

		s.RestartAsReplica(t, old)
		ls.lSafe.waitAcked(t, ls.lSafe.acked.Load()+100, "with replicas = 1, once the old master replicates the new one")
		checkEventually(t, safe, true, "Check once the new master has a replica")
		t.Logf("updates acknowledged again %v after the kill with replicas = 1 (the old master restarted as a replica)", ls.lSafe.recovery())
		ls.check(t, now.Client(t), "the master killed")
	})

	// The last subtest. SENTINEL FAILOVER promotes the replica at once
	// (REPLICAOF NO ONE), but the sentinels announce the new master
	// (+switch-master) only about a second later, once their next INFO
	// shows it: meanwhile go-redis's clients write to the old master, which
	// still answers as a master, and whatever it takes is discarded when
	// the sentinels make it a replica, about ten seconds later. With
	// replicas = 0 those updates were acknowledged: lost (thousands at this
	// load). With replicas = 1 the old master has no replica left to
	// acknowledge them: they are answered broker_outcome_unknown, and none
	// acknowledged is lost; the new master has no replica either until the
	// old one is made its replica, and Check says so meanwhile. Broker
	// messages published after the switch all arrive: the subscription
	// connection to the promoted replica delivers from the promotion on.
	t.Run("a planned failover under load", func(t *testing.T) {
		prefix := s.Prefix(t)
		ls := startLoads(t, s.URL, prefix, "safe", "fast")
		room := Topic{"chat", "room1"}
		stream := startStream(t, ls.fast[1], ls.fast[0], room)
		switched := s.Events(t, "+switch-master")
		checkEventually(t, ls.safe[0], true, "Check before the failover, with replicas = 1")
		old, replica := s.Master(t), s.Replica(t)
		now := s.Failover(t)
		if now != replica {
			t.Fatalf("after the failover the master is %s, want the replica %s (the master was %s)", now.Addr, replica.Addr, old.Addr)
		}
		var at time.Time
		select {
		case e := <-switched:
			at = e.Received
			t.Logf("+switch-master from %s: %s", e.Sentinel, e.Payload)
		case <-time.After(waitBound):
			t.Fatal("no +switch-master")
		}
		n := stream.checkNoneLostAfter(t, at, "after +switch-master")
		t.Logf("%d broker messages published after +switch-master", n)
		checkEventuallySays(t, ls.safe[0], "0 of the 1 replicas", "Check to say the new master has no replica")
		ls.check(t, now.Client(t), "a planned failover")
	})
}

// port is the port of a host:port address.
func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}
