package host

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/electric-socket/electric-socket/broker"
	"github.com/electric-socket/electric-socket/host/config"
	"github.com/electric-socket/electric-socket/host/engine"
	"github.com/electric-socket/electric-socket/host/fleet"
	"github.com/electric-socket/electric-socket/host/metrics"
	"github.com/electric-socket/electric-socket/host/sink"
	"github.com/electric-socket/electric-socket/host/ws"
	"github.com/electric-socket/electric-socket/luabridge"
)

// App is a whole server built from a configuration: its scripts, broker,
// engine and WebSocket listener. main runs one; tests run several.
type App struct {
	Config       config.Config
	Broker       broker.Broker
	Engine       *engine.Engine
	Integrations []*engine.Integration
	server       *ws.Server
	log          *slog.Logger
	metrics      *metrics.Metrics // nil when [admin] listen is off
	sink         engine.Sink      // where side effects go ([sink])
	fleet        *fleet.Leases    // nil without a Fleet broker
	admin        *http.Server     // nil when [admin] listen is off
	stopping     atomic.Bool      // Shutdown began: /readyz answers 503

	reloadMu       sync.Mutex // one reload at a time
	reloads        atomic.Int64
	reloadFailures atomic.Int64
	reloadFailing  map[*engine.Integration]bool      // the last reload of these was logged as failed (under reloadMu)
	tracked        map[*engine.Integration]*versions // versions watched for a rollback (rollback.go; under reloadMu)
	rollbacks      atomic.Int64
	refusals       atomic.Int64 // reloads refused: the content was rolled back
	watcher        *watcher
}

// LoadIntegrations compiles and checks every integration's script. It
// returns every problem, not just the first. What the scripts print goes to
// log, with the integration's name.
func LoadIntegrations(cfg config.Config, log *slog.Logger) ([]*engine.Integration, error) {
	var ins []*engine.Integration
	var errs []error
	for _, ic := range cfg.Integrations {
		s, err := loadScript(cfg, ic.Name, ic.Script, log)
		if err != nil {
			errs = append(errs, fmt.Errorf("integration %q: %w", ic.Name, err))
			continue
		}
		in := engine.NewIntegration(ic.Name, ic.Path, s)
		if cfg.FS == nil {
			in.Source = ic.Script
		}
		ins = append(ins, in)
	}
	return ins, errors.Join(errs...)
}

// scriptOptions are the luabridge options the configuration asks for; the
// script of integration name prints to log.
func scriptOptions(cfg config.Config, name string, log *slog.Logger) luabridge.Options {
	return luabridge.Options{Timeout: cfg.Lua.Timeout, PoolSize: cfg.Lua.PoolSize, MaxDepth: cfg.Server.MaxDepth,
		Log: log.With("integration", name), Secrets: cfg.Secrets}
}

// loadScript loads the script of integration name from the disk, or from
// cfg.FS when set.
func loadScript(cfg config.Config, name, path string, log *slog.Logger) (*luabridge.Script, error) {
	if cfg.FS == nil {
		return luabridge.LoadFile(path, config.DisplayPath(path), scriptOptions(cfg, name, log))
	}
	src, err := fs.ReadFile(cfg.FS, path)
	if err != nil {
		return nil, &luabridge.ScriptError{Kind: luabridge.KindLoad, Where: path, Msg: "cannot read script: " + err.Error()}
	}
	return luabridge.Load(path, src, scriptOptions(cfg, name, log))
}

// NewBroker builds the broker the configuration names. The redis broker
// connects at once: when Redis does not answer, the error says which server
// failed and the server does not start.
func NewBroker(c config.BrokerConfig, log *slog.Logger) (broker.Broker, error) {
	switch c.Kind {
	case "memory":
		return broker.NewMemory(c.MaxRetries), nil
	case "redis":
		broker.SetRedisLogger(log) // go-redis's own lines, in this log's format
		b, err := broker.NewRedis(context.Background(), broker.RedisOptions{
			URL: c.URL, Prefix: c.Prefix, MaxRetries: c.MaxRetries, RetryBackoff: c.RetryBackoff,
			Log: log, Replicas: c.Replicas,
		})
		if err != nil {
			return nil, fmt.Errorf("broker: %w", err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("broker: unknown kind %q; use \"memory\" or \"redis\"", c.Kind)
}

// NewApp loads the scripts and builds the broker, sink, engine and server
// of cfg, and the admin server when [admin] listen is set (metrics are kept
// only then). go-redis's own log lines go to log from then on.
func NewApp(cfg config.Config, log *slog.Logger) (*App, error) {
	broker.SetRedisLogger(log) // go-redis's own lines, in this log's format (process-wide)
	ins, err := LoadIntegrations(cfg, log)
	if err != nil {
		return nil, err
	}
	opts, err := wsOptions(cfg) // the handshake, TLS and [limits] (options.go)
	if err != nil {
		return nil, err
	}
	if err := setAuth(cfg, ins, log); err != nil {
		return nil, err
	}
	if err := setRecord(cfg, ins, log); err != nil {
		return nil, err
	}
	var web http.Handler
	if cfg.Web.Root != "" {
		if web, err = newWebHandler(cfg); err != nil {
			return nil, fmt.Errorf("web: %w", err)
		}
	}
	var m *metrics.Metrics
	if cfg.Admin.Listen != "" {
		m = metrics.New()
	}
	b, err := NewBroker(cfg.Broker, log)
	if err != nil {
		return nil, err
	}
	sk, err := sink.New(cfg.Sink, log, m)
	if err != nil {
		b.Close()
		return nil, err
	}
	e := engine.New(b, sk, log, engine.Options{
		MaxDepth: cfg.Server.MaxDepth, AuthTimeout: cfg.Server.AuthTimeout, Metrics: m,
		Spawn: ws.Spawn, // the worker pool the connections' readers and writers share
	})
	leases, err := fleet.Start(e, b, ins, fleet.Options{ // on_close after a crash
		OrphanTimeout: cfg.Broker.OrphanTimeout, LeaseRenew: cfg.Broker.LeaseRenew,
	}, log)
	if err != nil {
		b.Close()
		return nil, err
	}
	srv := ws.NewServer(e, ins, opts, log)
	if web != nil {
		srv.ServeOthers(web)
	}
	a := &App{Config: cfg, Broker: b, Engine: e, Integrations: ins, server: srv, log: log, metrics: m, sink: sk, fleet: leases}
	if m != nil {
		a.admin = a.newAdmin()
	}
	return a, nil
}

// Listen opens the configured listener.
func (a *App) Listen() (net.Listener, error) {
	l, err := net.Listen("tcp", a.Config.Server.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", a.Config.Server.Listen, err)
	}
	return l, nil
}

// Serve accepts connections on l until Shutdown.
func (a *App) Serve(l net.Listener) error {
	for _, in := range a.Integrations {
		s := in.Script()
		a.log.Info("serving", "integration", in.Name, "path", in.Path, "script", s.Name, "version", s.Hash)
	}
	a.log.Info("listening", "addr", l.Addr().String(), "broker", a.Config.Broker.Kind, "sink", a.Config.Sink.Kind)
	if a.Config.Web.Root != "" {
		a.log.Info("serving the web page", "url", "http://"+l.Addr().String()+"/", "root", a.Config.Web.Root)
	}
	return a.server.Serve(l)
}

// Shutdown stops watching and accepting, runs on_close for every authorised
// connection and closes each with 1001, spread over [server] shutdown_spread
// so that clients do not reconnect as one storm, delivers the side effects
// still queued until ctx ends, then stops the admin listener (which answers
// /readyz with 503 meanwhile) and releases the broker.
func (a *App) Shutdown(ctx context.Context) error {
	a.stopping.Store(true)
	var werr error
	if a.watcher != nil {
		werr = a.watcher.close()
	}
	err := a.server.Shutdown(ctx, a.Config.Server.ShutdownSpread)
	for _, in := range a.Integrations {
		if in.Auth != nil {
			in.Auth.Close() // stops the JWKS refreshes
		}
	}
	err = errors.Join(err, a.fleet.Shutdown(ctx)) // after every on_close (host/fleet)
	var serr, aerr error
	if c, ok := a.sink.(sink.Closer); ok {
		serr = c.Close(ctx)
	}
	if a.admin != nil {
		aerr = a.admin.Shutdown(ctx)
	}
	return errors.Join(werr, err, serr, aerr, a.Broker.Close())
}
