package host

import (
	"context"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"

	"github.com/electric-socket/electric-socket/luabridge"
)

// The collector's target follows the load. Every message builds Lua tables
// that are garbage once it is answered, so under load the collections cost
// a fifth of the CPU per message at Go's default target (GOGC=100); with
// busyGCPercent they run a quarter as often and the CPU per message drops by
// about a quarter (BENCHMARKS.md, round 2). But the heap may then grow to
// five times what is live, which an idle server with 10,000 connections
// would keep: so while the allocation rate is low the target is Go's
// default, and when the server turns idle it collects and returns the
// freed memory to the system at once.
const (
	busyGCPercent = 400
	idleGCPercent = 100
	gcTunePeriod  = time.Second
	minLiveHeap   = 4 << 20 // below it, a heap counts as this big: a tiny heap is no reason to switch
)

// gcState is what the tuner decides from: the allocation rate (bytes per
// gcTunePeriod) and the heap that survived the last collection.
type gcState struct {
	busy bool
}

// next returns the state after a period that allocated alloc bytes with
// live bytes live, and whether it changed. Busy once a period allocates
// more than twice the live heap (at GOGC=100 that is two collections in
// it); idle again when it allocates less than a quarter of it.
func (g gcState) next(alloc, live uint64) (gcState, bool) {
	live = max(live, minLiveHeap)
	switch {
	case !g.busy && alloc > 2*live:
		return gcState{busy: true}, true
	case g.busy && alloc < live/4:
		return gcState{busy: false}, true
	}
	return g, false
}

// RunGCTuner sets the collector's target from the allocation rate until ctx
// ends, then leaves Go's default. It does nothing when GOGC is set in the
// environment (the operator's choice stands) or when there is no soft
// memory limit ([lua] max_memory = 0): near the limit the runtime collects
// as often as it must, whatever the target, which is what makes the busy
// target safe.
func RunGCTuner(ctx context.Context) {
	if os.Getenv("GOGC") != "" || luabridge.MaxMemory() == 0 {
		return
	}
	defer debug.SetGCPercent(idleGCPercent)
	samples := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}, {Name: "/gc/heap/live:bytes"}}
	metrics.Read(samples)
	prev := samples[0].Value.Uint64()
	tick := time.NewTicker(gcTunePeriod)
	defer tick.Stop()
	var g gcState
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		metrics.Read(samples)
		allocs, live := samples[0].Value.Uint64(), samples[1].Value.Uint64()
		var changed bool
		g, changed = g.next(allocs-prev, live)
		prev = allocs
		if !changed {
			continue
		}
		if g.busy {
			debug.SetGCPercent(busyGCPercent)
		} else {
			debug.SetGCPercent(idleGCPercent)
			debug.FreeOSMemory() // the garbage of the busy spell, collected and given back now
		}
	}
}
