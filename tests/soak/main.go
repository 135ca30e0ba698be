// Command soak runs electric-socket under a long, steady load with faults
// and checks that it does not leak: goroutines, open files and heap of
// every instance must be the same (within 10%) at the end as at the start.
// It is not run by CI (it takes 30 minutes); see RELIABILITY.md.
//
//	go run ./tests/soak                                   # the run: 30 minutes
//	go run ./tests/soak -duration 2m -reload-every 20s    # a short run
//
// What it does: builds the binary (or uses -bin), starts its own
// redis-server from PATH on a free port with an append-only file, two
// `electric-socket serve` instances sharing it (each with --admin, whose
// /metrics it reads), and -conns WebSocket clients of the example chat
// (scripts/chat.lua), in rooms of 10, spread over the instances. The clients
// say something -rate times a second in all (each message reaches the 9
// others of its room). Every -reload-every it edits the chat script (hot
// reload); at half time it kills redis-server (SIGKILL) and starts it again
// on the same port.
//
// It samples each instance's /metrics every 2s during a window after the
// warm-up and during one before the end. Before each window it pauses the
// load and waits until every message sent has been answered (-quiesce): a
// session waiting for Redis holds a goroutine, so under load the count
// follows how far behind a busy machine is, not what leaked. It compares
// the medians of: the
// goroutines that are not idle workers (go_goroutines minus
// electric_socket_idle_workers: the worker pool keeps goroutines waiting for
// work after a burst, the Redis kill or a reload, and retires them after
// 10 s unused, so what it holds at an instant is not a leak),
// process_open_fds, and the live heap, which is
// go_memstats_next_gc_bytes / 2 (the collector's target is twice the heap
// that survived the last collection, GOGC=100). go_memstats_heap_alloc_bytes
// is shown too, for information only: between two collections it climbs
// from the live heap to twice it, so any two samples differ by up to 100%.
// It exits 1 when a compared measure grew by more than -tolerance, when
// an instance exited, or when the clients stopped getting answers.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"
)

var (
	duration    = flag.Duration("duration", 30*time.Minute, "how long the load runs")
	conns       = flag.Int("conns", 1000, "WebSocket clients")
	rate        = flag.Float64("rate", 500, "messages per second, all clients together")
	instances   = flag.Int("instances", 2, "electric-socket instances")
	reloadEvery = flag.Duration("reload-every", 5*time.Minute, "how often the chat script is edited (hot reload); 0: never")
	noRestart   = flag.Bool("no-redis-restart", false, "do not restart redis-server at half time")
	tolerance   = flag.Float64("tolerance", 0.10, "the largest relative difference allowed between start and end")
	warmup      = flag.Duration("warmup", 20*time.Second, "load before the first window")
	window      = flag.Duration("window", 0, "sampling window at the start and at the end; 0: duration / 6, at most 1m")
	bin         = flag.String("bin", "", "the electric-socket binary; empty: build it")
	keep        = flag.Bool("keep", false, "keep the work folder (logs, config, AOF)")
	quiesce     = flag.Bool("quiesce", true, "pause the load and wait for every answer before each window: what a busy instance holds for work in flight is not compared")
)

func main() {
	flag.Parse()
	log.SetFlags(log.Ltime)
	if *window <= 0 {
		*window = min(*duration/6, time.Minute)
	}
	if 2**window+*warmup > *duration {
		log.Fatalf("duration %v is too short for a warm-up of %v and two windows of %v", *duration, *warmup, *window)
	}
	work, err := os.MkdirTemp("", "es-soak-")
	check(err)
	if *keep {
		log.Printf("work folder: %s", work)
	} else {
		defer os.RemoveAll(work)
	}
	if err := run(work); err != nil {
		log.Printf("FAIL: %v", err)
		if !*keep {
			os.RemoveAll(work)
		}
		os.Exit(1)
	}
	log.Printf("PASS")
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

func run(work string) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	binary := *bin
	if binary == "" {
		binary = filepath.Join(work, "electric-socket")
		log.Printf("building %s", binary)
		out, err := exec.Command("go", "build", "-o", binary, root).CombinedOutput()
		if err != nil {
			return fmt.Errorf("go build: %v\n%s", err, out)
		}
	}
	script := filepath.Join(work, "chat.lua")
	src, err := os.ReadFile(filepath.Join(root, "scripts", "chat.lua"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(script, src, 0o644); err != nil {
		return err
	}

	rs, err := startRedis(work)
	if err != nil {
		return err
	}
	defer rs.stop()
	cfg := filepath.Join(work, "config.toml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`
[server]
listen = "127.0.0.1:0"
shutdown_timeout = "20s"

[lua]
watch = true

[broker]
kind = "redis"
url = "redis://%s/0"
prefix = "soak:"

[log]
level = "warn"

[[integration]]
name = "chat"
path = "/chat"
script = %q
`, rs.addr, script)), 0o644); err != nil {
		return err
	}
	var ins []*server
	for i := 0; i < *instances; i++ {
		s, err := startServer(binary, cfg, work, i)
		if err != nil {
			return err
		}
		defer s.stop()
		ins = append(ins, s)
	}

	ld := &load{}
	log.Printf("connecting %d clients", *conns)
	if err := ld.connect(ins); err != nil {
		return err
	}
	defer ld.close()
	start := time.Now()
	end := start.Add(*duration)
	ctx, cancel := context.WithDeadline(context.Background(), end)
	defer cancel()
	go ld.send(ctx)
	go ld.report(ctx)
	if *reloadEvery > 0 {
		go reloads(ctx, script, src)
	}
	if !*noRestart {
		go func() {
			select {
			case <-ctx.Done():
				return
			case <-time.After(*duration / 2):
			}
			log.Printf("killing redis-server (SIGKILL) and starting it again")
			if err := rs.restart(); err != nil {
				log.Printf("redis restart: %v", err)
			}
		}()
	}

	measure := func(which string) []map[string]float64 {
		if *quiesce {
			ld.paused.Store(true)
			defer ld.paused.Store(false)
			log.Printf("%s: load paused; waiting until every message sent is answered", which)
			ld.drain(2 * time.Minute)
		}
		log.Printf("sampling the %s window (%v)", which, *window)
		return sampleAll(ins, *window)
	}
	time.Sleep(time.Until(start.Add(*warmup)))
	first := measure("start")
	time.Sleep(time.Until(end.Add(-*window)))
	last := measure("end")
	<-ctx.Done()

	var problems []string
	for _, s := range ins {
		select {
		case <-s.exited:
			problems = append(problems, fmt.Sprintf("instance %d exited: %v", s.n, s.err))
		default:
		}
	}
	fmt.Printf("\n%-10s %-28s %10s %10s %8s\n", "instance", "measure", "start", "end", "change")
	for i, s := range ins {
		for _, m := range measures {
			a, b := first[i][m.name], last[i][m.name]
			change := 0.0
			if a > 0 {
				change = (b - a) / a
			}
			flagged := ""
			if !m.info && (a == 0 || change > *tolerance) { // a leak grows; less at the end is not one
				flagged = "  <-- over the tolerance"
				problems = append(problems, fmt.Sprintf("instance %d: %s went from %s to %s", s.n, m.label, m.format(a), m.format(b)))
			}
			fmt.Printf("%-10d %-28s %10s %10s %+7.1f%%%s\n", s.n, m.label, m.format(a), m.format(b), 100*change, flagged)
		}
	}
	sent, acked, delivered, errs, reconnects := ld.sent.Load(), ld.acked.Load(), ld.delivered.Load(), ld.errs.Load(), ld.reconnects.Load()
	elapsed := time.Since(start)
	var codes []string
	ld.codes.Range(func(k, _ any) bool { codes = append(codes, k.(string)); return true })
	fmt.Printf("\n%d clients for %v: %d messages sent (%.0f/s), %d answered, %d delivered to others, %d error frames %v, %d reconnects, %d script reloads\n",
		*conns, elapsed.Round(time.Second), sent, float64(sent)/elapsed.Seconds(), acked, delivered, errs, codes, reconnects, reloadCount.Load())
	if acked < sent*9/10 {
		problems = append(problems, fmt.Sprintf("only %d of %d messages were answered", acked, sent))
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// moduleRoot is the folder of go.mod above the working folder.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run it inside the electric-socket module (no go.mod above the working folder)")
		}
		dir = parent
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// redisServer is a redis-server with an append-only file in the work folder.
type redisServer struct {
	dir, addr string
	port      int
	cmd       *exec.Cmd
}

func startRedis(work string) (*redisServer, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	rs := &redisServer{dir: work, port: port, addr: "127.0.0.1:" + strconv.Itoa(port)}
	return rs, rs.start()
}

func (rs *redisServer) start() error {
	rs.cmd = exec.Command("redis-server", "--port", strconv.Itoa(rs.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "yes", "--appendfsync", "everysec", "--dir", rs.dir,
		"--logfile", filepath.Join(rs.dir, "redis.log"), "--daemonize", "no")
	if err := rs.cmd.Start(); err != nil {
		return fmt.Errorf("redis-server: %w", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", rs.addr, time.Second); err == nil {
			c.SetDeadline(time.Now().Add(time.Second))
			fmt.Fprint(c, "PING\r\n")
			line, _ := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if strings.HasPrefix(line, "+PONG") {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("redis-server on %s does not answer", rs.addr)
}

func (rs *redisServer) stop() {
	if rs.cmd != nil && rs.cmd.Process != nil {
		rs.cmd.Process.Kill()
		rs.cmd.Wait()
	}
}

func (rs *redisServer) restart() error {
	rs.stop()
	time.Sleep(2 * time.Second)
	return rs.start()
}

// server is one electric-socket instance.
type server struct {
	n      int
	addr   string
	admin  string
	cmd    *exec.Cmd
	exited chan struct{}
	err    error
}

func startServer(binary, cfg, work string, n int) (*server, error) {
	p1, err := freePort()
	if err != nil {
		return nil, err
	}
	p2, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &server{n: n, addr: "127.0.0.1:" + strconv.Itoa(p1), admin: "127.0.0.1:" + strconv.Itoa(p2), exited: make(chan struct{})}
	logf, err := os.Create(filepath.Join(work, fmt.Sprintf("instance%d.log", n)))
	if err != nil {
		return nil, err
	}
	s.cmd = exec.Command(binary, "serve", "--config", cfg, "--listen", s.addr, "--admin", s.admin)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { s.err = s.cmd.Wait(); logf.Close(); close(s.exited) }()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := scrape(s.admin); err == nil {
			log.Printf("instance %d: ws://%s/chat, metrics http://%s/metrics", n, s.addr, s.admin)
			return s, nil
		}
		select {
		case <-s.exited:
			return nil, fmt.Errorf("instance %d exited at start: %v (see %s)", n, s.err, logf.Name())
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil, fmt.Errorf("instance %d: no /metrics on %s (this build has no --admin?)", n, s.admin)
}

func (s *server) stop() {
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
}

// measures are what is compared between the start and the end.
var measures = []struct {
	name, label string
	format      func(float64) string
	info        bool // shown, not compared
}{
	{"goroutines_not_idle", "goroutines - idle workers", count, false},
	{"go_goroutines", "goroutines (info)", count, true},
	{"electric_socket_idle_workers", "idle workers (info)", count, true},
	{"process_open_fds", "open files", func(v float64) string { return strconv.Itoa(int(v)) }, false},
	{"live_heap", "live heap (MiB)", mib, false},
	{"go_memstats_heap_alloc_bytes", "heap allocated (MiB, info)", mib, true},
}

func count(v float64) string { return strconv.Itoa(int(v)) }

func mib(v float64) string { return fmt.Sprintf("%.2f", v/(1<<20)) }

// scrape reads the unlabelled samples of /metrics at admin.
func scrape(admin string) (map[string]float64, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + admin + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics: %s", resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") || strings.Contains(name, "{") {
			continue
		}
		if f, err := strconv.ParseFloat(strings.TrimSpace(value), 64); err == nil {
			out[name] = f
		}
	}
	return out, sc.Err()
}

// sampleAll samples every instance every 2s for d and returns the median
// of each measure, by instance.
func sampleAll(ins []*server, d time.Duration) []map[string]float64 {
	samples := make([]map[string][]float64, len(ins))
	for i := range samples {
		samples[i] = map[string][]float64{}
	}
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(2 * time.Second) {
		for i, s := range ins {
			m, err := scrape(s.admin)
			if err != nil {
				log.Printf("instance %d: %v", s.n, err)
				continue
			}
			m["live_heap"] = m["go_memstats_next_gc_bytes"] / 2
			if _, ok := m["electric_socket_idle_workers"]; !ok {
				log.Printf("instance %d: no electric_socket_idle_workers in /metrics (an older binary?)", s.n)
			}
			m["goroutines_not_idle"] = m["go_goroutines"] - m["electric_socket_idle_workers"]
			for _, ms := range measures {
				samples[i][ms.name] = append(samples[i][ms.name], m[ms.name])
			}
		}
	}
	out := make([]map[string]float64, len(ins))
	for i := range ins {
		out[i] = map[string]float64{}
		for name, vs := range samples[i] {
			slices.Sort(vs)
			out[i][name] = vs[len(vs)/2]
		}
	}
	return out
}

var reloadCount atomic.Int64

// reloads edits the script every -reload-every: a comment changes, so the
// hash changes and every instance reloads it.
func reloads(ctx context.Context, script string, src []byte) {
	t := time.NewTicker(*reloadEvery)
	defer t.Stop()
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		body := append(append([]byte(nil), src...), fmt.Sprintf("\n-- soak reload %d\n", n)...)
		if err := os.WriteFile(script, body, 0o644); err != nil {
			log.Printf("reload %d: %v", n, err)
			continue
		}
		reloadCount.Add(1)
		log.Printf("edited the chat script (reload %d)", n)
	}
}

// load is the clients and their counters.
type load struct {
	mu      sync.Mutex
	clients []*client

	sent, acked, delivered, errs, reconnects atomic.Int64
	paused                                   atomic.Bool // send sends nothing
	codes                                    sync.Map    // error codes seen
}

type client struct {
	i    int
	user string
	room string
	addr string
	mu   sync.Mutex
	conn *websocket.Conn
}

func (l *load) connect(ins []*server) error {
	l.clients = make([]*client, *conns)
	var wg sync.WaitGroup
	errs := make(chan error, *conns)
	sem := make(chan struct{}, 50)
	for i := range l.clients {
		c := &client{i: i, user: fmt.Sprint("s", i), room: fmt.Sprint("room", i/10), addr: ins[i%len(ins)].addr}
		l.clients[i] = c
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := l.dial(c); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// sourceFor spreads clients over loopback addresses, 500 each: an instance
// accepts at most [limits] max_connections_per_ip from one address.
func sourceFor(i int) net.IP { return net.IPv4(127, 0, 0, byte(2+i/500)) }

func (l *load) dial(c *client) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: sourceFor(c.i)}}
	opts := &websocket.DialOptions{HTTPClient: &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}}
	conn, resp, err := websocket.Dial(ctx, "ws://"+c.addr+"/chat", opts)
	if err != nil {
		return fmt.Errorf("%s: %w", c.user, err)
	}
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	conn.SetReadLimit(1 << 20)
	hello, _ := json.Marshal(map[string]string{"user": c.user, "room": c.room})
	if err := conn.Write(ctx, websocket.MessageText, hello); err != nil {
		return fmt.Errorf("%s: %w", c.user, err)
	}
	_, data, err := conn.Read(ctx)
	if err != nil || !strings.Contains(string(data), `"welcome"`) {
		conn.CloseNow()
		return fmt.Errorf("%s: login: %q, %v", c.user, data, err)
	}
	c.mu.Lock()
	c.conn = conn
	c.mu.Unlock()
	go l.read(c, conn)
	return nil
}

// read counts what a client receives; when its connection ends it dials
// again.
func (l *load) read(c *client, conn *websocket.Conn) {
	var end error
	for {
		_, data, err := conn.Read(context.Background())
		if err != nil {
			end = err
			break
		}
		var m struct {
			Type, Error string
		}
		json.Unmarshal(data, &m)
		switch {
		case m.Type == "sent":
			l.acked.Add(1)
		case m.Type == "message":
			l.delivered.Add(1)
		case m.Error != "":
			l.errs.Add(1)
			l.codes.Store(m.Error, true)
		}
	}
	c.mu.Lock()
	closing := c.conn == nil
	c.conn = nil
	c.mu.Unlock()
	if closing {
		return
	}
	if n := l.reconnects.Add(1); n <= 10 {
		log.Printf("client %s: the connection ended (%v); dialling again", c.user, end)
	}
	for {
		if err := l.dial(c); err == nil {
			return
		}
		time.Sleep(time.Second)
	}
}

// send makes the clients say something, -rate messages a second in all,
// from random clients: every 10ms it sends what is due since the start.
func (l *load) send(ctx context.Context) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	text, _ := json.Marshal(map[string]string{"type": "say", "text": "soak"})
	start, done := time.Now(), int64(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		due := int64(time.Since(start).Seconds() * *rate)
		if l.paused.Load() {
			done = due // nothing is owed for the pause
			continue
		}
		for ; done < due; done++ {
			c := l.clients[rand.IntN(len(l.clients))]
			c.mu.Lock()
			conn := c.conn
			c.mu.Unlock()
			if conn == nil {
				continue
			}
			// Not derived from ctx: a write whose context ends closes the connection.
			wctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := conn.Write(wctx, websocket.MessageText, text); err == nil {
				l.sent.Add(1)
			}
			cancel()
		}
	}
}

// drain waits, at most bound, until every message sent has been answered
// (with "sent" or an error frame), and logs how many were still in flight.
func (l *load) drain(bound time.Duration) {
	deadline := time.Now().Add(bound)
	for {
		inFlight := l.sent.Load() - l.acked.Load() - l.errs.Load()
		if inFlight <= 0 {
			log.Printf("every message answered")
			return
		}
		if time.Now().After(deadline) {
			log.Printf("%d messages still unanswered after %v; sampling anyway", inFlight, bound)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// report logs the traffic every minute.
func (l *load) report(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		log.Printf("sent %d, answered %d, delivered %d, error frames %d, reconnects %d, goroutines here %d",
			l.sent.Load(), l.acked.Load(), l.delivered.Load(), l.errs.Load(), l.reconnects.Load(), runtime.NumGoroutine())
	}
}

// close closes every client at once: a Close waits (up to 5s) for the
// server's close frame, which an instance that fell behind sends late.
func (l *load) close() {
	var wg sync.WaitGroup
	for _, c := range l.clients {
		if c == nil {
			continue
		}
		c.mu.Lock()
		conn := c.conn
		c.conn = nil
		c.mu.Unlock()
		if conn != nil {
			wg.Add(1)
			go func() { defer wg.Done(); conn.Close(websocket.StatusNormalClosure, "") }()
		}
	}
	wg.Wait()
}
