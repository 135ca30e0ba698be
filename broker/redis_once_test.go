package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/electric-socket/electric-socket/broker/redistest"
	"github.com/electric-socket/electric-socket/tests/testkit"
)

// onceEntity is the entity of the exactly-once test: N counts every
// committed update, Applied counts, per logical update, how many committed
// values it went into, and Others counts another writer's updates.
type onceEntity struct {
	N       int            `json:"n"`
	Applied map[string]int `json:"applied"`
	Others  int            `json:"others"`
}

func decodeOnce(t *testing.T, cur []byte) onceEntity {
	var e onceEntity
	if cur != nil {
		if err := json.Unmarshal(cur, &e); err != nil {
			t.Errorf("entity %s: %v", cur, err)
		}
	}
	if e.Applied == nil {
		e.Applied = map[string]int{}
	}
	return e
}

// TestRedisLostReplyAppliesOnce sends 100 logical updates through a proxy
// that, for each, lets the compare-and-set reach Redis, lets Redis run it,
// and drops the reply and the connection. Meanwhile another instance keeps
// updating the same entity, so a naive resend would find the entity
// changed, run the update function again and apply the update a second
// time. Each logical update records its own name inside the value it
// commits: a double apply would show as a count of 2 (and as N too high),
// a lost one as a missing name.
func TestRedisLostReplyAppliesOnce(t *testing.T) {
	srv := redistest.New(t)
	proxy := redistest.NewProxy(t, srv)
	prefix := srv.Prefix(t)
	logs := &testkit.LogBuffer{}
	b, err := NewRedis(context.Background(), RedisOptions{URL: proxy.URL, Prefix: prefix,
		MaxRetries: DefaultMaxRetries, RetryBackoff: DefaultRetryBackoff, Log: logs.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	other := newTestRedis(t, srv, RedisOptions{Prefix: prefix, MaxRetries: DefaultMaxRetries, RetryBackoff: DefaultRetryBackoff})
	tp := Topic{"once", "counter"}
	ctx := context.Background()

	stop := make(chan struct{})
	var others sync.WaitGroup
	var otherCommits int
	// quiet, while the test holds it, keeps the other writer out: the
	// updates made then find the entity as this broker last left it, so
	// their first send is applied before its reply is cut, and the resend
	// must find the operation's record. The others mostly lose to the
	// other writer first, which wrote meanwhile.
	var quiet sync.Mutex
	others.Add(1)
	go func() { // the other instance
		defer others.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			quiet.Lock()
			err := other.Update(ctx, tp, func(cur []byte, _ bool) ([]byte, Op, error) {
				e := decodeOnce(t, cur)
				e.N++
				e.Others++
				next, err := json.Marshal(e)
				return next, Set, err
			})
			quiet.Unlock()
			if err != nil {
				t.Errorf("the other writer: %v", err)
				return
			}
			otherCommits++
			time.Sleep(5 * time.Millisecond) // busy, but not so busy that the proxied writer never wins
		}
	}()

	const updates = 100
	for i := 0; i < updates; i++ {
		name := fmt.Sprint("u", i)
		if i%10 == 0 {
			quiet.Lock() // for u<i> and u<i+1>: u<i+1> follows u<i> with nobody between
		}
		cuts := proxy.Cuts()
		proxy.CutReply("evalsha")
		err := b.Update(ctx, tp, func(cur []byte, _ bool) ([]byte, Op, error) {
			e := decodeOnce(t, cur)
			e.N++
			e.Applied[name]++
			next, err := json.Marshal(e)
			return next, Set, err
		})
		if err != nil {
			t.Fatalf("update %s: %v (its reply was lost; Update must find out it was applied)", name, err)
		}
		if got := proxy.Cuts(); got != cuts+1 {
			t.Fatalf("update %s: the proxy cut %d replies, want 1: the test did not lose the reply", name, got-cuts)
		}
		if i%10 == 1 {
			quiet.Unlock()
		}
	}
	close(stop)
	others.Wait()

	var final onceEntity
	mustUpdate(t, b, tp, func(cur []byte, _ bool) ([]byte, Op, error) {
		final = decodeOnce(t, cur)
		return nil, Abort, nil
	})
	for i := 0; i < updates; i++ {
		if n := final.Applied[fmt.Sprint("u", i)]; n != 1 {
			t.Errorf("logical update u%d applied %d times, want exactly 1", i, n)
		}
	}
	if len(final.Applied) != updates || final.Others != otherCommits || final.N != updates+otherCommits {
		t.Errorf("entity: n %d, %d logical updates, others %d; want n %d = %d + %d (the other writer's commits)",
			final.N, len(final.Applied), final.Others, updates+otherCommits, updates, otherCommits)
	}
	// A cut reply was either "applied" (the resend found the operation's
	// record) or "conflict" (the other writer had changed the entity before
	// the first send, which wrote nothing; the resend saw the same).
	resolved := strings.Count(logs.String(), "lost compare-and-set reply was resolved")
	before := strings.Count(logs.String(), "applied_before=true")
	if resolved != updates || before == 0 {
		t.Errorf("%d lost replies resolved (%d of them applied before), want %d (and some applied before):\n%s",
			resolved, before, updates, logs.String())
	}
	t.Logf("%d lost replies: %d had been applied (the resend found the operation's record), %d had lost to the other writer; "+
		"each logical update applied exactly once; the other writer committed %d updates meanwhile",
		updates, before, updates-before, otherCommits)
}

// TestRedisOperationAppliesOnce: an operation id given with WithOperation
// applies once, whichever broker (instance) runs it; a second run fails
// with ErrApplied and commits nothing. The record lives under the entity's
// hash tag and goes with ForgetOperation.
func TestRedisOperationAppliesOnce(t *testing.T) {
	srv := redistest.New(t)
	prefix := srv.Prefix(t)
	a := newTestRedis(t, srv, RedisOptions{Prefix: prefix})
	b := newTestRedis(t, srv, RedisOptions{Prefix: prefix})
	raw := srv.Client(t)
	tp := Topic{"chat", "room1"}
	ctx := WithOperation(context.Background(), "close:c1", time.Minute)
	inc := func(cur []byte, _ bool) ([]byte, Op, error) {
		var n int
		json.Unmarshal(cur, &n)
		return []byte(fmt.Sprint(n + 1)), Set, nil
	}
	if err := a.Update(ctx, tp, inc); err != nil {
		t.Fatal(err)
	}
	if err := b.Update(ctx, tp, inc); !errors.Is(err, ErrApplied) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("the same operation on another instance: err = %v, want ErrApplied", err)
	}
	if err := a.Update(ctx, tp, inc); !errors.Is(err, ErrApplied) {
		t.Fatalf("the same operation again: err = %v, want ErrApplied", err)
	}
	if got := raw.Get(context.Background(), prefix+"chat.room1").Val(); got != "1" {
		t.Fatalf("entity = %s, want 1", got)
	}
	rec := "{" + prefix + "chat.room1}:op:close:c1"
	if ttl := raw.PTTL(context.Background(), rec).Val(); ttl <= 0 || ttl > time.Minute {
		t.Fatalf("PTTL %s = %v, want the minute WithOperation asked for", rec, ttl)
	}
	mustUpdate(t, a, tp, inc) // an update of its own: a new random operation
	if err := b.ForgetOperation(context.Background(), tp, "close:c1"); err != nil {
		t.Fatal(err)
	}
	if err := a.Update(ctx, tp, inc); err != nil {
		t.Fatalf("after ForgetOperation: %v", err)
	}
	if got := raw.Get(context.Background(), prefix+"chat.room1").Val(); got != "3" {
		t.Fatalf("entity = %s, want 3", got)
	}
}

func TestOpKeySharesTheEntitySlot(t *testing.T) {
	for _, tt := range []struct{ key, want string }{
		{"es:chat.room1", "{es:chat.room1}:op:x"},
		{"es:chat.{room}1", "es:chat.{room}1:op:x"},
		{"{app}es:chat.room1", "{app}es:chat.room1:op:x"},
	} {
		if got := opKey(tt.key, "x"); got != tt.want {
			t.Errorf("opKey(%q) = %q, want %q", tt.key, got, tt.want)
		}
	}
}

// TestRedisUnknownOutcomeIsSaid: when the reply of a compare-and-set is
// lost and Redis cannot be asked again in time, Update does not know
// whether the update was applied, and its error says so: it matches
// ErrOutcomeUnknown (and ErrUnavailable), never a plain "not committed".
// Here the update WAS applied (the proxy forwarded it and dropped the
// reply, and every reply to the resends), which is why no other answer
// would be honest.
func TestRedisUnknownOutcomeIsSaid(t *testing.T) {
	srv := redistest.New(t)
	proxy := redistest.NewProxy(t, srv)
	prefix := srv.Prefix(t)
	// Timeout bounds how long a lost reply is asked about (5 x Timeout, at
	// least 1s): the subject of this test.
	b, err := NewRedis(context.Background(), RedisOptions{URL: proxy.URL, Prefix: prefix, Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	tp := Topic{"once", "unknown"}
	if err := casScript.Load(context.Background(), srv.Client(t)).Err(); err != nil {
		t.Fatal(err) // an EVALSHA is run, not answered NOSCRIPT
	}
	proxy.CutReplies("evalsha") // the first send and every resend: Redis runs them, no reply comes back
	err = b.Update(context.Background(), tp, func(cur []byte, _ bool) ([]byte, Op, error) {
		return []byte(`{"n":1}`), Set, nil
	})
	if !errors.Is(err, ErrOutcomeUnknown) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrOutcomeUnknown (and ErrUnavailable)", err)
	}
	if v, _ := srv.Client(t).Get(context.Background(), prefix+"once.unknown").Result(); v != `{"n":1}` {
		t.Fatalf("the entity holds %q: the test meant the update to be applied", v)
	}
}

// TestRedisLineRefusedWhileResolving: while an update's lost reply is being
// resolved and Redis does not answer (here it is stopped with SIGSTOP after
// the update was sent), the updates of the same key behind it are told so at
// once (ErrUnavailable, not ErrOutcomeUnknown: none of them ran), instead of
// waiting in the key's line for the outage to end and then hearing about it.
// (A reply lost while Redis answers is resolved and refuses nothing:
// TestRedisCutPipelineAppliesOnce.)
func TestRedisLineRefusedWhileResolving(t *testing.T) {
	srv := redistest.New(t)
	b, err := NewRedis(context.Background(), RedisOptions{URL: srv.URL, Prefix: srv.Prefix(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	tp := Topic{"once", "line"}
	mustUpdate(t, b, tp, func(cur []byte, _ bool) ([]byte, Op, error) { return []byte(`{"n":0}`), Set, nil })
	srv.Pause(t) // the next compare-and-set is sent (the value is cached) and never answered
	t.Cleanup(func() { srv.Resume(t) })

	firstCtx, cancelFirst := context.WithCancel(context.Background())
	defer cancelFirst()
	ran := make(chan struct{}, 1)
	first := make(chan error, 1)
	go func() {
		first <- b.Update(firstCtx, tp, func(cur []byte, _ bool) ([]byte, Op, error) {
			select {
			case ran <- struct{}{}:
			default:
			}
			return []byte(`{"n":1}`), Set, nil
		})
	}()
	select {
	case <-ran: // the first update holds the key's line
	case err := <-first:
		t.Fatalf("the first update returned before its function ran: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the first update's function did not run within 10s")
	}

	for i := range 3 {
		secondRan := false
		err := b.Update(context.Background(), tp, func(cur []byte, _ bool) ([]byte, Op, error) {
			secondRan = true
			return []byte(`{"n":2}`), Set, nil
		})
		if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrOutcomeUnknown) {
			t.Fatalf("update %d behind a lost reply: err = %v, want ErrUnavailable (nothing committed), not outcome unknown", i, err)
		}
		if secondRan {
			t.Fatalf("update %d behind a lost reply ran its function", i)
		}
	}
	select {
	case err := <-first:
		// Redis never answered again: the first may only be unknown.
		t.Fatalf("the first update ended (%v) before the ones behind it were refused: they waited for it", err)
	default:
	}
	cancelFirst()
	select {
	case <-first:
	case <-time.After(10 * time.Second):
		t.Fatal("the first update did not return within 10s of its context's cancellation")
	}
}
