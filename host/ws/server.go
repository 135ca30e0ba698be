// Package ws is the WebSocket transport, on gobwas/ws: it accepts and
// upgrades connections within the handshake limits, reads and checks
// frames (in poll mode an idle connection holds no goroutine), writes
// through one queue per connection, enforces the per-connection limits,
// and hands each connection's messages to its engine session.
package ws

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"

	"github.com/electric-socket/electric-socket/host/auth"
	"github.com/electric-socket/electric-socket/host/engine"
	"github.com/electric-socket/electric-socket/luabridge"
)

// Server accepts WebSocket connections on one listener and hands each to the
// engine under the integration its path names.
type Server struct {
	engine       *engine.Engine
	integrations map[string]*engine.Integration // by path
	opts         Options
	log          *slog.Logger
	http         *http.Server
	conns        connTracker  // upgraded connections not yet closed
	counter      connCounter  // [limits] max_connections, max_connections_per_ip
	peakQueued   atomic.Int64 // the largest send queue of any connection, in bytes (for tests)
	others       http.Handler // requests for no integration's path; nil: 404
}

// NewServer returns a server for the given integrations.
func NewServer(e *engine.Engine, ins []*engine.Integration, opts Options, log *slog.Logger) *Server {
	opts = opts.withDefaults()
	s := &Server{engine: e, integrations: make(map[string]*engine.Integration), opts: opts, log: log,
		counter: connCounter{max: opts.MaxConnections, maxPerIP: opts.MaxConnectionsPerIP}}
	for _, in := range ins {
		s.integrations[in.Path] = in
	}
	s.http = &http.Server{
		Handler: s,
		// A client has this long to send the upgrade request's headers
		// (and, with TLS, to finish the TLS handshake): a slowloris that
		// trickles them is dropped.
		ReadHeaderTimeout: opts.HandshakeTimeout,
		MaxHeaderBytes:    opts.MaxHeaderBytes, // over it: 431, read in bounded memory
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return s
}

// ServeOthers makes h serve every request whose path is no integration's
// (the [web] root); without it they get 404. It is called before Serve.
func (s *Server) ServeOthers(h http.Handler) { s.others = h }

// Serve accepts connections on l until Shutdown; with a TLS configuration
// they speak TLS (HTTP/1.1 only: the upgrade is an HTTP/1.1 mechanism).
func (s *Server) Serve(l net.Listener) error {
	if s.opts.TLS != nil {
		cfg := s.opts.TLS.Clone()
		cfg.NextProtos = []string{"http/1.1"}
		l = tls.NewListener(l, cfg)
	}
	err := s.http.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting, shuts the engine down (SPEC 5.8: on_close for
// every authorised connection, then a 1001 close), and waits until every
// connection has sent its close frame and ended, or ctx ends.
func (s *Server) Shutdown(ctx context.Context, spread time.Duration) error {
	herr := s.http.Shutdown(ctx) // hijacked connections are not waited for
	eerr := s.engine.Shutdown(ctx, spread)
	done := make(chan struct{})
	go func() { s.conns.closeAndWait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		eerr = errors.Join(eerr, fmt.Errorf("connections still closing: %w", ctx.Err()))
	}
	return errors.Join(herr, eerr)
}

// ServeHTTP upgrades requests for an integration's path. What is refused
// is refused before the upgrade, with an HTTP status: a foreign Origin
// (403), a full server (503) or address (429).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	in := s.integrations[r.URL.Path]
	if in == nil && s.others != nil {
		s.others.ServeHTTP(w, r)
		return
	}
	if in == nil {
		http.Error(w, "no integration at "+r.URL.Path, http.StatusNotFound)
		return
	}
	if origin := r.Header.Get("Origin"); !originAllowed(s.opts.AllowedOrigins, origin) {
		s.log.Debug("origin refused", "path", r.URL.Path, "remote", r.RemoteAddr, "origin", origin)
		http.Error(w, "origin not allowed", http.StatusForbidden)
		return
	}
	client := s.opts.TrustedProxies.ClientAddr(r.RemoteAddr, r.Header)
	ip := remoteIP(r)
	if client.Forwarded {
		ip = client.IP.String()
	}
	// A token in the handshake is verified before anything is taken: a
	// refused client gets 401 and a short reason, and no script runs.
	var claims auth.Claims
	if in.Auth != nil {
		var err error
		claims, err = in.Auth.FromRequest(r)
		if err != nil && !(errors.Is(err, auth.ErrMissing) && in.Auth.ReadsFirstMessage()) {
			s.log.Info("connection refused: token", "path", r.URL.Path, "remote", client.String(), "err", err)
			http.Error(w, "unauthenticated: "+auth.ClientMessage(err), http.StatusUnauthorized)
			return
		}
	}
	if status := s.counter.acquire(ip); status != 0 {
		s.log.Debug("connection refused: limit reached", "remote", r.RemoteAddr, "status", status)
		if status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "5")
		}
		http.Error(w, http.StatusText(status)+": too many connections", status)
		return
	}
	// Counted before the upgrade: the client may read the 101 and go on
	// before this handler does, and Shutdown must not miss the connection.
	if !s.conns.add() {
		s.counter.release(ip)
		http.Error(w, "server shutting down", http.StatusServiceUnavailable)
		return
	}
	nc, rw, _, err := ws.HTTPUpgrader{Timeout: s.opts.WriteTimeout, Protocol: auth.AcceptSubprotocol}.Upgrade(r, w)
	if err != nil {
		s.counter.release(ip)
		s.conns.done()
		s.log.Debug("upgrade failed", "path", r.URL.Path, "remote", r.RemoteAddr, "err", err)
		return
	}
	var query map[string]string // nil when there is none: most connections
	var queryAll map[string][]string
	if r.URL.RawQuery != "" {
		query, queryAll = luabridge.SplitQuery(r.URL.Query())
	}
	ch := &luabridge.Channel{
		ID: newChannelID(), Integration: in.Name, Path: r.URL.Path, RemoteAddr: client.String(), Query: query, QueryAll: queryAll,
		Claims: claims.JSON,
	}
	c := &wsConn{nc: nc, opts: &s.opts, log: s.log, peak: s.notePeak, gone: make(chan struct{}),
		closed: func() { s.counter.release(ip); s.conns.done() }}
	sess := s.engine.Open(in, ch, c)
	if sess == nil {
		c.readerDone = true // no reader: the writer closes after the close frame
		c.Close(engine.CloseGoingAway, "server shutting down")
		return
	}
	c.session = sess
	if claims.JSON != nil {
		if at, ok := in.Auth.CloseAt(claims); ok {
			sess.ExpireAt(at)
		}
	}
	c.start(rw.Reader)
}

// newChannelID returns 128 random bits in hex: unique across instances and
// restarts without coordination.
func newChannelID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// notePeak keeps the largest send queue seen.
func (s *Server) notePeak(queued int) {
	for {
		p := s.peakQueued.Load()
		if int64(queued) <= p || s.peakQueued.CompareAndSwap(p, int64(queued)) {
			return
		}
	}
}
