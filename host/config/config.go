package config

import (
	"io/fs"
	"time"

	"github.com/electric-socket/electric-socket/broker"
)

// Config is the whole configuration. Durations are TOML strings parsed by
// time.ParseDuration ("10s").
type Config struct {
	Path         string // absolute path of the file it was loaded from ("" for defaults)
	FS           fs.FS  // where scripts are read from; nil: the disk (ParseFS sets it)
	Server       ServerConfig
	Lua          LuaConfig
	Limits       LimitsConfig // [limits] (limits.go)
	Broker       BrokerConfig
	Sink         SinkConfig
	Log          LogConfig
	Admin        AdminConfig
	Web          WebConfig
	Integrations []IntegrationConfig // TOML: [[integration]]
	// Secrets is the [secrets] table: name = "ENV_VAR"; the values, read
	// from the environment at load, are what es.secret(name) returns.
	Secrets map[string]string
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
	// trusted_proxies: CIDRs (or addresses) of the load balancers in front;
	// from those peers only, forwarded_header gives channel.remote_addr and
	// the key of max_connections_per_ip; default [] = trust no one.
	TrustedProxies  []string
	ForwardedHeader string // forwarded_header: "X-Forwarded-For" (default) or "Forwarded" (RFC 7239)
	IdlePoll        bool   // idle_poll: on Linux, idle plain-TCP connections wait in an epoll set with no goroutine or buffer; false: a reader goroutine each; default true
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
	// rollback_after: after a reload the new version is watched over its
	// first rollback_after calls; when its script errors are clearly worse
	// than the previous version's (at least 5 errors and an error rate more
	// than 20 points above), the previous version serves again
	// (host/rollback.go); default 0 = off; >= 0.
	RollbackAfter int
	// rollback_within: the watch ends after this time even if fewer calls
	// came, judged on those; default 30s; > 0.
	RollbackWithin time.Duration
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
	// time (SPEC 5.12); default 15s; >= 1s (host/fleet).
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
	Name   string      // name: broker namespace; required; ^[A-Za-z0-9_-]+$; unique
	Path   string      // path: WebSocket URL path; required; starts with "/"; unique
	Script string      // script: required; resolved from the config file's folder; an existing regular file
	Line   int         // line of the [[integration]] header in the file (0 if unknown)
	Auth   *AuthConfig // auth: [integration.auth], token verification; nil: none
	// Record: a folder; when set, every connection's traffic (message
	// contents included) is written there for `test --replay`; "" (the
	// default): nothing is recorded. Resolved from the config file's folder
	// (host/record).
	Record     string
	RecordLine int // line of the record key (0 if unknown)
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

// Default returns the configuration with every default filled and no
// integrations.
func Default() Config {
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
			ForwardedHeader:  "X-Forwarded-For",
			IdlePoll:         true,
		},
		Lua: LuaConfig{
			Timeout:   time.Second,
			PoolSize:  0,
			Watch:     true,
			Debounce:  100 * time.Millisecond,
			MaxMemory: defaultMaxMemory(),

			RollbackWithin: 30 * time.Second,
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
