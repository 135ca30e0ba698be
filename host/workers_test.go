package host

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Tasks run at once even when every worker is blocked, and the goroutines
// are reused: 1,000 tasks one after the other run on a few goroutines.
func TestWorkersRunAtOnceAndReuse(t *testing.T) {
	w := newWorkers(16)
	release := make(chan struct{})
	var started sync.WaitGroup
	for range 10 {
		started.Add(1)
		w.run(func() { started.Done(); <-release })
	}
	done := make(chan struct{})
	go func() { started.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(waitBound):
		t.Fatal("10 blocking tasks did not all start: a task waited for another")
	}
	close(release)

	var gids sync.Map
	var ran atomic.Int64
	for range 1000 {
		finished := make(chan struct{})
		w.run(func() {
			gids.Store(goid(), true)
			ran.Add(1)
			close(finished)
		})
		<-finished
		// Let the worker get back to waiting before the next task.
		eventually(t, "the worker to wait again", func() bool { return idleWorker(w) })
	}
	n := 0
	gids.Range(func(any, any) bool { n++; return true })
	// A task handed over while every worker is between tasks starts a
	// goroutine of its own, so a few more than the 10 may appear; without
	// reuse there would be 1,000.
	if ran.Load() != 1000 || n > 20 {
		t.Fatalf("%d tasks ran on %d goroutines; want 1000 on at most 20", ran.Load(), n)
	}
}

// idleWorker reports whether a worker waits for work, by handing it a no-op.
func idleWorker(w *workers) bool {
	select {
	case w.tasks <- func() {}:
		return true
	default:
		return false
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
	eventually(t, "the workers to finish", func() bool { return w.idle.Load() == 3 })
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
