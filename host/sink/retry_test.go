package sink

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/electric-socket/electric-socket/tests/testkit"
)

// The wait before a retry doubles from retry_backoff and stops growing at
// max_backoff. The waits are read from the log lines ("retry_in"), not
// measured: each is drawn between half and all of the backoff, so without
// the cap the sixth (backoff 320ms) would be at least 160ms.
func TestWebhookBackoffStopsAtMaxBackoff(t *testing.T) {
	r := testkit.NewWebhook(t, 6)
	c := testSinkConfig(r.URL)
	c.RetryBackoff, c.MaxBackoff = 10*time.Millisecond, 40*time.Millisecond
	s, _, logs := newTestWebhook(t, c)
	s.Deliver(context.Background(), effect("c1", 1))
	testkit.Eventually(t, 10*time.Second, "the batch to be accepted", func() bool { return len(r.Effects()) == 1 })
	var waits []time.Duration
	for _, m := range regexp.MustCompile(`retry_in=(\S+)`).FindAllStringSubmatch(logs.String(), -1) {
		d, err := time.ParseDuration(m[1])
		if err != nil {
			t.Fatalf("retry_in=%s: %v", m[1], err)
		}
		waits = append(waits, d)
	}
	if len(waits) != 6 {
		t.Fatalf("%d retries logged, want 6:\n%s", len(waits), logs)
	}
	for i, w := range waits {
		backoff := min(c.RetryBackoff<<i, c.MaxBackoff)
		if w < backoff/2-time.Millisecond || w > backoff {
			t.Errorf("retry %d waited %v, want between %v and %v (max_backoff %v)", i+1, w, backoff/2, backoff, c.MaxBackoff)
		}
	}
}

// A batch whose request times out, then one whose connection is cut before
// the reply (the receiver may have acted on it: the reply was lost), is sent
// again with the same ids until it is accepted: the receiver deduplicates by
// id. The receiver waits for the sink to give up on the first request (no
// duration in the test decides it).
func TestWebhookRetriesAfterTimeoutAndLostReply(t *testing.T) {
	var mu sync.Mutex
	var ids [][]string
	timedOut := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var batch struct{ Effects []testkit.WebhookEffect }
		if err := json.Unmarshal(body, &batch); err != nil {
			http.Error(w, "bad batch", http.StatusBadRequest)
			return
		}
		var got []string
		for _, e := range batch.Effects {
			got = append(got, e.ID)
		}
		mu.Lock()
		ids = append(ids, got)
		n := len(ids)
		mu.Unlock()
		switch n {
		case 1: // no answer: the sink's timeout ends the request
			<-r.Context().Done()
			close(timedOut)
		case 2: // read and acted on, but the reply is lost
			conn, _, err := w.(http.Hijacker).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			conn.Close()
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	t.Cleanup(srv.Close)
	c := testSinkConfig(srv.URL)
	c.Timeout = 200 * time.Millisecond
	s, m, logs := newTestWebhook(t, c)
	s.Deliver(context.Background(), effect("c1", 1)) // one effect: what a batch holds does not depend on timing
	select {
	case <-timedOut:
	case <-time.After(10 * time.Second):
		t.Fatal("the sink never gave up on a request that got no answer")
	}
	testkit.Eventually(t, 10*time.Second, "the batch to be delivered", func() bool {
		v, ok := testkit.MetricValueOK(t, m.Registry, "electric_socket_side_effects_delivered_total", "sink", "webhook")
		return ok && v >= 1
	})
	mu.Lock()
	defer mu.Unlock()
	if len(ids) != 3 {
		t.Fatalf("%d requests, want 3 (timeout, lost reply, accepted): %v", len(ids), ids)
	}
	if len(ids[0]) == 0 || !slices.Equal(ids[0], ids[1]) || !slices.Equal(ids[0], ids[2]) {
		t.Fatalf("the batch was not sent again with the same ids: %v", ids)
	}
	if v := testkit.MetricValue(t, m.Registry, "electric_socket_side_effect_delivery_failures_total", "sink", "webhook"); v != 2 {
		t.Errorf("failures = %v, want 2", v)
	}
	out := logs.String()
	for _, want := range []string{"context deadline exceeded", "EOF"} {
		if !strings.Contains(out, want) {
			t.Errorf("no failure logged with %q:\n%s", want, out)
		}
	}
}
