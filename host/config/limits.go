package config

import (
	"net/url"
	"strings"
	"time"
)

// LimitsConfig is the [limits] table: what one client, one address or all
// clients together may take of the server (RELIABILITY.md).
type LimitsConfig struct {
	// max_connections: open WebSocket connections; a new one over it is
	// refused with 503 before the upgrade; default 10000; 0 = no limit.
	MaxConnections int
	// max_connections_per_ip: open connections from one remote address;
	// over it: 429 before the upgrade; default 1000; 0 = no limit. Behind a
	// proxy every client has the proxy's address: raise it or set 0.
	MaxConnectionsPerIP int
	// message_rate: messages per second one connection may send, sustained
	// (a token bucket); over it, see rate_action; default 1000; 0 = no
	// limit. Pings count too.
	MessageRate float64
	// message_burst: messages a connection may send at once above the rate
	// (the bucket's size); default 1000; 1..1000000.
	MessageBurst int
	// rate_action: what happens to a connection over message_rate:
	// "throttle" (the default) stops reading it until its bucket refills
	// (TCP backpressure: nothing is lost, nothing closed); "close" sends an
	// error frame "rate_limited" and closes it (1008).
	RateAction string
	// rate_close_after: with "throttle", a connection still over the rate
	// after being throttled this long without a break is closed as with
	// "close"; default 0 = never.
	RateCloseAfter time.Duration
	// max_queued_bytes: bytes queued for a client that does not read them
	// (frames and their headers); over it the client is closed as slow
	// (1008); default 4194304 (4 MiB); 1024..(1<<30).
	MaxQueuedBytes int
}

// defaultLimits are the [limits] defaults.
func defaultLimits() LimitsConfig {
	return LimitsConfig{
		MaxConnections:      10000,
		MaxConnectionsPerIP: 1000,
		MessageRate:         1000,
		MessageBurst:        1000,
		RateAction:          "throttle",
		MaxQueuedBytes:      4 << 20,
	}
}

// limitsFields are the keys of [limits].
func (c *checker) limitsFields(lm *LimitsConfig) []field {
	return []field{
		{"max_connections", c.intIn(&lm.MaxConnections, 0, -1)},
		{"max_connections_per_ip", c.intIn(&lm.MaxConnectionsPerIP, 0, -1)},
		{"message_rate", c.rate(&lm.MessageRate)},
		{"message_burst", c.intIn(&lm.MessageBurst, 1, 1_000_000)},
		{"rate_action", c.oneOf(&lm.RateAction, rateActions)},
		{"rate_close_after", c.duration(&lm.RateCloseAfter, false)},
		{"max_queued_bytes", c.intIn(&lm.MaxQueuedBytes, 1024, 1<<30)},
	}
}

// rateActions are the values of [limits] rate_action.
var rateActions = []string{"throttle", "close"}

// rate checks a non-negative number (an integer or a float).
func (c *checker) rate(dst *float64) func(string, any) {
	return func(key string, v any) {
		var f float64
		switch x := v.(type) {
		case int64:
			f = float64(x)
		case float64:
			f = x
		default:
			c.add(key, "expected a number, got %s", typeName(v))
			return
		}
		if f < 0 || f != f || f > 1e9 {
			c.add(key, "must be between 0 and 1e9")
			return
		}
		*dst = f
	}
}

// diskFile checks an optional file path ("" = none), resolved from the
// config file's folder like scripts.
func (c *checker) diskFile(dst *string) func(string, any) {
	return func(key string, v any) {
		var s string
		if !c.str(key, v, &s) || s == "" {
			return
		}
		*dst = c.script(key, s)
	}
}

// origins checks [server] allowed_origins: an array of origins such as
// "https://example.com", "https://*.example.com" (any subdomain) or "*".
func (c *checker) origins(dst *[]string) func(string, any) {
	return func(key string, v any) {
		list, ok := v.([]any)
		if !ok {
			c.add(key, "expected an array of origins such as [\"https://example.com\"], got %s", typeName(v))
			return
		}
		out := make([]string, 0, len(list))
		for _, e := range list {
			s, ok := e.(string)
			if !ok {
				c.add(key, "expected strings, got %s", typeName(e))
				continue
			}
			if s != "*" {
				u, err := url.Parse(s)
				if err != nil || u.Scheme == "" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
					c.add(key, "invalid origin %q: want scheme://host[:port], e.g. \"https://example.com\"", s)
					continue
				}
				s = strings.TrimSuffix(s, "/")
			}
			out = append(out, strings.ToLower(s))
		}
		*dst = out
	}
}

// tlsPair reports a certificate without its key or the reverse.
func (c *checker) tlsPair(s *ServerConfig) {
	switch {
	case s.TLSCert != "" && s.TLSKey == "":
		c.add("server.tls_cert", "server.tls_key is required with it")
	case s.TLSKey != "" && s.TLSCert == "":
		c.add("server.tls_key", "server.tls_cert is required with it")
	}
}
