// Package admin is the operators' HTTP listener apart from the WebSocket
// one: /healthz, /readyz (from a readiness function) and /metrics (from a
// Prometheus registry).
package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Readiness is the body of /readyz.
type Readiness struct {
	Ready        bool              `json:"ready"`
	Broker       string            `json:"broker"`       // "ok" or why it is not reachable
	Integrations map[string]string `json:"integrations"` // name -> version serving, "" when none
	ShuttingDown bool              `json:"shutting_down,omitempty"`
}

// NewServer returns the admin HTTP server: /healthz answers "ok" while the
// process runs, /readyz answers ready's Readiness (503 when not ready) and
// /metrics the registry's metrics. It serves only on the listener it is
// given.
func NewServer(ready func(context.Context) Readiness, reg *prometheus.Registry, log *slog.Logger) *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		rd := ready(r.Context())
		body, _ := json.Marshal(rd)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if !rd.Ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		w.Write(append(body, '\n'))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}))
	return &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}
