// Command profiled is electric-socket's server with a profiling side door,
// for the benchmark suite only: the same host.App that `electric-socket
// serve` runs, plus net/http/pprof and runtime counters (/debug/mallocs) on
// -debug. The product binary has no pprof; this wrapper keeps it that way.
//
//	profiled -config FILE [-listen ADDR] -debug 127.0.0.1:6060
//
// SIGTERM or SIGINT shuts the app down as serve does.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/electric-socket/electric-socket/host"
	"github.com/electric-socket/electric-socket/host/config"
	"github.com/electric-socket/electric-socket/tests/bench/internal/debugsrv"
)

func main() {
	cfgPath := flag.String("config", "config.toml", "the configuration file")
	listen := flag.String("listen", "", "overrides [server] listen")
	debug := flag.String("debug", "127.0.0.1:6060", "address of /debug/pprof/ and /debug/mallocs")
	flag.Parse()
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if *listen != "" {
		cfg.Server.Listen = *listen
	}
	var level slog.Level
	level.UnmarshalText([]byte(cfg.Log.Level))
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	app, err := host.NewApp(cfg, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	l, err := app.Listen()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	debugsrv.Start(*debug)
	served := make(chan error, 1)
	go host.RunGCTuner(context.Background()) // as serve does
	go func() { served <- app.Serve(l) }()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	select {
	case err := <-served:
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	case <-sigs:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := app.Shutdown(ctx); err != nil {
		log.Warn("shutdown incomplete", "err", err)
	}
}
