package sink

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/electric-socket/electric-socket/host/config"
	"github.com/electric-socket/electric-socket/host/engine"
	"github.com/electric-socket/electric-socket/host/metrics"
	"github.com/electric-socket/electric-socket/tests/testkit"
)

// testSinkConfig is a webhook [sink] with short backoffs.
func testSinkConfig(url string) config.SinkConfig {
	c := config.Default().Sink
	c.Kind, c.URL = "webhook", url
	c.RetryBackoff, c.MaxBackoff, c.Timeout = 5*time.Millisecond, 20*time.Millisecond, 2*time.Second
	return c
}

func newTestWebhook(t *testing.T, c config.SinkConfig) (*webhookSink, *metrics.Metrics, *testkit.LogBuffer) {
	t.Helper()
	m := metrics.New()
	logs := &testkit.LogBuffer{}
	s, err := newWebhookSink(c, slog.New(slog.NewTextHandler(logs, nil)), m)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		s.Close(ctx)
	})
	return s, m, logs
}

func effect(channel string, n int) engine.SideEffect {
	return engine.SideEffect{Integration: "chat", Channel: channel, Function: "process_websocket_message",
		Payload: json.RawMessage(fmt.Sprintf(`{"n":%d}`, n))}
}

func closeSink(t *testing.T, s Closer, bound time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	return s.Close(ctx)
}

// Effects arrive in batches, in the order they were handed over, each once,
// with increasing ids and the configured headers.
func TestWebhookDeliversInOrderInBatches(t *testing.T) {
	r := testkit.NewWebhook(t, 0)
	c := testSinkConfig(r.URL + "/hook")
	c.BatchSize = 3
	c.Headers = map[string]string{"Authorization": "Bearer s3cret"}
	s, m, _ := newTestWebhook(t, c)
	for i := 1; i <= 10; i++ {
		if err := s.Deliver(context.Background(), effect(fmt.Sprintf("c%d", i%2), i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := closeSink(t, s, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	got := r.Effects()
	if len(got) != 10 {
		t.Fatalf("%d effects accepted, want 10", len(got))
	}
	for i, e := range got {
		if want := fmt.Sprintf(`{"n":%d}`, i+1); string(e.Effect) != want {
			t.Errorf("effect %d = %s, want %s", i, e.Effect, want)
		}
		if i > 0 && !idBefore(got[i-1].ID, e.ID) {
			t.Errorf("id %s after %s", e.ID, got[i-1].ID)
		}
		if e.Integration != "chat" || e.Function != "process_websocket_message" || e.Time.IsZero() {
			t.Errorf("effect %d = %+v", i, e)
		}
	}
	for _, n := range r.Batches() {
		if n > 3 {
			t.Errorf("a batch of %d, want at most 3", n)
		}
	}
	if h := r.Headers(); h.Get("Authorization") != "Bearer s3cret" || h.Get("Content-Type") != "application/json" {
		t.Errorf("headers %v", h)
	}
	if v := testkit.MetricValue(t, m.Registry, "electric_socket_side_effects_delivered_total", "sink", "webhook"); v != 10 {
		t.Errorf("delivered = %v, want 10", v)
	}
}

// idBefore compares two effect ids of one sink: prefix-sequence.
func idBefore(a, b string) bool {
	var na, nb int
	fmt.Sscanf(a[strings.LastIndex(a, "-")+1:], "%d", &na)
	fmt.Sscanf(b[strings.LastIndex(b, "-")+1:], "%d", &nb)
	return a[:strings.LastIndex(a, "-")] == b[:strings.LastIndex(b, "-")] && na < nb
}

// A receiver that fails twice gets the batch on the third attempt; the
// failures are counted and logged, nothing is lost or duplicated.
func TestWebhookRetriesUntilAccepted(t *testing.T) {
	r := testkit.NewWebhook(t, 2)
	s, m, logs := newTestWebhook(t, testSinkConfig(r.URL))
	s.Deliver(context.Background(), effect("c1", 1))
	if err := closeSink(t, s, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := r.Effects(); len(got) != 1 || string(got[0].Effect) != `{"n":1}` {
		t.Fatalf("accepted %+v", got)
	}
	if n := r.Requests(); n != 3 {
		t.Errorf("%d requests, want 3", n)
	}
	if v := testkit.MetricValue(t, m.Registry, "electric_socket_side_effect_delivery_failures_total", "sink", "webhook"); v != 2 {
		t.Errorf("failures = %v, want 2", v)
	}
	if !strings.Contains(logs.String(), "503 Service Unavailable") {
		t.Errorf("the failures are not logged:\n%s", logs)
	}
}

// A receiver that does not answer never blocks Deliver: the bounded queue
// fills, what does not fit is dropped and counted, and everything queued is
// delivered once the receiver answers.
func TestWebhookSlowReceiverDoesNotStallDeliver(t *testing.T) {
	r := testkit.NewWebhook(t, 0)
	r.Hold()
	c := testSinkConfig(r.URL)
	c.QueueSize, c.BatchSize, c.Timeout = 20, 5, 10*time.Second
	s, m, _ := newTestWebhook(t, c)
	start := time.Now()
	queued := 0
	for i := 1; i <= 100; i++ {
		if err := s.Deliver(context.Background(), effect("c1", i)); err == nil {
			queued++
		} else if err != errSinkFull {
			t.Fatalf("Deliver: %v", err)
		}
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("100 Delivers took %v with a stalled receiver", d)
	}
	// the first batch is in flight (up to 5), 20 wait in the queue
	if queued < 20 || queued > 25 {
		t.Fatalf("%d queued, want 20 to 25", queued)
	}
	if v := testkit.MetricValue(t, m.Registry, "electric_socket_side_effects_dropped_total", "reason", "queue_full"); v != float64(100-queued) {
		t.Errorf("dropped = %v, want %d", v, 100-queued)
	}
	r.Release()
	if err := closeSink(t, s, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := len(r.Effects()); got != queued {
		t.Errorf("%d accepted, want %d", got, queued)
	}
}

// max_attempts drops a batch that keeps failing, and the next batch goes on.
func TestWebhookMaxAttempts(t *testing.T) {
	r := testkit.NewWebhook(t, 3)
	c := testSinkConfig(r.URL)
	c.MaxAttempts = 3
	s, m, logs := newTestWebhook(t, c)
	s.Deliver(context.Background(), effect("c1", 1))
	testkit.Eventually(t, 10*time.Second, "the batch to be dropped", func() bool {
		v, ok := testkit.MetricValueOK(t, m.Registry, "electric_socket_side_effects_dropped_total", "reason", "max_attempts")
		return ok && v == 1
	})
	s.Deliver(context.Background(), effect("c1", 2))
	if err := closeSink(t, s, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := r.Effects(); len(got) != 1 || string(got[0].Effect) != `{"n":2}` {
		t.Fatalf("accepted %+v", got)
	}
	if !strings.Contains(logs.String(), "side effects dropped: delivery kept failing") {
		t.Errorf("log:\n%s", logs)
	}
}

// Close gives up when its context ends: the rest is counted, logged and
// reported; later Delivers are refused.
func TestWebhookCloseGivesUpAtItsDeadline(t *testing.T) {
	r := testkit.NewWebhook(t, 1<<30)
	s, m, _ := newTestWebhook(t, testSinkConfig(r.URL))
	for i := 1; i <= 3; i++ {
		s.Deliver(context.Background(), effect("c1", i))
	}
	start := time.Now()
	err := closeSink(t, s, 200*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "3 side effects not delivered") {
		t.Fatalf("Close: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %v", d)
	}
	if v := testkit.MetricValue(t, m.Registry, "electric_socket_side_effects_dropped_total", "reason", "shutdown"); v != 3 {
		t.Errorf("dropped at shutdown = %v, want 3", v)
	}
	if err := s.Deliver(context.Background(), effect("c1", 4)); err != errSinkClosed {
		t.Errorf("Deliver after Close: %v", err)
	}
}

// A redirect is not an acceptance.
func TestWebhookRedirectIsAFailure(t *testing.T) {
	r := testkit.NewWebhook(t, 0)
	redirect := httptest.NewServer(http.RedirectHandler(r.URL, http.StatusFound))
	defer redirect.Close()
	c := testSinkConfig(redirect.URL)
	c.MaxAttempts = 1
	s, m, _ := newTestWebhook(t, c)
	s.Deliver(context.Background(), effect("c1", 1))
	closeSink(t, s, 5*time.Second)
	if v := testkit.MetricValue(t, m.Registry, "electric_socket_side_effects_dropped_total", "reason", "max_attempts"); v != 1 {
		t.Errorf("dropped = %v, want 1", v)
	}
	if len(r.Effects()) != 0 {
		t.Error("the redirect was followed")
	}
}
