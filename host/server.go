package host

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gobwas/ws"

	"github.com/electric-socket/electric-socket/luabridge"
)

// Server accepts WebSocket connections on one listener and hands each to the
// engine under the integration its path names.
type Server struct {
	engine       *Engine
	integrations map[string]*Integration // by path
	opts         ConnOptions
	log          *slog.Logger
	http         *http.Server
	conns        sync.WaitGroup // upgraded connections not yet closed
}

// NewServer returns a server for the given integrations.
func NewServer(e *Engine, ins []*Integration, opts ConnOptions, log *slog.Logger) *Server {
	if opts.MaxMessageBytes <= 0 {
		opts.MaxMessageBytes = 64 << 10
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 10 * time.Second
	}
	if opts.CloseTimeout <= 0 {
		opts.CloseTimeout = 2 * time.Second
	}
	if opts.MaxQueuedBytes <= 0 {
		opts.MaxQueuedBytes = 4 << 20
	}
	s := &Server{engine: e, integrations: make(map[string]*Integration), opts: opts, log: log}
	for _, in := range ins {
		s.integrations[in.Path] = in
	}
	s.http = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return s
}

// Serve accepts connections on l until Shutdown.
func (s *Server) Serve(l net.Listener) error {
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
	go func() { s.conns.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		eerr = errors.Join(eerr, fmt.Errorf("connections still closing: %w", ctx.Err()))
	}
	return errors.Join(herr, eerr)
}

// ServeHTTP upgrades requests for an integration's path.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	in := s.integrations[r.URL.Path]
	if in == nil {
		http.Error(w, "no integration at "+r.URL.Path, http.StatusNotFound)
		return
	}
	nc, rw, _, err := ws.HTTPUpgrader{Timeout: s.opts.WriteTimeout}.Upgrade(r, w)
	if err != nil {
		s.log.Debug("upgrade failed", "path", r.URL.Path, "remote", r.RemoteAddr, "err", err)
		return
	}
	query := make(map[string]string)
	for k, v := range r.URL.Query() {
		if len(v) > 0 {
			query[k] = v[0]
		}
	}
	ch := &luabridge.Channel{
		ID: newChannelID(), Integration: in.Name, Path: r.URL.Path, RemoteAddr: r.RemoteAddr, Query: query,
	}
	s.conns.Add(1)
	c := &wsConn{nc: nc, opts: s.opts, closed: s.conns.Done}
	sess := s.engine.Open(in, ch, c)
	if sess == nil {
		c.readerDone = true // no reader: the writer closes after the close frame
		c.Close(CloseGoingAway, "server shutting down")
		return
	}
	c.session = sess
	br := rw.Reader
	if br.Buffered() == 0 {
		br = bufio.NewReaderSize(nc, 1024) // the handshake's 4 KiB buffer is let go
	}
	go c.serve(br)
}

// newChannelID returns 128 random bits in hex: unique across instances and
// restarts without coordination.
func newChannelID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
