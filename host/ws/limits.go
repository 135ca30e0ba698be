package ws

import (
	"github.com/electric-socket/electric-socket/host/engine"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Error codes of the limits a client can break (RELIABILITY.md); each is
// sent in {"id":"error","error":<code>} before a close 1008.
const (
	CodeRateLimited = "rate_limited"        // over [limits] message_rate, with rate_action "close" or past rate_close_after
	CodeSlowClient  = engine.CodeSlowClient // over [limits] max_queued_bytes unsent: it does not read
	CodePongTimeout = "pong_timeout"        // no pong within [server] pong_timeout of a ping
)

// connCounter counts open connections, in all and per remote address, for
// the caps of [limits]. A slot is taken before the upgrade and given back
// when the connection's socket closes.
type connCounter struct {
	max, maxPerIP int

	mu    sync.Mutex
	total int
	perIP map[string]int
}

// acquire takes a slot for ip, or returns the HTTP status of the refusal:
// 503 when the server is full, 429 when the address is.
func (cc *connCounter) acquire(ip string) (status int) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.max > 0 && cc.total >= cc.max {
		return http.StatusServiceUnavailable
	}
	if cc.maxPerIP > 0 && cc.perIP[ip] >= cc.maxPerIP {
		return http.StatusTooManyRequests
	}
	if cc.perIP == nil {
		cc.perIP = make(map[string]int)
	}
	cc.total++
	cc.perIP[ip]++
	return 0
}

func (cc *connCounter) release(ip string) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	cc.total--
	if n := cc.perIP[ip] - 1; n > 0 {
		cc.perIP[ip] = n
	} else {
		delete(cc.perIP, ip)
	}
}

// remoteIP is the address part of a request's RemoteAddr.
func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// originAllowed reports whether a browser's Origin header is in the
// allow-list: an exact origin ("https://example.com"), a wildcard subdomain
// ("https://*.example.com") or "*". An empty list allows every origin, and
// a request without an Origin header (not from a browser, which always
// sends one with a WebSocket handshake) is allowed: the check protects
// browser users from other sites, it does not authenticate clients.
func originAllowed(allowed []string, origin string) bool {
	if len(allowed) == 0 || origin == "" {
		return true
	}
	origin = strings.ToLower(origin)
	for _, a := range allowed {
		if a == "*" || a == origin {
			return true
		}
		if i := strings.Index(a, "://*."); i >= 0 {
			prefix, suffix := a[:i+3], a[i+4:] // "https://", ".example.com"
			if strings.HasPrefix(origin, prefix) && strings.HasSuffix(origin, suffix) &&
				len(origin) > len(prefix)+len(suffix) && !strings.Contains(origin[len(prefix):len(origin)-len(suffix)], "/") {
				return true
			}
		}
	}
	return false
}

// tokenBucket limits a connection's message rate. It is used by the
// connection's reader only.
type tokenBucket struct {
	rate   float64 // tokens per second; 0: no limit
	burst  float64
	tokens float64
	last   time.Time
}

func newTokenBucket(rate float64, burst int) tokenBucket {
	if burst <= 0 {
		burst = max(1, int(2*rate))
	}
	return tokenBucket{rate: rate, burst: float64(burst), tokens: float64(burst)}
}

// take spends one token and returns 0; when none is left it spends
// nothing and returns how long until one is there.
func (b *tokenBucket) take(now time.Time) time.Duration {
	if b.rate <= 0 {
		return 0
	}
	if !b.last.IsZero() {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	if b.tokens < 1 {
		return max(time.Duration((1-b.tokens)/b.rate*float64(time.Second)), time.Microsecond)
	}
	b.tokens--
	return 0
}
