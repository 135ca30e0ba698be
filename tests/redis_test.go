package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/electric-socket/electric-socket/broker/redistest"
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

// instance is one running `electric-socket serve` process.
type instance struct {
	name   string
	addr   string
	stderr *syncBuffer
	exited chan struct{}
	err    error // Wait's result, set before exited closes
	proc   *os.Process
}

// startInstance runs bin serve with cfg on a free port (and args) and
// waits until it listens. It is stopped with SIGTERM when the test ends.
func startInstance(t *testing.T, name, bin, cfg string, args ...string) *instance {
	t.Helper()
	in := &instance{name: name, addr: freeAddr(t), stderr: &syncBuffer{}, exited: make(chan struct{})}
	cmd := exec.Command(bin, append([]string{"serve", "--config", cfg, "--listen", in.addr}, args...)...)
	cmd.Stderr = in.stderr
	cmd.WaitDelay = waitBound // Wait returns even if something keeps the stderr pipe open
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	in.proc = cmd.Process
	go func() { in.err = cmd.Wait(); close(in.exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-in.exited:
		case <-time.After(redisBound):
			cmd.Process.Kill()
			select {
			case <-in.exited:
			case <-time.After(2 * waitBound):
			}
			t.Errorf("instance %s did not stop within %v of SIGTERM", name, redisBound)
		}
		if t.Failed() {
			t.Logf("instance %s stderr:\n%s", name, in.stderr.String())
		}
	})
	deadline := time.Now().Add(redisBound)
	for !strings.Contains(in.stderr.String(), "msg=listening") {
		select {
		case <-in.exited:
			t.Fatalf("instance %s exited at start: %v\n%s", name, in.err, in.stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("instance %s does not listen within %v:\n%s", name, redisBound, in.stderr.String())
		}
	}
	return in
}

// alive fails the test if the instance's process ended.
func (in *instance) alive(t *testing.T) {
	t.Helper()
	select {
	case <-in.exited:
		t.Fatalf("instance %s exited: %v\n%s", in.name, in.err, in.stderr.String())
	default:
	}
}

// wsClient is a WebSocket client whose messages a goroutine reads into a
// queue, so that waiting for one with a bound never closes the connection
// (a Read whose context ends does).
type wsClient struct {
	t    *testing.T
	name string
	conn *websocket.Conn
	msgs chan map[string]any
	end  chan struct{} // closed when the connection ended, after err is set
	err  error
}

// newWSClient wraps conn and starts the goroutine that reads its messages
// into the queue.
func newWSClient(t *testing.T, name string, conn *websocket.Conn) *wsClient {
	c := &wsClient{t: t, name: name, conn: conn, msgs: make(chan map[string]any, 1024), end: make(chan struct{})}
	go func() {
		defer close(c.end)
		for {
			_, b, err := conn.Read(context.Background())
			if err != nil {
				c.err = err
				return
			}
			var v map[string]any
			if err := json.Unmarshal(b, &v); err != nil {
				v = map[string]any{"unparsable": string(b)}
			}
			c.msgs <- v
		}
	}()
	return c
}

// connectWS opens a WebSocket to addr+path.
func connectWS(t *testing.T, name, addr, path string) *wsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, "ws://"+addr+path, nil)
	if err != nil {
		t.Fatalf("%s: dial %s%s: %v", name, addr, path, err)
	}
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	c := newWSClient(t, name, conn)
	t.Cleanup(func() { conn.CloseNow() })
	return c
}

// chatLogin connects to the chat at addr and logs user in to room.
func chatLogin(t *testing.T, user, addr, room string) *wsClient {
	t.Helper()
	c := connectWS(t, user, addr, "/chat")
	c.send(map[string]any{"user": user, "room": room})
	c.expect(map[string]any{"type": "welcome", "user": user, "room": room})
	return c
}

func (c *wsClient) send(v any) {
	c.t.Helper()
	if err := c.trySend(v); err != nil {
		c.t.Fatalf("%s: write: %v", c.name, err)
	}
}

func (c *wsClient) trySend(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	return c.conn.Write(ctx, websocket.MessageText, b)
}

// next returns the next message within bound, or nil with the reason.
func (c *wsClient) next(bound time.Duration) (map[string]any, string) {
	select {
	case v := <-c.msgs:
		return v, ""
	default:
	}
	select {
	case v := <-c.msgs:
		return v, ""
	case <-c.end:
		select {
		case v := <-c.msgs:
			return v, ""
		default:
		}
		return nil, fmt.Sprintf("the connection ended: %v", c.err)
	case <-time.After(bound):
		return nil, fmt.Sprintf("nothing within %v", bound)
	}
}

// expect checks that the next message has every field of want.
func (c *wsClient) expect(want map[string]any) map[string]any {
	c.t.Helper()
	v, why := c.next(waitBound)
	if v == nil {
		c.t.Fatalf("%s: want %s: %s", c.name, jsonString(want), why)
	}
	if !hasFields(v, want) {
		c.t.Fatalf("%s: got %s, want %s", c.name, jsonString(v), jsonString(want))
	}
	return v
}

func hasFields(v, want map[string]any) bool {
	for k, w := range want {
		if g, ok := v[k]; !ok || jsonString(g) != jsonString(w) {
			return false
		}
	}
	return true
}

// expectClosed checks that the connection ends with close code, with no
// message before.
func (c *wsClient) expectClosed(code websocket.StatusCode) {
	c.t.Helper()
	v, why := c.next(waitBound)
	if v != nil {
		c.t.Fatalf("%s: got %s, want close %d", c.name, jsonString(v), code)
	}
	select {
	case <-c.end: // c.err is set
	default:
		c.t.Fatalf("%s: %s, want close %d", c.name, why, code)
	}
	if st := websocket.CloseStatus(c.err); st != code {
		c.t.Fatalf("%s: %s (status %d), want close %d", c.name, why, st, code)
	}
}

// open checks the connection has not ended.
func (c *wsClient) open() {
	c.t.Helper()
	select {
	case <-c.end:
		c.t.Fatalf("%s: the connection ended: %v", c.name, c.err)
	default:
	}
}

// until reads messages until one has every field of want, skipping others
// that skip accepts, within bound; it reports whether it found one.
func (c *wsClient) until(bound time.Duration, want map[string]any, skip func(map[string]any) bool) bool {
	c.t.Helper()
	deadline := time.Now().Add(bound)
	for {
		v, why := c.next(time.Until(deadline))
		if v == nil {
			if strings.HasPrefix(why, "the connection ended") {
				c.t.Fatalf("%s: waiting for %s: %s", c.name, jsonString(want), why)
			}
			return false
		}
		if hasFields(v, want) {
			return true
		}
		if !skip(v) {
			c.t.Fatalf("%s: got %s while waiting for %s", c.name, jsonString(v), jsonString(want))
		}
	}
}

func TestRedisTwoInstances(t *testing.T) {
	srv := redistest.New(t)
	prefix := srv.Prefix(t)
	raw := srv.Client(t)
	bin := buildBinary(t)
	cfg := writeRedisConfig(t, srv.URL, prefix)
	a := startInstance(t, "A", bin, cfg)
	b := startInstance(t, "B", bin, cfg)

	t.Run("chat across instances", func(t *testing.T) {
		alice := chatLogin(t, "alice", a.addr, "lobby")
		bob := connectWS(t, "bob", b.addr, "/chat")
		bob.send(map[string]any{"user": "bob", "room": "lobby"})
		bob.expect(map[string]any{"type": "welcome", "members": []any{"alice", "bob"}})
		alice.expect(map[string]any{"type": "joined", "user": "bob", "room": "lobby"})

		alice.send(map[string]any{"type": "say", "text": "hello from A"})
		alice.expect(map[string]any{"type": "sent", "text": "hello from A"})
		bob.expect(map[string]any{"type": "message", "from": "alice", "text": "hello from A"})

		bob.send(map[string]any{"type": "whisper", "to": "alice", "text": "psst from B"})
		bob.expect(map[string]any{"type": "sent", "to": "alice"})
		alice.expect(map[string]any{"type": "whisper", "from": "bob", "text": "psst from B"})

		alice.send(map[string]any{"type": "whisper", "to": "bob", "text": "psst from A"})
		alice.expect(map[string]any{"type": "sent", "to": "bob"})
		bob.expect(map[string]any{"type": "whisper", "from": "alice", "text": "psst from A"})

		bob.send(map[string]any{"type": "say", "text": "hello from B"})
		bob.expect(map[string]any{"type": "sent"})
		alice.expect(map[string]any{"type": "message", "from": "bob", "text": "hello from B"})

		// The room is a JSON string in Redis, under the configured prefix.
		var room struct{ Members map[string]string }
		data, err := raw.Get(context.Background(), prefix+"chat.lobby").Bytes()
		if err != nil || json.Unmarshal(data, &room) != nil || len(room.Members) != 2 {
			t.Fatalf("GET %schat.lobby = %s, %v; want both members", prefix, data, err)
		}

		alice.send(map[string]any{"type": "leave"})
		alice.expect(map[string]any{"type": "bye"})
		alice.expectClosed(websocket.StatusNormalClosure)
		bob.expect(map[string]any{"type": "left", "user": "alice"})
	})

	t.Run("a second login on the other instance replaces the first", func(t *testing.T) {
		first := chatLogin(t, "alice", a.addr, "den")
		carol := chatLogin(t, "carol", a.addr, "den")
		first.expect(map[string]any{"type": "joined", "user": "carol"})
		second := chatLogin(t, "alice", b.addr, "den")
		first.expect(map[string]any{"type": "replaced"})
		first.expectClosed(websocket.StatusNormalClosure)

		// carol (on A) reaches the new login (on B), the only alice left.
		carol.send(map[string]any{"type": "whisper", "to": "alice", "text": "which one are you?"})
		carol.expect(map[string]any{"type": "sent"})
		second.expect(map[string]any{"type": "whisper", "from": "carol", "text": "which one are you?"})
	})

	t.Run("no lost update", func(t *testing.T) {
		const conns, each = 50, 200
		var mu sync.Mutex
		var seen []int
		var wg sync.WaitGroup
		clients := make([]*wsClient, conns)
		for i := range clients {
			addr := a.addr
			if i%2 == 1 {
				addr = b.addr
			}
			clients[i] = connectWS(t, fmt.Sprintf("counter%d", i), addr, "/counter")
			clients[i].send(map[string]any{"counter": "c1"})
			clients[i].expect(map[string]any{"type": "ready"})
		}
		for _, c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				mine := make([]int, 0, each)
				for i := 0; i < each; i++ {
					if err := c.trySend(map[string]any{}); err != nil {
						t.Errorf("%s: write: %v", c.name, err)
						return
					}
					v, why := c.next(redisBound)
					n, ok := v["n"].(float64)
					if !ok {
						t.Errorf("%s: increment %d: got %s %s, want {n: ...}", c.name, i, jsonString(v), why)
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
	a.alive(t)
	b.alive(t)
}

// TestRedisRestartDuringTraffic kills redis-server under two instances and
// starts it again on the same port. The instances stay up, their clients
// get broker_unavailable and stay connected, and chat across the instances
// resumes by itself. The room survives the restart because the test SAVEs
// it first, as a Redis with persistence would keep it.
func TestRedisRestartDuringTraffic(t *testing.T) {
	srv := redistest.NewLocal(t)
	prefix := srv.Prefix(t)
	bin := buildBinary(t)
	cfg := writeRedisConfig(t, srv.URL, prefix)
	a := startInstance(t, "A", bin, cfg)
	b := startInstance(t, "B", bin, cfg)

	alice := chatLogin(t, "alice", a.addr, "lobby")
	bob := chatLogin(t, "bob", b.addr, "lobby")
	alice.expect(map[string]any{"type": "joined", "user": "bob"})
	alice.send(map[string]any{"type": "say", "text": "before"})
	alice.expect(map[string]any{"type": "sent"})
	bob.expect(map[string]any{"type": "message", "from": "alice", "text": "before"})

	if err := srv.Client(t).Save(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	srv.Stop(t)

	unavailable := map[string]any{"id": "error", "error": "broker_unavailable"}
	alice.send(map[string]any{"type": "say", "text": "while down"})
	alice.expect(unavailable)
	bob.send(map[string]any{"type": "whisper", "to": "alice", "text": "while down"})
	bob.expect(unavailable)
	alice.send(map[string]any{"type": "members"})
	alice.expect(unavailable)
	alice.open()
	bob.open()
	// A new login needs the broker: it is refused with 1011 (SPEC 5.7).
	carol := connectWS(t, "carol", a.addr, "/chat")
	carol.send(map[string]any{"user": "carol", "room": "lobby"})
	carol.expect(unavailable)
	carol.expectClosed(websocket.StatusInternalError)
	a.alive(t)
	b.alive(t)

	srv.Start(t)

	// Traffic resumes with no manual step. Messages published before an
	// instance's subscription is back are lost (at most once), so each
	// round sends a new one until one arrives.
	resumes := func(from, to *wsClient, msg func(round int) map[string]any, want func(round int) map[string]any) {
		t.Helper()
		deadline := time.Now().Add(redisBound)
		for round := 0; time.Now().Before(deadline); round++ {
			from.send(msg(round))
			v, why := from.next(waitBound)
			switch {
			case v == nil:
				t.Fatalf("%s: no answer: %s", from.name, why)
			case hasFields(v, unavailable):
				time.Sleep(100 * time.Millisecond) // Redis is not back for this instance yet
				continue
			case v["type"] != "sent":
				t.Fatalf("%s: got %s, want sent", from.name, jsonString(v))
			}
			earlier := func(m map[string]any) bool { return m["from"] == from.name } // a late earlier round
			if to.until(time.Second, want(round), earlier) {
				return
			}
		}
		t.Fatalf("no message from %s reached %s within %v after redis-server restarted", from.name, to.name, redisBound)
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
	dave := connectWS(t, "dave", b.addr, "/chat")
	dave.send(map[string]any{"user": "dave", "room": "lobby"})
	dave.expect(map[string]any{"type": "welcome", "members": []any{"alice", "bob", "dave"}})
	alice.until(waitBound, map[string]any{"type": "joined", "user": "dave"}, func(m map[string]any) bool { return m["from"] == "bob" })
	a.alive(t)
	b.alive(t)
}
