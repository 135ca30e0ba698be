package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/electric-socket/electric-socket/broker/redistest"
)

// Tests against real Redis Cluster and Sentinel deployments, started from
// redis-server processes by broker/redistest: the broker contract,
// counters and pub/sub across two instances, and what a failover does to
// them. The subtests of one test share its deployment, each under a key
// prefix of its own; those that fail a master over run last.
//
// What the broker still gets wrong on a failover (issue 18) is written as
// tests that skip with the reason; remove the t.Skip to see them fail.

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
					err := b.Update(ctx, tp, addOne)
					cancel()
					switch {
					case err == nil:
						l.acked.Add(1)
					case errors.Is(err, ErrConflict):
						l.conflict.Add(1)
					default:
						l.failed.Add(1)
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

// finish stops the load and waits for the updates in flight.
func (l *counterLoad) finish() {
	l.once.Do(func() { close(l.stop) })
	l.wg.Wait()
}

// waitAcked waits until at least n updates were acknowledged.
func (l *counterLoad) waitAcked(t *testing.T, n int64, what string) {
	t.Helper()
	eventually(t, fmt.Sprintf("%d acknowledged updates %s (have %d; %d failed: %v)", n, what, l.acked.Load(), l.failed.Load(), l.firstErrs()),
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

// A killed master's replica takes over its slots a few seconds later; the
// broker should then update its keys there, having lost no acknowledged
// update, and pub/sub should deliver again, on its keys too.
func TestRedisClusterKilledMaster(t *testing.T) {
	t.Skip("issue 18: after a master is killed and its replica took over its slots, every update and publish of " +
		"its keys keeps failing with broker_unavailable (dial tcp <dead node>: connection refused) until go-redis " +
		"reloads its slot map, which it does on a MOVED or ASK reply or once the map is older than " +
		"ClusterOptions.ClusterStateReloadInterval (60 s by default; a dial error reloads nothing): the first update " +
		"was acknowledged 56 s after the takeover, 60 s after the broker started. The subscription connection, when " +
		"on the dead node, redials the master of a random one of its channels in that stale map: while that is the " +
		"dead node's it fails again, so a broker subscribed to no channel elsewhere (its probe channel alone, or " +
		"rooms on that node) gets no message and Check fails for as long")
	c := redistest.NewCluster(t, 3, 1)
	prefix := c.Prefix(t)
	a := newTopologyRedis(t, c.URL, RedisOptions{Prefix: prefix})
	b := newTopologyRedis(t, c.URL, RedisOptions{Prefix: prefix})
	m := c.MasterOf(t, a.probeChan) // holds a's subscription connection
	key := c.KeyOn(t, m, "n", nameOf(a, "counter"))
	tp := Topic{"counter", key}
	room := Topic{"chat", c.KeyOn(t, m, "room", nameOf(a, "chat"))}
	got := make(chan Envelope, 1024)
	sub, err := a.Subscribe(context.Background(), room, func(e Envelope) { got <- e })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	l := startCounter([]*Redis{a, b}, tp, 4, 0)
	defer l.finish()
	l.waitAcked(t, 100, "before the kill")
	c.Kill(t, m)
	now := c.WaitNewMaster(t, a.name(tp), m)
	l.waitAcked(t, l.acked.Load()+100, "after the replica "+now.Addr+" took over")
	l.finish()
	checkNoLostUpdate(t, counterValue(t, now.Client(t), a.name(tp)), l)
	waitDelivery(t, b, room, got, "after the replica "+now.Addr+" took over")
	eventually(t, "the subscription checks out again", func() bool { return a.Check(context.Background()) == nil })
}

func TestRedisSentinel(t *testing.T) {
	s := redistest.NewSentinel(t)

	t.Run("contract", func(t *testing.T) {
		runContract(t, func(t *testing.T) Broker {
			return newTopologyRedis(t, s.URL, RedisOptions{Prefix: s.Prefix(t), MaxRetries: 1000, RetryBackoff: time.Millisecond})
		})
	})

	t.Run("a counter from two instances", func(t *testing.T) {
		prefix := s.Prefix(t)
		a := newTopologyRedis(t, s.URL, RedisOptions{Prefix: prefix})
		b := newTopologyRedis(t, s.URL, RedisOptions{Prefix: prefix})
		tp := Topic{"counter", "n"}
		l := startCounter([]*Redis{a, b}, tp, 4, 50)
		checkCounter(t, l, func() int64 { return counterValue(t, s.Master(t).Client(t), a.name(tp)) })
	})

	t.Run("pub/sub between two instances", func(t *testing.T) {
		prefix := s.Prefix(t)
		checkPubSub(t, newTopologyRedis(t, s.URL, RedisOptions{Prefix: prefix}), newTopologyRedis(t, s.URL, RedisOptions{Prefix: prefix}), Topic{"chat", "room1"})
	})

	t.Run("the master killed under load", func(t *testing.T) {
		prefix := s.Prefix(t)
		a := newTopologyRedis(t, s.URL, RedisOptions{Prefix: prefix})
		b := newTopologyRedis(t, s.URL, RedisOptions{Prefix: prefix})
		tp, room := Topic{"counter", "n"}, Topic{"chat", "room1"}
		got := make(chan Envelope, 1024)
		sub, err := a.Subscribe(context.Background(), room, func(e Envelope) { got <- e })
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		switched := s.Events(t, "+switch-master")

		l := startCounter([]*Redis{a, b}, tp, 4, 0)
		defer l.finish()
		l.waitAcked(t, 100, "before the kill")
		old := s.KillMaster(t)
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
		l.waitAcked(t, l.acked.Load()+100, "after the failover")
		l.finish()
		t.Logf("%s killed, %s is the master: %v", old.Addr, now.Addr, l)
		checkNoLostUpdate(t, counterValue(t, now.Client(t), a.name(tp)), l)
		waitDelivery(t, b, room, got, "after the failover")
		s.RestartAsReplica(t, old)
	})

	// The last subtest: the old master stays a master for about 8 s.
	t.Run("a planned failover", func(t *testing.T) {
		prefix := s.Prefix(t)
		a := newTopologyRedis(t, s.URL, RedisOptions{Prefix: prefix})
		b := newTopologyRedis(t, s.URL, RedisOptions{Prefix: prefix})
		tp, room := Topic{"counter", "n"}, Topic{"chat", "room1"}
		got := make(chan Envelope, 1024)
		sub, err := a.Subscribe(context.Background(), room, func(e Envelope) { got <- e })
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		mustUpdate(t, a, tp, addOne)
		old, replica := s.Master(t), s.Replica(t)
		now := s.Failover(t)
		if now != replica || s.Master(t) != now {
			t.Fatalf("after the failover the master is %s, want the replica %s (the master was %s)", s.Master(t).Addr, replica.Addr, old.Addr)
		}
		// Updates reach the new master.
		raw := now.Client(t)
		var last error
		for i := 0; ; i++ {
			want := fmt.Sprintf(`{"after":%d}`, i)
			last = b.Update(context.Background(), tp, func([]byte, bool) ([]byte, Op, error) { return []byte(want), Set, nil })
			if last == nil && raw.Get(context.Background(), b.name(tp)).Val() == want {
				break
			}
			if i == 1000 {
				t.Fatalf("no update reached the new master %s in 1000 attempts (last: %v)", now.Addr, last)
			}
			time.Sleep(10 * time.Millisecond)
		}
		waitDelivery(t, b, room, got, "after the failover")
	})
}

// A planned failover under the counter load loses no acknowledged
// increment and applies none twice.
func TestRedisSentinelFailoverLosesNoAcknowledgedUpdate(t *testing.T) {
	t.Skip("issue 18: SENTINEL FAILOVER under load loses acknowledged increments (12,257 in one run, 10,922 in " +
		"another, of about 10,000 a second): the sentinel promotes the replica (REPLICAOF NO ONE) and announces " +
		"+switch-master only about 1.1 s later, once its next INFO shows the promotion; go-redis's failover client " +
		"moves to the new master on +switch-master, so meanwhile both brokers commit on the old master, which still " +
		"answers as a master, and acknowledge; the new master's counter carries on from its value at the promotion, " +
		"and the old master's writes are discarded when the sentinels make it a replica (about 8 s later)")
	s := redistest.NewSentinel(t)
	prefix := s.Prefix(t)
	a := newTopologyRedis(t, s.URL, RedisOptions{Prefix: prefix})
	b := newTopologyRedis(t, s.URL, RedisOptions{Prefix: prefix})
	tp := Topic{"counter", "n"}
	l := startCounter([]*Redis{a, b}, tp, 4, 0)
	defer l.finish()
	l.waitAcked(t, 100, "before the failover")
	old := s.Master(t)
	now := s.Failover(t)
	l.waitAcked(t, l.acked.Load()+100, "after the failover")
	s.WaitReplica(t, old) // what the old master took is gone now
	l.waitAcked(t, l.acked.Load()+100, "after the old master became a replica")
	l.finish()
	checkNoLostUpdate(t, counterValue(t, now.Client(t), a.name(tp)), l)
}

// Every broker message published after the sentinels announce the new
// master reaches the subscribers.
func TestRedisSentinelPubSubFollowsFailover(t *testing.T) {
	t.Skip("issue 18: after SENTINEL FAILOVER, broker messages published in the 2.8 s after +switch-master are " +
		"lost (432 of 502, 448 of 516 at one every 5 ms): publishers move to the new master, but go-redis's " +
		"failover client closes only its command and pipeline connections to the old master on +switch-master, not " +
		"the pub/sub one, so the subscription stays on the old master and receives nothing until the probe " +
		"(ProbeInterval 1 s, ProbeTimeout 2 s) misses and replaces the connection")
	s := redistest.NewSentinel(t)
	prefix := s.Prefix(t)
	a := newTopologyRedis(t, s.URL, RedisOptions{Prefix: prefix})
	b := newTopologyRedis(t, s.URL, RedisOptions{Prefix: prefix})
	room := Topic{"chat", "room1"}
	var mu sync.Mutex
	received := map[string]bool{}
	sub, err := a.Subscribe(context.Background(), room, func(e Envelope) {
		mu.Lock()
		received[e.Target] = true
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	switched := s.Events(t, "+switch-master")

	// One publisher, one message at a time, until stopped.
	type sent struct {
		target string
		at     time.Time // when Publish was called
	}
	var sentOK []sent
	stop, done := make(chan struct{}), make(chan struct{})
	stopPublishing := sync.OnceFunc(func() { close(stop); <-done })
	defer stopPublishing()
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			m := sent{target: "m" + strconv.Itoa(i), at: time.Now()}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			err := b.Publish(ctx, room, Envelope{Target: m.target, Message: json.RawMessage(`{}`), BrokerKey: room.Key})
			cancel()
			if err == nil {
				mu.Lock()
				sentOK = append(sentOK, m)
				mu.Unlock()
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	s.Failover(t)
	var at time.Time
	select {
	case e := <-switched:
		at = e.Received
		t.Logf("+switch-master from %s: %s", e.Sentinel, e.Payload)
	case <-time.After(waitBound):
		t.Fatal("no +switch-master")
	}
	// Publish on until delivery is steady: the last 50 messages published
	// after the switch (and 100 ms before now, so not in flight) arrived.
	eventually(t, "steady delivery after the switch", func() bool {
		mu.Lock()
		defer mu.Unlock()
		var settled []sent
		for _, m := range sentOK {
			if m.at.After(at) && time.Since(m.at) > 100*time.Millisecond {
				settled = append(settled, m)
			}
		}
		if len(settled) < 50 {
			return false
		}
		for _, m := range settled[len(settled)-50:] {
			if !received[m.target] {
				return false
			}
		}
		return true
	})
	stopPublishing()
	last := sentOK[len(sentOK)-1].target
	eventually(t, "the last message delivered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return received[last]
	})
	mu.Lock()
	defer mu.Unlock()
	var lost []string
	after := 0
	for _, m := range sentOK {
		if m.at.After(at) {
			after++
			if !received[m.target] {
				lost = append(lost, m.target)
			}
		}
	}
	if len(lost) > 0 {
		var span time.Duration
		for _, m := range sentOK {
			if m.target == lost[len(lost)-1] {
				span = m.at.Sub(at)
			}
		}
		t.Fatalf("%d of the %d broker messages published after +switch-master were lost, the last one published %v after it: %v ...",
			len(lost), after, span.Round(time.Millisecond), lost[:min(len(lost), 10)])
	}
}

// port is the port of a host:port address.
func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}
