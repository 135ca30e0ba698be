// Command electric-socket serves WebSocket integrations written in Lua.
//
//	electric-socket [serve] [--config FILE] [--listen ADDR]
//	electric-socket check [--config FILE]
//
// main is the only place that calls os.Exit.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"

	"github.com/electric-socket/electric-socket/host"
	"github.com/electric-socket/electric-socket/host/fixture"
)

const usage = `electric-socket serves WebSocket integrations written in Lua.

Usage:
  electric-socket [serve] [--config FILE] [--listen ADDR]   run the server (the default command)
  electric-socket check [--config FILE]                     load the configuration and scripts, report every problem
  electric-socket test [--run PATTERN] [-v] [PATH...]       run Lua fixture tests (*_test.lua); PATH is a file or
                                                            a folder, by default the folders of the configured scripts

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
	case "test":
		return test(args, stdout, stderr)
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
	if _, err := host.LoadIntegrations(cfg); err != nil {
		fmt.Fprintln(stderr, err)
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
	app, err := host.NewApp(cfg, log)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	l, err := app.Listen()
	if err != nil {
		fmt.Fprintf(stderr, "electric-socket: %v\n", err)
		return 1
	}
	served := make(chan error, 1)
	go func() { served <- app.Serve(l) }()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	select {
	case err := <-served:
		fmt.Fprintf(stderr, "electric-socket: %v\n", err)
		return 1
	case sig := <-sigs:
		log.Info("shutting down", "signal", sig.String(), "sessions", app.Engine.Sessions())
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout)
	defer cancel()
	if err := app.Shutdown(ctx); err != nil {
		log.Warn("shutdown incomplete", "err", err)
	}
	log.Info("stopped")
	return 0
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

// test runs Lua fixture tests (SPEC section 8).
func test(args []string, stdout, stderr io.Writer) int {
	fs, cfgPath := flags("test", stderr)
	run := fs.String("run", "", "run only the tests whose name matches this regular expression")
	verbose := fs.Bool("v", false, "print every test, not only failures")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	opts := fixture.Options{Verbose: *verbose, Out: stdout}
	if *run != "" {
		re, err := regexp.Compile(*run)
		if err != nil {
			fmt.Fprintf(stderr, "electric-socket test: --run: %v\n", err)
			return 2
		}
		opts.Run = re
	}
	paths := fs.Args()
	cfg, cfgErr := host.LoadConfig(*cfgPath)
	if cfgErr == nil {
		opts.MaxDepth, opts.LuaTimeout, opts.MaxRetries = cfg.Server.MaxDepth, cfg.Lua.Timeout, cfg.Broker.MaxRetries
	}
	if len(paths) == 0 {
		if cfgErr != nil {
			fmt.Fprintf(stderr, "electric-socket test: no PATH given and no configuration to find the scripts: %v\n", cfgErr)
			return 2
		}
		seen := map[string]bool{}
		for _, ic := range cfg.Integrations {
			if dir := filepath.Dir(ic.Script); !seen[dir] {
				seen[dir] = true
				paths = append(paths, host.DisplayPath(dir))
			}
		}
	}
	res, err := fixture.Run(paths, opts)
	if err != nil {
		fmt.Fprintf(stderr, "electric-socket %v\n", err)
		return 1
	}
	if res.Failed > 0 {
		return 1
	}
	return 0
}
