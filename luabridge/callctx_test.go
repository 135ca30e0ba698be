package luabridge

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"
)

func isDone(c context.Context) bool {
	select {
	case <-c.Done():
		return true
	default:
		return false
	}
}

func waitDone(t *testing.T, c context.Context) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("context not done after 5s")
	}
}

// A reused call context times out, and the next call on it starts afresh.
func TestCallContextReuse(t *testing.T) {
	c := newCallContext()
	defer c.close()
	c.start(context.Background(), 5*time.Millisecond)
	waitDone(t, c)
	if !errors.Is(c.Err(), context.DeadlineExceeded) || !errors.Is(contextCause(c), context.DeadlineExceeded) {
		t.Errorf("Err %v, Cause %v; want deadline exceeded", c.Err(), contextCause(c))
	}
	c.end()
	for range 100 {
		c.start(context.Background(), time.Hour)
		if isDone(c) || c.Err() != nil {
			t.Fatalf("a new call starts stopped: %v", c.Err())
		}
		c.end()
	}
}

// A stop meant for an earlier call (the memory guard's, a late timer's) does
// not stop the next one.
func TestCallContextStaleStop(t *testing.T) {
	c := newCallContext()
	defer c.close()
	gen1 := c.start(context.Background(), time.Hour)
	c.end()
	c.stop(gen1, context.Canceled, ErrMemoryLimit) // after its end: ignored
	gen2 := c.start(context.Background(), time.Hour)
	c.stop(gen1, context.Canceled, ErrMemoryLimit)
	c.fire() // a timer armed for an earlier call, firing late
	if isDone(c) || c.Err() != nil {
		t.Fatalf("a stale stop stopped the next call: %v", c.Err())
	}
	c.stop(gen2, context.Canceled, ErrMemoryLimit)
	if !isDone(c) || !errors.Is(contextCause(c), ErrMemoryLimit) || !errors.Is(c.Err(), context.Canceled) {
		t.Fatalf("stop of the current call: Err %v, Cause %v", c.Err(), contextCause(c))
	}
	c.end()

	// A timer that fires late, while a later call runs: that call's deadline
	// has not passed, so it goes on.
	c.start(context.Background(), time.Millisecond)
	time.Sleep(10 * time.Millisecond)
	c.end()
	c.start(context.Background(), time.Hour)
	c.fire()
	if isDone(c) {
		t.Fatal("a late timer stopped the next call")
	}
	c.end()
}

// The caller's context stops the call; after the call it no longer matters.
func TestCallContextParent(t *testing.T) {
	c := newCallContext()
	defer c.close()
	parent, cancel := context.WithCancelCause(context.Background())
	c.start(parent, time.Hour)
	cause := errors.New("the caller gave up")
	cancel(cause)
	waitDone(t, c)
	if !errors.Is(c.Err(), context.Canceled) || contextCause(c) != cause {
		t.Errorf("Err %v, Cause %v", c.Err(), contextCause(c))
	}
	c.end()

	parent2, cancel2 := context.WithCancel(context.Background())
	c.start(parent2, time.Hour)
	c.end()
	cancel2()
	c.start(context.Background(), time.Hour)
	time.Sleep(5 * time.Millisecond)
	if isDone(c) {
		t.Fatal("the previous call's parent stopped the next call")
	}
	c.end()

	done, cancel3 := context.WithCancel(context.Background())
	cancel3()
	c.start(done, time.Hour)
	if !isDone(c) {
		t.Fatal("a call under a cancelled context is not stopped at once")
	}
	c.end()
}

// Contexts derived from a call (gopher-lua gives each coroutine one) are
// cancelled when the call is stopped, or when it ends.
func TestCallContextDerived(t *testing.T) {
	c := newCallContext()
	defer c.close()
	c.start(context.Background(), time.Hour)
	child, cancelChild := context.WithCancel(c)
	defer cancelChild()
	kept, cancelKept := context.WithCancel(c)
	cancelKept() // unregisters
	if isDone(child) {
		t.Fatal("child done during the call")
	}
	c.end()
	if !isDone(child) || !isDone(kept) {
		t.Fatal("child not cancelled at the end of the call")
	}
	c.start(context.Background(), 5*time.Millisecond)
	child2, cancel2 := context.WithCancel(c)
	defer cancel2()
	waitDone(t, child2)
	if !errors.Is(child2.Err(), context.DeadlineExceeded) {
		t.Errorf("child Err %v", child2.Err())
	}
	// Derived after the stop: cancelled at once or at the end.
	child3, cancel3 := context.WithCancel(c)
	defer cancel3()
	c.end()
	if !isDone(child3) {
		t.Fatal("child made after the stop not cancelled")
	}
	c.start(context.Background(), time.Hour)
	if isDone(c) || c.Err() != nil {
		t.Fatal("call after a timeout starts stopped")
	}
	c.end()
}

// A state kept after a call that ended just as its timer fired runs its
// next calls normally (PoolSize 1: always the same state). The race is made
// to happen in every call rather than left to the scheduler: during each
// call a hook fires the state's timer as a late timer of the previous call
// would, and sends a stop meant for the previous call (the memory guard's).
// The budget is a minute, so no call may end in a timeout: one that does
// was stopped by what was meant for another.
func TestCallContextManyCalls(t *testing.T) {
	s := mustLoad(t, wsScript(`late_stops() return { websocket_response = { n = message.n } }`), Options{PoolSize: 1, Timeout: time.Minute})
	st, err := s.pool.get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	st.L.G.Global.RawSetString("late_stops", st.L.NewFunction(func(L *lua.LState) int {
		gen := st.ctx.generation()
		st.ctx.fire()                                        // a timer armed for an earlier call, firing now
		st.ctx.stop(gen-1, context.Canceled, ErrMemoryLimit) // a stop meant for the previous call
		return 0
	}))
	s.pool.put(st, false)
	for i := range 2000 {
		a, err := runWS(t, s, fmt.Sprintf(`{"n":%d}`, i))
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if want := fmt.Sprintf(`{"n":%d}`, i); string(a.Response) != want {
			t.Fatalf("call %d: response %s, want %s", i, a.Response, want)
		}
	}
}

// A call whose parent can never be cancelled (every message's: the engine
// passes context.Background) costs the reused call context no allocation.
func TestCallContextStartAllocatesNothing(t *testing.T) {
	c := newCallContext()
	defer c.close()
	allocs := testing.AllocsPerRun(100, func() {
		c.start(context.Background(), time.Hour)
		c.end()
	})
	if allocs != 0 {
		t.Errorf("%v allocations per start and end, want 0", allocs)
	}
}
