package ws

import "sync"

// connTracker counts the upgraded connections that have not yet ended, so
// that Shutdown can wait for them. Unlike a bare sync.WaitGroup it refuses
// new connections once the wait has begun: an upgrade that raced with
// Shutdown is turned away instead of being added to a group already being
// waited on.
type connTracker struct {
	mu      sync.Mutex
	closing bool
	wg      sync.WaitGroup
}

// add counts one more connection; false once Shutdown has begun waiting.
func (t *connTracker) add() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closing {
		return false
	}
	t.wg.Add(1)
	return true
}

// done counts one connection as ended.
func (t *connTracker) done() { t.wg.Done() }

// closeAndWait refuses every later add and waits for the counted
// connections to end.
func (t *connTracker) closeAndWait() {
	t.mu.Lock()
	t.closing = true
	t.mu.Unlock()
	t.wg.Wait()
}
