package ws

import (
	"sync"
	"sync/atomic"
	"time"
)

// workers runs short tasks (a session's queued events, a connection's
// writes, a connection's reads while it has input) on goroutines that are
// kept warm between tasks. A task handed to run starts at once: on a worker
// waiting for work if there is one, else on a new goroutine, which then
// waits for more work. Nothing queues, so a task that blocks delays no
// other; there are as many goroutines as tasks running at once, plus the
// idle ones, at most maxIdle (a worker that finds maxIdle others idle
// exits).
//
// Idle workers shrink back after a burst: reap, run every idle period,
// retires as many idle workers as stayed idle through the whole period (the
// lowest idle count seen since the previous reap), so a steady load keeps
// the workers it uses and a burst's extra workers are gone one period after
// it ends.
//
// Reusing goroutines matters on the hot path: a new goroutine starts with
// a small stack and grows it (copying) inside the JSON decoder and the Lua
// VM; a warm worker's stack has already grown. An idle worker waits on a
// channel alone (no timer, no select), so handing it a task is one send.
type workers struct {
	tasks   chan func() // unbuffered: a send succeeds only into an idle worker; nil retires the worker
	idle    atomic.Int32
	low     atomic.Int32 // the lowest idle count since the last reap
	maxIdle int32
	period  time.Duration // 0: no reaper (tests call reap themselves)
	start   sync.Once
}

func newWorkers(maxIdle int, period time.Duration) *workers {
	return &workers{tasks: make(chan func()), maxIdle: int32(maxIdle), period: period}
}

// run starts task.
func (w *workers) run(task func()) {
	select {
	case w.tasks <- task:
	default:
		go w.work(task)
	}
}

func (w *workers) work(task func()) {
	for {
		task()
		if w.idle.Add(1) > w.maxIdle {
			w.lower(w.idle.Add(-1))
			return
		}
		if w.period > 0 {
			w.start.Do(func() { time.AfterFunc(w.period, w.tick) })
		}
		task = <-w.tasks
		w.lower(w.idle.Add(-1))
		if task == nil {
			return
		}
	}
}

// lower records n idle workers for the low-water mark.
func (w *workers) lower(n int32) {
	for {
		low := w.low.Load()
		if n >= low || w.low.CompareAndSwap(low, n) {
			return
		}
	}
}

func (w *workers) tick() {
	w.reap()
	time.AfterFunc(w.period, w.tick)
}

// reap retires the workers that stayed idle since the previous reap and
// returns how many it retired. A retired worker is one waiting for a task:
// it gets nil, which ends it; if none is waiting (they all just took
// tasks), fewer are retired.
func (w *workers) reap() int {
	surplus := w.low.Swap(w.maxIdle) // the next period's mark starts high
	retired := 0
	for range surplus {
		select {
		case w.tasks <- nil:
			retired++
		default:
			w.lower(w.idle.Load())
			return retired
		}
	}
	w.lower(w.idle.Load())
	return retired
}

// Idle returns how many workers are waiting for a task.
func (w *workers) Idle() int { return int(w.idle.Load()) }

// tasks is the process's worker pool: sessions, writers and readers share
// it. Up to 1,024 idle workers cover the bursts of a busy server (a broker
// message to a room of 1,000 runs 1,000 sessions and 1,000 writers at once)
// for at most a few MiB of stacks; beyond them, goroutines end with their
// task, and the idle ones a burst left are retired after 10 s without use,
// so that the stacks a burst of thousands of connections grew are given
// back.
var tasks = newWorkers(1024, 10*time.Second)

// Spawn runs task at once on the process's worker pool, which the
// connections' readers and writers share: the server's
// engine.Options.Spawn.
func Spawn(task func()) { tasks.run(task) }

// IdleWorkers is how many of the pool's workers wait for a task now (the
// electric_socket_idle_workers gauge).
func IdleWorkers() int { return tasks.Idle() }
