package ws

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/electric-socket/electric-socket/host/engine"
	"github.com/electric-socket/electric-socket/tests/testkit"
)

var upgradeRequest = testkit.UpgradeHeaders("/echo")

// 1,000 sockets that send the upgrade request one byte a second do not
// keep a legitimate client from connecting, and each is dropped when the
// handshake timeout passes.
func TestHostileSlowloris(t *testing.T) {
	const n = 1000
	h := startHostile(t, Options{HandshakeTimeout: time.Second}, engine.Options{}, nil, nil)
	conns := make([]net.Conn, 0, n)
	var dropped atomic.Int64
	for range n {
		nc, err := net.DialTimeout("tcp", h.addr, waitBound)
		if err != nil {
			t.Fatalf("slowloris socket %d: %v", len(conns), err)
		}
		conns = append(conns, nc)
		go func() {
			var b [1]byte
			nc.SetReadDeadline(time.Now().Add(6 * waitBound))
			nc.Read(b[:]) // returns when the server drops it (or at the bound)
			dropped.Add(1)
		}()
	}
	t.Cleanup(func() {
		for _, nc := range conns {
			nc.Close()
		}
	})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for i := 0; i < len(upgradeRequest); i++ {
			for _, nc := range conns {
				nc.SetWriteDeadline(time.Now().Add(10 * time.Millisecond))
				nc.Write([]byte{upgradeRequest[i]})
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	})
	defer func() { close(stop); wg.Wait() }()

	// The legitimate client: dialRaw's handshake and the login each have a
	// bounded deadline.
	h.login(t).echo("through the slowloris")
	testkit.Eventually(t, 10*time.Second, "every slowloris socket to be dropped", func() bool { return dropped.Load() == n })
}

// countingListener counts the bytes the server reads.
type countingListener struct {
	net.Listener
	read *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{c, l.read}, nil
}

type countingConn struct {
	net.Conn
	read *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Add(int64(n))
	return n, err
}

// A 1 MB header line is refused with 431 after the server has read at most
// max_header_bytes and a little: it is never held whole in memory.
func TestHostileHugeHeaderLine(t *testing.T) {
	var read atomic.Int64
	h := startHostile(t, Options{}, engine.Options{}, nil, func(l net.Listener) net.Listener {
		return countingListener{l, &read}
	})
	nc, err := net.DialTimeout("tcp", h.addr, waitBound)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(waitBound))
	go func() {
		fmt.Fprintf(nc, "%sX-Big: %s\r\n\r\n", upgradeRequest, strings.Repeat("a", 1<<20)) // fails when refused
	}()
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("status %d, want 431", resp.StatusCode)
	}
	if n := read.Load(); n > 64<<10 {
		t.Errorf("the server read %d bytes of a 1 MB header line", n)
	}
	t.Logf("the server read %d bytes of the 1 MB header line before refusing it", read.Load())
	h.login(t).echo("after")
}

// handshake sends an upgrade request with extra headers and returns the
// response.
func handshake(t *testing.T, addr, extra string) *http.Response {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, waitBound)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(waitBound))
	fmt.Fprintf(nc, "%s%s\r\n", upgradeRequest, extra)
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// A browser from a foreign Origin gets 403 and no upgrade; allowed ones,
// wildcard subdomains and non-browser clients (no Origin) connect.
func TestHostileOriginAllowList(t *testing.T) {
	h := startHostile(t, Options{AllowedOrigins: []string{"https://good.example", "https://*.apps.example"}}, engine.Options{}, nil, nil)
	for _, tc := range []struct {
		origin string
		status int
	}{
		{"https://evil.example", http.StatusForbidden},
		{"http://good.example", http.StatusForbidden},
		{"https://good.example.evil", http.StatusForbidden},
		{"https://apps.example", http.StatusForbidden},
		{"https://good.example", http.StatusSwitchingProtocols},
		{"https://GOOD.example", http.StatusSwitchingProtocols},
		{"https://chat.apps.example", http.StatusSwitchingProtocols},
		{"", http.StatusSwitchingProtocols},
	} {
		extra := ""
		if tc.origin != "" {
			extra = "Origin: " + tc.origin + "\r\n"
		}
		resp := handshake(t, h.addr, extra)
		if resp.StatusCode != tc.status {
			t.Errorf("Origin %q: status %d, want %d", tc.origin, resp.StatusCode, tc.status)
		}
		if tc.status == http.StatusForbidden && resp.Header.Get("Upgrade") != "" {
			t.Errorf("Origin %q: refused but upgraded", tc.origin)
		}
	}
}

// dialFrom dials addr from the loopback address local (127.0.0.x): a
// different client address.
func dialFrom(t *testing.T, local, addr string) *rawClient {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: waitBound}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(waitBound))
	br, resp, err := testkit.RawUpgrade(nc, "/echo")
	if err != nil {
		t.Fatal(err)
	}
	c := &rawClient{t: t, nc: nc, br: br}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		c.nc.Close()
		return &rawClient{t: t, nc: nil, br: nil, status: resp.StatusCode}
	}
	c.status = resp.StatusCode
	c.write(text(`{}`))
	if op, p := c.read(); op != 1 || string(p) != `{"ok":true}` {
		t.Fatalf("auth response %d %q", op, p)
	}
	return c
}

// The global and per-address caps refuse before the upgrade (503, 429);
// the connections already open are not affected, and a slot given back is
// taken again.
func TestHostileConnectionCaps(t *testing.T) {
	h := startHostile(t, Options{MaxConnections: 3, MaxConnectionsPerIP: 2}, engine.Options{}, nil, nil)
	a1 := dialFrom(t, "127.0.0.1", h.addr)
	a2 := dialFrom(t, "127.0.0.1", h.addr)
	if c := dialFrom(t, "127.0.0.1", h.addr); c.status != http.StatusTooManyRequests {
		t.Fatalf("third from one address: status %d, want 429", c.status)
	}
	b1 := dialFrom(t, "127.0.0.2", h.addr)
	if c := dialFrom(t, "127.0.0.3", h.addr); c.status != http.StatusServiceUnavailable {
		t.Fatalf("fourth in all: status %d, want 503", c.status)
	}
	for _, c := range []*rawClient{a1, a2, b1} {
		c.echo("still here")
	}
	a1.write(control(0x8, closeBody(1000, "")))
	a1.expectClose(1000)
	testkit.Eventually(t, 10*time.Second, "the slot to be given back", func() bool {
		c := dialFrom(t, "127.0.0.1", h.addr)
		if c.status == http.StatusSwitchingProtocols {
			c.echo("again")
			return true
		}
		return false
	})
}

// TLS from certificate and key files ([server] tls_cert, tls_key): a wss://
// client that trusts the certificate connects and chats; a plain client
// does not get an upgrade. (host's TestTLSOptions: from the configuration,
// and a bad pair stops the server.)
func TestHostileTLS(t *testing.T) {
	certFile, keyFile, cert := testkit.WriteCert(t)
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	h := startHostile(t, Options{TLS: &tls.Config{Certificates: []tls.Certificate{pair}}}, engine.Options{}, nil, nil)

	pool := x509.NewCertPool()
	pool.AddCert(cert)
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "wss://"+h.addr+"/echo", &websocket.DialOptions{
		HTTPClient: &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}},
	})
	if err != nil {
		t.Fatalf("wss dial: %v", err)
	}
	defer conn.CloseNow()
	for i, msg := range []string{`{}`, `{"v":"over tls"}`} {
		if err := conn.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_, got, err := conn.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{`{"ok":true}`, msg}[i]; string(got) != want {
			t.Fatalf("got %s, want %s", got, want)
		}
	}
	conn.Close(websocket.StatusNormalClosure, "")

	// Plain HTTP to the TLS listener: no upgrade.
	nc, err := net.DialTimeout("tcp", h.addr, waitBound)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(waitBound))
	if _, resp, err := testkit.RawUpgrade(nc, "/echo"); err == nil && resp.StatusCode == http.StatusSwitchingProtocols {
		t.Fatal("a plain-text client was upgraded on the TLS listener")
	}

}
