package host

import (
	"crypto/tls"
	"fmt"
	"log/slog"

	"github.com/electric-socket/electric-socket/host/auth"
	"github.com/electric-socket/electric-socket/host/config"
	"github.com/electric-socket/electric-socket/host/engine"
	"github.com/electric-socket/electric-socket/host/record"
	"github.com/electric-socket/electric-socket/host/ws"
	"github.com/electric-socket/electric-socket/luabridge"
)

// wsOptions are the transport options the configuration asks for. The
// certificate is loaded here, so that a bad one stops the server at start.
func wsOptions(cfg config.Config) (ws.Options, error) {
	s, lm := cfg.Server, cfg.Limits
	opts := ws.Options{
		MaxMessageBytes:     int64(s.MaxMessageBytes),
		WriteTimeout:        s.WriteTimeout,
		CloseTimeout:        s.CloseTimeout,
		MaxQueuedBytes:      lm.MaxQueuedBytes,
		MessageRate:         lm.MessageRate,
		MessageBurst:        lm.MessageBurst,
		RateClose:           lm.RateAction == "close",
		RateCloseAfter:      lm.RateCloseAfter,
		PingInterval:        s.PingInterval,
		PongTimeout:         s.PongTimeout,
		HandshakeTimeout:    s.HandshakeTimeout,
		MaxHeaderBytes:      s.MaxHeaderBytes,
		AllowedOrigins:      s.AllowedOrigins,
		MaxConnections:      lm.MaxConnections,
		MaxConnectionsPerIP: lm.MaxConnectionsPerIP,
		NoIdlePoll:          !s.IdlePoll,
	}
	if len(s.TrustedProxies) > 0 {
		tp, err := auth.ParseTrustedProxies(s.TrustedProxies, s.ForwardedHeader)
		if err != nil {
			return ws.Options{}, fmt.Errorf("server.trusted_proxies: %w", err)
		}
		opts.TrustedProxies = tp
	}
	if s.PingInterval <= 0 {
		opts.PingInterval = -1 // off, not the default
	}
	if s.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(s.TLSCert, s.TLSKey)
		if err != nil {
			return ws.Options{}, fmt.Errorf("server.tls_cert, server.tls_key: %w", err)
		}
		opts.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	}
	luabridge.SetMaxMemory(uint64(cfg.Lua.MaxMemory)) // process-wide, like the heap it watches
	return opts, nil
}

// setAuth gives each integration with an [integration.auth] table its
// verifier (a JWKS is fetched now: when it cannot be, the server does not
// start, as no token could be verified).
func setAuth(cfg config.Config, ins []*engine.Integration, log *slog.Logger) error {
	for i, ic := range cfg.Integrations {
		if ic.Auth == nil || i >= len(ins) {
			continue
		}
		o := ic.Auth.Options
		o.Logger = log.With("integration", ic.Name)
		v, err := auth.New(o)
		if err != nil {
			for _, in := range ins[:i] {
				if in.Auth != nil {
					in.Auth.Close()
				}
			}
			return fmt.Errorf("%s:%d: %s: %w", config.DisplayPath(cfg.Path), ic.Auth.Line, ic.Auth.Key, err)
		}
		ins[i].Auth = v
	}
	return nil
}

// setRecord gives each integration with [integration] record its recorder.
// It warns at start: a record holds what the clients sent.
func setRecord(cfg config.Config, ins []*engine.Integration, log *slog.Logger) error {
	for i, ic := range cfg.Integrations {
		if ic.Record == "" || i >= len(ins) {
			continue
		}
		d, err := record.NewDir(ic.Record, ic.Name, ic.Script, log)
		if err != nil {
			return fmt.Errorf("%s:%d: integration %q: record: %w", config.DisplayPath(cfg.Path), ic.RecordLine, ic.Name, err)
		}
		ins[i].Recorder = d
		log.Warn("recording every connection, message contents included ([integration] record); replay with `electric-socket test --replay`",
			"integration", ic.Name, "folder", config.DisplayPath(ic.Record))
	}
	return nil
}
