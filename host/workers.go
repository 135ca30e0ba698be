package host

import "time"

// workerIdle is how long an idle worker waits for work before it exits.
const workerIdle = 10 * time.Second

// workers runs short tasks (a session's queued events, a connection's
// writes, a burst of reads) on goroutines that are kept warm between tasks.
// A task handed to run starts at once: on a worker waiting for work if there
// is one, else on a new goroutine, which then waits for more work. Nothing
// queues, so a task that blocks delays no other; there are as many
// goroutines as tasks running at once, plus the idle ones, each of which
// exits after workerIdle without work.
//
// Reusing goroutines matters on the hot path: a new goroutine starts with
// a small stack and grows it (copying) inside the JSON decoder and the Lua
// VM on every message; a warm worker's stack has already grown.
type workers struct {
	tasks chan func() // unbuffered: a send succeeds only into an idle worker
}

func newWorkers() *workers { return &workers{tasks: make(chan func())} }

// run starts task.
func (w *workers) run(task func()) {
	select {
	case w.tasks <- task:
	default:
		go w.work(task)
	}
}

func (w *workers) work(task func()) {
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		task()
		task = nil
		idle.Reset(workerIdle)
		select {
		case task = <-w.tasks:
		case <-idle.C:
			return
		}
	}
}

// tasks is the process's worker pool: sessions, writers and readers share
// it.
var tasks = newWorkers()
