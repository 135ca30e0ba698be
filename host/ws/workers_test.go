package ws

import (
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/electric-socket/electric-socket/tests/testkit"
)

// Tasks run at once even when every worker is blocked, and the goroutines
// are reused: tasks handed over one after the other while a worker waits
// run on the workers already there, never on a new goroutine.
func TestWorkersRunAtOnceAndReuse(t *testing.T) {
	w := newWorkers(16)
	release := make(chan struct{})
	var started sync.WaitGroup
	var first sync.Map // the goroutines of the 10 blocking tasks
	for range 10 {
		started.Add(1)
		w.run(func() { first.Store(goid(), true); started.Done(); <-release })
	}
	done := make(chan struct{})
	go func() { started.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(waitBound):
		t.Fatal("10 blocking tasks did not all start: a task waited for another")
	}
	workerIDs := map[string]bool{}
	first.Range(func(k, _ any) bool { workerIDs[k.(string)] = true; return true })
	if len(workerIDs) != 10 {
		t.Fatalf("10 blocking tasks ran on %d goroutines, want 10", len(workerIDs))
	}
	close(release)

	// Before each task, wait until one of the 10 workers is parked in its
	// receive: run must then hand the task to a waiting worker. Whether a
	// worker is parked is read from the goroutines' own stacks, so nothing
	// here depends on how the scheduler interleaves the worker and the test.
	const n = 200
	for i := range n {
		waitParked(t, workerIDs)
		ran := make(chan string, 1)
		w.run(func() { ran <- goid() })
		select {
		case id := <-ran:
			if !workerIDs[id] {
				t.Fatalf("task %d ran on a new goroutine %s while a worker was waiting", i, id)
			}
		case <-time.After(waitBound):
			t.Fatalf("task %d did not run", i)
		}
	}
}

// waitParked waits (bounded) until one of the goroutines ids is a worker
// blocked receiving its next task.
func waitParked(t *testing.T, ids map[string]bool) {
	t.Helper()
	deadline := time.Now().Add(waitBound)
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		for _, g := range strings.Split(string(buf[:n]), "\n\n") {
			// "goroutine 42 [chan receive]:\n...host.(*workers).work(...)\n..."
			// (the runtime's own frames are not shown)
			lines := strings.SplitN(g, "\n", 3)
			id, state, ok := strings.Cut(strings.TrimPrefix(lines[0], "goroutine "), " ")
			if ok && ids[id] && strings.HasPrefix(state, "[chan receive") &&
				len(lines) > 1 && strings.Contains(lines[1], ".(*workers).work(") {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no worker came back to wait for a task")
		}
		runtime.Gosched()
	}
}

// goid returns the current goroutine's id, from its stack header.
func goid() string {
	var b [64]byte
	n := runtime.Stack(b[:], false)
	s := string(b[:n])
	for i := len("goroutine "); i < len(s); i++ {
		if s[i] == ' ' {
			return s[len("goroutine "):i]
		}
	}
	return s
}

// Beyond maxIdle, a worker that finishes ends instead of waiting.
func TestWorkersKeepAtMostMaxIdle(t *testing.T) {
	w := newWorkers(3)
	release := make(chan struct{})
	var started sync.WaitGroup
	for range 10 {
		started.Add(1)
		w.run(func() { started.Done(); <-release })
	}
	started.Wait()
	close(release)
	testkit.Eventually(t, 10*time.Second, "the workers to finish", func() bool { return w.idle.Load() == 3 })
	time.Sleep(20 * time.Millisecond)
	if n := w.idle.Load(); n != 3 {
		t.Fatalf("%d idle workers, want 3", n)
	}
	// The three idle ones take the next tasks.
	var gids sync.Map
	var wg sync.WaitGroup
	hold := make(chan struct{})
	for range 3 {
		wg.Add(1)
		w.run(func() { gids.Store(goid(), true); wg.Done(); <-hold })
	}
	wg.Wait()
	if n := w.idle.Load(); n != 0 {
		t.Fatalf("%d idle workers while 3 tasks run, want 0", n)
	}
	close(hold)
}
