// Command electric-socket serves WebSocket integrations written in Lua.
//
//	electric-socket [serve] [--config FILE] [--listen ADDR] [--admin ADDR|off]
//	electric-socket check [--config FILE] [--broker]
//	electric-socket test [--config FILE] [--run PATTERN] [-v] [PATH...]
//	electric-socket test --replay DIR [--config FILE] [-v]
//	electric-socket init DIR
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
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"

	"github.com/electric-socket/electric-socket/host"
	"github.com/electric-socket/electric-socket/host/config"
	"github.com/electric-socket/electric-socket/host/fixture"
)

const usage = `electric-socket serves WebSocket integrations written in Lua.

Usage:
  electric-socket [serve] [--config FILE] [--listen ADDR] [--admin ADDR|off]
      Run the server (the default command). With no config.toml here and no
      --config, it serves the example built into the binary, and says so.
  electric-socket check [--config FILE] [--broker]
      Load the configuration and every script; report every problem, with
      file:line. --broker also connects to the broker.
  electric-socket test [--config FILE] [--run PATTERN] [-v] [PATH...]
      Run Lua fixture tests (*_test.lua). PATH is a file or a folder; by
      default the folders of the configured scripts.
  electric-socket test --replay DIR [--config FILE] [-v]
      Run the connections recorded in DIR ([integration] record) through the
      current scripts and print every output that changed; exit 1 if any did.
  electric-socket init DIR
      Write a starter project into DIR.
  electric-socket help
      Print this.

FILE defaults to config.toml in the current folder. Flags may come before
or after the other arguments.
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
		return serve(args, stdout, stderr)
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
	fs.Usage = func() {} // parse prints the one usage
	cfg := fs.String("config", "config.toml", "the configuration file")
	return fs, cfg
}

// parse parses args with fs, flags before and after the other arguments
// (as Go's own tools take them; after "--" everything is an argument), and
// returns those other arguments. On -h or --help it prints the usage to
// stdout and ok is false with code 0; on a bad flag, flag's message and the
// usage go to stderr, with code 2.
func parse(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (rest []string, code int, ok bool) {
	for {
		err := fs.Parse(args)
		switch {
		case errors.Is(err, flag.ErrHelp):
			fmt.Fprint(stdout, usage)
			return nil, 0, false
		case err != nil:
			fmt.Fprintf(stderr, "\n%s", usage)
			return nil, 2, false
		}
		left := fs.Args()
		if used := args[:len(args)-len(left)]; len(used) > 0 && used[len(used)-1] == "--" {
			return append(rest, left...), 0, true
		}
		if len(left) == 0 {
			return rest, 0, true
		}
		rest, args = append(rest, left[0]), left[1:]
	}
}

// noArgs reports arguments a command does not take.
func noArgs(cmd string, rest []string, stderr io.Writer) bool {
	if len(rest) == 0 {
		return true
	}
	fmt.Fprintf(stderr, "electric-socket %s: unexpected argument %q\n\n%s", cmd, rest[0], usage)
	return false
}

// check loads everything serve would and reports every problem found: the
// configuration's, and those of every script the configuration names, even
// when the configuration has problems of its own. With --broker it also
// connects to the broker.
func check(args []string, stdout, stderr io.Writer) int {
	set, cfgPath := flags("check", stderr)
	contact := set.Bool("broker", false, "connect to the broker too")
	rest, code, ok := parse(set, args, stdout, stderr)
	if !ok {
		return code
	}
	if !noArgs("check", rest, stderr) {
		return 2
	}
	cfg, err := config.Load(*cfgPath)
	if errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(stderr, "electric-socket check: no configuration found: %s does not exist\n"+
			"(give one with --config FILE; electric-socket init DIR writes a starter project)\n", *cfgPath)
		return 1
	}
	failed := false
	if err != nil {
		var ce *config.Error
		if !errors.As(err, &ce) {
			fmt.Fprintf(stderr, "electric-socket check: %v\n", err)
			return 1
		}
		fmt.Fprintln(stderr, err)
		failed = true
		cfg.Integrations = loadable(cfg.Integrations) // still check the scripts it names
	}
	log := newLogger(cfg.Log, stderr)
	if _, err := host.LoadIntegrations(cfg, log); err != nil {
		fmt.Fprintln(stderr, err)
		failed = true
	}
	if failed {
		return 1
	}
	summary := fmt.Sprintf("%s: ok (%s)", *cfgPath, integrationList(cfg.Integrations))
	switch {
	case cfg.Broker.Kind == "memory":
		summary += "; broker: memory, in this process"
	case !*contact:
		summary += fmt.Sprintf("; the %s broker was not contacted (check --broker connects to it)", cfg.Broker.Kind)
	default:
		b, err := host.NewBroker(cfg.Broker, log)
		if err != nil {
			fmt.Fprintf(stderr, "electric-socket check: %v\n", err)
			return 1
		}
		b.Close()
		summary += fmt.Sprintf("; the %s broker at %s answered", cfg.Broker.Kind, redacted(cfg.Broker.URL))
	}
	fmt.Fprintln(stdout, summary)
	return 0
}

// loadable are the integrations of an invalid configuration whose script
// can be loaded: named, with a script file that exists (a missing one is
// already among the configuration's problems).
func loadable(ins []config.IntegrationConfig) []config.IntegrationConfig {
	var out []config.IntegrationConfig
	for _, ic := range ins {
		if fi, err := os.Stat(ic.Script); ic.Name != "" && ic.Script != "" && err == nil && fi.Mode().IsRegular() {
			out = append(out, ic)
		}
	}
	return out
}

func integrationList(ins []config.IntegrationConfig) string {
	names := make([]string, len(ins))
	for i, ic := range ins {
		names[i] = ic.Name
	}
	noun := "integrations"
	if len(ins) == 1 {
		noun = "integration"
	}
	return fmt.Sprintf("%d %s: %s", len(ins), noun, strings.Join(names, ", "))
}

// redacted is a URL with its password hidden.
func redacted(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	return raw
}

// The example scripts and their configuration, built into the binary so
// that `electric-socket serve` runs with nothing beside it. Files on disk
// take precedence.
//
//go:embed config.toml scripts/*.lua scripts/web
var embedded embed.FS

// loadConfig reads the configuration: the file given with --config, else
// config.toml in the working folder, else the embedded one.
func loadConfig(path string, explicit bool) (cfg config.Config, fromEmbed bool, err error) {
	if !explicit {
		if _, statErr := os.Stat(path); errors.Is(statErr, fs.ErrNotExist) {
			data, err := embedded.ReadFile("config.toml")
			if err != nil {
				return cfg, true, err
			}
			cfg, err = config.ParseFS(embedded, "config.toml (embedded)", data)
			return cfg, true, err
		}
	}
	cfg, err = config.Load(path)
	return cfg, false, err
}

func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func serve(args []string, stdout, stderr io.Writer) int {
	fs, cfgPath := flags("serve", stderr)
	listen := fs.String("listen", "", "the address to listen on (overrides [server] listen)")
	admin := fs.String("admin", "", `the address of /healthz, /readyz and /metrics (overrides [admin] listen; "off" turns it off)`)
	rest, code, ok := parse(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	if !noArgs("serve", rest, stderr) {
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
	tuneCtx, stopTuning := context.WithCancel(context.Background())
	defer stopTuning()
	go host.RunGCTuner(tuneCtx) // the collector's target follows the load (host/gc.go)
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

// The LuaLS annotations of the es module, written into new projects.
//
//go:embed scripts/types
var luaTypes embed.FS

// initProject writes a starter project into DIR and prints what to run
// next, with this binary's own path.
func initProject(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("init", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {}
	rest, code, ok := parse(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	if len(rest) != 1 {
		fmt.Fprintf(stderr, "electric-socket init: want one folder, got %d arguments\n\n%s", len(rest), usage)
		return 2
	}
	dir := rest[0]
	files, err := host.WriteStarter(dir, luaTypes)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	for _, f := range files {
		fmt.Fprintln(stdout, "wrote", f)
	}
	self := selfCommand()
	fmt.Fprintf(stdout, "\nNext:\n  cd %s\n  %s test     # run the fixture tests in scripts/\n"+
		"  %s serve    # serve ws://127.0.0.1:8080/counter (Ctrl-C stops)\n", shellQuote(dir), self, self)
	return 0
}

// selfCommand is how to run this binary again from another folder: its
// name when PATH finds it, else its absolute path. Under `go run` the
// binary is gone once it exits, so it names the command to build.
func selfCommand() string {
	exe, err := os.Executable()
	if err != nil {
		return "electric-socket"
	}
	if strings.Contains(exe, string(filepath.Separator)+"go-build") {
		return "electric-socket  (build it first: go build -o electric-socket .)"
	}
	if p, err := exec.LookPath(filepath.Base(exe)); err == nil {
		if a, b := evalPath(p), evalPath(exe); a == b {
			return filepath.Base(exe)
		}
	}
	return shellQuote(exe)
}

func evalPath(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		if a, err := filepath.Abs(r); err == nil {
			return a
		}
	}
	return p
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./-+:@,%=") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func newLogger(c config.LogConfig, w io.Writer) *slog.Logger {
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
	replay := fs.String("replay", "", "replay the connections recorded in this folder ([integration] record)")
	paths, code, ok := parse(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	if *replay != "" {
		if *run != "" {
			fmt.Fprintln(stderr, "electric-socket test: --run does not go with --replay")
			return 2
		}
		return replayRecords(append([]string{*replay}, paths...), *cfgPath, flagSet(fs, "config"), *verbose, stdout, stderr)
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
	cfg, cfgErr := config.Load(*cfgPath)
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
				paths = append(paths, config.DisplayPath(dir))
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

// replayRecords runs recorded connections through the current scripts: the
// script of each record's integration is the configuration's (when there is
// one), else the one the record was made with.
func replayRecords(paths []string, cfgPath string, cfgGiven bool, verbose bool, stdout, stderr io.Writer) int {
	opts := fixture.ReplayOptions{Out: stdout, Verbose: verbose}
	cfg, err := config.Load(cfgPath)
	switch {
	case err == nil:
		opts.MaxDepth, opts.LuaTimeout, opts.AuthTimeout = cfg.Server.MaxDepth, cfg.Lua.Timeout, cfg.Server.AuthTimeout
		scripts := map[string]string{}
		for _, ic := range cfg.Integrations {
			scripts[ic.Name] = ic.Script
		}
		opts.Script = func(name, recorded string) (string, error) {
			if p, ok := scripts[name]; ok {
				return p, nil
			}
			return recorded, nil
		}
	case cfgGiven:
		fmt.Fprintf(stderr, "electric-socket test: %v\n", err)
		return 2
	}
	res, err := fixture.Replay(paths, opts)
	if err != nil {
		fmt.Fprintf(stderr, "electric-socket test: %v\n", err)
		return 1
	}
	if res.Changed > 0 {
		return 1
	}
	return 0
}
