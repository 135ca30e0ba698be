package host

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	toml "github.com/pelletier/go-toml/v2"

	"github.com/electric-socket/electric-socket/broker"
)

// Config is the whole configuration. Durations are TOML strings parsed by
// time.ParseDuration ("10s").
type Config struct {
	Path         string // absolute path of the file it was loaded from ("" for defaults)
	FS           fs.FS  // where scripts are read from; nil: the disk (ParseConfigFS sets it)
	Server       ServerConfig
	Lua          LuaConfig
	Limits       LimitsConfig // [limits] (limits_config.go)
	Broker       BrokerConfig
	Sink         SinkConfig
	Log          LogConfig
	Admin        AdminConfig
	Web          WebConfig
	Integrations []IntegrationConfig // TOML: [[integration]]
}

// ServerConfig is the [server] table.
type ServerConfig struct {
	Listen          string        // listen; default "127.0.0.1:8080"; must be host:port
	MaxMessageBytes int           // max_message_bytes; whole reassembled message; default 65536; 1..(64<<20)
	AuthTimeout     time.Duration // auth_timeout; default 10s; > 0
	WriteTimeout    time.Duration // write_timeout; default 10s; > 0
	CloseTimeout    time.Duration // close_timeout: how long to wait for the client's close reply; default 2s; >= 0
	MaxDepth        int           // max_depth: JSON nesting limit for frames and script data; default 32; 1..1000
	ShutdownTimeout time.Duration // shutdown_timeout; default 10s; >= 0
	ShutdownSpread  time.Duration // shutdown_spread: the closes are spread over this window; default 1s; >= 0
	// The handshake and the transport (RELIABILITY.md):
	HandshakeTimeout time.Duration // handshake_timeout: to receive the HTTP upgrade request's headers; default 10s; > 0
	MaxHeaderBytes   int           // max_header_bytes: the upgrade request's headers; over it: 431; default 16384; 1024..(1<<20)
	AllowedOrigins   []string      // allowed_origins: browser Origins allowed to connect; others get 403; default [] = any
	TLSCert          string        // tls_cert: PEM certificate file (chain); with tls_key the listener speaks TLS (wss://); default "" = plain
	TLSKey           string        // tls_key: PEM private key file of tls_cert; default ""
	PingInterval     time.Duration // ping_interval: the server pings each client this often; default 30s; "0s" = never
	PongTimeout      time.Duration // pong_timeout: a client that sends no pong this long after a ping is closed (1008); default 10s; > 0
	IdlePoll         bool          // idle_poll: on Linux, idle plain-TCP connections wait in an epoll set with no goroutine or buffer; false: a reader goroutine each; default true
}

// LuaConfig is the [lua] table.
type LuaConfig struct {
	Timeout  time.Duration // timeout: per call; default 1s; > 0
	PoolSize int           // pool_size: Lua states per script; 0 = 2*GOMAXPROCS (resolved by the caller); >= 0
	Watch    bool          // watch: hot reload; default true
	Debounce time.Duration // reload_debounce: quiet time after a burst of changes before the final reload (and the report of a broken save); a save that loads switches at once; default 100ms; > 0
	// max_memory: bytes of Go heap over which running calls are stopped
	// (the longest-running first) with a script error; process-wide;
	// default half the container's memory limit (cgroup, memlimit.go),
	// else 1073741824 (1 GiB); 0 = no limit (luabridge/limits_memory.go).
	MaxMemory int
}

// BrokerConfig is the [broker] table.
type BrokerConfig struct {
	Kind   string // kind: "memory" (default) or "redis"
	URL    string // url: default "redis://127.0.0.1:6379/0"; ignored by memory
	Prefix string // prefix: default "es:"
	// max_retries: compare-and-sets lost to another writer before
	// broker_conflict; default broker.DefaultMaxRetries (10); 0..1000.
	MaxRetries int
	// retry_backoff: redis only: while another instance has a contended
	// key's turn, an update asks again after a random pause of half to all
	// of retry_backoff * 2^n, at most 16 * retry_backoff; default
	// broker.DefaultRetryBackoff (1ms); >= 0. Ignored by memory, whose
	// updates never conflict.
	RetryBackoff time.Duration
	// orphan_timeout: redis only: when an instance dies without running
	// on_close, a survivor runs it for each of its connections within this
	// time (SPEC 5.12); default 15s; >= 1s (lease.go).
	OrphanTimeout time.Duration
	// lease_renew: redis only: how often an instance renews its lease and
	// looks for expired ones; default orphan_timeout / 6; > 0 and at most
	// orphan_timeout / 4.
	LeaseRenew time.Duration
	// replicas: redis only: how many replicas must acknowledge each write
	// of an update (WAIT) before it is answered as done; default 0; 0..100.
	Replicas int
}

// SinkConfig is the [sink] table: where side effects go (SPEC 5.11). The
// keys after kind are for the webhook and redis_stream sinks, which deliver
// from a bounded queue, in batches, off the connections' goroutines; the log
// sink ignores them, and each sink ignores the other's own keys.
type SinkConfig struct {
	Kind string // kind: "log" (default), "webhook" or "redis_stream"
	// url: webhook: the http:// or https:// URL batches are POSTed to
	// (required); redis_stream: a redis://, rediss:// or unix:// URL,
	// default the [broker] url.
	URL          string
	Headers      map[string]string // headers: webhook: extra request headers (a table of strings); default none
	Timeout      time.Duration     // timeout: one delivery attempt; default 5s; > 0
	MaxAttempts  int               // max_attempts: attempts per batch before it is dropped; default 0 = until delivered; >= 0
	RetryBackoff time.Duration     // retry_backoff: wait before the first retry, doubling, jittered; default 100ms; > 0
	MaxBackoff   time.Duration     // max_backoff: the longest wait between attempts; default 30s; > 0
	QueueSize    int               // queue_size: side effects waiting for delivery, beyond which they are dropped; default 10000; 1..10000000
	BatchSize    int               // batch_size: most side effects per POST or per XADD transaction; default 100; 1..10000
	Stream       string            // stream: redis_stream: the stream's key; default "es:side_effects"
	MaxLen       int               // max_len: redis_stream: XADD MAXLEN (exact); default 100000; >= 1
}

// AdminConfig is the [admin] table: the operators' HTTP listener, apart
// from the WebSocket one.
type AdminConfig struct {
	Listen string // listen: host:port serving /healthz, /readyz and /metrics; default "" = off
}

// WebConfig is the [web] table: static files served on the WebSocket
// listener, beside the integrations' paths (which take precedence).
type WebConfig struct {
	// root: a folder served at "/" (its index.html for "/"), resolved from
	// the config file's folder like scripts (inside the embedded files when
	// the configuration is the embedded one); default "" = none.
	Root string
}

// LogConfig is the [log] table.
type LogConfig struct {
	Level  string // level: "debug", "info" (default), "warn", "error"
	Format string // format: "text" (default) or "json"
}

// IntegrationConfig is one [[integration]] table.
type IntegrationConfig struct {
	Name   string // name: broker namespace; required; ^[A-Za-z0-9_-]+$; unique
	Path   string // path: WebSocket URL path; required; starts with "/"; unique
	Script string // script: required; resolved from the config file's folder; an existing regular file
	Line   int    // line of the [[integration]] header in the file (0 if unknown)
}

// Valid values of the enumerated settings.
var (
	brokerKinds = []string{"memory", "redis"}
	sinkKinds   = []string{"log", "webhook", "redis_stream"}
	logLevels   = []string{"debug", "info", "warn", "error"}
	logFormats  = []string{"text", "json"}
	redisScheme = broker.RedisSchemes
)

const maxMessageBytesLimit = 64 << 20

// DefaultConfig returns the configuration with every default filled and no
// integrations.
func DefaultConfig() Config {
	return Config{
		Server: ServerConfig{
			Listen:          "127.0.0.1:8080",
			MaxMessageBytes: 65536,
			AuthTimeout:     10 * time.Second,
			WriteTimeout:    10 * time.Second,
			CloseTimeout:    2 * time.Second,
			MaxDepth:        32,
			ShutdownTimeout: 10 * time.Second,
			ShutdownSpread:  time.Second,

			HandshakeTimeout: 10 * time.Second,
			MaxHeaderBytes:   16 << 10,
			PingInterval:     30 * time.Second,
			PongTimeout:      10 * time.Second,
			IdlePoll:         true,
		},
		Lua: LuaConfig{
			Timeout:   time.Second,
			PoolSize:  0,
			Watch:     true,
			Debounce:  100 * time.Millisecond,
			MaxMemory: defaultMaxMemory(),
		},
		Limits: defaultLimits(),
		Broker: BrokerConfig{
			Kind:          "memory",
			URL:           "redis://127.0.0.1:6379/0",
			Prefix:        "es:",
			MaxRetries:    broker.DefaultMaxRetries,
			RetryBackoff:  broker.DefaultRetryBackoff,
			OrphanTimeout: 15 * time.Second,
			LeaseRenew:    2500 * time.Millisecond,
		},
		Sink: SinkConfig{
			Kind:         "log",
			Timeout:      5 * time.Second,
			MaxAttempts:  0,
			RetryBackoff: 100 * time.Millisecond,
			MaxBackoff:   30 * time.Second,
			QueueSize:    10000,
			BatchSize:    100,
			Stream:       "es:side_effects",
			MaxLen:       100000,
		},
		Log: LogConfig{Level: "info", Format: "text"},
	}
}

// ConfigProblem is one problem found in a configuration file.
type ConfigProblem struct {
	File   string // file name as given to LoadConfig or ParseConfig
	Line   int    // 1-based line; 0 when the problem concerns the whole file
	Column int    // 1-based column; only set for TOML syntax errors
	Key    string // e.g. "server.listen" or "integration[2].script"; may be ""
	Msg    string
}

// String formats the problem as "file:line: key: msg" (":column" follows the
// line when known; the line and key are left out when unknown).
func (p ConfigProblem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		b.WriteString(":" + strconv.Itoa(p.Line))
		if p.Column > 0 {
			b.WriteString(":" + strconv.Itoa(p.Column))
		}
	}
	b.WriteString(": ")
	if p.Key != "" {
		b.WriteString(p.Key + ": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// ConfigError lists every problem found in a configuration file, ordered by
// line (problems about the whole file last).
type ConfigError struct {
	Problems []ConfigProblem
}

// Error prints one problem per line, without a trailing newline.
func (e *ConfigError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// LoadConfig reads and validates the file at path. Relative paths in it are
// resolved from the file's own folder, so the scripts of the result are
// absolute. Problems are named after path as given. A file that cannot be read
// gives the *fs.PathError of os.ReadFile; an invalid one a *ConfigError, with
// the configuration as far as it could be read (each wrong value left at its
// default; nothing at all after a TOML syntax error).
func LoadConfig(path string) (Config, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return Config{}, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, err
	}
	return parseConfig(path, abs, filepath.Dir(abs), data)
}

// ParseConfig parses data as if read from the named file: name is used in
// messages, and relative script paths are resolved from filepath.Dir(name)
// (and cleaned, so they stay relative if name is). Config.Path is name made
// absolute ("" if name is ""). Problems are reported as a *ConfigError.
func ParseConfig(name string, data []byte) (Config, error) {
	abs := ""
	if name != "" {
		var err error
		if abs, err = filepath.Abs(name); err != nil {
			return Config{}, err
		}
	}
	return parseConfig(name, abs, filepath.Dir(name), data)
}

// ParseConfigFS parses data as the file name inside fsys (the configuration
// and scripts embedded in the binary): scripts are checked and later read in
// fsys, with paths relative to its root. Config.FS is fsys.
func ParseConfigFS(fsys fs.FS, name string, data []byte) (Config, error) {
	cfg, err := parseConfigIn(fsys, name, "", ".", data)
	cfg.FS = fsys
	return cfg, err
}

// parseConfig decodes data into a generic map (so that only TOML syntax can
// stop decoding), then checks every key against the schema itself, so that
// unknown keys, wrong types and bad values are all reported together, each at
// the line of its key (found by buildKeyIndex). Decoding into typed structs
// would stop at the first type mismatch.
func parseConfig(name, abs, dir string, data []byte) (Config, error) {
	return parseConfigIn(nil, name, abs, dir, data)
}

func parseConfigIn(fsys fs.FS, name, abs, dir string, data []byte) (Config, error) {
	var doc map[string]any
	if err := toml.Unmarshal(data, &doc); err != nil {
		p := ConfigProblem{File: name, Msg: strings.TrimPrefix(err.Error(), "toml: ")}
		// Syntax errors stop the parse, so they are reported alone. The key
		// go-toml attaches (if any) is relative to the current table, so it is
		// left out: the message and position say enough.
		var de *toml.DecodeError
		if errors.As(err, &de) {
			p.Line, p.Column = de.Position()
		}
		return Config{}, &ConfigError{Problems: []ConfigProblem{p}}
	}

	c := &checker{file: name, dir: dir, fsys: fsys, idx: buildKeyIndex(data)}
	cfg := DefaultConfig()
	cfg.Path = abs
	c.config(doc, &cfg)
	if len(c.problems) > 0 {
		sort.SliceStable(c.problems, func(i, j int) bool {
			li, lj := c.problems[i].Line, c.problems[j].Line
			if li == 0 || lj == 0 {
				return lj == 0 && li != 0
			}
			return li < lj
		})
		// What could be read comes back with the error (defaults where a
		// value was wrong), so that check can still load the scripts.
		return cfg, &ConfigError{Problems: c.problems}
	}
	return cfg, nil
}

// checker validates a decoded document, collecting problems.
type checker struct {
	file     string
	dir      string // folder relative scripts are resolved from
	fsys     fs.FS  // nil: scripts are on disk
	idx      keyIndex
	problems []ConfigProblem
}

// addAt records a problem about key on an explicit line.
func (c *checker) addAt(line int, key, format string, args ...any) {
	c.problems = append(c.problems, ConfigProblem{
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
		if d := editDistance(strings.ToLower(k), f.name); d < bestD {
			best, bestD = f.name, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b (bytes; keys are ASCII).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
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
			field{"idle_poll", func(k string, v any) { c.boolean(k, v, &s.IdlePoll) }},
		),
		c.section("lua",
			field{"timeout", c.duration(&l.Timeout, true)},
			field{"pool_size", c.intIn(&l.PoolSize, 0, -1)},
			field{"watch", func(k string, v any) { c.boolean(k, v, &l.Watch) }},
			field{"reload_debounce", c.duration(&l.Debounce, true)},
			field{"max_memory", c.intIn(&l.MaxMemory, 0, -1)},
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
	)
	if b.Kind == "redis" && urlOK {
		c.redisURL("broker.url", b.URL)
	}
	c.tlsPair(s)
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

// str stores a string value, reporting other types.
func (c *checker) str(key string, v any, dst *string) bool {
	s, ok := v.(string)
	if !ok {
		c.add(key, "expected a string, got %s", typeName(v))
		return false
	}
	*dst = s
	return true
}

func (c *checker) boolean(key string, v any, dst *bool) {
	x, ok := v.(bool)
	if !ok {
		c.add(key, "expected a boolean, got %s", typeName(v))
		return
	}
	*dst = x
}

// intIn checks an integer in [lo, hi]; hi < 0 means no upper bound.
func (c *checker) intIn(dst *int, lo, hi int64) func(string, any) {
	return func(key string, v any) {
		n, ok := v.(int64)
		switch {
		case !ok:
			c.add(key, "expected an integer, got %s", typeName(v))
		case hi < 0 && n > math.MaxInt:
			c.add(key, "must be at most %d", math.MaxInt)
		case hi < 0 && n < lo && lo == 0:
			c.add(key, "must not be negative")
		case hi < 0 && n < lo:
			c.add(key, "must be at least %d", lo)
		case hi >= 0 && (n < lo || n > hi):
			c.add(key, "must be between %d and %d", lo, hi)
		default:
			*dst = int(n)
		}
	}
}

// duration checks a duration string; positive demands > 0, else >= 0.
func (c *checker) duration(dst *time.Duration, positive bool) func(string, any) {
	return func(key string, v any) {
		s, ok := v.(string)
		if !ok {
			c.add(key, `expected a duration string such as "10s", got %s`, typeName(v))
			return
		}
		d, err := time.ParseDuration(s)
		switch {
		case err != nil:
			c.add(key, `invalid duration %q: want a number and a unit with no space, such as "1s", "250ms" or "1m30s" (units: ms, s, m, h)`, s)
		case positive && d <= 0:
			c.add(key, "must be greater than 0")
		case d < 0:
			c.add(key, "must not be negative")
		default:
			*dst = d
		}
	}
}

// oneOf checks a string among valid.
func (c *checker) oneOf(dst *string, valid []string) func(string, any) {
	return func(key string, v any) {
		var s string
		if !c.str(key, v, &s) {
			return
		}
		for _, x := range valid {
			if s == x {
				*dst = s
				return
			}
		}
		c.add(key, "must be one of %s; got %q", quoteList(valid), s)
	}
}

func quoteList(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = strconv.Quote(x)
	}
	return strings.Join(q, ", ")
}

func (c *checker) listen(key, addr string) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		c.add(key, "invalid address %q: want host:port", addr)
	}
}

func (c *checker) redisURL(key, raw string) {
	u, err := url.Parse(raw)
	if err != nil || raw == "" {
		c.add(key, "invalid redis URL %q", raw)
		return
	}
	for _, s := range redisScheme {
		if u.Scheme == s {
			c.redisOptions(key, raw)
			return
		}
	}
	c.add(key, "invalid redis URL %q: scheme must be one of %s", raw, quoteList(redisScheme))
}

// redisOptions reports what go-redis rejects in a URL whose scheme is
// valid (an unknown query parameter, a sentinel URL without master_name).
// The URL is shown with its password replaced by "xxxxx".
func (c *checker) redisOptions(key, raw string) {
	if err := broker.CheckRedisURL(raw); err != nil {
		shown := raw
		if u, perr := url.Parse(raw); perr == nil {
			shown = u.Redacted()
		}
		c.add(key, "invalid redis URL %q: %v", shown, err)
	}
}

// integrations checks the [[integration]] array at key.
func (c *checker) integrations(key string, v any) []IntegrationConfig {
	list, ok := v.([]any)
	if !ok {
		c.add(key, "expected an array of tables ([[integration]]), got %s", typeName(v))
		return nil
	}
	if len(list) == 0 {
		c.add(key, "at least one [[integration]] is required")
		return nil
	}
	type first struct {
		key  string
		line int
	}
	names := map[string]first{}
	paths := map[string]first{}
	out := make([]IntegrationConfig, 0, len(list))
	for i, e := range list {
		ik := indexKey(key, i+1)
		t, ok := c.table(ik, e)
		if !ok {
			continue
		}
		ic := IntegrationConfig{Line: c.idx.line(ik)}
		c.fields(ik, t,
			field{"name", func(k string, v any) {
				if !c.str(k, v, &ic.Name) {
					return
				}
				if !bareKey.MatchString(ic.Name) {
					c.add(k, "must match ^[A-Za-z0-9_-]+$; got %q", ic.Name)
					return
				}
				if f, dup := names[ic.Name]; dup {
					c.add(k, "duplicate name %q (also used by %s at line %d)", ic.Name, f.key, f.line)
					return
				}
				names[ic.Name] = first{ik, ic.Line}
			}},
			field{"path", func(k string, v any) {
				if !c.str(k, v, &ic.Path) {
					return
				}
				if !strings.HasPrefix(ic.Path, "/") {
					c.add(k, `must start with "/"; got %q`, ic.Path)
					return
				}
				if f, dup := paths[ic.Path]; dup {
					c.add(k, "duplicate path %q (also used by %s at line %d)", ic.Path, f.key, f.line)
					return
				}
				paths[ic.Path] = first{ik, ic.Line}
			}},
			field{"script", func(k string, v any) {
				var s string
				if c.str(k, v, &s) {
					ic.Script = c.script(k, s)
				}
			}},
		)
		for _, req := range []string{"name", "path", "script"} {
			if _, ok := t[req]; !ok {
				c.addAt(ic.Line, joinKey(ik, req), "missing required key")
			}
		}
		out = append(out, ic)
	}
	return out
}

// script resolves a script path from the config folder and checks that it is
// an existing regular file. Messages name the path as written.
func (c *checker) script(key, s string) string {
	if strings.TrimSpace(s) == "" {
		c.add(key, "must not be empty")
		return ""
	}
	return c.resolve(key, s, "file", func(fi fs.FileInfo) bool { return fi.Mode().IsRegular() }, "not a regular file")
}

// resolve makes s absolute from the config folder (or a path inside the
// embedded files), and reports when it does not exist (no such what) or
// is not what ok accepts (wrong).
func (c *checker) resolve(key, s, what string, ok func(fs.FileInfo) bool, wrong string) string {
	p := filepath.Clean(s)
	if !filepath.IsAbs(p) {
		p = filepath.Join(c.dir, p)
	}
	var fi fs.FileInfo
	var err error
	if c.fsys != nil {
		p = filepath.ToSlash(p)
		fi, err = fs.Stat(c.fsys, p)
	} else {
		fi, err = os.Stat(p)
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		c.add(key, "%s: no such %s", s, what)
	case err != nil:
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		c.add(key, "%s: %v", s, err)
	case !ok(fi):
		c.add(key, "%s: %s", s, wrong)
	}
	return p
}

// stringTable checks a table of strings (such as [sink] headers).
func (c *checker) stringTable(key string, v any) map[string]string {
	t, ok := c.table(key, v)
	if !ok {
		return nil
	}
	out := make(map[string]string, len(t))
	for _, name := range sortedKeys(t) {
		var s string
		if c.str(joinKey(key, name), t[name], &s) {
			out[name] = s
		}
	}
	return out
}

// sinkURL checks the [sink] url against the sink's kind: the webhook needs
// an http(s) URL; redis_stream a URL go-redis's single-server client takes,
// its own or else the broker's.
func (c *checker) sinkURL(sk *SinkConfig, brokerURL string) {
	switch sk.Kind {
	case "webhook":
		if sk.URL == "" {
			c.add("sink.url", `required when sink.kind is "webhook"`)
			return
		}
		u, err := url.Parse(sk.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			c.add("sink.url", "invalid webhook URL %q: want http://host/... or https://host/...", sk.URL)
		}
	case "redis_stream":
		raw, from := sk.URL, ""
		if raw == "" {
			raw, from = brokerURL, " (from broker.url; set sink.url)"
			sk.URL = brokerURL
		}
		if err := checkStreamURL(raw); err != nil {
			shown := raw
			if u, perr := url.Parse(raw); perr == nil {
				shown = u.Redacted()
			}
			c.add("sink.url", "invalid redis URL %q%s: %v", shown, from, err)
		}
	}
}

// folder resolves a folder path from the config folder (or inside the
// embedded files) and checks that it is an existing directory.
func (c *checker) folder(key, s string) string {
	if strings.TrimSpace(s) == "" {
		return ""
	}
	return c.resolve(key, s, "folder", fs.FileInfo.IsDir, "not a folder")
}

// typeName names the TOML type of a decoded value.
func typeName(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case int64:
		return "integer"
	case float64:
		return "float"
	case bool:
		return "boolean"
	case time.Time:
		return "datetime"
	case toml.LocalDateTime:
		return "local datetime"
	case toml.LocalDate:
		return "local date"
	case toml.LocalTime:
		return "local time"
	case []any:
		return "array"
	case map[string]any:
		return "table"
	default:
		return fmt.Sprintf("%T", v)
	}
}
