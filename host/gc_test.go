package host

import (
	"runtime/debug"
	"testing"
)

// The server raises the collector's target to gcPercent only when GOGC
// does not say otherwise and a soft memory limit ([lua] max_memory) caps
// the heap.
func TestGCPercent(t *testing.T) {
	before := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(before) })
	cases := []struct {
		name      string
		gogc      string
		maxMemory int
		want      int
	}{
		{"defaults", "", 1 << 30, gcPercent},
		{"GOGC set", "150", 1 << 30, 100},
		{"no memory limit", "", 0, 100},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("GOGC", c.gogc)
			debug.SetGCPercent(100)
			setGCPercent(c.maxMemory)
			if got := debug.SetGCPercent(100); got != c.want {
				t.Errorf("GC percent %d, want %d", got, c.want)
			}
		})
	}
}
