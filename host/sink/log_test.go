package sink

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/electric-socket/electric-socket/host/engine"
	"github.com/electric-socket/electric-socket/host/metrics"
	"github.com/electric-socket/electric-socket/tests/testkit"
)

// The log sink counts what it writes.
func TestLogSinkCounts(t *testing.T) {
	m := metrics.New()
	var buf bytes.Buffer
	s := Log{Log: slog.New(slog.NewTextHandler(&buf, nil)), Metrics: m}
	s.Deliver(context.Background(), engine.SideEffect{Integration: "chat", Channel: "c1", Function: "on_close", Payload: []byte(`{"a":1}`)})
	if got := testkit.MetricValue(t, m.Registry, "electric_socket_side_effects_delivered_total", "sink", "log"); got != 1 {
		t.Errorf("delivered = %v, want 1", got)
	}
	if !strings.Contains(buf.String(), `effect="{\"a\":1}"`) {
		t.Errorf("log: %s", buf.String())
	}
}
