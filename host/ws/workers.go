package ws

import "sync/atomic"

// workers runs short tasks (a session's queued events, a connection's
// writes, a connection's reads while it has input) on goroutines that are
// kept warm between tasks. A task handed to run starts at once: on a worker
// waiting for work if there is one, else on a new goroutine, which then
// waits for more work. Nothing queues, so a task that blocks delays no
// other; there are as many goroutines as tasks running at once, plus at
// most maxIdle idle ones (a worker that finds maxIdle others idle exits).
//
// Reusing goroutines matters on the hot path: a new goroutine starts with
// a small stack and grows it (copying) inside the JSON decoder and the Lua
// VM; a warm worker's stack has already grown. An idle worker waits on a
// channel alone (no timer, no select), so handing it a task is one send.
type workers struct {
	tasks   chan func() // unbuffered: a send succeeds only into an idle worker
	idle    atomic.Int32
	maxIdle int32
}

func newWorkers(maxIdle int) *workers {
	return &workers{tasks: make(chan func()), maxIdle: int32(maxIdle)}
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
			w.idle.Add(-1)
			return
		}
		task = <-w.tasks
		w.idle.Add(-1)
	}
}

// tasks is the process's worker pool: sessions, writers and readers share
// it. 1,024 idle workers cover the bursts of a busy server (a broker
// message to a room of 1,000 runs 1,000 sessions and 1,000 writers at once)
// for at most a few MiB of stacks; beyond them, goroutines end with their
// task, so that the stacks a burst of thousands of connections grew are
// given back.
var tasks = newWorkers(1024)

// Spawn runs task at once on the process's worker pool, which the
// connections' readers and writers share: the server's
// engine.Options.Spawn.
func Spawn(task func()) { tasks.run(task) }
