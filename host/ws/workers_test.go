package ws

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// Tasks run at once even when every worker is blocked, and the goroutines
// are reused: tasks handed over one after the other while a worker waits
// run on the workers already there, never on a new goroutine.
func TestWorkersRunAtOnceAndReuse(t *testing.T) {
	w := newWorkers(16, 0)
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

// Beyond maxIdle, a worker that finishes ends instead of waiting, and the
// idle ones take the next tasks.
func TestWorkersKeepAtMostMaxIdle(t *testing.T) {
	w := newWorkers(3, 0)
	release := make(chan struct{})
	var started sync.WaitGroup
	var first sync.Map
	for range 10 {
		started.Add(1)
		w.run(func() { first.Store(goid(), true); started.Done(); <-release })
	}
	started.Wait()
	close(release)
	// The 7 beyond maxIdle end: exactly 3 goroutines of w are left, parked.
	waitWorkers(t, w, 3, 3)
	if n := w.idle.Load(); n != 3 {
		t.Fatalf("%d idle workers, want 3", n)
	}
	parked := waitWorkers(t, w, 3, 3)
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
	ran := 0
	gids.Range(func(k, _ any) bool {
		ran++
		if !parked[k.(string)] {
			t.Errorf("a task ran on goroutine %s, not on one of the 3 idle workers %v", k, parked)
		}
		return true
	})
	if ran != 3 {
		t.Errorf("3 tasks ran on %d goroutines, want 3", ran)
	}
	close(hold)
}

// After a burst, reap retires the workers that stayed idle for a whole
// period and keeps those a steady load uses. reap is called by the test (the
// pool has no timer), so nothing depends on time.
func TestWorkersShrinkAfterABurst(t *testing.T) {
	w := newWorkers(64, 0)
	burst := func(n int) {
		release := make(chan struct{})
		var started sync.WaitGroup
		for range n {
			started.Add(1)
			w.run(func() { started.Done(); <-release })
		}
		started.Wait()
		close(release)
	}
	// A steady load: one task at a time, each handed over once all k
	// workers wait, so that it runs on one of them.
	serial := func(n, k int) {
		for range n {
			waitWorkers(t, w, k, k)
			done := make(chan struct{})
			w.run(func() { close(done) })
			<-done
		}
		waitWorkers(t, w, k, k)
	}
	burst(10)
	waitWorkers(t, w, 10, 10)
	if n := w.reap(); n != 0 {
		t.Fatalf("the first reap retired %d workers: they ran during the period, want 0", n)
	}
	// A period where 3 of the 10 are used: 7 stayed idle throughout.
	burst(3)
	waitWorkers(t, w, 10, 10)
	if n := w.reap(); n != 7 {
		t.Fatalf("reap retired %d workers, want the 7 that stayed idle", n)
	}
	waitWorkers(t, w, 3, 3)
	if w.Idle() != 3 {
		t.Fatalf("%d idle workers after the reap, want 3", w.Idle())
	}
	// A steady load of one task at a time uses one worker each period.
	serial(50, 3)
	if n := w.reap(); n != 2 {
		t.Fatalf("reap under a load of one task at a time retired %d workers, want 2 (3 idle, 1 used)", n)
	}
	waitWorkers(t, w, 1, 1)
	serial(50, 1)
	if n := w.reap(); n != 0 {
		t.Fatalf("reap retired %d workers the steady load uses, want 0", n)
	}
	// No load for a period: the last one goes too.
	if n := w.reap(); n != 1 {
		t.Fatalf("reap after an idle period retired %d workers, want 1", n)
	}
	waitWorkers(t, w, 0, 0)
	// And the pool still runs tasks.
	done := make(chan struct{})
	w.run(func() { close(done) })
	select {
	case <-done:
	case <-time.After(waitBound):
		t.Fatal("a task after the pool shrank to nothing did not run")
	}
}

// waitWorkers waits (bounded) until w has exactly total goroutines,
// parked of them blocked receiving a task, and returns the parked
// ones' ids. The workers are found in the goroutines' stacks by w's address
// (the receiver, the first argument of work).
func waitWorkers(t *testing.T, w *workers, total, parked int) map[string]bool {
	t.Helper()
	self := fmt.Sprintf("(*workers).work(%p", w)
	deadline := time.Now().Add(waitBound)
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		all, ids := 0, map[string]bool{}
		for _, g := range strings.Split(string(buf[:n]), "\n\n") {
			lines := strings.SplitN(g, "\n", 3)
			if len(lines) < 2 || !strings.Contains(lines[1], self) {
				continue
			}
			all++
			id, state, _ := strings.Cut(strings.TrimPrefix(lines[0], "goroutine "), " ")
			if strings.HasPrefix(state, "[chan receive") {
				ids[id] = true
			}
		}
		if all == total && len(ids) == parked {
			return ids
		}
		if time.Now().After(deadline) {
			t.Fatalf("w has %d goroutines, %d of them waiting for a task; want %d and %d", all, len(ids), total, parked)
		}
		runtime.Gosched()
	}
}
