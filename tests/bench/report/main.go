// Command report turns the JSON lines of tests/bench/run.sh (one per
// loadgen run) into markdown tables: every line that names a reference
// ("ref") is shown with its ratios to that reference, and the targets of
// issue 6 are checked. A peer's lines (scenario peer: Centrifugo) name the
// line of ours they are compared with ("vs") and get a table of their own. Lines of the same name (REPEAT rounds) are shown as
// one: the median of each figure, with the range of msgs/s.
//
//	report results.jsonl
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
)

type line map[string]any

func (l line) num(k string) (float64, bool) {
	v, ok := l[k].(float64)
	return v, ok
}

func (l line) str(k string) string {
	s, _ := l[k].(string)
	return s
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: report results.jsonl")
		os.Exit(2)
	}
	f, err := os.Open(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer f.Close()
	var raw []line
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		t := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(t, "{") {
			continue
		}
		var l line
		if err := json.Unmarshal([]byte(t), &l); err != nil {
			fmt.Fprintf(os.Stderr, "report: skipping a line: %v\n", err)
			continue
		}
		raw = append(raw, l)
	}
	lines, byName := aggregate(raw)
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	echoTable(w, lines, byName)
	hotTable(w, lines, byName)
	fanoutTable(w, lines, byName)
	idleTable(w, lines)
	peerTable(w, lines, byName)
	reloadTable(w, lines)
	targets(w, byName)
}

// busyMark flags a line measured while the rest of the machine kept more
// than a quarter of a CPU busy: its msgs/s and latencies are suspect.
func busyMark(l line) string {
	if v, ok := l.num("other_cpu_cores"); ok && v > 0.25 {
		return " ⚠"
	}
	if v, ok := l.num("conn_errors"); ok && v > 0 {
		return fmt.Sprintf(" (%d connections failed)", int(v))
	}
	return ""
}

func f0(v float64, ok bool) string {
	if !ok {
		return "—"
	}
	return commas(int64(v + 0.5))
}

func f1(v float64, ok bool) string {
	if !ok {
		return "—"
	}
	return fmt.Sprintf("%.1f", v)
}

func f2(v float64, ok bool) string {
	if !ok {
		return "—"
	}
	return fmt.Sprintf("%.2f", v)
}

func msec(v float64, ok bool) string {
	if !ok {
		return "—"
	}
	return fmt.Sprintf("%.2f", v/1000)
}

func commas(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// rate is msgs/s, with the range of the rounds when there were several.
func rate(l line) string {
	v := f0(l.num("msgs_per_s"))
	if runs, _ := l.num("runs"); runs > 1 {
		lo, _ := l.num("msgs_per_s_min")
		hi, _ := l.num("msgs_per_s_max")
		v += fmt.Sprintf(" (%s–%s)", commas(int64(lo+0.5)), commas(int64(hi+0.5)))
	}
	return v
}

// ratio of key in l to key in ref, "×" form.
func ratio(l, ref line, key string) string {
	if ref == nil {
		return "—"
	}
	a, ok1 := l.num(key)
	b, ok2 := ref.num(key)
	if !ok1 || !ok2 || b == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f", a/b)
}

func echoTable(w *bufio.Writer, lines []line, byName map[string]line) {
	have := false
	for _, l := range lines {
		have = have || l.str("mode") == "echo" && !isHot(l)
	}
	if !have {
		return
	}
	fmt.Fprintln(w, "### Throughput and latency (closed loop)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Each figure is the median of the rounds (msgs/s: median (min–max)); ratios are of the medians.")
	fmt.Fprintln(w, "⚠: the rest of the machine kept over 0.25 CPU busy during the window (other cores): msgs/s and latency are suspect, CPU per message much less so.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| scenario | conns × in flight | msgs/s | × ref | × buf ref | p50 ms | p99 ms | p99.9 ms | server CPU µs/msg | × ref | × buf ref | allocs/msg | RSS KiB/conn | loadgen CPU µs/msg | other cores |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, l := range lines {
		if l.str("mode") != "echo" || isHot(l) {
			continue
		}
		ref := byName[l.str("ref")]
		ref2 := byName[l.str("ref2")]
		conns, _ := l.num("conns")
		infl, _ := l.num("inflight")
		cpuKey := "server_cpu_us_per_msg"
		cpu, cok := l.num(cpuKey)
		cpuS := f2(cpu, cok)
		if aux, ok := l.num("aux_cpu_us_per_msg"); ok {
			cpuS += fmt.Sprintf(" (+%.2f redis)", aux)
		}
		allocs, aok := l.num("server_allocs_per_msg")
		fmt.Fprintf(w, "| %s | %.0f × %.0f | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			l.str("name")+busyMark(l), conns, infl,
			rate(l), ratio(l, ref, "msgs_per_s"), ratio(l, ref2, "msgs_per_s"),
			msec(l.num("lat_p50_us")), msec(l.num("lat_p99_us")), msec(l.num("lat_p999_us")),
			cpuS, ratio(l, ref, cpuKey), ratio(l, ref2, cpuKey), f1(allocs, aok),
			f1(l.num("rss_per_conn_kib")), f2(l.num("loadgen_cpu_us_per_msg")), f2(l.num("other_cpu_cores")))
	}
	fmt.Fprintln(w)
}

// isHot: a line of scenario h (one hot key), shown in hotTable.
func isHot(l line) bool { return strings.HasPrefix(l.str("name"), "h ") }

func hotTable(w *bufio.Writer, lines []line, byName map[string]line) {
	have := false
	for _, l := range lines {
		have = have || isHot(l)
	}
	if !have {
		return
	}
	fmt.Fprintln(w, "### One hot key: every message an update of the same entity")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "100 connections × 1 in flight on ONE broker key; × memory is the ratio to the memory broker on one instance in the same run (the pause rows to its pause row). Redis commands per update count what the instances asked Redis during the window (pub/sub, PING, INFO left out).")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| scenario | updates/s | × memory | p50 ms | p99 ms | max ms | Redis cmds/update | error frames | server CPU µs/update | redis CPU µs/update |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|")
	for _, l := range lines {
		if !isHot(l) {
			continue
		}
		ref := byName[l.str("ref")]
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			l.str("name")+busyMark(l), rate(l), ratio(l, ref, "msgs_per_s"),
			msec(l.num("lat_p50_us")), msec(l.num("lat_p99_us")), msec(l.num("lat_max_us")),
			f2(l.num("redis_cmds_per_msg")), f0(l.num("error_frames")),
			f2(l.num("server_cpu_us_per_msg")), f2(l.num("aux_cpu_us_per_msg")))
	}
	fmt.Fprintln(w)
}

func fanoutTable(w *bufio.Writer, lines []line, byName map[string]line) {
	have := false
	for _, l := range lines {
		have = have || l.str("mode") == "fanout"
	}
	if !have {
		return
	}
	fmt.Fprintln(w, "### Fan-out: one message to a room")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Latency is from the send to each receiver's arrival; last delivery is the send to the room's last arrival, per round.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| scenario | receivers | deliveries | missing | p50 ms | p99 ms | × ref | p99.9 ms | last delivery p50 ms | p99 ms | server CPU µs/delivery | × ref |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, l := range lines {
		if l.str("mode") != "fanout" {
			continue
		}
		ref := byName[l.str("ref")]
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			l.str("name")+busyMark(l), f0(l.num("receivers")), f0(l.num("deliveries")), f0(l.num("missing")),
			msec(l.num("lat_p50_us")), msec(l.num("lat_p99_us")), ratio(l, ref, "lat_p99_us"), msec(l.num("lat_p999_us")),
			msec(l.num("round_p50_us")), msec(l.num("round_p99_us")),
			f2(l.num("server_cpu_us_per_delivery")), ratio(l, ref, "server_cpu_us_per_delivery"))
	}
	fmt.Fprintln(w)
}

func idleTable(w *bufio.Writer, lines []line) {
	have := false
	for _, l := range lines {
		have = have || l.str("mode") == "idle"
	}
	if !have {
		return
	}
	fmt.Fprintln(w, "### Idle connections: server RSS per connection (KiB)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| server | conns | connected, nothing sent | after the first message (auth) | after one more message | after traffic, idle again | Go heap in use after auth | goroutine stacks after auth | goroutines per conn after auth |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|")
	for _, l := range lines {
		if l.str("mode") != "idle" {
			continue
		}
		name := l.str("name")
		if v, ok := l.num("closed_at_end"); ok && v > 0 {
			name += fmt.Sprintf(" (%d connections closed by the end: figures too low)", int(v))
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", name, f0(l.num("conns")),
			f1(l.num("rss_per_conn_connected_kib")), f1(l.num("rss_per_conn_authorised_kib")),
			f1(l.num("rss_per_conn_one_msg_kib")), f1(l.num("rss_per_conn_after_traffic_kib")),
			f1(l.num("authorised_heap_inuse_kib_per_conn")), f1(l.num("authorised_stack_inuse_kib_per_conn")),
			f2(l.num("authorised_goroutines_per_conn")))
	}
	fmt.Fprintln(w)
}

// peerTable shows a peer's lines (those that name ours with "vs") beside
// ours: the echo shapes with their ratios to the buffered reference and to
// our echo, and memory per idle connection; "ahead" is issue 17's target
// (our echo beats the peer at both shapes and on memory per idle
// connection). A peer that could not be built or run has a "skipped" line.
func peerTable(w *bufio.Writer, lines []line, byName map[string]line) {
	var echo, idle, skipped []line
	for _, l := range lines {
		switch {
		case l.str("mode") == "skipped":
			skipped = append(skipped, l)
		case l.str("vs") != "" && l.str("mode") == "echo":
			echo = append(echo, l)
		case l.str("vs") != "" && l.str("mode") == "idle":
			idle = append(idle, l)
		}
	}
	if len(echo)+len(idle)+len(skipped) == 0 {
		return
	}
	fmt.Fprintln(w, "### The peer, measured in the same run")
	fmt.Fprintln(w)
	for _, l := range skipped {
		fmt.Fprintf(w, "**%s: not run.** %s\n\n", l.str("name"), l.str("reason"))
	}
	if len(echo) > 0 {
		fmt.Fprintln(w, "Echo: the peer's client publishes to its own channel and receives the publication back; ours is scenario a. × buf ref and × ours are the peer's figure divided by the buffered reference's and by our echo's; ahead: our echo made more msgs/s than the peer.")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| peer | conns × in flight | msgs/s | × buf ref | × ours | our msgs/s | our × buf ref | p99 ms | our p99 ms | server CPU µs/msg | × buf ref | × ours | our µs/msg | ahead |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
		for _, l := range echo {
			ours := byName[l.str("vs")]
			buf := byName[l.str("ref2")]
			conns, _ := l.num("conns")
			infl, _ := l.num("inflight")
			ahead := "not run"
			if ours != nil {
				a, _ := ours.num("msgs_per_s")
				b, _ := l.num("msgs_per_s")
				ahead = yes(a > b)
			}
			oursRate, oursBuf, oursP99, oursCPU := "not run", "—", "—", "—"
			if ours != nil {
				oursRate, oursBuf = rate(ours), ratio(ours, buf, "msgs_per_s")
				oursP99, oursCPU = msec(ours.num("lat_p99_us")), f2(ours.num("server_cpu_us_per_msg"))
			}
			fmt.Fprintf(w, "| %s | %.0f × %.0f | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
				peerName(l)+busyMark(l), conns, infl, rate(l), ratio(l, buf, "msgs_per_s"), ratio(l, ours, "msgs_per_s"),
				oursRate, oursBuf, msec(l.num("lat_p99_us")), oursP99,
				f2(l.num("server_cpu_us_per_msg")), ratio(l, buf, "server_cpu_us_per_msg"), ratio(l, ours, "server_cpu_us_per_msg"),
				oursCPU, ahead)
		}
		fmt.Fprintln(w)
	}
	if len(idle) > 0 {
		fmt.Fprintln(w, "Idle: server RSS per connection after the auth step (ours: the auth message; the peer: connect with a token and subscribe to its channel); ahead: ours holds less.")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| peer | conns | KiB/conn after auth | × ref | × ours | our KiB/conn | after traffic, idle again | ours | ahead |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|")
		for _, l := range idle {
			ours := byName[l.str("vs")]
			ref := byName[l.str("ref")]
			const k = "rss_per_conn_authorised_kib"
			ahead, oursKiB, oursAfter := "not run", "not run", "—"
			if ours != nil {
				a, _ := ours.num(k)
				b, _ := l.num(k)
				ahead = yes(a < b)
				oursKiB, oursAfter = f1(ours.num(k)), f1(ours.num("rss_per_conn_after_traffic_kib"))
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", peerName(l), f0(l.num("conns")),
				f1(l.num(k)), ratio(l, ref, k), ratio(l, ours, k), oursKiB,
				f1(l.num("rss_per_conn_after_traffic_kib")), oursAfter, ahead)
		}
		fmt.Fprintln(w)
	}
}

// peerName is a peer line's name with its version (the "note").
func peerName(l line) string {
	if n := l.str("note"); n != "" {
		return l.str("name") + " (" + n + ")"
	}
	return l.str("name")
}

func reloadTable(w *bufio.Writer, lines []line) {
	have := false
	for _, l := range lines {
		have = have || l.str("mode") == "reload"
	}
	if !have {
		return
	}
	fmt.Fprintln(w, "### Hot reload: save to the new version serving (ms)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| scenario | save | reloads | failures | median | min | max | log line median |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|")
	for _, l := range lines {
		if l.str("mode") != "reload" {
			continue
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", l.str("name"), l.str("save"),
			f0(l.num("reloads")), f0(l.num("failures")), f1(l.num("serving_median_ms")),
			f1(l.num("serving_min_ms")), f1(l.num("serving_max_ms")), f1(l.num("log_line_median_ms")))
	}
	fmt.Fprintln(w)
}

// targets checks the figures of issue 6 against the lines run.sh names.
func targets(w *bufio.Writer, byName map[string]line) {
	fmt.Fprintln(w, "### Targets (issue 6)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| target | figure | met |")
	fmt.Fprintln(w, "|---|---|---|")
	thr := func(name string, min float64, label string) {
		l := byName[name]
		if l == nil {
			fmt.Fprintf(w, "| %s | not run | — |\n", label)
			return
		}
		ref := byName[l.str("ref")]
		a, _ := l.num("msgs_per_s")
		b, _ := ref.num("msgs_per_s")
		if ref == nil || b == 0 {
			fmt.Fprintf(w, "| %s | no reference | — |\n", label)
			return
		}
		extra := ""
		if r2 := byName[l.str("ref2")]; r2 != nil {
			if c, _ := r2.num("msgs_per_s"); c > 0 {
				extra = fmt.Sprintf("; %.0f%% of the buffered reference's %s (%s)", 100*a/c, commas(int64(c)), yes(a/c >= min))
			}
		}
		fmt.Fprintf(w, "| %s | %.0f%% (%s vs %s msgs/s)%s | %s |\n", label, 100*a/b, commas(int64(a)), commas(int64(b)), extra, yes(a/b >= min))
	}
	thr("a echo 1000x1", 0.50, "(a) echo 1000 × 1: ≥ 50% of the reference's msgs/s")
	thr("a echo 100x8", 0.35, "(a) echo 100 × 8: ≥ 35% of the reference's msgs/s")
	for _, name := range []string{"b redis2 100x8", "b redis2 1000x1"} {
		l := byName[name]
		label := "(b) " + strings.TrimPrefix(name, "b ") + ", two instances: ≥ 20,000 msgs/s"
		if l == nil {
			fmt.Fprintf(w, "| %s | not run | — |\n", label)
			continue
		}
		v, _ := l.num("msgs_per_s")
		fmt.Fprintf(w, "| %s | %s msgs/s | %s |\n", label, commas(int64(v)), yes(v >= 20000))
	}
	if l, m := byName["h redis1 100x1"], byName["h memory 100x1"]; l != nil && m != nil {
		a, _ := l.num("msgs_per_s")
		b, _ := m.num("msgs_per_s")
		fmt.Fprintf(w, "| (h) one key, one Redis instance: ≥ 0.5 × the memory broker's updates/s | %.2f (%s vs %s) | %s |\n", a/b, commas(int64(a)), commas(int64(b)), yes(a/b >= 0.5))
	} else {
		fmt.Fprintln(w, "| (h) one key, one Redis instance: ≥ 0.5 × memory | not run | — |")
	}
	if l := byName["h redis2 100x1"]; l != nil {
		v, _ := l.num("msgs_per_s")
		fmt.Fprintf(w, "| (h) one key, two Redis instances: ≥ 10,000 updates/s | %s | %s |\n", commas(int64(v)), yes(v >= 10000))
	} else {
		fmt.Fprintln(w, "| (h) one key, two Redis instances: ≥ 10,000 updates/s | not run | — |")
	}
	if l := byName["h redis2 100x1 pause"]; l != nil {
		p99, _ := l.num("lat_p99_us")
		mx, _ := l.num("lat_max_us")
		e, _ := l.num("error_frames")
		fmt.Fprintf(w, "| (h) 10 ms pause, two instances: no answer later than 1 s, no error | p99 %.2f ms, max %.2f ms, %d error frames | %s |\n", p99/1000, mx/1000, int(e), yes(mx <= 1e6 && e == 0))
	}
	if l := byName["d idle es"]; l != nil {
		v, _ := l.num("rss_per_conn_authorised_kib")
		fmt.Fprintf(w, "| (d) idle authorised connection: ≤ 8 KB RSS | %.1f KiB (%.1f KB) | %s |\n", v, v*1.024, yes(v*1.024 <= 8))
	} else {
		fmt.Fprintln(w, "| (d) idle authorised connection: ≤ 8 KB RSS | not run | — |")
	}
	if l := byName["e reload inplace"]; l != nil {
		v, _ := l.num("serving_median_ms")
		fmt.Fprintf(w, "| (e) save to serving: < 100 ms (median of 10) | %.1f ms | %s |\n", v, yes(v < 100))
	} else {
		fmt.Fprintln(w, "| (e) save to serving: < 100 ms | not run | — |")
	}
	fmt.Fprintln(w)
}

func yes(b bool) string {
	if b {
		return "yes"
	}
	return "**no**"
}

// aggregate merges the lines of one name: every number becomes the median
// of the rounds; "runs", "msgs_per_s_min" and "msgs_per_s_max" are added.
func aggregate(raw []line) ([]line, map[string]line) {
	var order []string
	groups := map[string][]line{}
	for _, l := range raw {
		n := l.str("name")
		if _, ok := groups[n]; !ok {
			order = append(order, n)
		}
		groups[n] = append(groups[n], l)
	}
	var out []line
	byName := map[string]line{}
	for _, n := range order {
		g := groups[n]
		m := line{}
		for k, v := range g[0] {
			m[k] = v
		}
		for k, v := range g[0] {
			if _, ok := v.(float64); !ok {
				continue
			}
			var xs []float64
			for _, l := range g {
				if x, ok := l.num(k); ok {
					xs = append(xs, x)
				}
			}
			m[k] = median(xs)
		}
		m["runs"] = float64(len(g))
		var rates []float64
		for _, l := range g {
			if x, ok := l.num("msgs_per_s"); ok {
				rates = append(rates, x)
			}
		}
		if len(rates) > 0 {
			sort.Float64s(rates)
			m["msgs_per_s_min"], m["msgs_per_s_max"] = rates[0], rates[len(rates)-1]
		}
		out = append(out, m)
		byName[n] = m
	}
	return out, byName
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
