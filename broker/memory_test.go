package broker

import (
	"context"
	"errors"
	"testing"
)

func TestMemoryContract(t *testing.T) {
	runContract(t, func(t *testing.T) Broker {
		b := NewMemory(3)
		t.Cleanup(func() { b.Close() })
		return b
	})
}

func TestMemoryForcedConflictRetriesThenCommits(t *testing.T) {
	b := NewMemory(3)
	tp := Topic{"chat", "room1"}
	b.ForceConflicts(tp, 2)
	var calls []bool
	err := b.Update(context.Background(), tp, func(_ []byte, retried bool) ([]byte, Op, error) {
		calls = append(calls, retried)
		return []byte(`{"attempt":` + string(rune('0'+len(calls))) + `}`), Set, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []bool{false, true, true}; len(calls) != 3 || calls[0] != want[0] || !calls[1] || !calls[2] {
		t.Fatalf("retried flags = %v, want %v", calls, want)
	}
	if got := string(b.Get(tp)); got != `{"attempt":3}` {
		t.Fatalf("committed %s, want the third attempt's result", got)
	}
}

func TestMemoryConflictLimitCommitsNothing(t *testing.T) {
	b := NewMemory(2)
	tp := Topic{"chat", "room1"}
	b.ForceConflicts(tp, 5)
	calls := 0
	err := b.Update(context.Background(), tp, func([]byte, bool) ([]byte, Op, error) {
		calls++
		return []byte(`1`), Set, nil
	})
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("err = %v, want ErrConflict", err)
	}
	if calls != 3 {
		t.Fatalf("fn ran %d times, want 1 + 2 retries", calls)
	}
	if b.Get(tp) != nil {
		t.Fatal("a conflicting update committed")
	}
}

func TestMemoryDropsEmptyEntriesAndSubscriptions(t *testing.T) {
	b := NewMemory(0)
	tp := Topic{"chat", "room1"}
	if err := b.Set(tp, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if b.Len() != 1 {
		t.Fatalf("Len = %d after set", b.Len())
	}
	if err := b.Set(tp, nil); err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	n := len(b.keys)
	b.mu.Unlock()
	if n != 0 || b.Len() != 0 {
		t.Fatalf("deleted entity left %d entries", n)
	}
	s, _ := b.Subscribe(context.Background(), tp, func(Envelope) {})
	if b.Subscriptions() != 1 {
		t.Fatal("subscription not counted")
	}
	s.Close()
	if b.Subscriptions() != 0 {
		t.Fatal("closed subscription leaked")
	}
}

func TestMemoryClosedIsUnavailable(t *testing.T) {
	b := NewMemory(0)
	b.Close()
	err := b.Update(context.Background(), Topic{"a", "b"}, func([]byte, bool) ([]byte, Op, error) { return nil, Abort, nil })
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v", err)
	}
}
