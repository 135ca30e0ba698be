package config

import (
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"time"

	"github.com/agnivade/levenshtein"
)

// checker validates a decoded document, collecting problems.
type checker struct {
	file     string
	dir      string // folder relative scripts are resolved from
	fsys     fs.FS  // nil: scripts are on disk
	idx      keyIndex
	problems []Problem
}

// addAt records a problem about key on an explicit line.
func (c *checker) addAt(line int, key, format string, args ...any) {
	c.problems = append(c.problems, Problem{
		File: c.file,
		Line: line,
		Key:  key,
		Msg:  fmt.Sprintf(format, args...),
	})
}

// add records a problem about key on the line where key (or, failing that,
// its closest ancestor) appears.
func (c *checker) add(key, format string, args ...any) {
	c.addAt(c.idx.line(key), key, format, args...)
}

// field handles the value v of one known key, whose full path is key.
type field struct {
	name  string
	check func(key string, v any)
}

// fields dispatches the entries of table m (at path prefix) to fs, reporting
// keys fs does not know.
func (c *checker) fields(prefix string, m map[string]any, fs ...field) {
	known := make(map[string]bool, len(fs))
	for _, f := range fs {
		known[f.name] = true
		if v, ok := m[f.name]; ok {
			f.check(joinKey(prefix, f.name), v)
		}
	}
	for _, k := range sortedKeys(m) {
		if !known[k] {
			if near := nearestKey(k, fs); near != "" {
				c.add(joinKey(prefix, k), "unknown key; did you mean %q?", near)
			} else {
				c.add(joinKey(prefix, k), "unknown key")
			}
		}
	}
}

// nearestKey is the known key closest to the unknown key k (a typo: at most
// a third of its letters differ), or "".
func nearestKey(k string, fs []field) string {
	best, bestD := "", max(1, len(k)/3)+1
	for _, f := range fs {
		if d := levenshtein.ComputeDistance(strings.ToLower(k), f.name); d < bestD {
			best, bestD = f.name, d
		}
	}
	return best
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// table returns the table at key in m, reporting a non-table value.
func (c *checker) table(key string, v any) (map[string]any, bool) {
	t, ok := v.(map[string]any)
	if !ok {
		c.add(key, "expected a table, got %s", typeName(v))
	}
	return t, ok
}

// section checks a top-level table with the given fields.
func (c *checker) section(name string, fs ...field) field {
	return field{name, func(key string, v any) {
		if t, ok := c.table(key, v); ok {
			c.fields(key, t, fs...)
		}
	}}
}

func (c *checker) config(doc map[string]any, cfg *Config) {
	s, l, b, sk := &cfg.Server, &cfg.Lua, &cfg.Broker, &cfg.Sink
	urlOK, sinkURLOK, renewSet := true, true, false
	c.fields("", doc,
		c.section("server",
			field{"listen", func(k string, v any) {
				if c.str(k, v, &s.Listen) {
					c.listen(k, s.Listen)
				}
			}},
			field{"max_message_bytes", c.intIn(&s.MaxMessageBytes, 1, maxMessageBytesLimit)},
			field{"auth_timeout", c.duration(&s.AuthTimeout, true)},
			field{"write_timeout", c.duration(&s.WriteTimeout, true)},
			field{"close_timeout", c.duration(&s.CloseTimeout, false)},
			field{"max_depth", c.intIn(&s.MaxDepth, 1, 1000)},
			field{"shutdown_timeout", c.duration(&s.ShutdownTimeout, false)},
			field{"shutdown_spread", c.duration(&s.ShutdownSpread, false)},
			field{"handshake_timeout", c.duration(&s.HandshakeTimeout, true)},
			field{"max_header_bytes", c.intIn(&s.MaxHeaderBytes, 1024, 1<<20)},
			field{"allowed_origins", c.origins(&s.AllowedOrigins)},
			field{"tls_cert", c.diskFile(&s.TLSCert)},
			field{"tls_key", c.diskFile(&s.TLSKey)},
			field{"ping_interval", c.duration(&s.PingInterval, false)},
			field{"pong_timeout", c.duration(&s.PongTimeout, true)},
			field{"trusted_proxies", func(k string, v any) {
				if l := c.strings(k, v); len(l) > 0 {
					s.TrustedProxies = l // [] is the default: none
				}
			}},
			field{"forwarded_header", func(k string, v any) { c.str(k, v, &s.ForwardedHeader) }},
			field{"idle_poll", func(k string, v any) { c.boolean(k, v, &s.IdlePoll) }},
		),
		c.section("lua",
			field{"timeout", c.duration(&l.Timeout, true)},
			field{"pool_size", c.intIn(&l.PoolSize, 0, -1)},
			field{"watch", func(k string, v any) { c.boolean(k, v, &l.Watch) }},
			field{"reload_debounce", c.duration(&l.Debounce, true)},
			field{"max_memory", c.intIn(&l.MaxMemory, 0, -1)},
			field{"rollback_after", c.intIn(&l.RollbackAfter, 0, -1)},
			field{"rollback_within", c.duration(&l.RollbackWithin, true)},
		),
		c.section("limits", c.limitsFields(&cfg.Limits)...),
		c.section("broker",
			field{"kind", c.oneOf(&b.Kind, brokerKinds)},
			field{"url", func(k string, v any) { urlOK = c.str(k, v, &b.URL) }},
			field{"prefix", func(k string, v any) { c.str(k, v, &b.Prefix) }},
			field{"max_retries", c.intIn(&b.MaxRetries, 0, 1000)},
			field{"retry_backoff", c.duration(&b.RetryBackoff, false)},
			field{"orphan_timeout", c.duration(&b.OrphanTimeout, true)},
			field{"lease_renew", func(k string, v any) {
				n := len(c.problems)
				c.duration(&b.LeaseRenew, true)(k, v)
				renewSet = len(c.problems) == n
			}},
			field{"replicas", c.intIn(&b.Replicas, 0, 100)},
		),
		c.section("sink",
			field{"kind", c.oneOf(&sk.Kind, sinkKinds)},
			field{"url", func(k string, v any) { sinkURLOK = c.str(k, v, &sk.URL) }},
			field{"headers", func(k string, v any) { sk.Headers = c.stringTable(k, v) }},
			field{"timeout", c.duration(&sk.Timeout, true)},
			field{"max_attempts", c.intIn(&sk.MaxAttempts, 0, -1)},
			field{"retry_backoff", c.duration(&sk.RetryBackoff, true)},
			field{"max_backoff", c.duration(&sk.MaxBackoff, true)},
			field{"queue_size", c.intIn(&sk.QueueSize, 1, 10_000_000)},
			field{"batch_size", c.intIn(&sk.BatchSize, 1, 10_000)},
			field{"stream", func(k string, v any) {
				if c.str(k, v, &sk.Stream) && sk.Stream == "" {
					c.add(k, "must not be empty")
				}
			}},
			field{"max_len", c.intIn(&sk.MaxLen, 1, -1)},
		),
		c.section("log",
			field{"level", c.oneOf(&cfg.Log.Level, logLevels)},
			field{"format", c.oneOf(&cfg.Log.Format, logFormats)},
		),
		c.section("admin",
			field{"listen", func(k string, v any) {
				if c.str(k, v, &cfg.Admin.Listen) && cfg.Admin.Listen != "" {
					c.listen(k, cfg.Admin.Listen)
				}
			}},
		),
		c.section("web",
			field{"root", func(k string, v any) {
				var r string
				if c.str(k, v, &r) {
					cfg.Web.Root = c.folder(k, r)
				}
			}},
		),
		field{"integration", func(k string, v any) { cfg.Integrations = c.integrations(k, v) }},
		field{"secrets", func(k string, v any) { cfg.Secrets = c.secrets(k, v) }},
	)
	if b.Kind == "redis" && urlOK {
		c.redisURL("broker.url", b.URL)
	}
	c.tlsPair(s)
	c.trustedProxies(s)
	c.leaseTimes(b, renewSet)
	if sinkURLOK {
		c.sinkURL(sk, b.URL)
	}
	if a := cfg.Admin.Listen; a != "" && a == s.Listen && !strings.HasSuffix(a, ":0") {
		c.add("admin.listen", "must differ from server.listen (%q)", a)
	}
	if _, ok := doc["integration"]; !ok {
		c.addAt(0, "integration", "at least one [[integration]] is required")
	}
}

// leaseTimes checks orphan_timeout and lease_renew together, and derives
// lease_renew from orphan_timeout when it is not set.
func (c *checker) leaseTimes(b *BrokerConfig, renewSet bool) {
	if b.OrphanTimeout < time.Second {
		c.add("broker.orphan_timeout", "must be at least 1s; got %v", b.OrphanTimeout)
		return
	}
	if !renewSet {
		b.LeaseRenew = b.OrphanTimeout / 6
		return
	}
	if b.LeaseRenew > b.OrphanTimeout/4 {
		c.add("broker.lease_renew", "must be at most orphan_timeout / 4 (%v); got %v", b.OrphanTimeout/4, b.LeaseRenew)
	}
}
