package broker

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
)

// Group commit (SPEC section 6, "Contention").
//
// An instance never races itself on a key: a broker's updates of one key
// wait their turn in a first-come, first-served line (updateLine), and
// whichever caller finds the line idle leads. The leader takes the updates
// waiting at that moment (up to groupMax, in arrival order) as one group,
// runs their functions one after another on the evolving value (each sees
// what the one before it produced, exactly as if each had committed before
// the next began) and commits the group's result in ONE compare-and-set.
// When that loses, the whole group runs again on the value the
// compare-and-set returned, with retried = true. A member whose function
// fails or aborts leaves the value as it found it and fails or aborts
// alone: the others commit. The leader then wakes the members, which act
// on their own results in their own goroutines, and hands the line to the
// next caller waiting, which leads the next group.
//
// So a key that is hot on one instance costs one compare-and-set per group,
// not per update, and gets faster the hotter it is; only writers on
// different instances can conflict.
//
// An update with an operation id of its own (WithOperation) is a group of
// one: its record says whether that very operation was applied.

// groupMax bounds the members of one group: a group runs its functions one
// after another before its compare-and-set, so this bounds how long the
// first member waits for the last one's function.
const groupMax = 64

// member is one Update waiting in a key's line or running in a group.
type member struct {
	ctx   context.Context
	fn    UpdateFunc
	op    operation // its own operation (named), or zero
	named bool

	wake chan struct{} // capacity 1: its outcome is known, or it leads

	// Set under the line's lock.
	lead  bool // it runs the next group
	taken bool // it is in a group: its outcome will come

	// Set by the group's leader before wake.
	runs    int   // how many times fn ran
	err     error // its outcome: nil when its result committed (or it aborted)
	panicV  any   // fn panicked: raised again in the caller's goroutine
	panicST []byte
}

// run calls m.fn, turning a panic into m.panicV so that the leader (which
// may be another caller's goroutine) survives it and the panic reaches the
// member's own caller.
func (m *member) run(current []byte) (next []byte, op Op, err error) {
	m.runs++
	defer func() {
		if v := recover(); v != nil {
			m.panicV, m.panicST = v, debug.Stack()
			next, op, err = nil, Abort, fmt.Errorf("the update function panicked: %v", v)
		}
	}()
	return m.fn(current, m.runs > 1)
}

// updateLine is the line of updates of each key of one broker. Safe for
// concurrent use.
type updateLine struct {
	mu   sync.Mutex
	keys map[string]*keyLine
}

type keyLine struct {
	waiting []*member // arrival order
	busy    bool      // a leader runs a group
	// refusing, while set, is the error every update of the key meets
	// instead of waiting: the group being committed cannot reach the
	// broker (see refuse). The leader's hand-on clears it.
	refusing error
}

// do runs m's update through the line of key: it waits for its turn,
// leads a group or is part of one, and returns m's outcome. commit runs a
// group: it must set each member's err.
func (q *updateLine) do(key string, m *member, commit func([]*member)) error {
	m.wake = make(chan struct{}, 1)
	q.mu.Lock()
	if q.keys == nil {
		q.keys = make(map[string]*keyLine)
	}
	l := q.keys[key]
	if l == nil {
		l = &keyLine{}
		q.keys[key] = l
	}
	if l.refusing != nil {
		err := l.refusing
		q.mu.Unlock()
		return err
	}
	l.waiting = append(l.waiting, m)
	leads := !l.busy
	l.busy = true
	q.mu.Unlock()
	if !leads {
		select {
		case <-m.wake:
		case <-m.ctx.Done():
			q.mu.Lock()
			if !m.taken && !m.lead { // never run: leave the line
				l.remove(m)
				q.mu.Unlock()
				return m.ctx.Err()
			}
			q.mu.Unlock()
			<-m.wake // its function may have run: wait for the outcome
		}
		q.mu.Lock()
		leads = m.lead
		q.mu.Unlock()
		if !leads {
			return m.outcome()
		}
	}
	group := q.take(l)
	q.commit(key, l, group, commit)
	return m.outcome()
}

// commit runs commit for group, then wakes its members and hands the line
// on, even when commit panics (a bug): the panic goes on in the leader's
// caller, and the others are told their update failed instead of waiting
// for ever.
func (q *updateLine) commit(key string, l *keyLine, group []*member, commit func([]*member)) {
	defer func() {
		v := recover()
		if v != nil {
			for _, o := range group {
				if o.err == nil {
					o.err = fmt.Errorf("broker: the group commit of %s failed: %v", key, v)
				}
			}
		}
		for _, o := range group[1:] {
			o.wake <- struct{}{}
		}
		q.handOn(key, l)
		if v != nil {
			panic(v)
		}
	}()
	commit(group)
}

// outcome is what Update returns to m's caller.
func (m *member) outcome() error {
	if m.panicV != nil {
		panic(fmt.Sprintf("%v [in an update function run by a group's leader]\n%s", m.panicV, m.panicST))
	}
	return m.err
}

// take removes the next group from l: the leader (first) and the updates
// behind it, up to groupMax, stopping before an update with an operation
// of its own (a group of one).
func (q *updateLine) take(l *keyLine) []*member {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := 1
	if !l.waiting[0].named {
		for n < len(l.waiting) && n < groupMax && !l.waiting[n].named {
			n++
		}
	}
	group := make([]*member, n)
	copy(group, l.waiting[:n])
	for _, m := range group {
		m.taken = true
	}
	rest := copy(l.waiting, l.waiting[n:])
	clear(l.waiting[rest:])
	l.waiting = l.waiting[:rest]
	return group
}

// refuse is called by the leader of key's line while its group's outcome
// waits on a broker it cannot reach (a lost reply being resolved): the
// updates waiting behind it, and those that come until the group is done,
// fail at once with err instead of waiting for the broker to come back.
// None of them ran, so err must say that nothing was committed
// (ErrUnavailable); the caller hears it during the outage, not after it.
func (q *updateLine) refuse(key string, err error) {
	q.mu.Lock()
	l := q.keys[key]
	if l == nil {
		q.mu.Unlock()
		return
	}
	l.refusing = err
	var refused []*member
	kept := l.waiting[:0]
	for _, m := range l.waiting {
		if m.taken || m.lead {
			kept = append(kept, m)
			continue
		}
		m.err = err
		refused = append(refused, m)
	}
	clear(l.waiting[len(kept):])
	l.waiting = kept
	q.mu.Unlock()
	for _, m := range refused {
		m.wake <- struct{}{}
	}
}

// handOn makes the first waiting update lead the next group, or marks the
// line idle (and forgets it) when none waits.
func (q *updateLine) handOn(key string, l *keyLine) {
	q.mu.Lock()
	l.refusing = nil
	if len(l.waiting) == 0 {
		l.busy = false
		delete(q.keys, key)
		q.mu.Unlock()
		return
	}
	next := l.waiting[0]
	next.lead = true
	q.mu.Unlock()
	next.wake <- struct{}{}
}

func (l *keyLine) remove(m *member) {
	for i, o := range l.waiting {
		if o == m {
			l.waiting = append(l.waiting[:i], l.waiting[i+1:]...)
			return
		}
	}
}
