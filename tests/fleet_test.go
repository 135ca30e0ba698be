package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/redis/go-redis/v9"

	"github.com/electric-socket/electric-socket/broker/redistest"
	"github.com/electric-socket/electric-socket/tests/testkit"
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
func fleetID(t *testing.T, in *testkit.Process) string {
	t.Helper()
	m := instanceRe.FindStringSubmatch(in.Stderr.String())
	if m == nil {
		t.Fatalf("instance %s did not log its fleet id:\n%s", in.Name, in.Stderr.String())
	}
	return m[1]
}

// kill ends the instance with SIGKILL: no on_close, no goodbye.
func kill(t *testing.T, in *testkit.Process) {
	t.Helper()
	if err := in.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill %s: %v", in.Name, err)
	}
	select {
	case <-in.Exited():
	case <-time.After(waitBound):
		t.Fatalf("instance %s still running %v after SIGKILL", in.Name, waitBound)
	}
}

// roomLogin connects user to room at /room on addr.
func roomLogin(t *testing.T, user, addr, room string) *testkit.Client {
	t.Helper()
	c := testkit.Dial(t, user, addr, "/room")
	c.Send(map[string]any{"user": user, "room": room})
	c.Expect(map[string]any{"type": "welcome", "user": user, "room": room})
	return c
}

// collectLeft reads c's messages until it has received want "left" notices
// about users whose name starts with "v" (others allowed: joined, left of
// other users), within fleetBound, then checks with a ping that no further
// one was already on its way. It returns the nicks seen, by user.
func collectLeft(t *testing.T, c *testkit.Client, want int) map[string][]any {
	t.Helper()
	left := map[string][]any{}
	n := 0
	deadline := time.Now().Add(fleetBound)
	for n < want {
		v, why := c.Next(time.Until(deadline))
		if v == nil {
			t.Fatalf("%s: %d of %d left notices: %s", c.Name, n, want, why)
		}
		if v["type"] == "left" {
			user, _ := v["user"].(string)
			left[user] = append(left[user], v["nick"])
			if strings.HasPrefix(user, "v") {
				n++
			}
		}
	}
	c.Send(map[string]any{"type": "ping"})
	for {
		v, why := c.Next(waitBound)
		if v == nil {
			t.Fatalf("%s: no pong: %s", c.Name, why)
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
	testkit.Eventually(t, fleetBound, "the dead instance's lease and records to be gone", func() bool {
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
	bin := testkit.Binary(t)
	cfg := writeFleetConfig(t, srv.URL, prefix, "2s")
	a := startInstance(t, "A", bin, cfg)
	b := startInstance(t, "B", bin, cfg)
	deadID := fleetID(t, a)

	const rooms, each = 4, 10
	observers := make([]*testkit.Client, rooms)
	for r := range observers {
		observers[r] = roomLogin(t, fmt.Sprint("obs", r), b.Addr, fmt.Sprint("r", r))
	}
	for r := 0; r < rooms; r++ {
		for i := 0; i < each; i++ {
			user := fmt.Sprintf("v%d_%d", r, i)
			c := roomLogin(t, user, a.Addr, fmt.Sprint("r", r))
			if i%2 == 0 {
				c.Send(map[string]any{"type": "nick", "nick": "N" + user})
				c.Expect(map[string]any{"type": "nicked"})
			}
		}
	}
	kill(t, a)
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
				t.Errorf("%s: left notices for %s: %v, want exactly one with nick %v", obs.Name, user, got, nick)
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
			if n := sideEffects(user, b.Stderr.String()); n != 1 {
				t.Errorf("side effects of %s's on_close: %d, want 1", user, n)
			}
		}
	}
	b.Alive(t)
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
	bin := testkit.Binary(t) // built with -tags estest: the orphan pause hook
	cfg := writeFleetConfig(t, srv.URL, prefix, "2s")
	t.Setenv("ELECTRIC_SOCKET_TEST_ORPHAN_PAUSE", "5:4s") // inherited by the instances
	a := startInstance(t, "A", bin, cfg)
	b := startInstance(t, "B", bin, cfg)
	c := startInstance(t, "C", bin, cfg)
	deadID := fleetID(t, a)

	const rooms, each = 2, 15
	obs := map[*testkit.Process][]*testkit.Client{}
	for _, in := range []*testkit.Process{b, c} {
		for r := 0; r < rooms; r++ {
			obs[in] = append(obs[in], roomLogin(t, fmt.Sprintf("obs%s%d", in.Name, r), in.Addr, fmt.Sprint("r", r)))
		}
	}
	for r := 0; r < rooms; r++ {
		for i := 0; i < each; i++ {
			roomLogin(t, fmt.Sprintf("v%d_%d", r, i), a.Addr, fmt.Sprint("r", r))
		}
	}
	kill(t, a)

	var cleaner, survivor *testkit.Process
	testkit.Eventually(t, fleetBound, "one of B and C to claim A's lease and pause", func() bool {
		for _, in := range []*testkit.Process{b, c} {
			if strings.Contains(in.Stderr.String(), "test pause: cleaning paused") {
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
	cleanerID := fleetID(t, cleaner)
	kill(t, cleaner)
	t.Logf("%s claimed A's lease and was killed in its pause; %s must finish", cleaner.Name, survivor.Name)

	for r, o := range obs[survivor] {
		left := collectLeft(t, o, each)
		for i := 0; i < each; i++ {
			user := fmt.Sprintf("v%d_%d", r, i)
			if n := len(left[user]); n != 1 {
				t.Errorf("%s: %d left notices for %s, want 1", o.Name, n, user)
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
			n := sideEffects(user, cleaner.Stderr.String(), survivor.Stderr.String())
			if n != 1 {
				t.Errorf("side effects of %s's on_close: %d, want 1", user, n)
			}
			cleanerLeft += sideEffects(user, cleaner.Stderr.String())
		}
	}
	if cleanerLeft == 0 || cleanerLeft == rooms*each {
		t.Errorf("the killed cleaner ran %d of %d on_close calls: the test did not kill it midway", cleanerLeft, rooms*each)
	}
	t.Logf("the killed cleaner ran %d on_close calls, the survivor the other %d", cleanerLeft, rooms*each-cleanerLeft)
	survivor.Alive(t)
}

// sourceTransports are HTTP transports dialling from 127.0.0.<n>, by n.
var sourceTransports sync.Map

// perSource is how many test clients dial from one loopback address: the
// instances refuse more than [limits] max_connections_per_ip (default
// 1,000) from one address, as a real server should; a real storm comes
// from many addresses.
const perSource = 500

// sourceFor is the loopback address client i dials from: 127.0.0.2 for
// the first perSource clients, 127.0.0.3 for the next, and so on.
func sourceFor(i int) int { return 2 + i/perSource }

// dialFleet opens a WebSocket like connectWS, from 127.0.0.<source> (0:
// the default address), but returns the error instead of failing the
// test, so that many goroutines can dial at once.
func dialFleet(t *testing.T, name, addr, path string, source int) (*testkit.Client, error) {
	// fleetBound, as login's wait: thousands of clients dial at once, and a
	// loaded machine must not turn a slow handshake into a failure.
	ctx, cancel := context.WithTimeout(context.Background(), fleetBound)
	defer cancel()
	var opts *websocket.DialOptions
	if source > 0 {
		tr, ok := sourceTransports.Load(source)
		if !ok {
			d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(source))}}
			tr, _ = sourceTransports.LoadOrStore(source, &http.Transport{DialContext: d.DialContext})
		}
		opts = &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr.(*http.Transport)}}
	}
	conn, resp, err := websocket.Dial(ctx, "ws://"+addr+path, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: dial %s%s: %w", name, addr, path, err)
	}
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	c := testkit.NewClient(t, name, conn)
	return c, nil
}

// fleetLogin sends first on c and waits for a message with every field of
// want.
func fleetLogin(c *testkit.Client, first, want map[string]any) error {
	if err := c.TrySend(first); err != nil {
		return fmt.Errorf("%s: %w", c.Name, err)
	}
	for {
		v, why := c.Next(fleetBound)
		if v == nil {
			return fmt.Errorf("%s: waiting for %s: %s", c.Name, testkit.JSON(want), why)
		}
		if testkit.HasFields(v, want) {
			return nil
		}
		if v["id"] == "error" {
			return fmt.Errorf("%s: got %s", c.Name, testkit.JSON(v))
		}
	}
}

// dialMany opens n clients with workers dialling at once; name(i), addr(i)
// and login(i) say who each is and what it sends first. The connections
// are closed when the test ends.
func dialMany(t *testing.T, n, workers int, name func(int) string, addr func(int) string, path string,
	first func(int) map[string]any, want map[string]any) []*testkit.Client {
	t.Helper()
	clients := make([]*testkit.Client, n)
	errs := make(chan error, n)
	jobs := make(chan int)
	for w := 0; w < workers; w++ {
		go func() {
			for i := range jobs {
				c, err := dialFleet(t, name(i), addr(i), path, sourceFor(i))
				if err == nil {
					clients[i] = c
					err = fleetLogin(c, first(i), want)
				}
				errs <- err
			}
		}()
	}
	go func() {
		for i := 0; i < n; i++ {
			jobs <- i
		}
		close(jobs)
	}()
	var failed error
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil && failed == nil {
			failed = err
		}
	}
	t.Cleanup(func() {
		for _, c := range clients {
			if c != nil {
				c.Conn.CloseNow()
			}
		}
	})
	if failed != nil {
		t.Fatal(failed)
	}
	return clients
}

// counterLoad is what one client of TestFleetRedisKilledUnderLoad saw.
type counterLoad struct {
	mu          sync.Mutex // acked is read while the load runs
	key         string
	acked       []ackedValue
	unavailable int
	during      int        // broker_unavailable answers between the kill and the restart
	blocked     []sentSpan // requests sent during the outage that were not answered broker_unavailable in it
	other       []string
	broken      error
}

type sentSpan struct{ sent, answered time.Time }

type ackedValue struct {
	n  int
	at time.Time
}

// TestFleetRedisKilledUnderLoad runs 1,000 connections (500 on each of two
// instances) incrementing 200 counters as fast as they get answers (with a
// pause of 200ms), kills redis-server with SIGKILL, starts it again 3s
// later (longer than the lease of orphan_timeout 2s), and checks: no
// instance exits; no connection closes; clients get broker_unavailable
// during the outage and nothing else; traffic resumes by itself; with
// persistence on (appendonly yes, appendfsync always), every increment
// acknowledged before the kill is still there (the counters continue above
// every value answered before it, and no value is answered twice); and no
// instance takes another for dead because of the outage.
func TestFleetRedisKilledUnderLoad(t *testing.T) {
	srv := redistest.NewPersistent(t)
	prefix := srv.Prefix(t)
	bin := testkit.Binary(t)
	cfg := writeFleetConfig(t, srv.URL, prefix, "2s")
	a := startInstance(t, "A", bin, cfg)
	b := startInstance(t, "B", bin, cfg)
	const conns, keys = 1000, 200
	clients := dialMany(t, conns, 50,
		func(i int) string { return fmt.Sprint("load", i) },
		func(i int) string { return []string{a.Addr, b.Addr}[i%2] }, "/counter",
		func(i int) map[string]any { return map[string]any{"counter": fmt.Sprint("k", i%keys)} },
		map[string]any{"type": "ready"})

	// The outage is the span between killAt (taken once redis-server has
	// exited, so that nothing sent after it can reach Redis) and restartAt.
	// An increment sent in it must be answered broker_unavailable, and
	// before Redis is back: the test restarts Redis only once every such
	// increment was answered (held stops new ones meanwhile), so a server
	// that makes them wait for Redis fails here, however slow the machine.
	var killAt, restartAt atomic.Int64 // UnixNano; 0: not yet
	var held atomic.Bool
	var inOutage atomic.Int64 // increments sent in the outage, not answered yet
	resume := make(chan struct{})
	stop := make(chan struct{})
	loads := make([]*counterLoad, conns)
	var wg sync.WaitGroup
	for i, c := range clients {
		l := &counterLoad{key: fmt.Sprint("k", i%keys)}
		loads[i] = l
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				case <-time.After(200 * time.Millisecond):
				}
				// Counted before held is read: the test, which sets held
				// and then waits for inOutage to be 0, either sees this
				// increment or stops it.
				outage := killAt.Load() != 0 && restartAt.Load() == 0
				if outage {
					inOutage.Add(1)
					if held.Load() {
						inOutage.Add(-1)
						select {
						case <-resume:
						case <-stop:
							return
						}
						outage = false
					}
				}
				sent := time.Now()
				if err := c.TrySend(map[string]any{}); err != nil {
					l.broken = err
					return
				}
				v, why := c.Next(fleetBound)
				if outage {
					if v == nil || v["error"] != "broker_unavailable" || restartAt.Load() != 0 {
						l.blocked = append(l.blocked, sentSpan{sent, time.Now()})
					}
					inOutage.Add(-1)
				}
				switch {
				case v == nil:
					l.broken = fmt.Errorf("no answer: %s", why)
					return
				case v["n"] != nil:
					n, _ := v["n"].(float64)
					l.mu.Lock()
					l.acked = append(l.acked, ackedValue{int(n), time.Now()})
					l.mu.Unlock()
				case v["error"] == "broker_unavailable":
					l.unavailable++
					if killAt.Load() != 0 && restartAt.Load() == 0 {
						l.during++
					}
				default:
					l.other = append(l.other, testkit.JSON(v))
				}
			}
		}()
	}
	time.Sleep(2 * time.Second) // load before the kill
	srv.Stop(t)
	killAt.Store(time.Now().UnixNano())
	time.Sleep(3 * time.Second)
	held.Store(true)
	for deadline := time.Now().Add(fleetBound); inOutage.Load() != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("%d increments sent while Redis was down were not answered within %v (they wait for Redis)", inOutage.Load(), fleetBound)
			break
		}
	}
	restart := time.Now() // the outage ends when redis-server starts: Start returns once it answers
	restartAt.Store(restart.UnixNano())
	srv.Start(t)
	close(resume)

	// Every client must get an increment through after the restart.
	resumed := func(l *counterLoad) (time.Time, bool) {
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, v := range l.acked {
			if v.at.After(restart) {
				return v.at, true
			}
		}
		return time.Time{}, false
	}
	deadline := time.Now().Add(fleetBound)
	for {
		waiting := 0
		for _, l := range loads {
			if _, ok := resumed(l); !ok {
				waiting++
			}
		}
		if waiting == 0 {
			break
		}
		if time.Now().After(deadline) {
			close(stop)
			wg.Wait()
			t.Fatalf("%d of %d clients had no increment through %v after redis-server restarted", waiting, conns, fleetBound)
		}
		time.Sleep(50 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	a.Alive(t)
	b.Alive(t)

	kill := time.Unix(0, killAt.Load())
	var slowest time.Duration
	var resumes []time.Duration
	gotUnavailable, unavailable := 0, 0
	perKey := map[string][]ackedValue{}
	for i, l := range loads {
		if l.broken != nil || len(l.other) > 0 {
			t.Fatalf("client %d: broken %v, unexpected answers %v", i, l.broken, l.other)
		}
		select {
		case <-clients[i].End():
			t.Fatalf("client %d: the connection ended: %v", i, clients[i].Err())
		default:
		}
		at, _ := resumed(l)
		slowest = max(slowest, at.Sub(restart))
		resumes = append(resumes, at.Sub(restart))
		if l.during > 0 {
			gotUnavailable++
		}
		unavailable += l.unavailable
		perKey[l.key] = append(perKey[l.key], l.acked...)
	}
	// A client whose increment was in flight at the kill waits for Redis:
	// its lost reply is resolved (for up to 5s), so it may send nothing
	// during the outage. Every increment sent during it must be answered
	// broker_unavailable during it.
	for i, l := range loads {
		for _, b := range l.blocked {
			t.Errorf("client %d: an increment sent %v after the kill was answered %v after it, not with broker_unavailable during the outage",
				i, b.sent.Sub(kill).Round(time.Millisecond), b.answered.Sub(kill).Round(time.Millisecond))
		}
	}
	if gotUnavailable == 0 {
		t.Errorf("no client got broker_unavailable during the outage")
	}
	raw := srv.Client(t)
	total := 0
	for key, acked := range perKey {
		seen := map[int]bool{}
		maxBefore, minAfter, maxAll := 0, int(^uint(0)>>1), 0
		for _, v := range acked {
			if seen[v.n] {
				t.Errorf("counter %s: %d answered twice", key, v.n)
			}
			seen[v.n] = true
			maxAll = max(maxAll, v.n)
			if v.at.Before(kill) {
				maxBefore = max(maxBefore, v.n)
			} else if v.at.After(restart) {
				minAfter = min(minAfter, v.n)
			}
		}
		if minAfter <= maxBefore {
			t.Errorf("counter %s: answered %d after the restart, but %d before the kill: acknowledged increments were lost", key, minAfter, maxBefore)
		}
		var e struct{ N int }
		data, err := raw.Get(context.Background(), prefix+"counter."+key).Bytes()
		if err != nil || json.Unmarshal(data, &e) != nil {
			t.Fatalf("GET %scounter.%s = %s, %v", prefix, key, data, err)
		}
		if e.N < maxAll || e.N < len(acked) {
			t.Errorf("counter %s = %d, below the %d increments acknowledged (highest %d)", key, e.N, len(acked), maxAll)
		}
		total += len(acked)
	}
	for _, in := range []*testkit.Process{a, b} {
		if strings.Contains(in.Stderr.String(), "claimed the lease") {
			t.Errorf("instance %s took another for dead after a Redis outage:\n%s", in.Name, in.Stderr.String())
		}
	}
	t.Logf("%d increments acknowledged, %d broker_unavailable answers (%d of %d clients during the outage); "+
		"every client had an increment through within %v of the restart (median %v)",
		total, unavailable, gotUnavailable, conns, slowest.Round(time.Millisecond), median(resumes).Round(time.Millisecond))
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	ds = slices.Clone(ds)
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// TestFleetReconnectStorm kills an instance serving 5,000 chat clients in
// 500 rooms; each client reconnects to the other instance at a random
// moment within a second of noticing, and logs in again. All are served;
// the dead instance's on_close calls, which run meanwhile on the survivor,
// remove none of the users who came back (chat's on_close leaves a member
// who logged in again), and its lease goes.
//
// Sizing: the test process holds one socket per client (5,000, then the
// 5,000 new ones as the old ones close), each instance one per client it
// serves; the limit is 20,000 open files per process. With -short it runs
// 1,000 clients. The server is built without -race even when the tests run
// with it (testkit.LoadBinary): 5,000 logins at once against the shipped
// 1 s Lua timeout would measure the detector's slowdown.
func TestFleetReconnectStorm(t *testing.T) {
	n := 5000
	if testing.Short() {
		n = 1000
	}
	srv := redistest.New(t)
	prefix := srv.Prefix(t)
	raw := srv.Client(t)
	bin := testkit.LoadBinary(t) // a load test: not under the race detector's slowdown
	cfg := writeFleetConfig(t, srv.URL, prefix, "2s")
	a := startInstance(t, "A", bin, cfg)
	b := startInstance(t, "B", bin, cfg)
	deadID := fleetID(t, a)
	user := func(i int) string { return fmt.Sprint("u", i) }
	room := func(i int) string { return fmt.Sprint("s", i/10) }
	first := func(i int) map[string]any { return map[string]any{"user": user(i), "room": room(i)} }
	welcome := map[string]any{"type": "welcome"}
	connected := time.Now()
	clients := dialMany(t, n, 100, user, func(int) string { return a.Addr }, "/chat", first, welcome)
	t.Logf("%d clients logged in to A in %v", n, time.Since(connected).Round(time.Millisecond))

	kill(t, a)
	killed := time.Now()
	served := make([]time.Duration, n)
	errs := make(chan error, n)
	again := make([]*testkit.Client, n)
	for i, c := range clients {
		go func() {
			select {
			case <-c.End():
			case <-time.After(fleetBound):
				errs <- fmt.Errorf("%s: its connection to the dead instance did not end", c.Name)
				return
			}
			c.Conn.CloseNow()
			time.Sleep(time.Duration(rand.Int64N(int64(time.Second)))) // the storm: all within a second
			nc, err := dialFleet(t, c.Name, b.Addr, "/chat", sourceFor(i))
			if err == nil {
				again[i] = nc
				err = fleetLogin(nc, first(i), welcome)
			}
			served[i] = time.Since(killed)
			errs <- err
		}()
	}
	failed := 0
	var firstErr error
	for range clients {
		if err := <-errs; err != nil {
			failed++
			if firstErr == nil {
				firstErr = err
			}
		}
	}
	t.Cleanup(func() {
		for _, c := range again {
			if c != nil {
				c.Conn.CloseNow()
			}
		}
	})
	if failed > 0 {
		t.Fatalf("%d of %d clients not served again: %v", failed, n, firstErr)
	}
	slices.Sort(served)
	t.Logf("%d clients reconnected within a second of the kill and were all served by B within %v of it (median %v)",
		n, served[n-1].Round(time.Millisecond), served[n/2].Round(time.Millisecond))

	waitCleaned(t, raw, prefix, deadID)
	for r := 0; r < n/10; r++ {
		var e struct{ Members map[string]string }
		data, err := raw.Get(context.Background(), prefix+"chat."+fmt.Sprint("s", r)).Bytes()
		if err != nil || json.Unmarshal(data, &e) != nil {
			t.Fatalf("room s%d: %s, %v", r, data, err)
		}
		if len(e.Members) != 10 {
			t.Fatalf("room s%d has %d members after the storm and the cleanup, want its 10 users: %v", r, len(e.Members), e.Members)
		}
	}
	b.Alive(t)
}

// fleetInProcess is the config of an in-process server (startServer) of
// fleet_room.lua at /room on the redis broker.
func fleetInProcess(url, prefix string) string {
	return fmt.Sprintf(`
[server]
listen = "127.0.0.1:0"

[lua]
watch = false

[broker]
kind = "redis"
url = %s
prefix = %s
orphan_timeout = "2s"

[[integration]]
name = "room"
path = "/room"
script = "fleet_room.lua"
`, strconv.Quote(url), strconv.Quote(prefix))
}

var lostRe = regexp.MustCompile(`lease was claimed by another instance.* instance=(\S+)`)

// TestFleetLeaseLostRunsOnce takes a live instance for dead: its lease is
// marked claimed and expired, as if it had been paused longer than its
// lease. The other instance claims it and runs on_close for its
// connections, while the instance itself learns at its next renewal that
// it lost its lease and closes them (1001), running their on_close too:
// each runs once in all (the operation close:<channel> applies once). The
// instance then serves on under a new id.
func TestFleetLeaseLostRunsOnce(t *testing.T) {
	srv := redistest.New(t)
	prefix := srv.Prefix(t)
	raw := srv.Client(t)
	a := startServer(t, fleetInProcess(srv.URL, prefix))
	b := startServer(t, fleetInProcess(srv.URL, prefix))
	obs := roomLogin(t, "obs", b.addr, "x")
	const n = 6
	victims := make([]*testkit.Client, n)
	for i := range victims {
		victims[i] = roomLogin(t, fmt.Sprint("v", i), a.addr, "x")
	}
	m := instanceRe.FindStringSubmatch(a.log.String())
	if m == nil {
		t.Fatalf("no fleet id in A's log:\n%s", a.log.String())
	}
	aID, ctx := m[1], context.Background()
	if err := raw.HSet(ctx, "{"+prefix+"fleet}:claims", aID, "a-phantom-cleaner").Err(); err != nil {
		t.Fatal(err)
	}
	if err := raw.ZAdd(ctx, "{"+prefix+"fleet}:leases", redis.Z{Score: 0, Member: aID}).Err(); err != nil {
		t.Fatal(err)
	}

	for _, v := range victims {
		select {
		case <-v.End(): // joined and left notices before the close are fine
		case <-time.After(fleetBound):
			t.Fatalf("%s: not closed %v after its instance lost its lease", v.Name, fleetBound)
		}
		if st := websocket.CloseStatus(v.Err()); st != websocket.StatusGoingAway {
			t.Errorf("%s: ended with %v, want 1001", v.Name, v.Err())
		}
	}
	left := collectLeft(t, obs, n)
	for i := 0; i < n; i++ {
		if got := len(left[fmt.Sprint("v", i)]); got != 1 {
			t.Errorf("obs: %d left notices for v%d, want 1", got, i)
		}
	}
	waitCleaned(t, raw, prefix, aID)
	members, closes := roomEntity(t, raw, prefix, "x")
	for i := 0; i < n; i++ {
		if c := closes[fmt.Sprint("v", i)]; c != 1 {
			t.Errorf("on_close of v%d ran %d times, want 1", i, c)
		}
	}
	if len(members) != 1 {
		t.Errorf("members %v, want obs alone", members)
	}
	onA, onB := 0, 0
	for i := 0; i < n; i++ {
		onA += sideEffects(fmt.Sprint("v", i), a.log.String())
		onB += sideEffects(fmt.Sprint("v", i), b.log.String())
	}
	if onA+onB != n {
		t.Errorf("%d side effects of on_close on A and %d on B, want %d in all", onA, onB, n)
	}
	t.Logf("on_close ran %d times on A (closing its connections) and %d times on B (the claimer)", onA, onB)
	lost := lostRe.FindStringSubmatch(a.log.String())
	if lost == nil {
		t.Fatalf("A does not log that it lost its lease:\n%s", a.log.String())
	}
	again := roomLogin(t, "back", a.addr, "x")
	obs.Expect(map[string]any{"type": "joined", "user": "back"})
	if got := raw.HLen(ctx, "{"+prefix+"fleet}:conns:"+lost[1]).Val(); got != 1 {
		t.Errorf("A records %d connections under its new id %s, want 1", got, lost[1])
	}
	again.Conn.CloseNow()
	if !obs.Until(waitBound, map[string]any{"type": "left", "user": "back"}, func(map[string]any) bool { return false }) {
		t.Fatalf("obs: no left notice for back (closed on A after A lost and renewed its lease) within %v", waitBound)
	}
}

// TestFleetOnCloseAfterOutage: a client that leaves while Redis is down
// cannot have its on_close committed then; it is kept and committed once
// Redis is back (with persistence, so the room is still there).
func TestFleetOnCloseAfterOutage(t *testing.T) {
	srv := redistest.NewPersistent(t)
	prefix := srv.Prefix(t)
	raw := srv.Client(t)
	a := startServer(t, fleetInProcess(srv.URL, prefix))
	alice := roomLogin(t, "alice", a.addr, "x")
	bob := roomLogin(t, "bob", a.addr, "x")
	alice.Expect(map[string]any{"type": "joined", "user": "bob"})

	srv.Stop(t)
	alice.Conn.CloseNow()
	testkit.Eventually(t, waitBound, "on_close to fail while Redis is down", func() bool {
		return strings.Contains(a.log.String(), "on_close could not commit; it will run again")
	})
	srv.Start(t)
	testkit.Eventually(t, fleetBound, "alice's on_close to commit once Redis is back", func() bool {
		data, err := raw.Get(context.Background(), prefix+"room.x").Bytes()
		if err != nil {
			return false
		}
		var e struct{ Closes map[string]int }
		return json.Unmarshal(data, &e) == nil && e.Closes["alice"] == 1
	})
	members, closes := roomEntity(t, raw, prefix, "x")
	if len(members) != 1 || members["bob"] == "" || closes["alice"] != 1 {
		t.Fatalf("room after the outage: members %v, closes %v; want bob alone, alice's on_close once", members, closes)
	}
	testkit.Eventually(t, waitBound, "the log to say the on_close committed late", func() bool {
		return strings.Contains(a.log.String(), "on_close committed for connections that closed while the broker failed")
	})
	bob.Open()
}
