package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/electric-socket/electric-socket/broker/redistest"
)

// Faults across a fleet (issue 9): instances killed with SIGKILL while
// their clients are in rooms, a cleaner killed midway, Redis killed under
// load, and a reconnect storm. The instances are real `electric-socket
// serve` processes on one real redis-server; every wait is bounded, and
// durations are logged, never asserted.
//
// Sizes fit the CI machine (2 cores, 20,000 open files per process): the
// clients run in the test process (one socket each), the servers in child
// processes (one socket per client they serve, plus a few to Redis).

// fleetBound bounds the waits that span a death, its detection and the
// on_close calls of the dead instance's connections.
const fleetBound = 30 * time.Second

// writeFleetConfig writes a config serving testdata/fleet_room.lua at
// /room, scripts/chat.lua at /chat and testdata/redis_counter.lua at
// /counter on the redis broker at url, with keys under prefix and the
// given orphan_timeout, and returns its path.
func writeFleetConfig(t *testing.T, url, prefix, orphanTimeout string) string {
	t.Helper()
	abs := func(p string) string {
		a, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		return strconv.Quote(a)
	}
	cfg := fmt.Sprintf(`
[server]
listen = "127.0.0.1:0"
shutdown_timeout = "10s"

[lua]
watch = false

[broker]
kind = "redis"
url = %s
prefix = %s
max_retries = 1000
orphan_timeout = %s

[log]
level = "info"

[[integration]]
name = "room"
path = "/room"
script = %s

[[integration]]
name = "chat"
path = "/chat"
script = %s

[[integration]]
name = "counter"
path = "/counter"
script = %s
`, strconv.Quote(url), strconv.Quote(prefix), strconv.Quote(orphanTimeout),
		abs(filepath.Join("testdata", "fleet_room.lua")), abs(filepath.Join("..", "scripts", "chat.lua")),
		abs(filepath.Join("testdata", "redis_counter.lua")))
	path := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

var instanceRe = regexp.MustCompile(`msg="joined the fleet" instance=(\S+)`)

// fleetID returns the lease id the instance logged when it joined.
func (in *instance) fleetID(t *testing.T) string {
	t.Helper()
	m := instanceRe.FindStringSubmatch(in.stderr.String())
	if m == nil {
		t.Fatalf("instance %s did not log its fleet id:\n%s", in.name, in.stderr.String())
	}
	return m[1]
}

// kill ends the instance with SIGKILL: no on_close, no goodbye.
func (in *instance) kill(t *testing.T) {
	t.Helper()
	if err := in.proc.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill %s: %v", in.name, err)
	}
	select {
	case <-in.exited:
	case <-time.After(waitBound):
		t.Fatalf("instance %s still running %v after SIGKILL", in.name, waitBound)
	}
}

// roomLogin connects user to room at /room on addr.
func roomLogin(t *testing.T, user, addr, room string) *wsClient {
	t.Helper()
	c := connectWS(t, user, addr, "/room")
	c.send(map[string]any{"user": user, "room": room})
	c.expect(map[string]any{"type": "welcome", "user": user, "room": room})
	return c
}

// collectLeft reads c's messages until it has received want "left" notices
// about users whose name starts with "v" (others allowed: joined, left of
// other users), within fleetBound, then checks with a ping that no further
// one was already on its way. It returns the nicks seen, by user.
func collectLeft(t *testing.T, c *wsClient, want int) map[string][]any {
	t.Helper()
	left := map[string][]any{}
	n := 0
	deadline := time.Now().Add(fleetBound)
	for n < want {
		v, why := c.next(time.Until(deadline))
		if v == nil {
			t.Fatalf("%s: %d of %d left notices: %s", c.name, n, want, why)
		}
		if v["type"] == "left" {
			user, _ := v["user"].(string)
			left[user] = append(left[user], v["nick"])
			if strings.HasPrefix(user, "v") {
				n++
			}
		}
	}
	c.send(map[string]any{"type": "ping"})
	for {
		v, why := c.next(waitBound)
		if v == nil {
			t.Fatalf("%s: no pong: %s", c.name, why)
		}
		if v["type"] == "pong" {
			return left
		}
		if v["type"] == "left" {
			user, _ := v["user"].(string)
			left[user] = append(left[user], v["nick"])
		}
	}
}

// roomEntity reads the entity of a fleet_room room from Redis.
func roomEntity(t *testing.T, raw *redis.Client, prefix, room string) (members map[string]string, closes map[string]int) {
	t.Helper()
	var e struct {
		Members map[string]string `json:"members"`
		Closes  map[string]int    `json:"closes"`
	}
	data, err := raw.Get(context.Background(), prefix+"room."+room).Bytes()
	if err != nil || json.Unmarshal(data, &e) != nil {
		t.Fatalf("GET %sroom.%s = %s, %v", prefix, room, data, err)
	}
	return e.Members, e.Closes
}

// waitCleaned waits until the lease of instance id is gone from Redis with
// every connection record under it: a survivor ran every on_close.
func waitCleaned(t *testing.T, raw *redis.Client, prefix, id string) {
	t.Helper()
	ctx := context.Background()
	leases, conns := "{"+prefix+"fleet}:leases", "{"+prefix+"fleet}:conns:"+id
	eventually(t, fleetBound, "the dead instance's lease and records to be gone", func() bool {
		_, err := raw.ZScore(ctx, leases, id).Result()
		return err == redis.Nil && raw.Exists(ctx, conns).Val() == 0
	})
}

// sideEffects counts the side effect log lines of fleet_room's on_close
// for user in the logs.
func sideEffects(user string, logs ...string) int {
	n := 0
	for _, l := range logs {
		for _, line := range strings.Split(l, "\n") {
			if strings.Contains(line, `msg="side effect"`) && strings.Contains(line, `\"event\":\"left\"`) &&
				strings.Contains(line, `\"user\":\"`+user+`\"`) {
				n++
			}
		}
	}
	return n
}

// TestFleetOnCloseAfterKill kills one of two instances with SIGKILL while
// 40 of its clients are in 4 rooms with a member each on the other
// instance. The survivor runs on_close once for each (fleet_room's on_close
// counts its runs in the room), with the last channel data committed (a
// nick set after login), publishes the leave notices, delivers the side
// effects, and removes the dead instance's lease.
func TestFleetOnCloseAfterKill(t *testing.T) {
	srv := redistest.New(t)
	prefix := srv.Prefix(t)
	raw := srv.Client(t)
	bin := buildBinary(t)
	cfg := writeFleetConfig(t, srv.URL, prefix, "2s")
	a := startInstance(t, "A", bin, cfg)
	b := startInstance(t, "B", bin, cfg)
	deadID := a.fleetID(t)

	const rooms, each = 4, 10
	observers := make([]*wsClient, rooms)
	for r := range observers {
		observers[r] = roomLogin(t, fmt.Sprint("obs", r), b.addr, fmt.Sprint("r", r))
	}
	for r := 0; r < rooms; r++ {
		for i := 0; i < each; i++ {
			user := fmt.Sprintf("v%d_%d", r, i)
			c := roomLogin(t, user, a.addr, fmt.Sprint("r", r))
			if i%2 == 0 {
				c.send(map[string]any{"type": "nick", "nick": "N" + user})
				c.expect(map[string]any{"type": "nicked"})
			}
		}
	}
	a.kill(t)
	killed := time.Now()

	for r, obs := range observers {
		left := collectLeft(t, obs, each)
		for i := 0; i < each; i++ {
			user := fmt.Sprintf("v%d_%d", r, i)
			var nick any
			if i%2 == 0 {
				nick = "N" + user
			}
			if got := left[user]; len(got) != 1 || got[0] != nick {
				t.Errorf("%s: left notices for %s: %v, want exactly one with nick %v", obs.name, user, got, nick)
			}
		}
	}
	t.Logf("every leave notice arrived %v after SIGKILL (orphan_timeout 2s)", time.Since(killed).Round(time.Millisecond))
	waitCleaned(t, raw, prefix, deadID)
	for r := 0; r < rooms; r++ {
		members, closes := roomEntity(t, raw, prefix, fmt.Sprint("r", r))
		if len(members) != 1 || members[fmt.Sprint("obs", r)] == "" {
			t.Errorf("room r%d members %v, want only obs%d", r, members, r)
		}
		for i := 0; i < each; i++ {
			user := fmt.Sprintf("v%d_%d", r, i)
			if closes[user] != 1 {
				t.Errorf("room r%d: on_close of %s ran %d times, want 1", r, user, closes[user])
			}
			if n := sideEffects(user, b.stderr.String()); n != 1 {
				t.Errorf("side effects of %s's on_close: %d, want 1", user, n)
			}
		}
	}
	b.alive(t)
}

// TestFleetCleanerKilledMidway kills instance A with 30 clients in 2 rooms;
// whichever of B and C claims A's lease pauses after 5 on_close calls (the
// test hook ELECTRIC_SOCKET_TEST_ORPHAN_PAUSE) and is killed there too. The
// other one takes the claim over when it expires and finishes: every
// on_close ran exactly once in all, counted in the rooms, in the leave
// notices the survivor's clients got and in the side effects of both logs.
func TestFleetCleanerKilledMidway(t *testing.T) {
	srv := redistest.New(t)
	prefix := srv.Prefix(t)
	raw := srv.Client(t)
	bin := buildBinary(t)
	cfg := writeFleetConfig(t, srv.URL, prefix, "2s")
	t.Setenv("ELECTRIC_SOCKET_TEST_ORPHAN_PAUSE", "5:4s") // inherited by the instances
	a := startInstance(t, "A", bin, cfg)
	b := startInstance(t, "B", bin, cfg)
	c := startInstance(t, "C", bin, cfg)
	deadID := a.fleetID(t)

	const rooms, each = 2, 15
	obs := map[*instance][]*wsClient{}
	for _, in := range []*instance{b, c} {
		for r := 0; r < rooms; r++ {
			obs[in] = append(obs[in], roomLogin(t, fmt.Sprintf("obs%s%d", in.name, r), in.addr, fmt.Sprint("r", r)))
		}
	}
	for r := 0; r < rooms; r++ {
		for i := 0; i < each; i++ {
			roomLogin(t, fmt.Sprintf("v%d_%d", r, i), a.addr, fmt.Sprint("r", r))
		}
	}
	a.kill(t)

	var cleaner, survivor *instance
	eventually(t, fleetBound, "one of B and C to claim A's lease and pause", func() bool {
		for _, in := range []*instance{b, c} {
			if strings.Contains(in.stderr.String(), "test pause: cleaning paused") {
				cleaner = in
				return true
			}
		}
		return false
	})
	survivor = b
	if cleaner == b {
		survivor = c
	}
	cleanerID := cleaner.fleetID(t)
	cleaner.kill(t)
	t.Logf("%s claimed A's lease and was killed in its pause; %s must finish", cleaner.name, survivor.name)

	for r, o := range obs[survivor] {
		left := collectLeft(t, o, each)
		for i := 0; i < each; i++ {
			user := fmt.Sprintf("v%d_%d", r, i)
			if n := len(left[user]); n != 1 {
				t.Errorf("%s: %d left notices for %s, want 1", o.name, n, user)
			}
		}
	}
	waitCleaned(t, raw, prefix, deadID)
	waitCleaned(t, raw, prefix, cleanerID) // its own connections (the observers) are orphans too
	cleanerLeft := 0
	for r := 0; r < rooms; r++ {
		members, closes := roomEntity(t, raw, prefix, fmt.Sprint("r", r))
		if len(members) != 1 {
			t.Errorf("room r%d members %v, want the survivor's observer alone", r, members)
		}
		for i := 0; i < each; i++ {
			user := fmt.Sprintf("v%d_%d", r, i)
			if closes[user] != 1 {
				t.Errorf("room r%d: on_close of %s ran %d times, want 1", r, user, closes[user])
			}
			n := sideEffects(user, cleaner.stderr.String(), survivor.stderr.String())
			if n != 1 {
				t.Errorf("side effects of %s's on_close: %d, want 1", user, n)
			}
			cleanerLeft += sideEffects(user, cleaner.stderr.String())
		}
	}
	if cleanerLeft == 0 || cleanerLeft == rooms*each {
		t.Errorf("the killed cleaner ran %d of %d on_close calls: the test did not kill it midway", cleanerLeft, rooms*each)
	}
	t.Logf("the killed cleaner ran %d on_close calls, the survivor the other %d", cleanerLeft, rooms*each-cleanerLeft)
	survivor.alive(t)
}
