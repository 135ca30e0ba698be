package admin

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// /readyz answers what the readiness function says, 503 when not ready;
// /healthz answers ok regardless; /metrics serves the registry given.
func TestEndpoints(t *testing.T) {
	var ready atomic.Bool
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "admin_test_total", Help: "a test counter"})
	reg.MustRegister(c)
	c.Add(3)
	srv := httptest.NewServer(NewServer(func(context.Context) Readiness {
		return Readiness{Ready: ready.Load(), Broker: "ok", Integrations: map[string]string{"echo": "v1"}}
	}, reg, slog.New(slog.DiscardHandler)).Handler)
	t.Cleanup(srv.Close)
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if status, body := get("/healthz"); status != 200 || body != "ok\n" {
		t.Errorf("healthz: %d %q", status, body)
	}
	for _, want := range []bool{false, true} {
		ready.Store(want)
		status, body := get("/readyz")
		var r Readiness
		if err := json.Unmarshal([]byte(body), &r); err != nil || r.Ready != want || r.Integrations["echo"] != "v1" {
			t.Errorf("readyz ready=%v: %s (%v)", want, body, err)
		}
		if wantStatus := map[bool]int{false: 503, true: 200}[want]; status != wantStatus {
			t.Errorf("readyz ready=%v: status %d, want %d", want, status, wantStatus)
		}
	}
	if status, body := get("/metrics"); status != 200 || !strings.Contains(body, "admin_test_total 3") {
		t.Errorf("metrics: %d %s", status, body)
	}
}
