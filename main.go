// Command electric-socket serves WebSocket integrations written in Lua.
//
//	electric-socket [serve] [--config FILE] [--listen ADDR] [--admin ADDR|off]
//	electric-socket check [--config FILE]
//
// main is the only place that calls os.Exit.
package main

import (
	"context"
	"embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
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
  electric-socket [serve] [--config FILE] [--listen ADDR] [--admin ADDR|off]
                                                            run the server (the default command)
  electric-socket check [--config FILE]                     load the configuration and scripts, report every problem
  electric-socket init DIR                                  write a starter project (config, integration, fixture test)
  electric-socket test [--run PATTERN] [-v] [PATH...]       run Lua fixture tests (*_test.lua); PATH is a file or
                                                            a folder, by default the folders of the configured scripts

FILE defaults to config.toml in the current folder; serve and check fall back to the
example configuration and scripts built into the binary when there is none.
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
	case "init":
		return initProject(args, stdout, stderr)
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
	cfg, _, err := loadConfig(*cfgPath, flagSet(fs, "config"))
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

// The example scripts and their configuration, built into the binary so
// that `electric-socket serve` runs with nothing beside it. Files on disk
// take precedence.
//
//go:embed config.toml scripts/*.lua scripts/web
var embedded embed.FS

// loadConfig reads the configuration: the file given with --config, else
// config.toml in the working folder, else the embedded one.
func loadConfig(path string, explicit bool) (cfg host.Config, fromEmbed bool, err error) {
	if !explicit {
		if _, statErr := os.Stat(path); errors.Is(statErr, fs.ErrNotExist) {
			data, err := embedded.ReadFile("config.toml")
			if err != nil {
				return cfg, true, err
			}
			cfg, err = host.ParseConfigFS(embedded, "config.toml (embedded)", data)
			return cfg, true, err
		}
	}
	cfg, err = host.LoadConfig(path)
	return cfg, false, err
}

func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func serve(args []string, stderr io.Writer) int {
	fs, cfgPath := flags("serve", stderr)
	listen := fs.String("listen", "", "the address to listen on (overrides [server] listen)")
	admin := fs.String("admin", "", `the address of /healthz, /readyz and /metrics (overrides [admin] listen; "off" turns it off)`)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, fromEmbed, err := loadConfig(*cfgPath, flagSet(fs, "config"))
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if *listen != "" {
		cfg.Server.Listen = *listen
	}
	switch *admin {
	case "":
	case "off":
		cfg.Admin.Listen = ""
	default:
		cfg.Admin.Listen = *admin
	}
	log := newLogger(cfg.Log, stderr)
	if fromEmbed {
		log.Info("no config.toml here: serving the embedded example (electric-socket init DIR writes a project to edit)")
	}
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
	al, err := app.ListenAdmin()
	if err != nil {
		l.Close()
		fmt.Fprintf(stderr, "electric-socket: %v\n", err)
		return 1
	}
	if err := app.Watch(); err != nil {
		log.Warn("hot reload is off", "err", err)
	}
	served := make(chan error, 2)
	go func() { served <- app.Serve(l) }()
	if al != nil {
		go func() {
			if err := app.ServeAdmin(al); err != nil {
				served <- err
			}
		}()
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	for {
		select {
		case err := <-served:
			fmt.Fprintf(stderr, "electric-socket: %v\n", err)
			return 1
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				log.Info("SIGHUP: reloading scripts")
				app.Reload() // failures are logged; the previous versions keep serving
				continue
			}
			log.Info("shutting down", "signal", sig.String(), "sessions", app.Engine.Sessions())
		}
		break
	}
	signal.Reset(syscall.SIGTERM, syscall.SIGINT) // a second signal kills at once
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout)
	defer cancel()
	if err := app.Shutdown(ctx); err != nil {
		log.Warn("shutdown incomplete", "err", err)
	}
	log.Info("stopped")
	return 0
}

// initProject writes a starter project into DIR.
func initProject(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintf(stderr, "usage: electric-socket init DIR\n")
		return 2
	}
	files, err := host.WriteStarter(args[0])
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	for _, f := range files {
		fmt.Fprintln(stdout, "wrote", f)
	}
	fmt.Fprintf(stdout, "\nNext: cd %s && electric-socket test && electric-socket serve\n", args[0])
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
