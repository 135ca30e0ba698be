// Command electric-socket serves WebSocket integrations written in Lua.
//
//	electric-socket [serve] [--config FILE] [--listen ADDR]
//	electric-socket check [--config FILE]
//
// main is the only place that calls os.Exit.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/electric-socket/electric-socket/broker"
	"github.com/electric-socket/electric-socket/host"
	"github.com/electric-socket/electric-socket/luabridge"
)

const usage = `electric-socket serves WebSocket integrations written in Lua.

Usage:
  electric-socket [serve] [--config FILE] [--listen ADDR]   run the server (the default command)
  electric-socket check [--config FILE]                     load the configuration and scripts, report every problem

FILE defaults to config.toml in the current folder.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(args, stderr)
	case "check":
		return check(args, stdout, stderr)
	case "help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "electric-socket: unknown command %q\n\n%s", cmd, usage)
	return 2
}

func flags(name string, stderr io.Writer) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := fs.String("config", "config.toml", "the configuration file")
	return fs, cfg
}

// check loads everything serve would and reports every problem found.
func check(args []string, stdout, stderr io.Writer) int {
	fs, cfgPath := flags("check", stderr)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := host.LoadConfig(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	_, errs := loadScripts(cfg)
	for _, err := range errs {
		fmt.Fprintln(stderr, err)
	}
	if len(errs) > 0 {
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok (%d integrations)\n", *cfgPath, len(cfg.Integrations))
	return 0
}

func serve(args []string, stderr io.Writer) int {
	fs, cfgPath := flags("serve", stderr)
	listen := fs.String("listen", "", "the address to listen on (overrides [server] listen)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := host.LoadConfig(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if *listen != "" {
		cfg.Server.Listen = *listen
	}
	log := newLogger(cfg.Log, stderr)
	ins, errs := loadScripts(cfg)
	if len(errs) > 0 {
		for _, err := range errs {
			fmt.Fprintln(stderr, err)
		}
		return 1
	}
	b, err := newBroker(cfg.Broker)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer b.Close()

	engine := host.NewEngine(b, host.LogSink{Log: log}, log, host.EngineOptions{
		MaxDepth: cfg.Server.MaxDepth, AuthTimeout: cfg.Server.AuthTimeout,
	})
	srv := host.NewServer(engine, ins, host.ConnOptions{
		MaxMessageBytes: int64(cfg.Server.MaxMessageBytes),
		WriteTimeout:    cfg.Server.WriteTimeout,
		CloseTimeout:    cfg.Server.CloseTimeout,
	}, log)
	l, err := net.Listen("tcp", cfg.Server.Listen)
	if err != nil {
		fmt.Fprintf(stderr, "electric-socket: listen on %s: %v\n", cfg.Server.Listen, err)
		return 1
	}
	for _, in := range ins {
		log.Info("serving", "integration", in.Name, "path", in.Path, "script", in.Script().Name, "version", in.Script().Hash)
	}
	log.Info("listening", "addr", l.Addr().String(), "broker", cfg.Broker.Kind)

	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	select {
	case err := <-served:
		fmt.Fprintf(stderr, "electric-socket: %v\n", err)
		return 1
	case sig := <-sigs:
		log.Info("shutting down", "signal", sig.String(), "sessions", engine.Sessions())
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx, 0); err != nil {
		log.Warn("shutdown incomplete", "err", err)
	}
	log.Info("stopped")
	return 0
}

// loadScripts compiles and checks every integration's script, returning
// every problem rather than the first.
func loadScripts(cfg host.Config) ([]*host.Integration, []error) {
	var ins []*host.Integration
	var errs []error
	opts := luabridge.Options{Timeout: cfg.Lua.Timeout, PoolSize: cfg.Lua.PoolSize, MaxDepth: cfg.Server.MaxDepth}
	for _, ic := range cfg.Integrations {
		s, err := luabridge.LoadFile(ic.Script, displayPath(ic.Script), opts)
		if err != nil {
			errs = append(errs, fmt.Errorf("integration %q: %w", ic.Name, err))
			continue
		}
		ins = append(ins, host.NewIntegration(ic.Name, ic.Path, s))
	}
	return ins, errs
}

// displayPath is how errors name a file: relative to the working folder
// when it is below it.
func displayPath(p string) string {
	wd, err := os.Getwd()
	if err != nil {
		return p
	}
	if rel, err := filepath.Rel(wd, p); err == nil && !strings.HasPrefix(rel, "..") {
		return rel
	}
	return p
}

func newBroker(c host.BrokerConfig) (broker.Broker, error) {
	switch c.Kind {
	case "memory":
		return broker.NewMemory(c.MaxRetries), nil
	}
	return nil, errors.New("electric-socket: [broker] kind = \"" + c.Kind + "\" is not available in this build; use \"memory\"")
}

func newLogger(c host.LogConfig, w io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

