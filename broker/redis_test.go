package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/electric-socket/electric-socket/broker/redistest"
	"github.com/electric-socket/electric-socket/tests/testkit"
)

// waitBound bounds every single wait of these tests.
const waitBound = 10 * time.Second

// newTestRedis connects a Redis broker to srv under a prefix of its own
// (unless o sets one), closed when the test ends.
func newTestRedis(t *testing.T, srv *redistest.Server, o RedisOptions) *Redis {
	t.Helper()
	o.URL = srv.URL
	if o.Prefix == "" {
		o.Prefix = srv.Prefix(t)
	}
	b, err := NewRedis(context.Background(), o)
	if err != nil {
		t.Fatalf("NewRedis: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func TestRedisContract(t *testing.T) {
	srv := redistest.New(t)
	runContract(t, func(t *testing.T) Broker {
		return newTestRedis(t, srv, RedisOptions{MaxRetries: DefaultMaxRetries, RetryBackoff: DefaultRetryBackoff})
	})
}

// TestRedisContractRESP2 runs the contract over RESP2 (go-redis speaks
// RESP3 by default), where pub/sub replies and PING replies look different.
func TestRedisContractRESP2(t *testing.T) {
	srv := redistest.New(t)
	url := srv.URL + "?protocol=2"
	if strings.Contains(srv.URL, "?") {
		url = srv.URL + "&protocol=2"
	}
	runContract(t, func(t *testing.T) Broker {
		b, err := NewRedis(context.Background(), RedisOptions{URL: url, Prefix: srv.Prefix(t), MaxRetries: DefaultMaxRetries, RetryBackoff: DefaultRetryBackoff})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b
	})
}

func TestRedisEntityIsJSONStringAtPrefixedKey(t *testing.T) {
	srv := redistest.New(t)
	b := newTestRedis(t, srv, RedisOptions{})
	raw := srv.Client(t)
	ctx := context.Background()
	tp := Topic{"chat", "room1"}
	key := b.prefix + "chat.room1"

	mustUpdate(t, b, tp, func([]byte, bool) ([]byte, Op, error) { return []byte(`{"members":{"alice":"c1"}}`), Set, nil })
	if got, err := raw.Get(ctx, key).Result(); err != nil || got != `{"members":{"alice":"c1"}}` {
		t.Fatalf("GET %s = %q, %v", key, got, err)
	}
	if typ := raw.Type(ctx, key).Val(); typ != "string" {
		t.Fatalf("TYPE %s = %s, want string", key, typ)
	}

	// Another program's write is what the next update sees.
	raw.Set(ctx, key, `{"n":7}`, 0)
	if got := string(read(t, b, tp)); got != `{"n":7}` {
		t.Fatalf("update saw %s, want the value written outside", got)
	}

	mustUpdate(t, b, tp, func([]byte, bool) ([]byte, Op, error) { return []byte(`{"n":8}`), Abort, nil })
	if got := raw.Get(ctx, key).Val(); got != `{"n":7}` {
		t.Fatalf("abort changed the entity to %s", got)
	}
	mustUpdate(t, b, tp, func([]byte, bool) ([]byte, Op, error) { return nil, Delete, nil })
	if n := raw.Exists(ctx, key).Val(); n != 0 {
		t.Fatalf("delete left %s", key)
	}
}

func TestRedisRetriesARealConflict(t *testing.T) {
	srv := redistest.New(t)
	b := newTestRedis(t, srv, RedisOptions{MaxRetries: 3})
	raw := srv.Client(t)
	tp := Topic{"chat", "room1"}
	key := b.prefix + "chat.room1"
	raw.Set(context.Background(), key, `1`, 0)

	type call struct {
		cur     string
		retried bool
	}
	var calls []call
	mustUpdate(t, b, tp, func(cur []byte, retried bool) ([]byte, Op, error) {
		calls = append(calls, call{string(cur), retried})
		if len(calls) == 1 {
			raw.Set(context.Background(), key, `10`, 0) // another instance gets in first
		}
		var n int
		json.Unmarshal(cur, &n)
		return []byte(fmt.Sprint(n + 1)), Set, nil
	})
	want := []call{{"1", false}, {"10", true}}
	if fmt.Sprint(calls) != fmt.Sprint(want) {
		t.Fatalf("calls (current, retried) = %v, want %v", calls, want)
	}
	if got := raw.Get(context.Background(), key).Val(); got != "11" {
		t.Fatalf("committed %s, want 11 (the retry's result)", got)
	}
}

func TestRedisConflictLimitCommitsNothing(t *testing.T) {
	srv := redistest.New(t)
	b := newTestRedis(t, srv, RedisOptions{MaxRetries: 2})
	raw := srv.Client(t)
	key := b.prefix + "chat.room1"
	calls := 0
	err := b.Update(context.Background(), Topic{"chat", "room1"}, func([]byte, bool) ([]byte, Op, error) {
		calls++
		raw.Set(context.Background(), key, fmt.Sprintf(`{"other":%d}`, calls), 0)
		return []byte(`{"mine":true}`), Set, nil
	})
	if !errors.Is(err, ErrConflict) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrConflict", err)
	}
	if calls != 3 {
		t.Fatalf("fn ran %d times, want 1 + 2 retries", calls)
	}
	if got := raw.Get(context.Background(), key).Val(); got != `{"other":3}` {
		t.Fatalf("entity = %s: a conflicting update committed", got)
	}
	// Deleting is compare-and-set too.
	err = b.Update(context.Background(), Topic{"chat", "room1"}, func([]byte, bool) ([]byte, Op, error) {
		calls++
		raw.Set(context.Background(), key, fmt.Sprintf(`{"other":%d}`, calls), 0)
		return nil, Delete, nil
	})
	if !errors.Is(err, ErrConflict) || raw.Exists(context.Background(), key).Val() != 1 {
		t.Fatalf("conflicting delete: err = %v, key exists = %d", err, raw.Exists(context.Background(), key).Val())
	}
}

func TestRedisCreateConflictsWithAnotherCreate(t *testing.T) {
	srv := redistest.New(t)
	b := newTestRedis(t, srv, RedisOptions{MaxRetries: 1})
	raw := srv.Client(t)
	key := b.prefix + "chat.room1"
	var seen []string
	mustUpdate(t, b, Topic{"chat", "room1"}, func(cur []byte, _ bool) ([]byte, Op, error) {
		if cur == nil {
			seen = append(seen, "absent")
			raw.Set(context.Background(), key, `{"first":"other"}`, 0)
		} else {
			seen = append(seen, string(cur))
		}
		return []byte(`{"mine":true}`), Set, nil
	})
	if fmt.Sprint(seen) != `[absent {"first":"other"}]` {
		t.Fatalf("fn saw %v: creating over an entity created meanwhile must conflict", seen)
	}
}

func TestRedisUpdateErrors(t *testing.T) {
	srv := redistest.New(t)
	b := newTestRedis(t, srv, RedisOptions{MaxRetries: DefaultMaxRetries, RetryBackoff: 50 * time.Millisecond})
	raw := srv.Client(t)
	tp := Topic{"chat", "room1"}

	t.Run("context cancelled before", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := b.Update(ctx, tp, func([]byte, bool) ([]byte, Op, error) { return []byte(`1`), Set, nil })
		if !errors.Is(err, context.Canceled) || errors.Is(err, ErrUnavailable) {
			t.Fatalf("err = %v, want context.Canceled and not ErrUnavailable", err)
		}
		_, err = b.Subscribe(ctx, tp, func(Envelope) {})
		if !errors.Is(err, context.Canceled) || errors.Is(err, ErrUnavailable) {
			t.Fatalf("subscribe: err = %v, want context.Canceled", err)
		}
		if b.Subscriptions() != 0 {
			t.Fatal("a failed Subscribe left a subscription")
		}
	})

	t.Run("context cancelled while retrying", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		key := b.prefix + "chat.room1"
		err := b.Update(ctx, tp, func(cur []byte, retried bool) ([]byte, Op, error) {
			raw.Set(context.Background(), key, fmt.Sprint(time.Now().UnixNano()), 0)
			if retried {
				cancel()
			}
			return []byte(`1`), Set, nil
		})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	})

	t.Run("a key that holds no string", func(t *testing.T) {
		key := b.prefix + "chat.list"
		raw.RPush(context.Background(), key, "x")
		err := b.Update(context.Background(), Topic{"chat", "list"}, func([]byte, bool) ([]byte, Op, error) { return nil, Abort, nil })
		if err == nil || errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), key) {
			t.Fatalf("err = %v, want a WRONGTYPE error naming %s, not ErrUnavailable", err, key)
		}
	})
}

// numSub returns how many connections Redis has subscribed to channel.
func numSub(t *testing.T, raw *redis.Client, channel string) int64 {
	t.Helper()
	m, err := raw.PubSubNumSub(context.Background(), channel).Result()
	if err != nil {
		t.Fatal(err)
	}
	return m[channel]
}

// pubsubClients counts the pub/sub connections named electric-socket.
func pubsubClients(t *testing.T, raw *redis.Client) int {
	t.Helper()
	list, err := raw.Do(context.Background(), "client", "list", "type", "pubsub").Text()
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(list, "name=electric-socket ")
}

func receiveWithin(t *testing.T, ch <-chan Envelope, what string) Envelope {
	t.Helper()
	select {
	case e := <-ch:
		return e
	case <-time.After(waitBound):
		t.Fatalf("no %s within %v", what, waitBound)
	}
	return Envelope{}
}

func TestRedisSubscriptionsShareOneConnectionAndAreCounted(t *testing.T) {
	srv := redistest.New(t)
	prefix := srv.Prefix(t)
	raw := srv.Client(t)
	basePubsub := pubsubClients(t, raw)
	b := newTestRedis(t, srv, RedisOptions{Prefix: prefix})
	other := newTestRedis(t, srv, RedisOptions{Prefix: prefix}) // another instance
	ctx := context.Background()
	tp := Topic{"chat", "room1"}
	channel := prefix + "chat.room1"

	got1, got2 := make(chan Envelope, 8), make(chan Envelope, 8)
	s1, err := b.Subscribe(ctx, tp, func(e Envelope) { got1 <- e })
	if err != nil {
		t.Fatal(err)
	}
	s2, err := b.Subscribe(ctx, tp, func(e Envelope) { got2 <- e })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Subscribe(ctx, Topic{"chat", "room2"}, func(Envelope) {}); err != nil {
		t.Fatal(err)
	}
	if n := numSub(t, raw, channel); n != 1 {
		t.Fatalf("PUBSUB NUMSUB %s = %d, want 1: two local subscriptions share one SUBSCRIBE", channel, n)
	}
	if n := pubsubClients(t, raw) - basePubsub; n != 2 {
		t.Fatalf("%d pub/sub connections for two brokers, one with two topics, want 2 (one each: its probe subscribes at start)", n)
	}

	env := Envelope{Target: "bob", Message: json.RawMessage(`{"text":"hi"}`), BrokerKey: "room1", Source: "c1"}
	if err := other.Publish(ctx, tp, env); err != nil {
		t.Fatal(err)
	}
	receiveWithin(t, got1, "delivery to the first subscription")
	receiveWithin(t, got2, "delivery to the second subscription")

	s1.Close()
	if n := numSub(t, raw, channel); n != 1 {
		t.Fatalf("NUMSUB = %d after closing one of two subscriptions, want 1", n)
	}
	if err := other.Publish(ctx, tp, env); err != nil {
		t.Fatal(err)
	}
	receiveWithin(t, got2, "delivery after the other subscription closed")
	s2.Close()
	s2.Close()
	testkit.Eventually(t, waitBound, "the last Close to unsubscribe", func() bool { return numSub(t, raw, channel) == 0 })
	if b.Subscriptions() != 1 {
		t.Fatalf("Subscriptions = %d, want 1 (room2)", b.Subscriptions())
	}
	select {
	case e := <-got1:
		t.Fatalf("closed subscription received %+v", e)
	default:
	}
}

func TestRedisEnvelopeOnTheWire(t *testing.T) {
	srv := redistest.New(t)
	b := newTestRedis(t, srv, RedisOptions{})
	raw := srv.Client(t)
	ctx := context.Background()
	tp := Topic{"chat", "room1"}
	channel := b.prefix + "chat.room1"

	ps := raw.Subscribe(ctx, channel)
	defer ps.Close()
	if _, err := ps.ReceiveTimeout(ctx, waitBound); err != nil { // the confirmation
		t.Fatal(err)
	}
	env := Envelope{Target: "bob", Message: json.RawMessage(`{"text":"hi","n":[1,2]}`), BrokerKey: "room1", Source: "c1"}
	if err := b.Publish(ctx, tp, env); err != nil {
		t.Fatal(err)
	}
	msg, err := ps.ReceiveTimeout(ctx, waitBound)
	if err != nil {
		t.Fatal(err)
	}
	m, ok := msg.(*redis.Message)
	want := `{"target":"bob","message":{"text":"hi","n":[1,2]},"broker_key":"room1","source":"c1"}`
	if !ok || m.Channel != channel || m.Payload != want {
		t.Fatalf("got %#v, want %s on %s", msg, want, channel)
	}

	// Another program's PUBLISH of an envelope reaches subscribers; a
	// payload that is no envelope is dropped and the loop goes on.
	got := make(chan Envelope, 4)
	if _, err := b.Subscribe(ctx, tp, func(e Envelope) { got <- e }); err != nil {
		t.Fatal(err)
	}
	raw.Publish(ctx, channel, "not json")
	raw.Publish(ctx, channel, want)
	if e := receiveWithin(t, got, "an envelope published by another program"); e.Target != "bob" || string(e.Message) != `{"text":"hi","n":[1,2]}` {
		t.Fatalf("envelope = %+v", e)
	}
}

// TestRedisActiveWhenSubscribeReturns has 4 goroutines subscribe to and
// unsubscribe from a topic each, again and again, and another instance (its
// own connections) publish right after each Subscribe returns: every message
// must arrive (SPEC 5.9) and no subscription is left. Everything the
// subscriber sends reaches Redis 10ms late, so a Subscribe that returned
// before Redis had its SUBSCRIBE (and the topic's other subscribers' state
// in flight) would let the publish overtake it and lose the message; with
// the wait, the order is guaranteed whatever the delay.
func TestRedisActiveWhenSubscribeReturns(t *testing.T) {
	srv := redistest.New(t)
	prefix := srv.Prefix(t)
	slow := &faultDialer{delay: 10 * time.Millisecond}
	b := newTestRedis(t, srv, RedisOptions{Prefix: prefix, dial: slow.dial})
	other := newTestRedis(t, srv, RedisOptions{Prefix: prefix})
	ctx := context.Background()
	const rounds = 25
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < rounds; i++ {
				tp := Topic{"chat", fmt.Sprintf("w%d", w)} // each worker subscribes and unsubscribes one topic again and again
				got := make(chan Envelope, 1)
				sub, err := b.Subscribe(ctx, tp, func(e Envelope) {
					select {
					case got <- e:
					default:
					}
				})
				if err != nil {
					t.Error(err)
					return
				}
				if err := other.Publish(ctx, tp, Envelope{Target: "x", Message: json.RawMessage(`1`)}); err != nil {
					t.Error(err)
					return
				}
				select {
				case <-got:
				case <-time.After(waitBound):
					t.Errorf("%s round %d: a message published right after Subscribe returned was not delivered", tp, i)
					return
				}
				sub.Close()
			}
		}()
	}
	wg.Wait()
	if n := b.Subscriptions(); n != 0 {
		t.Fatalf("%d subscriptions left", n)
	}
}

// TestRedisDrainsABurst: the receive loop keeps up with a burst (go-redis
// would drop messages from a full channel; the loop has none).
func TestRedisDrainsABurst(t *testing.T) {
	srv := redistest.New(t)
	prefix := srv.Prefix(t)
	b := newTestRedis(t, srv, RedisOptions{Prefix: prefix})
	other := newTestRedis(t, srv, RedisOptions{Prefix: prefix})
	ctx := context.Background()
	tp := Topic{"chat", "burst"}
	var n atomic.Int64
	if _, err := b.Subscribe(ctx, tp, func(Envelope) { n.Add(1) }); err != nil {
		t.Fatal(err)
	}
	const total = 5000
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < total/4; i++ {
				if err := other.Publish(ctx, tp, Envelope{Target: "x", Message: json.RawMessage(`{}`)}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	testkit.Eventually(t, waitBound, fmt.Sprintf("%d deliveries (have %d)", total, n.Load()), func() bool { return n.Load() == total })
}

func TestRedisDownAtStart(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	_, err = NewRedis(context.Background(), RedisOptions{URL: "redis://:secret@" + addr + "/0", Timeout: 300 * time.Millisecond})
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "PING") {
		t.Fatalf("err = %v, want ErrUnavailable naming %s and PING", err, addr)
	}
	if strings.Contains(err.Error(), "secret") {
		t.Fatalf("the error shows the password: %v", err)
	}
	_, err = NewRedis(context.Background(), RedisOptions{URL: "redis://h?no_such_option=1"})
	if err == nil || errors.Is(err, ErrUnavailable) {
		t.Fatalf("bad URL: err = %v", err)
	}
}

// TestRedisLostAndBack kills redis-server and starts it again on the same
// port: calls fail with ErrUnavailable while it is down, and the existing
// subscription works again afterwards with no manual step.
func TestRedisLostAndBack(t *testing.T) {
	srv := redistest.NewLocal(t)
	prefix := srv.Prefix(t)
	b := newTestRedis(t, srv, RedisOptions{Prefix: prefix, Timeout: 300 * time.Millisecond})
	ctx := context.Background()
	tp := Topic{"chat", "room1"}
	got := make(chan Envelope, 64)
	if _, err := b.Subscribe(ctx, tp, func(e Envelope) { got <- e }); err != nil {
		t.Fatal(err)
	}
	mustUpdate(t, b, tp, func([]byte, bool) ([]byte, Op, error) { return []byte(`1`), Set, nil })

	srv.Stop(t)
	key := prefix + "chat.room1"
	checks := map[string]func() error{
		"update": func() error {
			return b.Update(ctx, tp, func([]byte, bool) ([]byte, Op, error) { return []byte(`2`), Set, nil })
		},
		"publish":   func() error { return b.Publish(ctx, tp, Envelope{Target: "x", Message: json.RawMessage(`1`)}) },
		"subscribe": func() error { _, err := b.Subscribe(ctx, Topic{"chat", "room2"}, func(Envelope) {}); return err },
	}
	for op, call := range checks {
		err := call()
		name := key
		if op == "subscribe" {
			name = prefix + "chat.room2"
		}
		if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), op+" "+name) || !strings.Contains(err.Error(), srv.Addr) {
			t.Errorf("%s while Redis is down: err = %v, want ErrUnavailable naming %q and %s", op, err, op+" "+name, srv.Addr)
		}
	}
	if n := b.Subscriptions(); n != 1 {
		t.Fatalf("Subscriptions = %d while down, want 1 (room1; the failed room2 left nothing)", n)
	}

	srv.Start(t)
	testkit.Eventually(t, waitBound, "updates to work again", func() bool {
		return b.Update(ctx, tp, func([]byte, bool) ([]byte, Op, error) { return []byte(`3`), Set, nil }) == nil
	})
	// The restarted server has no scripts cached: EVALSHA fell back to EVAL.
	if got := string(read(t, b, tp)); got != "3" {
		t.Fatalf("entity = %s after restart, want 3", got)
	}
	other := newTestRedis(t, srv, RedisOptions{Prefix: prefix})
	deadline := time.Now().Add(waitBound)
	for i := 0; ; i++ {
		if err := other.Publish(ctx, tp, Envelope{Target: "x", Message: json.RawMessage(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-got:
			return // resubscribed by itself
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the subscription made before the restart receives nothing %v after it", waitBound)
		}
	}
}

func TestRedisClosed(t *testing.T) {
	srv := redistest.New(t)
	b := newTestRedis(t, srv, RedisOptions{})
	ctx := context.Background()
	tp := Topic{"chat", "room1"}
	sub, err := b.Subscribe(ctx, tp, func(Envelope) {})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	sub.Close()
	err = b.Update(ctx, tp, func([]byte, bool) ([]byte, Op, error) { return nil, Abort, nil })
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("update after Close: %v", err)
	}
	if err := b.Publish(ctx, tp, Envelope{}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("publish after Close: %v", err)
	}
	if _, err := b.Subscribe(ctx, tp, func(Envelope) {}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("subscribe after Close: %v", err)
	}
}

func TestRedisURL(t *testing.T) {
	tests := []struct {
		url   string
		check func(t *testing.T, r redisTarget)
		err   string // part of the error; "" = none
	}{
		{url: "redis://:secret@cache:6380/3", check: func(t *testing.T, r redisTarget) {
			o := r.single
			if o == nil || o.Addr != "cache:6380" || o.DB != 3 || o.Password != "secret" || o.TLSConfig != nil {
				t.Fatalf("options = %+v", o)
			}
			if o.DialTimeout != time.Second || o.ReadTimeout != time.Second || o.WriteTimeout != time.Second || o.MaxRetries != -1 || o.DialerRetries != 1 {
				t.Fatalf("timeouts/retries = %v %v %v %d %d", o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.MaxRetries, o.DialerRetries)
			}
			if r.String() != "redis cache:6380" {
				t.Fatalf("String = %q", r.String())
			}
		}},
		{url: "rediss://app:pw@cache.example.com/0?read_timeout=3s&dial_timeout=2&max_retries=5", check: func(t *testing.T, r redisTarget) {
			o := r.single
			if o.TLSConfig == nil || o.TLSConfig.ServerName != "cache.example.com" || o.Username != "app" || o.Password != "pw" || o.Addr != "cache.example.com:6379" {
				t.Fatalf("options = %+v", o)
			}
			if o.ReadTimeout != 3*time.Second || o.DialTimeout != 2*time.Second || o.WriteTimeout != time.Second || o.MaxRetries != -1 {
				t.Fatalf("read %v dial %v write %v retries %d", o.ReadTimeout, o.DialTimeout, o.WriteTimeout, o.MaxRetries)
			}
		}},
		{url: "unix:///run/redis.sock?db=2", check: func(t *testing.T, r redisTarget) {
			if o := r.single; o.Network != "unix" || o.Addr != "/run/redis.sock" || o.DB != 2 {
				t.Fatalf("options = %+v", o)
			}
		}},
		{url: "redis+sentinel://:spw@s1:26379/1?master_name=mymaster&addr=s2:26380&password=mpw", check: func(t *testing.T, r redisTarget) {
			o := r.failover
			if o == nil || o.MasterName != "mymaster" || strings.Join(o.SentinelAddrs, ",") != "s1:26379,s2:26380" ||
				o.SentinelPassword != "spw" || o.Password != "mpw" || o.DB != 1 || o.TLSConfig != nil || o.MaxRetries != -1 {
				t.Fatalf("options = %+v", o)
			}
			if r.String() != "redis sentinel master mymaster via s1:26379,s2:26380" {
				t.Fatalf("String = %q", r.String())
			}
		}},
		{url: "rediss+sentinel://s1?master_name=m", check: func(t *testing.T, r redisTarget) {
			if o := r.failover; o.TLSConfig == nil || o.SentinelAddrs[0] != "s1:6379" {
				t.Fatalf("options = %+v", o)
			}
		}},
		{url: "redis+cluster://u:p@n1:7000?addr=n2:7001&addr=n3:7002", check: func(t *testing.T, r redisTarget) {
			o := r.cluster
			if o == nil || strings.Join(o.Addrs, ",") != "n1:7000,n2:7001,n3:7002" || o.Username != "u" || o.Password != "p" ||
				o.TLSConfig != nil || o.MaxRetries != -1 || o.ReadTimeout != time.Second {
				t.Fatalf("options = %+v", o)
			}
			if r.String() != "redis cluster n1:7000,n2:7001,n3:7002" {
				t.Fatalf("String = %q", r.String())
			}
		}},
		{url: "rediss+cluster://n1:7000", check: func(t *testing.T, r redisTarget) {
			if r.cluster.TLSConfig == nil {
				t.Fatal("no TLS")
			}
		}},
		{url: "redis+sentinel://s1:26379", err: "master_name"},
		{url: "http://cache", err: "scheme must be one of"},
		{url: "redis+kafka://cache", err: "scheme must be one of"},
		{url: "unix+cluster:///x", err: "scheme must be one of"},
		{url: "redis://cache?nope=1", err: "nope"},
		{url: "redis://:secret@cache:port/0", err: "port"},
		{url: "redis://cache/x", err: "database"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			r, err := parseRedisURL(tt.url, time.Second)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want one with %q", err, tt.err)
				}
				if strings.Contains(err.Error(), "secret") {
					t.Fatalf("the error shows the password: %v", err)
				}
				if CheckRedisURL(tt.url) == nil {
					t.Fatal("CheckRedisURL accepts it")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, r)
			if err := CheckRedisURL(tt.url); err != nil {
				t.Fatalf("CheckRedisURL: %v", err)
			}
		})
	}
}

// faultDialer dials real connections that can delay what they send (each
// write reaches the server delay later, in order, while Write returns at
// once) or go silent (freeze: what is sent and received is dropped, as
// with a peer that vanished without closing).
type faultDialer struct {
	delay time.Duration

	mu    sync.Mutex
	conns []*faultConn
}

func (d *faultDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	fc := &faultConn{Conn: c, delay: d.delay, queue: make(chan delayed, 1024), closed: make(chan struct{})}
	if d.delay > 0 {
		go fc.send()
	}
	d.mu.Lock()
	d.conns = append(d.conns, fc)
	d.mu.Unlock()
	return fc, nil
}

// freeze makes every connection dialled so far silent.
func (d *faultDialer) freeze() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.conns {
		c.frozen.Store(true)
	}
}

type delayed struct {
	at   time.Time
	data []byte
}

type faultConn struct {
	net.Conn
	delay     time.Duration
	queue     chan delayed
	frozen    atomic.Bool
	closeOnce sync.Once
	closed    chan struct{}
}

func (c *faultConn) Write(p []byte) (int, error) {
	if c.frozen.Load() {
		return len(p), nil
	}
	if c.delay <= 0 {
		return c.Conn.Write(p)
	}
	select {
	case c.queue <- delayed{time.Now().Add(c.delay), append([]byte(nil), p...)}:
		return len(p), nil
	case <-c.closed:
		return 0, net.ErrClosed
	}
}

func (c *faultConn) send() {
	for {
		select {
		case d := <-c.queue:
			time.Sleep(time.Until(d.at))
			if !c.frozen.Load() {
				c.Conn.Write(d.data)
			}
		case <-c.closed:
			return
		}
	}
}

func (c *faultConn) Read(p []byte) (int, error) {
	for {
		n, err := c.Conn.Read(p)
		if !c.frozen.Load() || err != nil {
			return n, err
		}
	}
}

func (c *faultConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// TestRedisSubscribeWaitsForRedis delays everything the subscriber sends by
// 50ms: a Subscribe that returned before Redis processed its SUBSCRIBE would
// miss the message another instance publishes right after it.
func TestRedisSubscribeWaitsForRedis(t *testing.T) {
	srv := redistest.New(t)
	prefix := srv.Prefix(t)
	slow := &faultDialer{delay: 50 * time.Millisecond}
	b := newTestRedis(t, srv, RedisOptions{Prefix: prefix, dial: slow.dial})
	other := newTestRedis(t, srv, RedisOptions{Prefix: prefix})
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		tp := Topic{"chat", fmt.Sprint("room", i)}
		got := make(chan Envelope, 1)
		if _, err := b.Subscribe(ctx, tp, func(e Envelope) { got <- e }); err != nil {
			t.Fatal(err)
		}
		if err := other.Publish(ctx, tp, Envelope{Target: "x", Message: json.RawMessage(`1`)}); err != nil {
			t.Fatal(err)
		}
		receiveWithin(t, got, fmt.Sprintf("message published right after Subscribe(%s) returned", tp))
	}
}

// TestRedisReplacesASilentSubscriptionConnection freezes the subscriber's
// connections (no error, no data: a vanished peer): the health check
// notices the missing PING reply and subscribes again on a new connection.
func TestRedisReplacesASilentSubscriptionConnection(t *testing.T) {
	srv := redistest.New(t)
	prefix := srv.Prefix(t)
	faults := &faultDialer{}
	b := newTestRedis(t, srv, RedisOptions{Prefix: prefix, Timeout: 100 * time.Millisecond, dial: faults.dial})
	other := newTestRedis(t, srv, RedisOptions{Prefix: prefix})
	ctx := context.Background()
	tp := Topic{"chat", "room1"}
	got := make(chan Envelope, 64)
	if _, err := b.Subscribe(ctx, tp, func(e Envelope) { got <- e }); err != nil {
		t.Fatal(err)
	}
	faults.freeze()
	deadline := time.Now().Add(waitBound)
	for i := 0; ; i++ {
		if err := other.Publish(ctx, tp, Envelope{Target: "x", Message: json.RawMessage(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-got:
			return
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing delivered %v after the subscription connection went silent", waitBound)
		}
	}
}

// TestRedisSilentServerFailsFast freezes the connections of a broker: an
// update on one fails with ErrUnavailable after the read timeout instead of
// hanging, and the next update, on a new connection, works. (The update is
// of a key the broker has not cached, so that it starts with a GET: a
// compare-and-set whose reply is lost is sent again on a new connection,
// TestRedisLostReplyAppliesOnce.)
func TestRedisSilentServerFailsFast(t *testing.T) {
	srv := redistest.New(t)
	faults := &faultDialer{}
	b := newTestRedis(t, srv, RedisOptions{Timeout: 200 * time.Millisecond, dial: faults.dial})
	tp := Topic{"chat", "room1"}
	mustUpdate(t, b, tp, func([]byte, bool) ([]byte, Op, error) { return []byte(`1`), Set, nil })
	faults.freeze()
	err := b.Update(context.Background(), Topic{"chat", "room2"}, func([]byte, bool) ([]byte, Op, error) { return []byte(`2`), Set, nil })
	var ne net.Error
	if !errors.Is(err, ErrUnavailable) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("update on a silent connection: err = %v, want ErrUnavailable from a read timeout", err)
	}
	// The pool may hold another frozen connection (the probe's PUBLISH can
	// have run beside the first update): each fails once, then is replaced.
	var got []byte
	for tries := 1; ; tries++ {
		err := b.Update(context.Background(), tp, func(cur []byte, _ bool) ([]byte, Op, error) {
			got = append([]byte(nil), cur...)
			return nil, Abort, nil
		})
		if err == nil {
			break
		}
		if !errors.Is(err, ErrUnavailable) || tries == 3 {
			t.Fatalf("read after the freeze, try %d: %v", tries, err)
		}
	}
	if string(got) != "1" {
		t.Fatalf("entity = %s, want 1", got)
	}
}

// TestRedisCloseLeavesNoGoroutine: a closed broker leaves no goroutine
// behind (its receive loop, its health check, go-redis's).
func TestRedisCloseLeavesNoGoroutine(t *testing.T) {
	srv := redistest.New(t)
	ctx := context.Background()
	before := runtime.NumGoroutine()
	for i := 0; i < 3; i++ {
		b, err := NewRedis(ctx, RedisOptions{URL: srv.URL, Prefix: srv.Prefix(t)})
		if err != nil {
			t.Fatal(err)
		}
		tp := Topic{"chat", "room1"}
		sub, err := b.Subscribe(ctx, tp, func(Envelope) {})
		if err != nil {
			t.Fatal(err)
		}
		mustUpdate(t, b, tp, func([]byte, bool) ([]byte, Op, error) { return []byte(`1`), Set, nil })
		if err := b.Publish(ctx, tp, Envelope{Target: "x", Message: json.RawMessage(`1`)}); err != nil {
			t.Fatal(err)
		}
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
