package redistest

import (
	"bytes"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// Proxy is a loopback TCP proxy in front of a Redis, for tests that break
// the network between a client and Redis in ways a real network does: a
// reply lost after Redis ran the request, a connection that stays open and
// delivers nothing. Clients dial Addr (or URL) instead of the server.
//
// Its methods may be called from any goroutine.
type Proxy struct {
	// Addr is where clients connect, "127.0.0.1:<port>".
	Addr string
	// URL is the server's URL with Addr as its host.
	URL string

	upstream string
	l        net.Listener

	mu     sync.Mutex
	conns  map[*proxyConn]struct{}
	marker []byte // CutReply's armed marker; nil when none
	always bool   // CutReplies: the marker stays armed
	closed bool

	cuts  atomic.Int64
	pumps sync.WaitGroup
}

// NewProxy starts a proxy in front of s, closed when the test ends.
func NewProxy(t testing.TB, s *Server) *Proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("redistest: proxy: %v", err)
	}
	p := &Proxy{Addr: l.Addr().String(), upstream: s.Addr, l: l, conns: make(map[*proxyConn]struct{})}
	p.URL = strings.Replace(s.URL, s.Addr, p.Addr, 1)
	p.pumps.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// proxyConn is one client connection and its connection to Redis.
type proxyConn struct {
	client, server net.Conn
	pubsub         atomic.Bool // the client sent SUBSCRIBE on it
	stalled        atomic.Bool // everything is dropped, nothing closed
	cut            atomic.Bool // drop the next reply and close
	once           sync.Once
}

func (c *proxyConn) close() {
	c.once.Do(func() {
		c.client.Close()
		c.server.Close()
	})
}

func (p *Proxy) accept() {
	defer p.pumps.Done()
	for {
		client, err := p.l.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.upstream)
		if err != nil {
			client.Close()
			continue
		}
		c := &proxyConn{client: client, server: server}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.close()
			return
		}
		p.conns[c] = struct{}{}
		p.pumps.Add(2)
		p.mu.Unlock()
		go p.toServer(c)
		go p.toClient(c)
	}
}

var subscribeCmd = []byte("\r\nsubscribe\r\n")

// toServer forwards what the client sends.
func (p *Proxy) toServer(c *proxyConn) {
	defer p.pumps.Done()
	defer p.forget(c)
	buf := make([]byte, 32<<10)
	for {
		n, err := c.client.Read(buf)
		if n > 0 && !c.stalled.Load() {
			chunk := buf[:n]
			lower := bytes.ToLower(chunk)
			if bytes.Contains(lower, subscribeCmd) {
				c.pubsub.Store(true)
			}
			p.mu.Lock()
			if p.marker != nil && bytes.Contains(lower, p.marker) {
				if !p.always {
					p.marker = nil
				}
				c.cut.Store(true) // before the request reaches Redis, so before its reply
			}
			p.mu.Unlock()
			if _, werr := c.server.Write(chunk); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// toClient forwards what Redis answers, unless the reply is to be cut.
func (p *Proxy) toClient(c *proxyConn) {
	defer p.pumps.Done()
	defer p.forget(c)
	buf := make([]byte, 32<<10)
	for {
		n, err := c.server.Read(buf)
		if n > 0 && !c.stalled.Load() {
			if c.cut.Load() {
				p.cuts.Add(1) // Redis ran the request and answered: the answer is lost
				return
			}
			if _, werr := c.client.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *Proxy) forget(c *proxyConn) {
	c.close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// CutReply arms the proxy once: the next request, on any connection, whose
// bytes contain marker (compared in lower case, e.g. "evalsha") is
// forwarded to Redis, and Redis's reply to it is read and dropped, then
// both sides of that connection are closed. Redis ran the request; the
// client never learns it did. Cuts counts the replies cut so far.
func (p *Proxy) CutReply(marker string) {
	p.mu.Lock()
	p.marker, p.always = []byte(strings.ToLower(marker)), false
	p.mu.Unlock()
}

// CutReplies is CutReply for every request that contains marker, until
// the next CutReply or CutReplies call.
func (p *Proxy) CutReplies(marker string) {
	p.mu.Lock()
	p.marker, p.always = []byte(strings.ToLower(marker)), true
	p.mu.Unlock()
}

// Cuts returns how many replies CutReply made the proxy drop.
func (p *Proxy) Cuts() int64 { return p.cuts.Load() }

// StallPubSub makes every connection that has sent SUBSCRIBE so far stop
// forwarding in both directions (what arrives is read and dropped) while
// staying open: a subscription starved in silence. Connections made later
// are not stalled. It returns how many connections it stalled.
func (p *Proxy) StallPubSub() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for c := range p.conns {
		if c.pubsub.Load() && !c.stalled.Load() {
			c.stalled.Store(true)
			n++
		}
	}
	return n
}

// Close stops accepting, closes every connection and waits for the
// proxy's goroutines. It may be called more than once.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	conns := make([]*proxyConn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	p.l.Close()
	for _, c := range conns {
		c.close()
	}
	p.pumps.Wait()
}
