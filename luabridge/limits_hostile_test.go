package luabridge

import (
	"context"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"
)

// endBound bounds the wait for a call whose budget is far shorter: a call
// that ignored its budget ran for 15 s to minutes (see each case), one that
// honours it ends within a second, or a few when a cap stops it after the
// call (an encoding of 16 MiB). The race detector slows that work several
// times, and the bound with it; without it, 10 s still tells a bounded
// call from the 15 s of the shortest unbounded one.
const endBound = raceSlowdown * 10 * time.Second

// runBounded runs process_websocket_message and waits for it at most
// endBound; a call still running then fails the test.
func runBounded(t *testing.T, s *Script) (*Action, error) {
	t.Helper()
	return runWithin(t, s, endBound, `{}`)
}

func runWithin(t *testing.T, s *Script, bound time.Duration, message string) (*Action, error) {
	t.Helper()
	type outcome struct {
		a   *Action
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		a, err := s.ProcessWebsocketMessage(context.Background(), testChannel(), []byte(message), nil, nil)
		done <- outcome{a, err}
	}()
	select {
	case o := <-done:
		return o.a, o.err
	case <-time.After(bound):
		t.Fatalf("the call did not end within %v: its budget does not hold", bound)
		return nil, nil
	}
}

// Built-ins that run in Go cannot be interrupted by gopher-lua's timeout.
// Each of these ran far past its budget before it was bounded (measured
// with gopher-lua's own built-ins and a 1 s budget: the times in the
// comments); each must now end within its budget (script_timeout) or be
// refused by a cap (script_error naming the cap), and the pool serves on.
func TestHostileBuiltinsEndWithinBudget(t *testing.T) {
	const budget = 500 * time.Millisecond
	tests := []struct {
		name, body string
		kinds      []Kind // accepted errors; empty: success or a timeout
		contains   string // in the error, when it is a cap
	}{
		// ~20 s: backtracking over 400^4/24 steps in one Go call.
		{"pattern bomb in find", `string.find(string.rep("a", 400), ".-.-.-b")`, []Kind{KindTimeout}, ""},
		{"pattern bomb in match", `string.match(string.rep("a", 400), "(.-)(.-)(.-)b")`, []Kind{KindTimeout}, ""},
		{"pattern bomb in gmatch", `for x in string.gmatch(string.rep("a", 400), ".-.-.-b") do end`, []Kind{KindTimeout}, ""},
		{"pattern bomb in gsub", `string.gsub(string.rep("a", 400), ".-.-.-b", "")`, []Kind{KindTimeout}, ""},
		{"pattern bomb as a method", `local s = string.rep("a", 400) s:find(".-.-.-b")`, []Kind{KindTimeout}, ""},
		{"balanced bomb", `string.find(string.rep("(", 100000), "%b()%b()")`, []Kind{KindTimeout}, ""},
		// 15 s for 200 KB: gopher-lua rebuilt the subject once per match.
		{"gsub over a large string", `string.gsub(string.rep("a", 1024 * 1024), "a", "b")`, nil, ""},
		{"gsub result over the cap", `string.gsub(string.rep("a", 16 * 1024 * 1024), "a", "bb")`, []Kind{KindTimeout, KindRuntime}, ""},
		{"gsub with a growing replacement", `string.gsub(string.rep("a", 1024 * 1024), "a", string.rep("b", 1024))`,
			[]Kind{KindTimeout, KindRuntime}, ""},
		{"string.rep 2^30", `string.rep("x", 2^30)`, []Kind{KindRuntime}, "over the limit"},
		{"string.format with a huge width", `string.format("%0999999d", 1)`, []Kind{KindRuntime}, "width or precision too long"},
		{"string.format of big strings", `local s = string.rep("x", 1024 * 1024) string.format(string.rep("%s", 40), ` +
			strings.TrimSuffix(strings.Repeat("s,", 40), ",") + `)`, []Kind{KindRuntime}, "over the limit"},
		// a table of a thousand references to one 1 MiB string: 1 GiB in one Go call.
		{"table.concat over the cap", `local s = string.rep("x", 1024 * 1024) local t = {} for i = 1, 1000 do t[i] = s end table.concat(t)`,
			[]Kind{KindRuntime, KindTimeout}, "over the limit"},
		// 3 min for 600,000 elements: the stack grew 32 slots at a time.
		{"table.concat of many small strings", `local t = {} for i = 1, 600000 do t[i] = "x" end table.concat(t)`, nil, ""},
		// 57 s for 600,000 values, for the same reason.
		{"unpack of a long table", `local t = {} for i = 1, 600000 do t[i] = 1 end select("#", unpack(t))`, nil, ""},
		{"unpack over the stack limit", `local t = {} for i = 1, 1100000 do t[i] = 1 end select("#", unpack(t))`, []Kind{KindTimeout, KindRuntime}, ""},
		// 2 min for 16 MiB; 1.3 s for 2 MiB (10 s under -race) once the
		// stack grew in large steps: now a cap.
		{"string.byte of a large string", `local s = string.rep("a", 2 * 1024 * 1024) select("#", string.byte(s, 1, -1))`,
			[]Kind{KindRuntime}, "string slice too long"},
		{"table.sort of many numbers", `local t = {} for i = 1, 1000000 do t[i] = (i * 7919) % 1000003 end table.sort(t) table.sort(t, function(a, b) return a > b end)`,
			nil, ""},
		// minutes and gigabytes: 2^30 leaves through one shared subtable, encoded after the call.
		{"a shared table doubled 30 times", `local t = {} for i = 1, 30 do t = { t, t } end return { broker_data = { x = t } }`,
			[]Kind{KindMalformed, KindTimeout}, "over the limit"},
		{"es.json_encode of a doubled table", `local t = {} for i = 1, 30 do t = { t, t } end es.json_encode(t)`,
			[]Kind{KindRuntime, KindTimeout}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := tt.body
			if !strings.Contains(body, "return") {
				body += "\nreturn {}"
			}
			s := mustLoad(t, wsScript("if message.ok then return { websocket_response = { ok = true } } end\n"+body),
				Options{Timeout: budget, PoolSize: 1})
			a, err := runBounded(t, s)
			if err == nil {
				if len(tt.kinds) > 0 {
					t.Fatalf("succeeded with %s, want one of %v", describe(a), tt.kinds)
				}
			} else {
				se := asScriptError(t, err)
				ok := len(tt.kinds) == 0 && se.Kind == KindTimeout
				for _, k := range tt.kinds {
					ok = ok || se.Kind == k
				}
				if !ok {
					t.Fatalf("got %v (%s), want one of %v", err, se.Kind, tt.kinds)
				}
				if tt.contains != "" && se.Kind != KindTimeout && !strings.Contains(err.Error(), tt.contains) {
					t.Errorf("error %q does not contain %q", err, tt.contains)
				}
			}
			// The pool (of one state) serves on, with a fresh or reset state.
			if a := wsOK(t, s, `{"ok":true}`); string(a.Response) != `{"ok":true}` {
				t.Errorf("after it: response %s", a.Response)
			}
		})
	}
}

// Returned values the host cannot encode, and recursion, are errors that
// name the function, never a crash.
func TestHostileReturnedTables(t *testing.T) {
	tests := []struct {
		name, body string
		kind       Kind
		contains   string
	}{
		{"self-referencing", `local t = {} t.self = t return { websocket_response = t }`, KindMalformed, "cycle"},
		{"self-referencing through an array", `local t = {} t[1] = { t } return { broker_data = t }`, KindMalformed, "cycle"},
		{"10,000 deep", `local t = {} for i = 1, 10000 do t = { t } end return { websocket_response = { x = t } }`, KindMalformed, "nested deeper than"},
		{"10,000 deep channel data", `local t = {} for i = 1, 10000 do t = { a = t } end return { channel_data = t }`, KindMalformed, "nested deeper than"},
		{"deep recursion", `local function f(n) return f(n + 1) + 1 end f(1)`, KindRuntime, "stack overflow"},
		{"deep recursion in a comparator", `local t = { 3, 2, 1 } local function lt(a, b) return 1 + lt(b, a) end table.sort(t, lt)`, KindRuntime, "stack overflow"},
		{"deep recursion through gsub", `local function f(s) return (string.gsub(s, ".", f)) end f("ab")`, KindRuntime, "stack overflow"},
		{"a pattern nested too deep", `string.find(string.rep("a", 300), string.rep("a?", 300))`, KindRuntime, "pattern too complex"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := tt.body
			if !strings.Contains(body, "return {") {
				body += "\nreturn {}"
			}
			s := mustLoad(t, wsScript(body), Options{Timeout: 2 * time.Second})
			_, err := runBounded(t, s)
			se := asScriptError(t, err)
			if se.Kind != tt.kind || !strings.Contains(err.Error(), tt.contains) {
				t.Fatalf("got %v (%s), want %s containing %q", err, se.Kind, tt.kind, tt.contains)
			}
		})
	}
	t.Run("1,000,000 long", func(t *testing.T) {
		s := mustLoad(t, wsScript(`local t = {} for i = 1, 1000000 do t[i] = i end return { channel_data = { t = t } }`),
			Options{Timeout: 5 * time.Second})
		a, err := runBounded(t, s)
		if err != nil {
			t.Fatalf("got %v, want the 1,000,000 elements encoded", err)
		}
		if !strings.HasSuffix(string(a.ChannelData), ",999999,1000000]}") {
			t.Errorf("channel data ends with %q", a.ChannelData[len(a.ChannelData)-30:])
		}
	})
}

func heapBytes() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// The memory guard stops scripts that grow memory without bound: the call
// fails with a script error naming max_memory, the process lives on, the
// memory is given back, and calls running beside the runaway one are not
// stopped.
func TestHostileMemoryGuard(t *testing.T) {
	runtime.GC()
	base := heapBytes()
	const headroom = 64 << 20
	SetMaxMemory(base + headroom)
	t.Cleanup(func() { SetMaxMemory(0) })

	for _, tt := range []struct{ name, body string }{
		{"table growth", `local t, i = {}, 0 while true do i = i + 1 t[i] = t end`},
		{"growing strings kept", `local t, s = {}, string.rep("x", 4096) while true do s = s .. "x" t[#t + 1] = s end`},
		{"strings kept in a table", `local t = {} while true do t[#t + 1] = string.rep("x", 1024 * 1024) .. #t end`},
		{"coroutines kept in a table", `local t = {} while true do t[#t + 1] = coroutine.create(function() end) end`},
		{"tables of tables", `local t = {} while true do t = { t, {}, {}, {} } end`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			stops := MemoryStops()
			guard.peak.Store(0)
			// A budget far longer than the runaway needs to pass the limit:
			// only the guard can stop it in time.
			s := mustLoad(t, wsScript(tt.body+"\nreturn {}"), Options{Timeout: 10 * time.Minute, PoolSize: 4})
			quick := mustLoad(t, wsScript(`return { websocket_response = { ok = true } }`), Options{Timeout: time.Minute})

			stop := make(chan struct{})
			var wg sync.WaitGroup
			var quickErr error
			var quickMu sync.Mutex
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					if _, err := runWS(t, quick, `{}`); err != nil {
						quickMu.Lock()
						quickErr = err
						quickMu.Unlock()
					}
					time.Sleep(time.Millisecond)
				}
			})
			// Generous: under -race a runaway script takes seconds to
			// allocate the headroom; a call the guard misses runs for its
			// ten-minute budget.
			_, err := runWithin(t, s, time.Minute, `{}`)
			close(stop)
			wg.Wait()
			se := asScriptError(t, err)
			if se.Kind != KindRuntime || !strings.Contains(se.Msg, "max_memory") {
				t.Fatalf("got %v, want a script error naming max_memory", err)
			}
			if MemoryStops() != stops+1 {
				t.Errorf("the guard stopped %d calls, want 1", MemoryStops()-stops)
			}
			if quickErr != nil {
				t.Errorf("a short call beside the runaway one failed: %v", quickErr)
			}
			runtime.GC()
			if h := heapBytes(); h > base+headroom {
				t.Errorf("heap %d MiB after the call, want it back under the limit of %d MiB", h>>20, (base+headroom)>>20)
			}
			// The overshoot: what is allocated between two samples, plus one
			// Go operation in flight (for string doubling, a concatenation
			// twice the size of the limit).
			peak := guard.peak.Load()
			t.Logf("limit %d MiB, peak sampled %d MiB", (base+headroom)>>20, peak>>20)
			if peak > base+headroom+768<<20 {
				t.Errorf("the heap reached %d MiB for a limit of %d MiB", peak>>20, (base+headroom)>>20)
			}
		})
	}
}

// A write far past a table's end goes to its hash part. gopher-lua filled
// the array part up to it with nil in one instruction: 1 GiB for
// `t[2^26 - 1] = true`, which neither the timeout nor the memory guard can
// interrupt.
func TestSparseWriteAllocatesLittle(t *testing.T) {
	s := mustLoad(t, wsScript(`
for i = 1, 2 do
  local t = {}
  t[2^26 - 1] = true
  t[2^20 + 1] = true
  if t[2^26 - 1] ~= true or t[2^20 + 1] ~= true or #t ~= 0 then error("lost") end
end
return {}`), Options{Timeout: 10 * time.Minute, PoolSize: 1})
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := runWithin(t, s, time.Minute, `{}`)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if a := after.TotalAlloc - before.TotalAlloc; a > 64<<20 {
		t.Errorf("two sparse writes allocated %d MiB", a>>20)
	}
}

// When stopping the longest-running call does not bring the heap back
// under the limit and it stays over the margin, the guard stops every
// call at once rather than one per collection. Here the heap is held over
// the limit and the margin by memory that is not the calls' (a live
// ballast), four calls loop without allocating, and the second judgement
// stops the three left together.
func TestMemoryGuardStopsEveryCallWhenFarOver(t *testing.T) {
	SetMaxMemory(1 << 62) // on, so that calls are registered, but never over
	t.Cleanup(func() { SetMaxMemory(0) })
	s := mustLoad(t, wsScript("while true do end\nreturn {}"), Options{Timeout: 10 * time.Minute, PoolSize: 4})
	const calls = 4
	errs := make(chan error, calls)
	for range calls {
		go func() {
			_, err := runWS(t, s, `{}`)
			errs <- err
		}()
	}
	registered := func() int {
		guard.mu.Lock()
		defer guard.mu.Unlock()
		return len(guard.calls)
	}
	for deadline := time.Now().Add(endBound); registered() < calls; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d calls registered with the guard after %v, want %d", registered(), endBound, calls)
		}
	}
	ballast := make([]byte, 2*memoryMargin(1))
	all := guard.stoppedAll.Load()
	SetMaxMemory(1)
	for range calls {
		select {
		case err := <-errs:
			if se := asScriptError(t, err); se.Kind != KindRuntime || !strings.Contains(se.Msg, "max_memory") {
				t.Fatalf("got %v, want a script error naming max_memory", err)
			}
		case <-time.After(time.Minute):
			t.Fatal("a call was not stopped within a minute")
		}
	}
	runtime.KeepAlive(ballast)
	if guard.stoppedAll.Load() == all {
		t.Error("the calls were stopped one at a time, never all at once")
	}
}

// BenchmarkMemoryGuard measures what the guard costs a typical call
// (go test ./luabridge -run '^$' -bench MemoryGuard).
func BenchmarkMemoryGuard(b *testing.B) {
	s := mustLoad(b, benchChatScript, Options{PoolSize: 1})
	ctx := context.Background()
	msg, cd := []byte(benchWSMessage), []byte(`{"user":"ann"}`)
	bd := []byte(`{"members":["ann","bob","cy"],"count":41,"last":{"from":"bob","text":"hi"}}`)
	for _, limit := range []uint64{0, 1 << 30} {
		b.Run(map[uint64]string{0: "off", 1 << 30: "1GiB"}[limit], func(b *testing.B) {
			SetMaxMemory(limit)
			defer SetMaxMemory(0)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.ProcessWebsocketMessage(ctx, testChannel(), msg, cd, bd); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// SetMaxMemory gives the runtime a soft memory limit at max_memory plus
// the margin, keeps a lower one set before it (GOMEMLIMIT), and puts back
// the one before when the guard is turned off.
func TestMaxMemorySetsTheSoftLimit(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() {
		SetMaxMemory(0)
		debug.SetMemoryLimit(before)
	})
	SetMaxMemory(1 << 30)
	if got, want := debug.SetMemoryLimit(-1), int64(1<<30+memoryMargin(1<<30)); got != want {
		t.Errorf("soft limit %d, want %d", got, want)
	}
	SetMaxMemory(0)
	if got := debug.SetMemoryLimit(-1); got != before {
		t.Errorf("soft limit %d after the guard was turned off, want %d as before", got, before)
	}
	// A lower limit set beforehand (as GOMEMLIMIT does) is kept.
	softLimit.Lock()
	saved := softLimit.before
	softLimit.before = 512 << 20
	softLimit.Unlock()
	t.Cleanup(func() {
		softLimit.Lock()
		softLimit.before = saved
		softLimit.Unlock()
	})
	SetMaxMemory(1 << 30)
	if got := debug.SetMemoryLimit(-1); got != 512<<20 {
		t.Errorf("soft limit %d, want the lower one set before, %d", got, 512<<20)
	}
}
