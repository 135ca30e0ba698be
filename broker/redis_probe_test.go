package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/electric-socket/electric-socket/broker/redistest"
	"github.com/electric-socket/electric-socket/tests/testkit"
)

// flow publishes numbered envelopes on tp from pub every 10ms until the
// test ends, and returns the number of the last one published.
func flow(t *testing.T, pub *Redis, tp Topic) *atomic.Int64 {
	t.Helper()
	var last atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := int64(1); ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			if err := pub.Publish(context.Background(), tp, Envelope{Target: "x", Message: json.RawMessage(fmt.Sprint(i))}); err == nil {
				last.Store(i)
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	return &last
}

// receivedAfter waits until got delivers a message numbered above n, and
// returns it.
func receivedAfter(t *testing.T, got <-chan Envelope, n int64, what string) int64 {
	t.Helper()
	deadline := time.After(waitBound)
	for {
		select {
		case e := <-got:
			var i int64
			json.Unmarshal(e.Message, &i)
			if i > n {
				return i
			}
		case <-deadline:
			t.Fatalf("no message published after #%d received within %v: %s", n, waitBound, what)
		}
	}
}

func checkEventually(t *testing.T, b *Redis, healthy bool, what string) error {
	t.Helper()
	var err error
	testkit.Eventually(t, waitBound, what, func() bool {
		err = b.Check(context.Background())
		return (err == nil) == healthy
	})
	return err
}

// TestRedisPubSubHealsAfterClientKill kills every pub/sub connection of the
// server (CLIENT KILL TYPE pubsub) while messages flow: delivery resumes by
// itself, and Check reports the broker healthy again.
func TestRedisPubSubHealsAfterClientKill(t *testing.T) {
	srv := redistest.NewLocal(t) // CLIENT KILL TYPE pubsub would hit other tests on a shared server
	prefix := srv.Prefix(t)
	b := newTestRedis(t, srv, RedisOptions{Prefix: prefix, ProbeInterval: 100 * time.Millisecond})
	pub := newTestRedis(t, srv, RedisOptions{Prefix: prefix})
	raw := srv.Client(t)
	tp := Topic{"chat", "room1"}
	got := make(chan Envelope, 4096)
	if _, err := b.Subscribe(context.Background(), tp, func(e Envelope) { got <- e }); err != nil {
		t.Fatal(err)
	}
	checkEventually(t, b, true, "the first probe to come back")
	last := flow(t, pub, tp)
	receivedAfter(t, got, 0, "before the kill")

	for round := 0; round < 3; round++ {
		killed, err := raw.Do(context.Background(), "client", "kill", "type", "pubsub").Int()
		if err != nil || killed < 1 {
			t.Fatalf("CLIENT KILL TYPE pubsub: %d killed, %v", killed, err)
		}
		at := last.Load()
		receivedAfter(t, got, at, fmt.Sprintf("after CLIENT KILL TYPE pubsub (round %d)", round))
		checkEventually(t, b, true, "Check to report the broker healthy after the kill")
	}
}

// TestRedisPubSubProbeDetectsAStall puts a proxy between the broker and
// Redis that, at some point, stops forwarding anything on the subscription
// connection without closing it. The probe notices, Check fails, the
// connection is replaced, delivery resumes and Check passes again.
func TestRedisPubSubProbeDetectsAStall(t *testing.T) {
	srv := redistest.New(t)
	proxy := redistest.NewProxy(t, srv)
	prefix := srv.Prefix(t)
	logs := &testkit.LogBuffer{}
	// What Check says at the moment the broker logs that it replaces the
	// connection (the window is short: a probe comes back on the new one
	// a moment later).
	var broker atomic.Pointer[Redis]
	checked := make(chan error, 1)
	log := slog.New(&testkit.OnLog{Handler: logs.Logger().Handler(), Match: "replacing its connection", Do: func() {
		if b := broker.Load(); b != nil {
			select {
			case checked <- b.Check(context.Background()):
			default:
			}
		}
	}})
	b, err := NewRedis(context.Background(), RedisOptions{URL: proxy.URL, Prefix: prefix,
		ProbeInterval: 100 * time.Millisecond, ProbeTimeout: 300 * time.Millisecond, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	broker.Store(b)
	t.Cleanup(func() { b.Close() })
	pub := newTestRedis(t, srv, RedisOptions{Prefix: prefix})
	tp := Topic{"chat", "room1"}
	got := make(chan Envelope, 4096)
	if _, err := b.Subscribe(context.Background(), tp, func(e Envelope) { got <- e }); err != nil {
		t.Fatal(err)
	}
	checkEventually(t, b, true, "the first probe to come back")
	last := flow(t, pub, tp)
	receivedAfter(t, got, 0, "before the stall")

	if n := proxy.StallPubSub(); n != 1 {
		t.Fatalf("stalled %d subscription connections, want 1", n)
	}
	at := last.Load()
	select {
	case err = <-checked:
	case <-time.After(waitBound):
		t.Fatalf("the stall was not detected within %v:\n%s", waitBound, logs.String())
	}
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "no probe came back") {
		t.Errorf("Check while the connection is replaced: %v, want an ErrUnavailable saying no probe came back", err)
	}
	receivedAfter(t, got, at, "after the stall: the connection must be replaced")
	checkEventually(t, b, true, "Check to report the broker healthy once a probe came back")
	if !strings.Contains(logs.String(), "replacing its connection") {
		t.Errorf("the log does not say the connection was replaced:\n%s", logs.String())
	}
	t.Logf("detected: %v", err)
}

// TestRedisCheckFollowsTheServer: Check fails while Redis is down and
// passes again once it is back and a probe came through.
func TestRedisCheckFollowsTheServer(t *testing.T) {
	srv := redistest.NewLocal(t)
	b := newTestRedis(t, srv, RedisOptions{ProbeInterval: 50 * time.Millisecond, Timeout: 200 * time.Millisecond})
	var c Checker = b
	checkEventually(t, b, true, "the first probe")
	srv.Stop(t)
	if err := checkEventually(t, b, false, "Check to fail with Redis down"); err == nil || !strings.Contains(err.Error(), "broker_unavailable") {
		t.Fatalf("Check = %v", err)
	}
	srv.Start(t)
	checkEventually(t, b, true, "Check to pass with Redis back")
	if err := c.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
}
