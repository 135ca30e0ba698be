package host

import (
	"crypto/tls"
	"fmt"

	"github.com/electric-socket/electric-socket/host/config"
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
