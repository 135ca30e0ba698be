package luabridge

// The context a state's calls run under, reused from call to call: a
// context.WithTimeout per call costs a context, a timer and a channel (five
// allocations, over a microsecond). gopher-lua looks at L.ctx.Done() between
// instructions; here Done is one channel that lives as long as nothing
// closes it, and the timer is one time.AfterFunc re-armed for each call.
//
// A call is one generation (gen). Whatever may stop a call from another
// goroutine (the timer, the caller's context, the memory guard) is checked
// against the generation it was meant for, so that a late one never stops
// the next call on the same state:
//   - the timer has one function for every call: it stops the current call
//     only once that call's own deadline has passed (a timer armed for an
//     earlier call that fires late finds a later deadline and does nothing);
//   - the caller's context and the memory guard carry the generation.
//
// Contexts derived from it (gopher-lua gives each coroutine
// context.WithCancel(L.ctx)) register through AfterFunc, and are cancelled
// when the call is stopped or ends, as the children of a per-call context
// were.

import (
	"context"
	"sync"
	"time"
)

type callContext struct {
	// done is read without the lock by the state's own goroutine (gopher-lua
	// reads it at every instruction); only start, on that goroutine,
	// replaces it, and only after it was closed.
	done chan struct{}

	mu       sync.Mutex
	gen      uint64
	active   bool // a call is running
	err      error
	cause    error
	parent   context.Context
	deadline time.Time
	funcs    map[uint64]func() // registered by derived contexts during this call
	nextID   uint64
	running  sync.WaitGroup // stop running funcs: the next call waits for them

	timer      *time.Timer
	parentStop func() bool // the caller's context's AfterFunc, when it can be cancelled
}

func newCallContext() *callContext {
	c := &callContext{done: make(chan struct{})}
	c.timer = time.AfterFunc(time.Hour, c.fire)
	c.timer.Stop()
	return c
}

// start begins a call (a new generation) bounded by timeout and parent.
func (c *callContext) start(parent context.Context, timeout time.Duration) (gen uint64) {
	// A stop of the previous call may still be cancelling its derived
	// contexts, which ask Err: it must not see the next call's nil.
	c.running.Wait()
	c.mu.Lock()
	c.gen++
	gen = c.gen
	if c.err != nil {
		c.done = make(chan struct{})
		c.err, c.cause = nil, nil
	}
	c.parent = parent
	c.deadline = time.Now().Add(timeout)
	c.active = true
	c.mu.Unlock()
	c.timer.Reset(timeout)
	if parent.Done() != nil {
		if err := parent.Err(); err != nil {
			c.stop(gen, err, context.Cause(parent))
			return gen
		}
		g := gen // captured: gen itself would move to the heap on every call
		c.parentStop = context.AfterFunc(parent, func() {
			c.stop(g, parent.Err(), context.Cause(parent))
		})
	}
	return gen
}

// end finishes the current call: nothing can stop it any more, and the
// contexts derived from it are cancelled.
func (c *callContext) end() {
	c.timer.Stop()
	if c.parentStop != nil {
		c.parentStop()
		c.parentStop = nil
	}
	c.mu.Lock()
	c.active = false
	c.parent = nil
	if len(c.funcs) == 0 {
		c.mu.Unlock()
		return
	}
	if c.err == nil {
		// The derived contexts see the call's end as a cancellation, and
		// ask Err; done is made anew by the next start.
		c.err, c.cause = context.Canceled, context.Canceled
		close(c.done)
	}
	funcs := c.takeFuncs()
	c.mu.Unlock()
	runFuncs(funcs)
}

// fire is the timer's function: it stops the current call if its deadline
// has passed.
func (c *callContext) fire() {
	c.mu.Lock()
	if !c.active || c.err != nil || time.Now().Before(c.deadline) {
		c.mu.Unlock()
		return
	}
	gen := c.gen
	c.mu.Unlock()
	c.stop(gen, context.DeadlineExceeded, context.DeadlineExceeded)
}

// stop stops call gen, if it is still running, with err and cause.
func (c *callContext) stop(gen uint64, err, cause error) {
	c.mu.Lock()
	if !c.active || c.gen != gen || c.err != nil {
		c.mu.Unlock()
		return
	}
	if cause == nil {
		cause = err
	}
	c.err, c.cause = err, cause
	if cause == ErrMemoryLimit {
		guard.stopped.Add(1) // counted before the call can see it is stopped
	}
	close(c.done)
	funcs := c.takeFuncs()
	c.running.Add(1)
	c.mu.Unlock()
	runFuncs(funcs)
	c.running.Done()
}

// generation returns the current call's generation.
func (c *callContext) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

func (c *callContext) takeFuncs() map[uint64]func() {
	funcs := c.funcs
	c.funcs = nil
	return funcs
}

func runFuncs(funcs map[uint64]func()) {
	for _, f := range funcs {
		f()
	}
}

// Deadline is the current call's deadline.
func (c *callContext) Deadline() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.deadline, true
}

// Done is closed when the current call is stopped.
func (c *callContext) Done() <-chan struct{} { return c.done }

// Err is nil while the call runs, then DeadlineExceeded, Canceled or the
// caller's context's error.
func (c *callContext) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Cause is why the call was stopped: Err, or the memory guard's
// ErrMemoryLimit, or the cause of the caller's context.
func (c *callContext) Cause() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cause
}

// Value is the caller's context's value.
func (c *callContext) Value(key any) any {
	c.mu.Lock()
	p := c.parent
	c.mu.Unlock()
	if p == nil {
		return nil
	}
	return p.Value(key)
}

// AfterFunc arranges for f to run when the call is stopped or ends
// (context.WithCancel uses it to cancel the contexts derived from this one,
// holding the derived context's lock: f never runs inside AfterFunc). It is
// called by the state's goroutine during a call; f registered after the call
// was stopped runs when the call ends. The returned function unregisters f
// and reports whether it did.
func (c *callContext) AfterFunc(f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.active {
		return func() bool { return false } // no call: nothing will stop it
	}
	c.nextID++
	id := c.nextID
	if c.funcs == nil {
		c.funcs = make(map[uint64]func())
	}
	c.funcs[id] = f
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		if _, ok := c.funcs[id]; ok {
			delete(c.funcs, id)
			return true
		}
		return false
	}
}

// close releases the timer of a state that is closed.
func (c *callContext) close() { c.timer.Stop() }

// contextCause is context.Cause, which cannot see the cause of a
// callContext.
func contextCause(ctx context.Context) error {
	if c, ok := ctx.(*callContext); ok {
		return c.Cause()
	}
	return context.Cause(ctx)
}
