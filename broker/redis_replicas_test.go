package broker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/electric-socket/electric-socket/broker/redistest"
)

// Tests of RedisOptions.Replicas ([broker] replicas): an update is
// answered done only once that many replicas acknowledged it (WAIT), and
// "may have been applied" (ErrOutcomeUnknown) otherwise. The failovers it
// makes safe are in redis_topology_test.go.

// setN returns an update function that sets the entity to n.
func setN(n int) UpdateFunc {
	return func([]byte, bool) ([]byte, Op, error) { return []byte(fmt.Sprint(n)), Set, nil }
}

// get reads key on client ("" when absent).
func get(t *testing.T, client *redis.Client, key string) string {
	t.Helper()
	v, err := client.Get(context.Background(), key).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		t.Fatalf("GET %s: %v", key, err)
	}
	return v
}

// updateAll runs fn on n topics at once, each from its own goroutine,
// and returns their errors. The functions wait for one another before
// returning, so the n compare-and-sets are sent together: the first
// directly, the others in a pipeline behind it (redis_pipeline.go).
func updateAll(b *Redis, topics []Topic, fn func(i int) UpdateFunc) []error {
	errs := make([]error, len(topics))
	var ran, wg sync.WaitGroup
	ran.Add(len(topics))
	for i, tp := range topics {
		wg.Add(1)
		go func() {
			defer wg.Done()
			first := true
			errs[i] = b.Update(context.Background(), tp, func(cur []byte, retried bool) ([]byte, Op, error) {
				if first {
					first = false
					ran.Done()
					ran.Wait()
				}
				return fn(i)(cur, retried)
			})
		}()
	}
	wg.Wait()
	return errs
}

func topicsN(n int) []Topic {
	ts := make([]Topic, n)
	for i := range ts {
		ts[i] = Topic{"rep", fmt.Sprint("k", i)}
	}
	return ts
}

// With no replica to acknowledge, every update is written on the master
// and answered "may have been applied", never done; Check says why.
func TestRedisReplicasMissingMeansUncertain(t *testing.T) {
	srv := redistest.NewLocal(t) // a server of its own: no replica
	b := newTestRedis(t, srv, RedisOptions{Prefix: srv.Prefix(t), Replicas: 1})
	raw := srv.Client(t)
	// One update alone (it loads the script: the pipelined ones below find
	// it, rather than fall back to EVAL one by one).
	tp := Topic{"rep", "alone"}
	if err := b.Update(context.Background(), tp, setN(1)); !errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("update with no replica: err = %v, want ErrOutcomeUnknown", err)
	}
	if got := get(t, raw, b.name(tp)); got != "1" {
		t.Errorf("entity = %q on the master, want 1: an uncertain update was written", got)
	}
	topics := topicsN(8)
	for i, err := range updateAll(b, topics, func(i int) UpdateFunc { return setN(i + 1) }) {
		if !errors.Is(err, ErrOutcomeUnknown) || !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "may have been applied") {
			t.Fatalf("update %d with no replica: err = %v, want ErrOutcomeUnknown", i, err)
		}
		if got := get(t, raw, b.name(topics[i])); got != fmt.Sprint(i+1) {
			t.Errorf("entity %d = %q on the master, want %d: an uncertain update was written", i, got, i+1)
		}
	}
	if b.pipe.flushes.Load() == 0 {
		t.Errorf("no pipeline was sent: the WAIT after a pipeline is untested")
	}
	err := checkEventually(t, b, false, "Check to say no replica acknowledges")
	if !strings.Contains(err.Error(), "0 of the 1 replicas asked for ([broker] replicas) acknowledged the probe") {
		t.Fatalf("Check = %v", err)
	}
}

// With a replica, an acknowledged update is on the replica when Update
// returns (pipelined or not); while the replica hangs, updates are
// uncertain and Check fails; once it is back, both recover.
func TestRedisReplicasAcknowledge(t *testing.T) {
	master, replica := redistest.NewReplicated(t)
	proxy := redistest.NewProxy(t, master)
	b, err := NewRedis(context.Background(), RedisOptions{URL: proxy.URL, Prefix: master.Prefix(t),
		MaxRetries: DefaultMaxRetries, RetryBackoff: DefaultRetryBackoff, Replicas: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	rawMaster, rawReplica := master.Client(t), replica.Client(t)
	checkEventually(t, b, true, "Check with the replica in sync")
	// One update alone (it loads the script: the pipelined ones below find
	// it, rather than fall back to EVAL one by one).
	mustUpdate(t, b, Topic{"rep", "alone"}, setN(1))

	topics := topicsN(8)
	for i, err := range updateAll(b, topics, func(i int) UpdateFunc { return setN(i + 1) }) {
		if err != nil {
			t.Fatalf("update %d: %v", i, err)
		}
		// WAIT returned: the replica has it, no waiting needed.
		if got := get(t, rawReplica, b.name(topics[i])); got != fmt.Sprint(i+1) {
			t.Fatalf("entity %d = %q on the replica right after Update returned, want %d", i, got, i+1)
		}
	}
	if b.pipe.flushes.Load() == 0 {
		t.Errorf("no pipeline was sent: the WAIT after a pipeline is untested")
	}

	t.Run("a lost reply is resolved and acknowledged", func(t *testing.T) {
		tp := topics[0]
		proxy.CutReply("evalsha")
		if err := b.Update(context.Background(), tp, setN(100)); err != nil {
			t.Fatalf("update whose reply was lost: %v", err)
		}
		if proxy.Cuts() != 1 {
			t.Fatalf("%d replies cut, want 1", proxy.Cuts())
		}
		if got := get(t, rawReplica, b.name(tp)); got != "100" {
			t.Fatalf("entity = %q on the replica, want 100", got)
		}
	})

	t.Run("a hung replica", func(t *testing.T) {
		tp := topics[1]
		replica.Pause(t)
		defer replica.Resume(t)
		err := b.Update(context.Background(), tp, setN(200))
		if !errors.Is(err, ErrOutcomeUnknown) {
			t.Fatalf("update with the replica hung: err = %v, want ErrOutcomeUnknown", err)
		}
		if got := get(t, rawMaster, b.name(tp)); got != "200" {
			t.Fatalf("entity = %q on the master, want 200", got)
		}
		// The reply of the first send is lost: the resend, on another
		// connection, finds the operation applied, and its WAIT must cover
		// the write of the first send.
		proxy.CutReply("evalsha")
		err = b.Update(context.Background(), tp, setN(201))
		if proxy.Cuts() != 2 {
			t.Fatalf("%d replies cut, want 2", proxy.Cuts())
		}
		if !errors.Is(err, ErrOutcomeUnknown) {
			t.Fatalf("update whose reply was lost, with the replica hung: err = %v, want ErrOutcomeUnknown", err)
		}
		if got := get(t, rawMaster, b.name(tp)); got != "201" {
			t.Fatalf("entity = %q on the master, want 201", got)
		}
		err = checkEventually(t, b, false, "Check to fail with the replica hung")
		if !strings.Contains(err.Error(), "0 of the 1 replicas") {
			t.Fatalf("Check = %v", err)
		}
		replica.Resume(t)
		checkEventually(t, b, true, "Check once the replica is back")
		if err := b.Update(context.Background(), tp, setN(202)); err != nil {
			t.Fatalf("update once the replica is back: %v", err)
		}
		if got := get(t, rawReplica, b.name(tp)); got != "202" {
			t.Fatalf("entity = %q on the replica, want 202", got)
		}
	})
}

// With Redis's own min-replicas-to-write (the README's advice beside
// replicas), a master short of replicas refuses the compare-and-set before
// it writes anything: broker_unavailable, nothing committed, not "may have
// been applied".
func TestRedisReplicasWithMinReplicasToWrite(t *testing.T) {
	srv := redistest.NewLocal(t) // a server of its own: no replica
	raw := srv.Client(t)
	if err := raw.ConfigSet(context.Background(), "min-replicas-to-write", "1").Err(); err != nil {
		t.Fatal(err)
	}
	b := newTestRedis(t, srv, RedisOptions{Prefix: srv.Prefix(t), Replicas: 1})
	tp := Topic{"rep", "refused"}
	err := b.Update(context.Background(), tp, setN(1))
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrOutcomeUnknown) || !strings.Contains(err.Error(), "NOREPLICAS") {
		t.Fatalf("update refused for want of replicas: err = %v, want broker_unavailable (NOREPLICAS), not outcome unknown", err)
	}
	if keys := raw.Keys(context.Background(), "*").Val(); len(keys) != 0 {
		t.Fatalf("the refused update wrote %v", keys)
	}
}
