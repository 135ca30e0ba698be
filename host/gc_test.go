package host

import (
	"context"
	"runtime/debug"
	"testing"
	"time"

	"github.com/electric-socket/electric-socket/luabridge"
)

// The tuner turns busy when a period allocates over twice the live heap,
// idle again under a quarter of it, and holds its state in between.
func TestGCTunerStates(t *testing.T) {
	const mib = 1 << 20
	steps := []struct {
		alloc, live uint64
		busy        bool
		changed     bool
	}{
		{alloc: 10 * mib, live: 20 * mib, busy: false},               // under 2x: stays idle
		{alloc: 50 * mib, live: 20 * mib, busy: true, changed: true}, // over 2x
		{alloc: 10 * mib, live: 20 * mib, busy: true},                // between: stays busy
		{alloc: 4 * mib, live: 20 * mib, busy: false, changed: true}, // under a quarter
		{alloc: 6 * mib, live: 1 * mib, busy: false},                 // a tiny heap counts as 4 MiB
		{alloc: 9 * mib, live: 1 * mib, busy: true, changed: true},
		{alloc: 0, live: 0, busy: false, changed: true},
	}
	var g gcState
	for i, s := range steps {
		var changed bool
		g, changed = g.next(s.alloc, s.live)
		if g.busy != s.busy || changed != s.changed {
			t.Fatalf("step %d (alloc %d MiB, live %d MiB): busy %v changed %v, want %v %v",
				i, s.alloc/mib, s.live/mib, g.busy, changed, s.busy, s.changed)
		}
	}
}

// RunGCTuner raises the target while the process allocates fast and puts
// Go's default back once it stops (and when its context ends).
func TestRunGCTunerFollowsTheLoad(t *testing.T) {
	t.Setenv("GOGC", "")
	before := luabridge.MaxMemory()
	luabridge.SetMaxMemory(1 << 30)
	t.Cleanup(func() { luabridge.SetMaxMemory(before) })
	percent := func() int { p := debug.SetGCPercent(idleGCPercent); debug.SetGCPercent(p); return p }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { RunGCTuner(ctx); close(done) }()
	var sink [][]byte
	deadline := time.Now().Add(10 * time.Second)
	for percent() != busyGCPercent {
		if time.Now().After(deadline) {
			t.Fatalf("the target is %d after 10s of allocating, want %d", percent(), busyGCPercent)
		}
		for range 64 {
			sink = append(sink[:0], make([]byte, 1<<20)) // garbage at once
		}
		time.Sleep(time.Millisecond)
	}
	_ = sink
	deadline = time.Now().Add(10 * time.Second)
	for percent() != idleGCPercent {
		if time.Now().After(deadline) {
			t.Fatalf("the target is %d 10s after the allocations stopped, want %d", percent(), idleGCPercent)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	<-done
	if p := percent(); p != idleGCPercent {
		t.Errorf("target %d after the tuner ended, want %d", p, idleGCPercent)
	}
}
