package engine

import (
	"errors"
	"testing"

	"github.com/electric-socket/electric-socket/host/metrics"
)

// A nil *metrics.Metrics (fixture runs, admin listener off) is safe and allocates
// nothing.
func TestNilMetricsCostNothing(t *testing.T) {
	var m *metrics.Metrics
	tr := noTransport{}
	failed := errors.New("x")
	allocs := testing.AllocsPerRun(100, func() {
		start := m.Now()
		m.LuaCall("x", "on_close", start)
		m.ConnOpened("x")
		m.ConnClosed("x", 1000)
		m.MessageIn("x")
		m.ScriptError("x", "script_error")
		m.BrokerUpdate("x", start, BrokerCode(failed))
		m.BrokerRetry("x")
		m.BrokerPublished("x")
		m.BrokerDelivered("x", 1)
		m.BrokerDropped("x", 1)
		m.SlowClient("x")
		m.EffectsSent("log", 1)
		m.EffectAttemptFailed("log")
		m.EffectsLost("log", "queue_full", 1)
		m.Integration("x")
		if countSent(m, "x", tr) != Transport(tr) {
			t.Fatal("a nil Metrics wrapped the transport")
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per run, want 0", allocs)
	}
	if !m.Now().IsZero() {
		t.Error("a nil Metrics read the clock")
	}
}
