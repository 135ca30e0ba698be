package luabridge

// The memory guard. gopher-lua has no memory limit: a loop such as
// `local t = {} while true do t[#t+1] = t end` grows the Go heap by
// hundreds of megabytes a second until the call's timeout, and several such
// calls run at once. The guard is a watchdog that runs while at least one
// call is in flight: every memorySampleEvery it reads the heap size from
// runtime/metrics, and when a garbage collection finds more than the limit
// live (it forces one when the heap is far over) it stops the
// longest-running call by cancelling
// its context (the interpreter stops at its next instruction; the state is
// discarded). It stops one call at a time and waits for that call to end
// and its memory to be collected before it judges again, so a single
// runaway script does not take innocent calls down with it.
//
// What it guarantees, and what not: the heap is measured for the whole
// process, so the limit is a process-wide budget, not a per-script one.
// The overshoot is bounded, whatever the call's timeout, by three things:
//   - no single instruction or built-in allocates more than about 16 MiB
//     (limits.go, operators.go: strings, concatenation, a table's array
//     part; a table's hash part grows one key per instruction, its list
//     of keys by a quarter at a time), so a stopped call ends at once,
//     with little more allocated;
//   - the runtime's soft memory limit is set at max_memory plus
//     memoryMargin (an eighth, at least 32 MiB): garbage is collected
//     before it takes the heap past that line, and a collection tells the
//     guard what is live;
//   - one call at a time is stopped while that brings the heap back under
//     the limit; if the heap is still over the limit and the margin after
//     that (several calls running away at once), every call is stopped.
// Between two samples a call allocates at full speed. Measured with the
// real server (RELIABILITY.md, `go run ./tests/bombs`): the peak resident
// memory stayed within max_memory plus the margin plus the process's own
// few tens of MiB, for one bomb or four at once, with a 1 s or a 60 s
// budget.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"
)

// memorySampleEvery is the watchdog's period while calls are in flight.
const memorySampleEvery = 5 * time.Millisecond

// maxMemory is the heap size in bytes over which calls are stopped; 0: off.
var maxMemory atomic.Uint64

// SetMaxMemory sets the process-wide heap budget of Lua calls ([lua]
// max_memory): when the Go heap grows over it while calls run, the
// longest-running call is stopped with a script error. 0 turns the guard
// off. It applies to calls that start after it.
//
// It also sets the Go runtime's soft memory limit (runtime/debug
// SetMemoryLimit) to the limit plus memoryMargin, or keeps the one that
// was set before (GOMEMLIMIT) when that is lower: the collector then
// works harder as the heap nears that line, so garbage does not take the
// process past it, and the guard has only live memory to judge.
func SetMaxMemory(bytes uint64) {
	maxMemory.Store(bytes)
	softLimit.Lock()
	defer softLimit.Unlock()
	if !softLimit.saved {
		softLimit.before, softLimit.saved = debug.SetMemoryLimit(-1), true
	}
	if bytes == 0 {
		debug.SetMemoryLimit(softLimit.before)
		return
	}
	debug.SetMemoryLimit(min(softLimit.before, int64(min(bytes+memoryMargin(bytes), math.MaxInt64))))
}

// softLimit is the runtime's soft memory limit as it was before
// SetMaxMemory first changed it.
var softLimit struct {
	sync.Mutex
	before int64
	saved  bool
}

// MaxMemory returns the budget SetMaxMemory set.
func MaxMemory() uint64 { return maxMemory.Load() }

// ErrMemoryLimit is the cause of a call stopped by the memory guard.
var ErrMemoryLimit = errors.New("the server's memory went over [lua] max_memory")

// guardedCall is a state's entry in guard.calls, reused by its calls.
// start and gen are written under guard.mu.
type guardedCall struct {
	start time.Time
	c     *callContext
	gen   uint64 // the call of c it stands for
}

var guard struct {
	mu      sync.Mutex
	calls   map[*guardedCall]struct{}
	running bool // the watchdog goroutine is alive

	stopped    atomic.Int64  // calls stopped by the guard, for tests and logs
	stoppedAll atomic.Int64  // times it stopped every call at once
	peak       atomic.Uint64 // the largest heap the watchdog sampled
}

// MemoryStops returns how many calls the memory guard has stopped.
func MemoryStops() int64 { return guard.stopped.Load() }

// guardCall starts a call on st's reusable context (callctx.go): ctx with
// the call's timeout, stopped early by the memory guard. guardEnd must be
// called when the call ends.
func guardCall(st *state, ctx context.Context, timeout time.Duration) *callContext {
	c := st.ctx
	gen := c.start(ctx, timeout)
	if maxMemory.Load() == 0 {
		return c
	}
	gc := &st.guarded
	guard.mu.Lock()
	gc.start, gc.c, gc.gen = time.Now(), c, gen
	if guard.calls == nil {
		guard.calls = make(map[*guardedCall]struct{})
	}
	guard.calls[gc] = struct{}{}
	if !guard.running {
		guard.running = true
		go watchMemory()
	}
	guard.mu.Unlock()
	st.inGuard = true
	return c
}

// guardEnd ends the call guardCall started.
func guardEnd(st *state) {
	st.ctx.end()
	if st.inGuard {
		st.inGuard = false
		guard.mu.Lock()
		delete(guard.calls, &st.guarded)
		guard.mu.Unlock()
	}
}

// watchMemory samples the heap while calls are in flight and stops the
// longest-running one when the heap is over the limit.
func watchMemory() {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/gc/heap/live:bytes"},
		{Name: "/gc/cycles/total:gc-cycles"}}
	var live, cycles uint64 // the heap marked live by the last collection; collections so far
	var lastGC time.Time    // when the watchdog saw the count of collections change (a sample late at most)
	heap := func() uint64 {
		metrics.Read(sample)
		for _, s := range sample {
			if s.Value.Kind() != metrics.KindUint64 {
				return 0
			}
		}
		h := sample[0].Value.Uint64()
		live = sample[1].Value.Uint64()
		if c := sample[2].Value.Uint64(); c != cycles {
			cycles, lastGC = c, time.Now()
		}
		for {
			p := guard.peak.Load()
			if h <= p || guard.peak.CompareAndSwap(p, h) {
				break
			}
		}
		return h
	}
	t := time.NewTicker(memorySampleEvery)
	defer t.Stop()
	episode := false // a call was stopped and the heap has not been under the limit since
	for range t.C {
		guard.mu.Lock()
		if len(guard.calls) == 0 {
			guard.running = false
			guard.mu.Unlock()
			return
		}
		guard.mu.Unlock()
		limit := maxMemory.Load()
		if limit == 0 || heap() <= limit {
			episode = false
			continue
		}
		victim, ok := longestCall()
		if !ok {
			continue
		}
		// Garbage counts in the sample: only live memory is judged. A
		// collection that ended while the victim ran and found more than
		// the limit live is enough. Below the hard line, garbage is the
		// runtime's to collect (the soft memory limit makes it collect
		// before the heap passes that line), and the next collection
		// tells; over it, a collection tells now.
		hard := limit + memoryMargin(limit)
		if live <= limit || !lastGC.After(victim.start.Add(memorySampleEvery)) {
			if heap() <= hard {
				continue
			}
			runtime.GC()
			if heap() <= limit {
				episode = false
				continue
			}
		}
		// The first judgement of an episode stops the longest-running
		// call only. If the heap is still over the limit after that, and
		// over the margin, one at a time is too slow (several calls are
		// running away at once): every call is stopped.
		var stopped []callRef
		if episode && heap() > hard {
			stopped = stopAll()
		} else {
			stopped = []callRef{victim}
			stopCall(victim)
		}
		episode = true
		// Judge again once the stopped calls have ended and their memory
		// can be collected (bounded: a call ends at its next instruction,
		// or at its timeout at the latest). Meanwhile the others run on:
		// if they take the heap over the hard line, they are stopped too.
		for i := 1; ; i++ {
			if !anyRunning(stopped) {
				break
			}
			time.Sleep(memorySampleEvery / 5)
			if i%5 == 0 && heap() > hard {
				runtime.GC()
				if heap() > hard {
					stopped = append(stopped, stopAll()...)
				}
			}
		}
		time.Sleep(memorySampleEvery) // the state is let go just after
		runtime.GC()
	}
}

// memoryMargin is how far over max_memory the heap may go, after a
// collection, before the guard stops every running call rather than the
// longest-running one only: an eighth of the limit, at least 32 MiB.
func memoryMargin(limit uint64) uint64 { return max(limit/8, 32<<20) }

// callRef names one call of a guarded state: the state's entry and the
// call's generation, as they were when it was read.
type callRef struct {
	g     *guardedCall
	c     *callContext
	gen   uint64
	start time.Time
}

// longestCall is the call in flight that started first.
func longestCall() (callRef, bool) {
	guard.mu.Lock()
	defer guard.mu.Unlock()
	var v *guardedCall
	for c := range guard.calls {
		if v == nil || c.start.Before(v.start) {
			v = c
		}
	}
	if v == nil {
		return callRef{}, false
	}
	return callRef{v, v.c, v.gen, v.start}, true
}

// stopCall stops call r with ErrMemoryLimit. The generation: if the call
// has ended meanwhile, its state's next call is not stopped.
func stopCall(r callRef) {
	r.c.stop(r.gen, context.Canceled, ErrMemoryLimit) // counted in guard.stopped
}

// stopAll stops every call in flight.
func stopAll() []callRef {
	guard.mu.Lock()
	all := make([]callRef, 0, len(guard.calls))
	for c := range guard.calls {
		all = append(all, callRef{c, c.c, c.gen, c.start})
	}
	guard.mu.Unlock()
	for _, r := range all {
		stopCall(r)
	}
	guard.stoppedAll.Add(1)
	return all
}

// anyRunning reports whether one of calls is still in flight.
func anyRunning(calls []callRef) bool {
	guard.mu.Lock()
	defer guard.mu.Unlock()
	for _, r := range calls {
		if _, ok := guard.calls[r.g]; ok && r.g.gen == r.gen {
			return true
		}
	}
	return false
}

// interrupted is the error of a call whose context ended before the
// caller's: its timeout, or the memory guard.
func (s *Script) interrupted(f Function, callCtx context.Context) error {
	if errors.Is(contextCause(callCtx), ErrMemoryLimit) {
		return &ScriptError{Kind: KindRuntime, Func: f.String(), Where: s.where(f),
			Msg: fmt.Sprintf("stopped: %v (%d bytes) while it ran", ErrMemoryLimit, maxMemory.Load())}
	}
	return &ScriptError{Kind: KindTimeout, Func: f.String(), Where: s.where(f),
		Msg: "did not finish within " + s.opts.Timeout.String()}
}
