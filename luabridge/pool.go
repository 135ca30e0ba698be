package luabridge

import (
	"context"
	"sync"
	"sync/atomic"
)

// liveStates counts the Lua states built and not yet closed, process-wide.
var liveStates atomic.Int64

// LiveStates returns how many Lua states are alive: a leak check for reloads.
func LiveStates() int64 { return liveStates.Load() }

// pool bounds how many Lua states a script version has: at most size are
// alive, each used by one call at a time. A state that timed out or
// panicked is discarded, never reused, and a new one is built on demand.
//
// All methods may be called concurrently.
type pool struct {
	tokens chan struct{} // one per state in use or idle: bounds the total
	mu     sync.Mutex
	idle   []*state
	closed bool // drained: states coming back are closed, not kept
	build  func() (*state, error)
}

func newPool(size int, build func() (*state, error)) *pool {
	return &pool{tokens: make(chan struct{}, size), build: build}
}

// seed adds a state built elsewhere (the load check's) to the idle list.
func (p *pool) seed(st *state) {
	p.mu.Lock()
	p.idle = append(p.idle, st)
	p.mu.Unlock()
}

// get borrows a state, waiting while all are in use.
func (p *pool) get(ctx context.Context) (*state, error) {
	select {
	case p.tokens <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		st := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return st, nil
	}
	p.mu.Unlock()
	st, err := p.build()
	if err != nil {
		<-p.tokens
		return nil, err
	}
	return st, nil
}

// put returns a state after use: reset for the next call, or closed when
// discard is true.
func (p *pool) put(st *state, discard bool) {
	if !discard {
		st.L.SetTop(0)
		p.mu.Lock()
		if !p.closed {
			p.idle = append(p.idle, st)
			p.mu.Unlock()
			<-p.tokens
			return
		}
		p.mu.Unlock()
	}
	st.close()
	<-p.tokens
}

// drain closes the idle states, and the busy ones as they come back.
func (p *pool) drain() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.closed = true
	p.mu.Unlock()
	for _, st := range idle {
		st.close()
	}
}
