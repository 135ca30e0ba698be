package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"

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
}

// LoadIntegrations compiles and checks every integration's script. It
// returns every problem, not just the first.
func LoadIntegrations(cfg Config) ([]*Integration, error) {
	var ins []*Integration
	var errs []error
	opts := luabridge.Options{Timeout: cfg.Lua.Timeout, PoolSize: cfg.Lua.PoolSize, MaxDepth: cfg.Server.MaxDepth}
	for _, ic := range cfg.Integrations {
		s, err := luabridge.LoadFile(ic.Script, DisplayPath(ic.Script), opts)
		if err != nil {
			errs = append(errs, fmt.Errorf("integration %q: %w", ic.Name, err))
			continue
		}
		ins = append(ins, NewIntegration(ic.Name, ic.Path, s))
	}
	return ins, errors.Join(errs...)
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

// NewBroker builds the broker the configuration names.
func NewBroker(c BrokerConfig) (broker.Broker, error) {
	switch c.Kind {
	case "memory":
		return broker.NewMemory(c.MaxRetries), nil
	}
	return nil, fmt.Errorf("broker: kind %q is not available in this build; use \"memory\"", c.Kind)
}

// NewApp loads the scripts and builds the broker, engine and server of cfg.
func NewApp(cfg Config, log *slog.Logger) (*App, error) {
	ins, err := LoadIntegrations(cfg)
	if err != nil {
		return nil, err
	}
	b, err := NewBroker(cfg.Broker)
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

// Shutdown stops accepting, closes every connection with 1001 after its
// on_close ran, and releases the broker.
func (a *App) Shutdown(ctx context.Context) error {
	err := a.server.Shutdown(ctx, 0)
	return errors.Join(err, a.Broker.Close())
}
