package host

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/electric-socket/electric-socket/host/admin"
	"github.com/electric-socket/electric-socket/host/metrics"
	"github.com/electric-socket/electric-socket/host/ws"
)

// pinger is the optional capability of a broker that can say whether its
// server answers (broker.Redis has it); a broker without it, such as the
// memory broker, is always reachable.
type pinger interface {
	Ping(ctx context.Context) error
}

// readyTimeout bounds the broker check of /readyz.
const readyTimeout = 2 * time.Second

// newAdmin builds the operators' HTTP server (host/admin) on a.metrics,
// with the App's own gauges added. It serves only on the listener given to
// ServeAdmin, which [admin] listen opens apart from the WebSocket listener.
func (a *App) newAdmin() *http.Server {
	m := a.metrics
	m.GaugeFunc("broker_subscriptions", "Broker keys this instance is subscribed to.",
		func() float64 { return float64(a.Engine.Subscriptions()) })
	m.CounterFunc("reloads_total", "Script reloads that switched to a new version.",
		func() float64 { n, _ := a.Reloads(); return float64(n) })
	m.CounterFunc("reload_failures_total", "Script reloads that failed (the previous version kept serving).",
		func() float64 { _, n := a.Reloads(); return float64(n) })
	m.GaugeFunc("idle_workers", "Goroutines of the worker pool waiting for a task (retired after 10 s unused).",
		func() float64 { return float64(ws.IdleWorkers()) })
	m.CounterFunc("reload_rollbacks_total", "Reloaded versions switched back to the previous one: their script errors were clearly worse ([lua] rollback_after).",
		func() float64 { return float64(a.Rollbacks()) })
	m.CounterFunc("reload_refusals_total", "Reloads refused: the file holds a version that was rolled back.",
		func() float64 { return float64(a.refusals.Load()) })
	for _, in := range a.Integrations {
		m.Integration(in.Name)
	}
	return admin.NewServer(func(ctx context.Context) admin.Readiness {
		ok, broker, versions := a.Ready(ctx)
		return admin.Readiness{Ready: ok, Broker: broker, Integrations: versions, ShuttingDown: a.stopping.Load()}
	}, m.Registry, a.log)
}

// Ready reports whether the server should get traffic: every integration
// has a script loaded, the broker answers (when it can tell), and it is not
// shutting down.
func (a *App) Ready(ctx context.Context) (ok bool, brokerStatus string, versions map[string]string) {
	ok = !a.stopping.Load()
	versions = make(map[string]string, len(a.Integrations))
	for _, in := range a.Integrations {
		v := ""
		if s := in.Script(); s != nil {
			v = s.Hash
		} else {
			ok = false
		}
		versions[in.Name] = v
	}
	brokerStatus = "ok"
	if p, can := a.Broker.(pinger); can {
		ctx, cancel := context.WithTimeout(ctx, readyTimeout)
		defer cancel()
		if err := p.Ping(ctx); err != nil {
			ok, brokerStatus = false, err.Error()
		}
	}
	return ok, brokerStatus, versions
}

// ListenAdmin opens the [admin] listener; it returns nil, nil when the
// admin listener is off ([admin] listen = "").
func (a *App) ListenAdmin() (net.Listener, error) {
	if a.admin == nil {
		return nil, nil
	}
	l, err := net.Listen("tcp", a.Config.Admin.Listen)
	if err != nil {
		return nil, fmt.Errorf("admin: listen on %s: %w", a.Config.Admin.Listen, err)
	}
	return l, nil
}

// ServeAdmin serves /healthz, /readyz and /metrics on l until Shutdown,
// which stops it last, so that /readyz answers 503 while connections close.
func (a *App) ServeAdmin(l net.Listener) error {
	if a.admin == nil {
		l.Close()
		return errors.New("admin: [admin] listen is not configured")
	}
	a.log.Info("admin listening", "addr", l.Addr().String(), "paths", "/healthz /readyz /metrics")
	err := a.admin.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Metrics returns the server's metrics; nil when the admin listener is off.
func (a *App) Metrics() *metrics.Metrics { return a.metrics }
