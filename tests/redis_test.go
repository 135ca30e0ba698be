package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/electric-socket/electric-socket/broker/redistest"
	"github.com/electric-socket/electric-socket/tests/testkit"
)

// These tests run two `electric-socket serve` processes on one real
// redis-server (broker/redistest: a redis-server from PATH, or REDIS_URL),
// with WebSocket clients on both. Every wait is bounded.

// redisBound bounds the waits that span a Redis restart or a burst of work;
// single messages use waitBound.
const redisBound = 20 * time.Second

// writeRedisConfig writes a config serving scripts/chat.lua at /chat and
// testdata/redis_counter.lua at /counter with the redis broker at url, keys
// under prefix, and returns its path. Every other key has its default: the
// no-lost-update tests run on the shipped max_retries and retry_backoff.
func writeRedisConfig(t *testing.T, url, prefix string) string {
	t.Helper()
	chat, err := filepath.Abs(filepath.Join("..", "scripts", "chat.lua"))
	if err != nil {
		t.Fatal(err)
	}
	counter, err := filepath.Abs(filepath.Join("testdata", "redis_counter.lua"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`
[server]
listen = "127.0.0.1:0"
shutdown_timeout = "5s"

[lua]
watch = false

[broker]
kind = "redis"
url = %s
prefix = %s

[[integration]]
name = "chat"
path = "/chat"
script = %s

[[integration]]
name = "counter"
path = "/counter"
script = %s
`, strconv.Quote(url), strconv.Quote(prefix), strconv.Quote(chat), strconv.Quote(counter))
	path := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// startInstance runs bin serve with cfg on a free port (and args) and
// waits until it listens. It is stopped with SIGTERM when the test ends.
func startInstance(t *testing.T, name, bin, cfg string, args ...string) *testkit.Process {
	t.Helper()
	return testkit.Serve(t, name, bin, "", redisBound, append([]string{"--config", cfg}, args...)...)
}

func TestRedisTwoInstances(t *testing.T) {
	srv := redistest.New(t)
	prefix := srv.Prefix(t)
	raw := srv.Client(t)
	bin := testkit.Binary(t)
	cfg := writeRedisConfig(t, srv.URL, prefix)
	a := startInstance(t, "A", bin, cfg)
	b := startInstance(t, "B", bin, cfg)

	t.Run("chat across instances", func(t *testing.T) {
		alice := loginAt(t, a.Addr, "alice", "lobby")
		bob := testkit.Dial(t, "bob", b.Addr, "/chat")
		bob.Send(map[string]any{"user": "bob", "room": "lobby"})
		bob.Expect(map[string]any{"type": "welcome", "members": []any{"alice", "bob"}})
		alice.Expect(map[string]any{"type": "joined", "user": "bob", "room": "lobby"})

		alice.Send(map[string]any{"type": "say", "text": "hello from A"})
		alice.Expect(map[string]any{"type": "sent", "text": "hello from A"})
		bob.Expect(map[string]any{"type": "message", "from": "alice", "text": "hello from A"})

		bob.Send(map[string]any{"type": "whisper", "to": "alice", "text": "psst from B"})
		bob.Expect(map[string]any{"type": "sent", "to": "alice"})
		alice.Expect(map[string]any{"type": "whisper", "from": "bob", "text": "psst from B"})

		alice.Send(map[string]any{"type": "whisper", "to": "bob", "text": "psst from A"})
		alice.Expect(map[string]any{"type": "sent", "to": "bob"})
		bob.Expect(map[string]any{"type": "whisper", "from": "alice", "text": "psst from A"})

		bob.Send(map[string]any{"type": "say", "text": "hello from B"})
		bob.Expect(map[string]any{"type": "sent"})
		alice.Expect(map[string]any{"type": "message", "from": "bob", "text": "hello from B"})

		// The room is a JSON string in Redis, under the configured prefix.
		var room struct{ Members map[string]string }
		data, err := raw.Get(context.Background(), prefix+"chat.lobby").Bytes()
		if err != nil || json.Unmarshal(data, &room) != nil || len(room.Members) != 2 {
			t.Fatalf("GET %schat.lobby = %s, %v; want both members", prefix, data, err)
		}

		alice.Send(map[string]any{"type": "leave"})
		alice.Expect(map[string]any{"type": "bye"})
		alice.ExpectClose(websocket.StatusNormalClosure)
		bob.Expect(map[string]any{"type": "left", "user": "alice"})
	})

	t.Run("a second login on the other instance replaces the first", func(t *testing.T) {
		first := loginAt(t, a.Addr, "alice", "den")
		carol := loginAt(t, a.Addr, "carol", "den")
		first.Expect(map[string]any{"type": "joined", "user": "carol"})
		second := loginAt(t, b.Addr, "alice", "den")
		first.Expect(map[string]any{"type": "replaced"})
		first.ExpectClose(websocket.StatusNormalClosure)

		// carol (on A) reaches the new login (on B), the only alice left.
		carol.Send(map[string]any{"type": "whisper", "to": "alice", "text": "which one are you?"})
		carol.Expect(map[string]any{"type": "sent"})
		second.Expect(map[string]any{"type": "whisper", "from": "carol", "text": "which one are you?"})
	})

	t.Run("no lost update", func(t *testing.T) {
		const conns, each = 50, 200
		var mu sync.Mutex
		var seen []int
		var wg sync.WaitGroup
		clients := make([]*testkit.Client, conns)
		for i := range clients {
			addr := a.Addr
			if i%2 == 1 {
				addr = b.Addr
			}
			clients[i] = testkit.Dial(t, fmt.Sprintf("counter%d", i), addr, "/counter")
			clients[i].Send(map[string]any{"counter": "c1"})
			clients[i].Expect(map[string]any{"type": "ready"})
		}
		for _, c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				mine := make([]int, 0, each)
				for i := 0; i < each; i++ {
					if err := c.TrySend(map[string]any{}); err != nil {
						t.Errorf("%s: write: %v", c.Name, err)
						return
					}
					v, why := c.Next(redisBound)
					n, ok := v["n"].(float64)
					if !ok {
						t.Errorf("%s: increment %d: got %s %s, want {n: ...}", c.Name, i, testkit.JSON(v), why)
						return
					}
					mine = append(mine, int(n))
				}
				mu.Lock()
				seen = append(seen, mine...)
				mu.Unlock()
			}()
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		slices.Sort(seen)
		for i, n := range seen {
			if n != i+1 {
				t.Fatalf("the answered values are not 1..%d: position %d holds %d (a lost or repeated update)", conns*each, i, n)
			}
		}
		got, err := raw.Get(context.Background(), prefix+"counter.c1").Result()
		if err != nil || got != `{"n":10000}` {
			t.Fatalf("GET %scounter.c1 = %q, %v; want {\"n\":10000}", prefix, got, err)
		}
	})
	a.Alive(t)
	b.Alive(t)
}

// TestRedisRestartDuringTraffic kills redis-server under two instances and
// starts it again on the same port. The instances stay up, their clients
// get broker_unavailable and stay connected, and chat across the instances
// resumes by itself. The room survives the restart because the test SAVEs
// it first, as a Redis with persistence would keep it.
func TestRedisRestartDuringTraffic(t *testing.T) {
	srv := redistest.NewLocal(t)
	prefix := srv.Prefix(t)
	bin := testkit.Binary(t)
	cfg := writeRedisConfig(t, srv.URL, prefix)
	a := startInstance(t, "A", bin, cfg)
	b := startInstance(t, "B", bin, cfg)

	alice := loginAt(t, a.Addr, "alice", "lobby")
	bob := loginAt(t, b.Addr, "bob", "lobby")
	alice.Expect(map[string]any{"type": "joined", "user": "bob"})
	alice.Send(map[string]any{"type": "say", "text": "before"})
	alice.Expect(map[string]any{"type": "sent"})
	bob.Expect(map[string]any{"type": "message", "from": "alice", "text": "before"})

	if err := srv.Client(t).Save(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	srv.Stop(t)

	unavailable := map[string]any{"id": "error", "error": "broker_unavailable"}
	alice.Send(map[string]any{"type": "say", "text": "while down"})
	alice.Expect(unavailable)
	bob.Send(map[string]any{"type": "whisper", "to": "alice", "text": "while down"})
	bob.Expect(unavailable)
	alice.Send(map[string]any{"type": "members"})
	alice.Expect(unavailable)
	alice.Open()
	bob.Open()
	// A new login needs the broker: it is refused with 1011 (SPEC 5.7).
	carol := testkit.Dial(t, "carol", a.Addr, "/chat")
	carol.Send(map[string]any{"user": "carol", "room": "lobby"})
	carol.Expect(unavailable)
	carol.ExpectClose(websocket.StatusInternalError)
	a.Alive(t)
	b.Alive(t)

	srv.Start(t)

	// Traffic resumes with no manual step. Messages published before an
	// instance's subscription is back are lost (at most once), so each
	// round sends a new one until one arrives.
	resumes := func(from, to *testkit.Client, msg func(round int) map[string]any, want func(round int) map[string]any) {
		t.Helper()
		deadline := time.Now().Add(redisBound)
		for round := 0; time.Now().Before(deadline); round++ {
			from.Send(msg(round))
			v, why := from.Next(waitBound)
			switch {
			case v == nil:
				t.Fatalf("%s: no answer: %s", from.Name, why)
			case testkit.HasFields(v, unavailable):
				time.Sleep(100 * time.Millisecond) // Redis is not back for this instance yet
				continue
			case v["type"] != "sent":
				t.Fatalf("%s: got %s, want sent", from.Name, testkit.JSON(v))
			}
			earlier := func(m map[string]any) bool { return m["from"] == from.Name } // a late earlier round
			if to.Until(time.Second, want(round), earlier) {
				return
			}
		}
		t.Fatalf("no message from %s reached %s within %v after redis-server restarted", from.Name, to.Name, redisBound)
	}
	resumes(alice, bob,
		func(i int) map[string]any { return map[string]any{"type": "say", "text": fmt.Sprint("after ", i)} },
		func(i int) map[string]any {
			return map[string]any{"type": "message", "from": "alice", "text": fmt.Sprint("after ", i)}
		})
	resumes(bob, alice,
		func(i int) map[string]any {
			return map[string]any{"type": "whisper", "to": "alice", "text": fmt.Sprint("back ", i)}
		},
		func(i int) map[string]any {
			return map[string]any{"type": "whisper", "from": "bob", "text": fmt.Sprint("back ", i)}
		})

	// New logins work again, on both instances, and see the saved room.
	dave := testkit.Dial(t, "dave", b.Addr, "/chat")
	dave.Send(map[string]any{"user": "dave", "room": "lobby"})
	dave.Expect(map[string]any{"type": "welcome", "members": []any{"alice", "bob", "dave"}})
	if !alice.Until(waitBound, map[string]any{"type": "joined", "user": "dave"}, func(m map[string]any) bool { return m["from"] == "bob" }) {
		t.Fatalf("alice: no joined notice for dave (who logged in on the other instance) within %v", waitBound)
	}
	a.Alive(t)
	b.Alive(t)
}
