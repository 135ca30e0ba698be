// Command loadgen is the load generator of the benchmark suite
// (tests/bench/run.sh). It drives WebSocket servers on loopback and prints
// ONE JSON line of figures on stdout (progress goes to stderr).
//
//	loadgen -mode echo   closed loop: N connections, W messages in flight on
//	                     each; msgs/s, latency p50/p99/p999 (send to its
//	                     response; responses come in order per connection),
//	                     server CPU per message, server RSS per connection
//	loadgen -mode fanout one sender, N receivers in one room: delivery
//	                     latency (send to each receiver's arrival)
//	loadgen -mode idle   N connections: server RSS per connection once
//	                     connected, once authorised, after one message each,
//	                     after a burst of traffic
//	loadgen -mode reload rewrites a script's "local VERSION = n" line and
//	                     times until a message is answered by the new version
//	loadgen freeport     prints a free TCP port on 127.0.0.1
//
// Connections are spread over the source addresses 127.0.0.1..127.0.0.S
// (-sources), bound when dialing, and over the -url list (round robin).
// Every connection first sends the -auth template and reads one reply, then
// the -msg template. Templates take {conn}, {group} (conn % -groups) and
// {seq}. Every phase is bounded: the generator stops by itself.
//
// -protocol centrifugo runs the echo and idle modes against Centrifugo (the
// peer of run.sh's scenario peer): the auth step is its connect command with
// a token and a subscribe to the connection's own channel, each message is a
// publish to that channel, and its echo is the publication pushed back
// (centrifugo.go).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

var (
	flagMode      = flag.String("mode", "echo", "echo, fanout, idle or reload")
	flagName      = flag.String("name", "", "a label copied into the JSON line")
	flagRef       = flag.String("ref", "", "the name of the reference line this one is compared with (copied into the JSON line)")
	flagRef2      = flag.String("ref2", "", "a second reference line (the buffered reference server)")
	flagURL       = flag.String("url", "ws://127.0.0.1:8080/echo", "server URL(s), comma separated; connections are spread round robin")
	flagConns     = flag.Int("conns", 100, "connections (fanout: receivers; the sender is one more)")
	flagInflight  = flag.Int("inflight", 1, "echo: messages in flight per connection")
	flagRedis     = flag.String("redis", "", "echo: a redis-server host:port whose commands during the window are counted per message")
	flagPause     = flag.Duration("pause", 0, "echo: how long a connection waits after an answer before it sends the next message")
	flagSources   = flag.Int("sources", 8, "source addresses 127.0.0.1..127.0.0.S")
	flagAuth      = flag.String("auth", `{"user":"u{conn}"}`, "the first message of every connection (template)")
	flagAuthWait  = flag.Bool("auth-reply", true, "read one reply to the auth message before going on")
	flagMsg       = flag.String("msg", `{"seq":{seq},"text":"hello, world"}`, "the message template")
	flagGroups    = flag.Int("groups", 1, "{group} is conn % groups")
	flagWarmup    = flag.Duration("warmup", 2*time.Second, "echo: traffic before the measured window")
	flagDuration  = flag.Duration("duration", 8*time.Second, "echo: the measured window")
	flagPIDs      = flag.String("pid", "", "server process ids (comma separated): CPU and RSS are summed over them")
	flagAuxPIDs   = flag.String("auxpid", "", "other processes whose CPU is reported apart (redis-server)")
	flagStats     = flag.String("stats", "", "URL(s) serving runtime counters as JSON (/debug/mallocs of the bench binaries): allocations per message")
	flagPprof     = flag.String("pprof", "", "base URL of a net/http/pprof server: a CPU profile of the measured window and allocs profiles at its ends are saved in -profile-dir")
	flagProfDir   = flag.String("profile-dir", ".", "where -pprof profiles go")
	flagParallel  = flag.Int("dial-parallel", 64, "connections dialed at once")
	flagClient    = flag.String("client", "gobwas", "client library: gobwas (frame level, no allocation per message) or coder (coder/websocket)")
	flagSettle    = flag.Duration("settle", 3*time.Second, "idle: wait before each RSS reading")
	flagIdleBurst = flag.Duration("idle-traffic", 0, "idle: after the one-message stage, this long a closed loop (1 in flight) on every connection, then settle and read RSS again; 0 skips")
	flagRounds    = flag.Int("rounds", 30, "fanout: measured rounds")
	flagWarmRnds  = flag.Int("warmup-rounds", 5, "fanout: rounds before the measured ones")
	flagGap       = flag.Duration("gap", 20*time.Millisecond, "fanout: pause between rounds")
	flagScript    = flag.String("script", "", "reload: the script file to rewrite")
	flagReloads   = flag.Int("reloads", 10, "reload: how many saves")
	flagSave      = flag.String("save", "inplace", "reload: inplace (truncate and write) or rename (write a temporary file, rename it over)")
	flagLog       = flag.String("log", "", "reload: the server's log file: also time the appearance of msg=reloaded")
	flagTimeout   = flag.Duration("timeout", 60*time.Second, "bound of every single wait (a dial, a reply, a round, a drain)")
	flagProtocol  = flag.String("protocol", "raw", "raw (the templates are the frames) or centrifugo (Centrifugo's JSON client protocol, see centrifugo.go; modes echo and idle)")
	flagChannel   = flag.String("channel", "bench:c{conn}", "centrifugo: the channel each connection subscribes to and publishes to (template)")
	flagSecret    = flag.String("token-secret", "", "centrifugo: the HMAC secret of the connection tokens (HS256; the -auth template is their claims)")
	flagVs        = flag.String("vs", "", "the name of electric-socket's line a peer's line is compared with (copied into the JSON line)")
	flagNote      = flag.String("note", "", "a free note copied into the JSON line (a peer's version)")
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "freeport" {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fatalf("freeport: %v", err)
		}
		fmt.Println(l.Addr().(*net.TCPAddr).Port)
		l.Close()
		return
	}
	flag.Parse()
	res := newResult()
	res.set("name", *flagName)
	if *flagRef != "" {
		res.set("ref", *flagRef)
	}
	if *flagRef2 != "" {
		res.set("ref2", *flagRef2)
	}
	if *flagVs != "" {
		res.set("vs", *flagVs)
	}
	if *flagNote != "" {
		res.set("note", *flagNote)
	}
	res.set("mode", *flagMode)
	res.set("client", *flagClient)
	switch *flagProtocol {
	case "raw":
	case "centrifugo":
		res.set("protocol", *flagProtocol)
		if *flagMode != "echo" && *flagMode != "idle" {
			fatalf("-protocol centrifugo: modes echo and idle only")
		}
		if *flagSecret == "" {
			fatalf("-protocol centrifugo needs -token-secret")
		}
	default:
		fatalf("unknown -protocol %q", *flagProtocol)
	}
	switch *flagMode {
	case "echo":
		runEcho(res)
	case "fanout":
		runFanout(res)
	case "idle":
		runIdle(res)
	case "reload":
		runReload(res)
	default:
		fatalf("unknown -mode %q", *flagMode)
	}
	b, _ := json.Marshal(res)
	fmt.Println(string(b))
}

// ---- output ----

// result is the JSON line, keys in the order they were set.
type result struct {
	keys []string
	vals map[string]any
}

func newResult() *result { return &result{vals: map[string]any{}} }

func (r *result) set(k string, v any) {
	if _, ok := r.vals[k]; !ok {
		r.keys = append(r.keys, k)
	}
	r.vals[k] = v
}

func (r *result) MarshalJSON() ([]byte, error) {
	var b strings.Builder
	b.WriteByte('{')
	for i, k := range r.keys {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		vb, err := json.Marshal(r.vals[k])
		if err != nil {
			return nil, err
		}
		b.Write(kb)
		b.WriteByte(':')
		b.Write(vb)
	}
	b.WriteByte('}')
	return []byte(b.String()), nil
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "loadgen: "+format+"\n", args...)
	os.Exit(1)
}

func warnf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "loadgen: "+format+"\n", args...)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "loadgen[%s]: "+format+"\n", append([]any{*flagName}, args...)...)
}

// ---- connections ----

// loopbackOnly refuses a -url that is not on this machine's loopback: the
// generator is a benchmark tool, never a load test of someone else's host.
func loopbackOnly(urls []string) {
	for _, raw := range urls {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "ws" && u.Scheme != "http") {
			fatalf("-url %q: want ws://127.0.0.1:PORT/path", raw)
		}
		host := u.Hostname()
		if host == "localhost" {
			continue
		}
		ip := net.ParseIP(host)
		if ip == nil || !ip.IsLoopback() {
			fatalf("-url %q: loopback only (127.0.0.0/8, ::1, localhost)", raw)
		}
	}
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func pids(s string) procSet {
	var ps procSet
	for _, p := range splitList(s) {
		n, err := strconv.Atoi(p)
		if err != nil {
			fatalf("bad pid %q", p)
		}
		ps = append(ps, n)
	}
	return ps
}

func pickDialer() dialer {
	switch *flagClient {
	case "gobwas":
		return dialGobwas
	case "coder":
		return dialCoder
	}
	fatalf("unknown -client %q", *flagClient)
	return nil
}

func source(i int) net.IP {
	n := *flagSources
	if n < 1 {
		n = 1
	}
	if n > 254 {
		n = 254
	}
	return net.IPv4(127, 0, 0, byte(i%n+1))
}

// dialAll opens n connections in parallel; when auth is set, each sends
// its auth message and (with -auth-reply) reads one reply, which must not
// be an error frame.
func dialAll(n int, auth bool) []client {
	urls := splitList(*flagURL)
	if len(urls) == 0 {
		fatalf("no -url")
	}
	loopbackOnly(urls)
	dial := pickDialer()
	authT := parseTemplate(*flagAuth)
	conns := make([]client, n)
	var next atomic.Int64
	var failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	par := min(*flagParallel, n)
	for range par {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), *flagTimeout)
				c, err := dial(ctx, urls[i%len(urls)], source(i))
				cancel()
				if err == nil && *flagProtocol == "centrifugo" {
					c = newCentrifugoClient(c, i)
				}
				if err == nil && auth {
					buf = authT.render(buf[:0], i, i%max(*flagGroups, 1), 0)
					err = authenticate(c, buf)
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Errorf("connection %d: %w", i, err))
					if c != nil {
						c.close()
					}
					continue
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		fatalf("%d of %d connections failed; first: %v", f, n, firstErr.Load())
	}
	return conns
}

func authenticate(c client, msg []byte) error {
	if cf, ok := c.(*centrifugoClient); ok {
		c.setReadDeadline(time.Now().Add(*flagTimeout))
		defer c.setReadDeadline(time.Time{})
		return cf.handshake(msg)
	}
	if err := c.send(msg); err != nil {
		return err
	}
	if !*flagAuthWait {
		return nil
	}
	c.setReadDeadline(time.Now().Add(*flagTimeout))
	p, err := c.recv()
	if err != nil {
		return fmt.Errorf("auth reply: %w", err)
	}
	if isErrorFrame(p) {
		return fmt.Errorf("auth refused: %s", p)
	}
	c.setReadDeadline(time.Time{})
	return nil
}

// authAll authenticates already dialed connections in parallel.
func authAll(conns []client) {
	authT := parseTemplate(*flagAuth)
	parallelEach(conns, func(i int, c client, buf []byte) ([]byte, error) {
		buf = authT.render(buf[:0], i, i%max(*flagGroups, 1), 0)
		return buf, authenticate(c, buf)
	})
}

// oneMessageEach sends one message on every connection and reads its reply.
func oneMessageEach(conns []client, seq int) {
	if n, err := tryOneMessageEach(conns, seq); n > 0 {
		fatalf("%d of %d connections failed; first: %v", n, len(conns), err)
	}
}

// tryOneMessageEach is oneMessageEach that counts the connections that
// failed (and returns the first error) instead of stopping.
func tryOneMessageEach(conns []client, seq int) (int64, error) {
	msgT := parseTemplate(*flagMsg)
	return tryEach(conns, func(i int, c client, buf []byte) ([]byte, error) {
		buf = msgT.render(buf[:0], i, i%max(*flagGroups, 1), seq)
		if err := c.send(buf); err != nil {
			return buf, err
		}
		c.setReadDeadline(time.Now().Add(*flagTimeout))
		p, err := c.recv()
		if err == nil && isErrorFrame(p) {
			err = fmt.Errorf("error frame: %s", p)
		}
		c.setReadDeadline(time.Time{})
		return buf, err
	})
}

func parallelEach(conns []client, f func(i int, c client, buf []byte) ([]byte, error)) {
	if n, err := tryEach(conns, f); n > 0 {
		fatalf("%d of %d connections failed; first: %v", n, len(conns), err)
	}
}

// tryEach runs f on every connection (-dial-parallel at once) and returns
// how many failed and the first error.
func tryEach(conns []client, f func(i int, c client, buf []byte) ([]byte, error)) (int64, error) {
	var next, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range min(*flagParallel, len(conns)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			for {
				i := int(next.Add(1) - 1)
				if i >= len(conns) {
					return
				}
				var err error
				if buf, err = f(i, conns[i], buf); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Errorf("connection %d: %w", i, err))
				}
			}
		}()
	}
	wg.Wait()
	err, _ := firstErr.Load().(error)
	return failed.Load(), err
}

func closeAll(conns []client) {
	for _, c := range conns {
		if c != nil {
			c.close()
		}
	}
}

// ---- the measured window ----

// window records CPU, RSS and runtime counters at both ends of a measured
// window.
type window struct {
	server, aux procSet
	stats       []string
	t0, t1      time.Time
	cpu0, cpu1  int64
	aux0, aux1  int64
	self0       int64
	self1       int64
	ms0, ms1    memStats
	msOK        bool
	busy0, irq0 int64
	busy1, irq1 int64
}

func newWindow() *window {
	return &window{server: pids(*flagPIDs), aux: pids(*flagAuxPIDs), stats: splitList(*flagStats)}
}

func (w *window) start() {
	w.t0 = time.Now()
	w.cpu0, w.aux0 = w.server.cpu(), w.aux.cpu()
	w.self0, _ = cpuTicks(os.Getpid())
	w.busy0, w.irq0 = machineTicks()
	w.ms0, w.msOK = fetchMemStats(w.stats)
}

func (w *window) stop() {
	w.t1 = time.Now()
	w.cpu1, w.aux1 = w.server.cpu(), w.aux.cpu()
	w.self1, _ = cpuTicks(os.Getpid())
	w.busy1, w.irq1 = machineTicks()
	if w.msOK {
		w.ms1, w.msOK = fetchMemStats(w.stats)
	}
}

// report adds the per-unit figures (unit: "msg", "delivery").
func (w *window) report(res *result, unit string, n int) {
	secs := w.t1.Sub(w.t0).Seconds()
	tickUS := 1e6 / float64(clockTicks)
	if len(w.server) > 0 && n > 0 {
		res.set("server_cpu_us_per_"+unit, round(float64(w.cpu1-w.cpu0)*tickUS/float64(n), 2))
		res.set("server_cpu_cores", round(float64(w.cpu1-w.cpu0)/float64(clockTicks)/secs, 2))
	}
	if len(w.aux) > 0 && n > 0 {
		res.set("aux_cpu_us_per_"+unit, round(float64(w.aux1-w.aux0)*tickUS/float64(n), 2))
		res.set("aux_cpu_cores", round(float64(w.aux1-w.aux0)/float64(clockTicks)/secs, 2))
	}
	if n > 0 {
		res.set("loadgen_cpu_us_per_"+unit, round(float64(w.self1-w.self0)*tickUS/float64(n), 2))
	}
	// What the rest of the machine used meanwhile: other processes, and
	// kernel time no process was charged for. A busy machine makes msgs/s
	// and latency of this window unreliable (CPU per message much less so).
	own := (w.cpu1 - w.cpu0) + (w.aux1 - w.aux0) + (w.self1 - w.self0)
	res.set("loadgen_cpu_cores", round(float64(w.self1-w.self0)/float64(clockTicks)/secs, 2))
	res.set("machine_busy_cores", round(float64(w.busy1-w.busy0)/float64(clockTicks)/secs, 2))
	res.set("softirq_cores", round(float64(w.irq1-w.irq0)/float64(clockTicks)/secs, 2))
	res.set("other_cpu_cores", round(float64(w.busy1-w.busy0-own)/float64(clockTicks)/secs, 2))
	if w.msOK && n > 0 {
		res.set("server_allocs_per_"+unit, round(float64(w.ms1.Mallocs-w.ms0.Mallocs)/float64(n), 1))
		res.set("server_alloc_bytes_per_"+unit, round(float64(w.ms1.TotalAlloc-w.ms0.TotalAlloc)/float64(n), 0))
		res.set("server_gcs", w.ms1.NumGC-w.ms0.NumGC)
	}
}

// ---- echo ----

type echoStats struct {
	lats      []int64
	count     int
	errFrames int
	connErr   error
}

func runEcho(res *result) {
	n, w := *flagConns, *flagInflight
	if w < 1 {
		w = 1
	}
	res.set("conns", n)
	res.set("inflight", w)
	if *flagPause > 0 {
		res.set("pause_ms", flagPause.Milliseconds())
	}
	res.set("servers", len(splitList(*flagURL)))
	server := pids(*flagPIDs)
	var rssBase int64
	if len(server) > 0 {
		rssBase = server.rss()
	}
	start := time.Now()
	conns := dialAll(n, true)
	logf("%d connections dialed and authorised in %v", n, time.Since(start).Round(time.Millisecond))

	var phase atomic.Int32 // 0 warm-up, 1 measured, 2 stop
	msgT := parseTemplate(*flagMsg)
	stats := make([]echoStats, n)
	var wg sync.WaitGroup
	base := time.Now()
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			echoLoop(c, i, w, msgT, &phase, base, &stats[i])
		}()
	}
	win := newWindow()
	time.Sleep(*flagWarmup)
	var cpuProf chan error
	if *flagPprof != "" {
		if err := fetchTo(*flagPprof+"/debug/pprof/allocs", *flagProfDir+"/allocs0.pb.gz"); err != nil {
			warnf("allocs profile: %v", err)
		}
		cpuProf = make(chan error, 1)
		secs := int(flagDuration.Seconds())
		go func() {
			cpuProf <- fetchTo(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", *flagPprof, secs), *flagProfDir+"/cpu.pb.gz")
		}()
	}
	var calls0 int64
	if *flagRedis != "" {
		calls0 = redisCalls(*flagRedis)
	}
	win.start()
	phase.Store(1)
	time.Sleep(*flagDuration)
	phase.Store(2)
	win.stop()
	calls1 := calls0
	if *flagRedis != "" {
		calls1 = redisCalls(*flagRedis)
	}
	var rssEnd int64
	if len(server) > 0 {
		rssEnd = server.rss()
	}
	if *flagPprof != "" {
		if err := fetchTo(*flagPprof+"/debug/pprof/allocs", *flagProfDir+"/allocs1.pb.gz"); err != nil {
			warnf("allocs profile: %v", err)
		}
		if err := <-cpuProf; err != nil {
			warnf("cpu profile: %v", err)
		}
	}
	if !waitTimeout(&wg, *flagTimeout) {
		warnf("connections still draining after %v: closing them", *flagTimeout)
	}
	closeAll(conns)

	var all []int64
	count, errFrames, connErrs := 0, 0, 0
	var firstConnErr error
	for i := range stats {
		s := &stats[i]
		all = append(all, s.lats...)
		count += s.count
		errFrames += s.errFrames
		if s.connErr != nil {
			connErrs++
			if firstConnErr == nil {
				firstConnErr = fmt.Errorf("connection %d: %w", i, s.connErr)
			}
		}
	}
	secs := win.t1.Sub(win.t0).Seconds()
	lat := percentiles(all)
	res.set("window_s", round(secs, 2))
	res.set("msgs", count)
	res.set("msgs_per_s", round(float64(count)/secs, 0))
	if *flagRedis != "" && calls0 >= 0 && calls1 >= 0 && count > 0 {
		res.set("redis_cmds_per_msg", round(float64(calls1-calls0)/float64(count), 3))
	}
	res.set("lat_p50_us", lat.P50)
	res.set("lat_p99_us", lat.P99)
	res.set("lat_p999_us", lat.P999)
	res.set("lat_max_us", lat.Max)
	win.report(res, "msg", count)
	if len(server) > 0 {
		res.set("server_rss_base_kib", rssBase)
		res.set("server_rss_kib", rssEnd)
		res.set("rss_per_conn_kib", round(float64(rssEnd-rssBase)/float64(n), 1))
	}
	res.set("error_frames", errFrames)
	res.set("conn_errors", connErrs)
	if firstConnErr != nil {
		warnf("%d connections failed; first: %v", connErrs, firstConnErr)
	}
}

func echoLoop(c client, conn, w int, msgT *template, phase *atomic.Int32, base time.Time, st *echoStats) {
	ring := make([]int64, w) // send times of the messages in flight, oldest first
	head, inflight, seq := 0, 0, 0
	group := conn % max(*flagGroups, 1)
	var buf []byte
	send := func() bool {
		buf = msgT.render(buf[:0], conn, group, seq)
		seq++
		ring[(head+inflight)%w] = int64(time.Since(base))
		inflight++
		if err := c.send(buf); err != nil {
			st.connErr = err
			return false
		}
		return true
	}
	for range w {
		if !send() {
			return
		}
	}
	stopping := false
	for inflight > 0 {
		p, err := c.recv()
		now := int64(time.Since(base))
		if err != nil {
			if !stopping {
				st.connErr = err
			}
			return
		}
		sent := ring[head]
		head = (head + 1) % w
		inflight--
		if isErrorFrame(p) {
			st.errFrames++
		}
		switch phase.Load() {
		case 0:
		case 1:
			st.lats = append(st.lats, now-sent)
			st.count++
		default:
			if !stopping {
				stopping = true
				c.setReadDeadline(time.Now().Add(*flagTimeout))
			}
			continue
		}
		if *flagPause > 0 {
			time.Sleep(*flagPause)
		}
		if !send() {
			return
		}
	}
}

func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// ---- fan-out ----

func runFanout(res *result) {
	n := *flagConns
	rounds, warm := *flagRounds, *flagWarmRnds
	total := rounds + warm
	res.set("receivers", n)
	res.set("rounds", rounds)
	server := pids(*flagPIDs)
	var rssBase int64
	if len(server) > 0 {
		rssBase = server.rss()
	}
	start := time.Now()
	conns := dialAll(n+1, true) // the last one sends
	logf("%d connections dialed and authorised in %v", n+1, time.Since(start).Round(time.Millisecond))
	receivers, sender := conns[:n], conns[n]

	base := time.Now()
	sentAt := make([]atomic.Int64, total)
	got := make([]atomic.Int64, total)
	lastAt := make([]atomic.Int64, total)
	done := make([]chan struct{}, total)
	for i := range done {
		done[i] = make(chan struct{})
	}
	lats := make([][]int64, n)
	var stray, errFrames atomic.Int64
	var wg sync.WaitGroup
	for i, c := range receivers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				p, err := c.recv()
				now := int64(time.Since(base))
				if err != nil {
					return
				}
				if isErrorFrame(p) {
					errFrames.Add(1)
					continue
				}
				r := parseSeq(p)
				if r < 0 || r >= total {
					stray.Add(1)
					continue
				}
				if r >= warm {
					lats[i] = append(lats[i], now-sentAt[r].Load())
				}
				lastAt[r].Store(now) // the receivers race: the max is taken below
				if got[r].Add(1) == int64(n) {
					close(done[r])
				}
			}
		}()
	}
	go func() { // the sender's own replies, if any, are read and dropped
		for {
			if _, err := sender.recv(); err != nil {
				return
			}
		}
	}()

	msgT := parseTemplate(*flagMsg)
	win := newWindow()
	var roundNS []int64
	missing := 0
	var buf []byte
	for r := range total {
		if r == warm {
			win.start()
		}
		buf = msgT.render(buf[:0], n, 0, r)
		t := int64(time.Since(base))
		sentAt[r].Store(t)
		if err := sender.send(buf); err != nil {
			fatalf("sender: %v", err)
		}
		select {
		case <-done[r]:
			if r >= warm {
				roundNS = append(roundNS, int64(time.Since(base))-t)
			}
		case <-time.After(*flagTimeout):
			missing += n - int(got[r].Load())
			warnf("round %d: %d of %d deliveries missing", r, n-int(got[r].Load()), n)
		}
		time.Sleep(*flagGap)
	}
	win.stop()
	var rssEnd int64
	if len(server) > 0 {
		rssEnd = server.rss()
	}
	closeAll(conns)
	wg.Wait()

	var all []int64
	for _, l := range lats {
		all = append(all, l...)
	}
	lat := percentiles(all)
	rl := percentiles(roundNS)
	res.set("deliveries", len(all))
	res.set("missing", missing)
	res.set("lat_p50_us", lat.P50)
	res.set("lat_p99_us", lat.P99)
	res.set("lat_p999_us", lat.P999)
	res.set("lat_max_us", lat.Max)
	res.set("round_p50_us", rl.P50)
	res.set("round_p99_us", rl.P99)
	res.set("round_max_us", rl.Max)
	win.report(res, "delivery", len(all))
	if len(server) > 0 {
		res.set("rss_per_conn_kib", round(float64(rssEnd-rssBase)/float64(n+1), 1))
	}
	res.set("error_frames", errFrames.Load())
	res.set("stray_frames", stray.Load())
}

// ---- idle ----

func runIdle(res *result) {
	n := *flagConns
	server := pids(*flagPIDs)
	if len(server) == 0 {
		fatalf("idle: -pid is required")
	}
	res.set("conns", n)
	rssBase := server.rss()
	res.set("server_rss_base_kib", rssBase)
	stats := splitList(*flagStats)
	ms0, msOK := fetchMemStats(stats)
	per := func(key string) {
		time.Sleep(*flagSettle)
		rss := server.rss()
		res.set(key, round(float64(rss-rssBase)/float64(n), 2))
		logf("%s = %.2f KiB (RSS %d KiB)", key, float64(rss-rssBase)/float64(n), rss)
		stage := strings.TrimSuffix(strings.TrimPrefix(key, "rss_per_conn_"), "_kib")
		if msOK {
			// with -stats: the Go heap in use and the goroutines, per connection
			if ms, ok := fetchMemStats(stats); ok {
				res.set(stage+"_heap_inuse_kib_per_conn", round((float64(ms.HeapInuse)-float64(ms0.HeapInuse))/1024/float64(n), 2))
				res.set(stage+"_stack_inuse_kib_per_conn", round((float64(ms.StackInuse)-float64(ms0.StackInuse))/1024/float64(n), 2))
				res.set(stage+"_goroutines_per_conn", round(float64(ms.Goroutines-ms0.Goroutines)/float64(n), 2))
			}
		}
		if *flagPprof != "" {
			// with -pprof: what the heap holds at this stage
			if err := fetchTo(*flagPprof+"/debug/pprof/heap?gc=1", fmt.Sprintf("%s/heap-%s.pb.gz", *flagProfDir, stage)); err != nil {
				warnf("heap profile: %v", err)
			}
		}
	}
	start := time.Now()
	conns := dialAll(n, false)
	logf("%d connections dialed in %v", n, time.Since(start).Round(time.Millisecond))
	per("rss_per_conn_connected_kib")
	start = time.Now()
	authAll(conns)
	logf("%d connections authorised in %v", n, time.Since(start).Round(time.Millisecond))
	per("rss_per_conn_authorised_kib")
	oneMessageEach(conns, 1)
	per("rss_per_conn_one_msg_kib")
	if *flagIdleBurst > 0 {
		var phase atomic.Int32
		msgT := parseTemplate(*flagMsg)
		stats := make([]echoStats, n)
		var wg sync.WaitGroup
		base := time.Now()
		for i, c := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				echoLoop(c, i, 1, msgT, &phase, base, &stats[i])
			}()
		}
		phase.Store(1)
		time.Sleep(*flagIdleBurst)
		phase.Store(2)
		waitTimeout(&wg, *flagTimeout)
		count := 0
		for i := range stats {
			count += stats[i].count
			if stats[i].connErr != nil {
				fatalf("traffic: connection %d: %v", i, stats[i].connErr)
			}
		}
		res.set("traffic_msgs", count)
		for _, c := range conns {
			c.setReadDeadline(time.Time{})
		}
		per("rss_per_conn_after_traffic_kib")
	}
	res.set("server_rss_kib", server.rss())
	// Every connection must still be open after the last reading: a server
	// that closed some meanwhile (a ping unanswered during a settle, a
	// timeout) would show less memory per connection than it holds.
	closed, err := tryOneMessageEach(conns, 2)
	res.set("closed_at_end", closed)
	if closed > 0 {
		warnf("idle: %d of %d connections no longer answer after the last reading; first: %v", closed, n, err)
	}
	closeAll(conns)
}

// ---- reload ----

var versionLine = regexp.MustCompile(`(?m)^local VERSION = (\d+)`)

func runReload(res *result) {
	if *flagScript == "" {
		fatalf("reload: -script is required")
	}
	src, err := os.ReadFile(*flagScript)
	if err != nil {
		fatalf("reload: %v", err)
	}
	if !versionLine.Match(src) {
		fatalf("reload: %s has no line `local VERSION = n`", *flagScript)
	}
	conns := dialAll(1, true)
	c := conns[0]
	defer c.close()
	msgT := parseTemplate(*flagMsg)
	var serving, logged []float64
	failures := 0
	seq := 0
	var buf []byte
	for i := range *flagReloads {
		v := 1000 + i
		want := []byte(`"version":` + strconv.Itoa(v))
		next := versionLine.ReplaceAll(src, []byte("local VERSION = "+strconv.Itoa(v)))
		logCount := countReloaded()
		t0 := time.Now()
		saveScript(*flagScript, next)
		deadline := t0.Add(*flagTimeout)
		var logAt time.Duration
		ok := false
		for time.Now().Before(deadline) {
			buf = msgT.render(buf[:0], 0, 0, seq)
			seq++
			if err := c.send(buf); err != nil {
				fatalf("reload: send: %v", err)
			}
			c.setReadDeadline(deadline)
			p, err := c.recv()
			if err != nil {
				fatalf("reload: recv: %v", err)
			}
			now := time.Since(t0)
			if logAt == 0 && *flagLog != "" && countReloaded() > logCount {
				logAt = now
			}
			if containsVersion(p, want) {
				serving = append(serving, ms(now))
				ok = true
				break
			}
			time.Sleep(time.Millisecond)
		}
		if !ok {
			failures++
			warnf("reload %d: version %d not served within %v", i, v, *flagTimeout)
		}
		if *flagLog != "" {
			for logAt == 0 && time.Since(t0) < *flagTimeout {
				if countReloaded() > logCount {
					logAt = time.Since(t0)
					break
				}
				time.Sleep(time.Millisecond)
			}
			logged = append(logged, ms(logAt))
		}
		time.Sleep(300 * time.Millisecond) // let the watcher settle before the next save
	}
	res.set("reloads", *flagReloads)
	res.set("save", *flagSave)
	res.set("failures", failures)
	res.set("serving_median_ms", round(median(serving), 1))
	if len(serving) > 0 {
		lo, hi := serving[0], serving[0]
		for _, x := range serving {
			lo, hi = min(lo, x), max(hi, x)
		}
		res.set("serving_min_ms", lo)
		res.set("serving_max_ms", hi)
	}
	res.set("serving_ms", serving)
	if *flagLog != "" {
		res.set("log_line_median_ms", round(median(logged), 1))
	}
	os.WriteFile(*flagScript, src, 0o644) // leave it as it was
}

func containsVersion(p, want []byte) bool {
	i := strings.Index(string(p), string(want))
	if i < 0 {
		return false
	}
	j := i + len(want)
	return j == len(p) || p[j] < '0' || p[j] > '9'
}

func saveScript(path string, content []byte) {
	switch *flagSave {
	case "inplace":
		if err := os.WriteFile(path, content, 0o644); err != nil {
			fatalf("reload: %v", err)
		}
	case "rename":
		tmp := path + ".tmp~"
		if err := os.WriteFile(tmp, content, 0o644); err != nil {
			fatalf("reload: %v", err)
		}
		if err := os.Rename(tmp, path); err != nil {
			fatalf("reload: %v", err)
		}
	default:
		fatalf("unknown -save %q", *flagSave)
	}
}

func countReloaded() int {
	if *flagLog == "" {
		return 0
	}
	b, err := os.ReadFile(*flagLog)
	if err != nil {
		return 0
	}
	return strings.Count(string(b), "msg=reloaded")
}
