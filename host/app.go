package host

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/electric-socket/electric-socket/broker"
	"github.com/electric-socket/electric-socket/luabridge"
)

// App is a whole server built from a configuration: its scripts, broker,
// engine and WebSocket listener. main runs one; tests run several.
type App struct {
	Config       Config
	Broker       broker.Broker
	Engine       *Engine
	Integrations []*Integration
	server       *Server
	log          *slog.Logger

	reloadMu       sync.Mutex // one reload at a time
	reloads        atomic.Int64
	reloadFailures atomic.Int64
	watcher        *watcher
}

// LoadIntegrations compiles and checks every integration's script. It
// returns every problem, not just the first.
func LoadIntegrations(cfg Config) ([]*Integration, error) {
	var ins []*Integration
	var errs []error
	for _, ic := range cfg.Integrations {
		s, err := loadScript(cfg, ic.Script)
		if err != nil {
			errs = append(errs, fmt.Errorf("integration %q: %w", ic.Name, err))
			continue
		}
		in := NewIntegration(ic.Name, ic.Path, s)
		if cfg.FS == nil {
			in.Source = ic.Script
		}
		ins = append(ins, in)
	}
	return ins, errors.Join(errs...)
}

// scriptOptions are the luabridge options the configuration asks for.
func scriptOptions(cfg Config) luabridge.Options {
	return luabridge.Options{Timeout: cfg.Lua.Timeout, PoolSize: cfg.Lua.PoolSize, MaxDepth: cfg.Server.MaxDepth}
}

// loadScript loads one script from the disk, or from cfg.FS when set.
func loadScript(cfg Config, path string) (*luabridge.Script, error) {
	if cfg.FS == nil {
		return luabridge.LoadFile(path, DisplayPath(path), scriptOptions(cfg))
	}
	src, err := fs.ReadFile(cfg.FS, path)
	if err != nil {
		return nil, &luabridge.ScriptError{Kind: luabridge.KindLoad, Where: path, Msg: "cannot read script: " + err.Error()}
	}
	return luabridge.Load(path, src, scriptOptions(cfg))
}

// DisplayPath is how messages name a file: relative to the working folder
// when it is below it, else as it is.
func DisplayPath(p string) string {
	wd, err := os.Getwd()
	if err != nil || !filepath.IsAbs(p) {
		return p
	}
	if rel, err := filepath.Rel(wd, p); err == nil && !strings.HasPrefix(rel, "..") {
		return rel
	}
	return p
}

// NewBroker builds the broker the configuration names. The redis broker
// connects at once: when Redis does not answer, the error says which server
// failed and the server does not start.
func NewBroker(c BrokerConfig, log *slog.Logger) (broker.Broker, error) {
	switch c.Kind {
	case "memory":
		return broker.NewMemory(c.MaxRetries), nil
	case "redis":
		b, err := broker.NewRedis(context.Background(), broker.RedisOptions{
			URL: c.URL, Prefix: c.Prefix, MaxRetries: c.MaxRetries, RetryBackoff: c.RetryBackoff,
			Log: log,
		})
		if err != nil {
			return nil, fmt.Errorf("broker: %w", err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("broker: unknown kind %q; use \"memory\" or \"redis\"", c.Kind)
}

// NewApp loads the scripts and builds the broker, engine and server of cfg.
func NewApp(cfg Config, log *slog.Logger) (*App, error) {
	ins, err := LoadIntegrations(cfg)
	if err != nil {
		return nil, err
	}
	b, err := NewBroker(cfg.Broker, log)
	if err != nil {
		return nil, err
	}
	engine := NewEngine(b, LogSink{Log: log}, log, EngineOptions{
		MaxDepth: cfg.Server.MaxDepth, AuthTimeout: cfg.Server.AuthTimeout,
	})
	srv := NewServer(engine, ins, ConnOptions{
		MaxMessageBytes: int64(cfg.Server.MaxMessageBytes),
		WriteTimeout:    cfg.Server.WriteTimeout,
		CloseTimeout:    cfg.Server.CloseTimeout,
	}, log)
	return &App{Config: cfg, Broker: b, Engine: engine, Integrations: ins, server: srv, log: log}, nil
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
	a.log.Info("listening", "addr", l.Addr().String(), "broker", a.Config.Broker.Kind)
	return a.server.Serve(l)
}

// Shutdown stops watching and accepting, runs on_close for every authorised
// connection and closes each with 1001, spread over [server] shutdown_spread
// so that clients do not reconnect as one storm, then releases the broker.
func (a *App) Shutdown(ctx context.Context) error {
	var werr error
	if a.watcher != nil {
		werr = a.watcher.close()
	}
	err := a.server.Shutdown(ctx, a.Config.Server.ShutdownSpread)
	return errors.Join(werr, err, a.Broker.Close())
}
