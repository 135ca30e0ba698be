package host

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// lines joins TOML lines; the i-th argument is line i+1 of the file.
func lines(ls ...string) string { return strings.Join(ls, "\n") + "\n" }

// writeFiles creates files (contents by slash-separated relative name) under
// dir; a name ending in "/" creates a directory.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if strings.HasSuffix(name, "/") {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestDefaultConfig(t *testing.T) {
	got := DefaultConfig()
	want := Config{
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
			MaxHeaderBytes:   16384,
			PingInterval:     30 * time.Second,
			PongTimeout:      10 * time.Second,
			IdlePoll:         true,
		},
		Lua: LuaConfig{Timeout: time.Second, PoolSize: 0, Watch: true, Debounce: 100 * time.Millisecond, MaxMemory: defaultMaxMemory()},
		Limits: LimitsConfig{MaxConnections: 10000, MaxConnectionsPerIP: 1000, MessageRate: 1000, MessageBurst: 1000,
			RateAction: "throttle", MaxQueuedBytes: 4 << 20},
		Broker: BrokerConfig{Kind: "memory", URL: "redis://127.0.0.1:6379/0", Prefix: "es:", MaxRetries: 10, RetryBackoff: time.Millisecond,
			OrphanTimeout: 15 * time.Second, LeaseRenew: 2500 * time.Millisecond},
		Sink: SinkConfig{Kind: "log", Timeout: 5 * time.Second, RetryBackoff: 100 * time.Millisecond, MaxBackoff: 30 * time.Second,
			QueueSize: 10000, BatchSize: 100, Stream: "es:side_effects", MaxLen: 100000},
		Log: LogConfig{Level: "info", Format: "text"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("DefaultConfig() =\n%+v\nwant\n%+v", got, want)
	}
}

func TestLoadConfigFull(t *testing.T) {
	dir := t.TempDir()
	other := t.TempDir()
	absScript := filepath.Join(other, "game.lua")
	writeFiles(t, dir, map[string]string{"scripts/chat.lua": "-- chat", "web/index.html": "<p>hi"})
	writeFiles(t, other, map[string]string{"game.lua": "-- game"})
	data := lines(
		`# every key set to a non-default value`, // 1
		`[server]`,                               // 2
		`listen = "0.0.0.0:9090"`,
		`max_message_bytes = 1048576`,
		`auth_timeout = "5s"`,
		`write_timeout = "7s"`,
		`close_timeout = "500ms"`,
		`max_depth = 64`,
		`shutdown_timeout = "1m30s"`,
		`shutdown_spread = "3s"`, // 10
		`[lua]`,
		`timeout = "250ms"`,
		`pool_size = 8`,
		`watch = false`,
		`reload_debounce = "50ms"`, // 15
		`[broker]`,
		`kind = "redis"`,
		`url = "redis://cache:6380/2"`,
		`prefix = "app:"`,
		`max_retries = 25`, // 20
		`retry_backoff = "5ms"`,
		`orphan_timeout = "30s"`,
		`lease_renew = "4s"`,
		`[admin]`,
		`listen = "127.0.0.1:9090"`, // 25
		`[log]`,
		`level = "debug"`,
		`format = "json"`,
		`[[integration]]`, // 29
		`name = "chat"`,   // 30
		`path = "/ws/chat"`,
		`script = "scripts/chat.lua"`,
		``,
		`  [[integration]] # indented`, // 34
		`  name = "game_2-x"`,
		`  path = "/ws/game"`,
		`  script = '`+absScript+`'`,
		`[sink]`,
		`kind = "webhook"`,
		`url = "https://hooks.example/es"`,
		`headers = { Authorization = "Bearer x", "X-Env" = "prod" }`,
		`timeout = "2s"`,
		`max_attempts = 7`,
		`retry_backoff = "10ms"`,
		`max_backoff = "1s"`,
		`queue_size = 50`,
		`batch_size = 5`,
		`stream = "fx"`,
		`max_len = 20`,
		`[web]`,
		`root = "web"`,
	)
	cfgPath := filepath.Join(dir, "config.toml")
	writeFiles(t, dir, map[string]string{"config.toml": data})

	got, err := LoadConfig(cfgPath)
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	want := Config{
		Path: cfgPath,
		Server: ServerConfig{
			Listen:          "0.0.0.0:9090",
			MaxMessageBytes: 1048576,
			AuthTimeout:     5 * time.Second,
			WriteTimeout:    7 * time.Second,
			CloseTimeout:    500 * time.Millisecond,
			MaxDepth:        64,
			ShutdownTimeout: 90 * time.Second,
			ShutdownSpread:  3 * time.Second,

			HandshakeTimeout: 10 * time.Second, // the keys of TestLoadConfigTransportAndLimits at their defaults
			MaxHeaderBytes:   16384,
			PingInterval:     30 * time.Second,
			PongTimeout:      10 * time.Second,
			IdlePoll:         true,
		},
		Lua:    LuaConfig{Timeout: 250 * time.Millisecond, PoolSize: 8, Watch: false, Debounce: 50 * time.Millisecond, MaxMemory: defaultMaxMemory()},
		Limits: defaultLimits(),
		Broker: BrokerConfig{Kind: "redis", URL: "redis://cache:6380/2", Prefix: "app:", MaxRetries: 25, RetryBackoff: 5 * time.Millisecond,
			OrphanTimeout: 30 * time.Second, LeaseRenew: 4 * time.Second},
		Sink: SinkConfig{Kind: "webhook", URL: "https://hooks.example/es",
			Headers: map[string]string{"Authorization": "Bearer x", "X-Env": "prod"},
			Timeout: 2 * time.Second, MaxAttempts: 7, RetryBackoff: 10 * time.Millisecond, MaxBackoff: time.Second,
			QueueSize: 50, BatchSize: 5, Stream: "fx", MaxLen: 20},
		Log:   LogConfig{Level: "debug", Format: "json"},
		Admin: AdminConfig{Listen: "127.0.0.1:9090"},
		Web:   WebConfig{Root: filepath.Join(dir, "web")},
		Integrations: []IntegrationConfig{
			{Name: "chat", Path: "/ws/chat", Script: filepath.Join(dir, "scripts", "chat.lua"), Line: 29},
			{Name: "game_2-x", Path: "/ws/game", Script: absScript, Line: 34},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("LoadConfig =\n%+v\nwant\n%+v", got, want)
	}
}

func TestLoadConfigDefaults(t *testing.T) {
	tests := []struct {
		name   string
		data   string
		line   int // of the [[integration]] header
		modify func(*Config)
	}{
		{
			name: "only an integration",
			data: lines(`[[integration]]`, `name = "chat"`, `path = "/chat"`, `script = "chat.lua"`),
			line: 1,
		},
		{
			name: "empty tables",
			data: lines(`[server]`, `[lua]`, `[broker]`, `[sink]`, `[log]`,
				`[[integration]]`, `name = "chat"`, `path = "/chat"`, `script = "chat.lua"`),
			line: 6,
		},
		{
			name: "some keys of a table",
			data: lines(`[server]`, `max_depth = 10`, `[broker]`, `kind = "redis"`,
				`[[integration]]`, `name = "chat"`, `path = "/chat"`, `script = "chat.lua"`),
			line: 5,
			modify: func(c *Config) {
				c.Server.MaxDepth = 10
				c.Broker.Kind = "redis"
			},
		},
		{
			name: "redis cluster url",
			data: lines(`[broker]`, `kind = "redis"`, `url = "redis+cluster://n1:7000?addr=n2:7001"`,
				`[[integration]]`, `name = "chat"`, `path = "/chat"`, `script = "chat.lua"`),
			line: 4,
			modify: func(c *Config) {
				c.Broker.Kind = "redis"
				c.Broker.URL = "redis+cluster://n1:7000?addr=n2:7001"
			},
		},
		{
			name: "redis sentinel url",
			data: lines(`[broker]`, `kind = "redis"`, `url = "rediss+sentinel://:pw@s1:26379/2?master_name=main&addr=s2:26379"`,
				`retry_backoff = "0s"`, `[[integration]]`, `name = "chat"`, `path = "/chat"`, `script = "chat.lua"`),
			line: 5,
			modify: func(c *Config) {
				c.Broker.Kind = "redis"
				c.Broker.URL = "rediss+sentinel://:pw@s1:26379/2?master_name=main&addr=s2:26379"
				c.Broker.RetryBackoff = 0
			},
		},
		{
			name: "orphan_timeout sets the default lease_renew",
			data: lines(`[broker]`, `kind = "redis"`, `orphan_timeout = "3s"`,
				`[[integration]]`, `name = "chat"`, `path = "/chat"`, `script = "chat.lua"`),
			line: 4,
			modify: func(c *Config) {
				c.Broker.Kind = "redis"
				c.Broker.OrphanTimeout = 3 * time.Second
				c.Broker.LeaseRenew = 500 * time.Millisecond
			},
		},
		{
			name: "redis_stream sink on the broker's redis",
			data: lines(`[broker]`, `url = "redis://cache:6380/1"`, `[sink]`, `kind = "redis_stream"`, `[admin]`, `listen = ""`, `[web]`, `root = ""`,
				`[[integration]]`, `name = "chat"`, `path = "/chat"`, `script = "chat.lua"`),
			line: 9,
			modify: func(c *Config) {
				c.Broker.URL = "redis://cache:6380/1"
				c.Sink.Kind, c.Sink.URL = "redis_stream", "redis://cache:6380/1"
			},
		},
		{
			name: "inline tables and dotted keys",
			data: lines(`server = { max_depth = 10 }`, `lua.watch = false`,
				`integration = [ { name = "chat", path = "/chat", script = "chat.lua" } ]`),
			line: 3,
			modify: func(c *Config) {
				c.Server.MaxDepth = 10
				c.Lua.Watch = false
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			cfgPath := filepath.Join(dir, "config.toml")
			writeFiles(t, dir, map[string]string{"config.toml": tt.data, "chat.lua": ""})
			got, err := LoadConfig(cfgPath)
			if err != nil {
				t.Fatalf("LoadConfig: %v", err)
			}
			want := DefaultConfig()
			want.Path = cfgPath
			want.Integrations = []IntegrationConfig{
				{Name: "chat", Path: "/chat", Script: filepath.Join(dir, "chat.lua"), Line: tt.line},
			}
			if tt.modify != nil {
				tt.modify(&want)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("LoadConfig =\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

func TestScriptResolvedFromConfigFolder(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"sub/scripts/a.lua": "",
		"shared/b.lua":      "",
	})
	data := lines(
		`[[integration]]`, `name = "a"`, `path = "/a"`, `script = "scripts/a.lua"`,
		`[[integration]]`, `name = "b"`, `path = "/b"`, `script = "../shared/./b.lua"`,
	)
	writeFiles(t, dir, map[string]string{"sub/config.toml": data})
	// The working directory has neither scripts/a.lua nor ../shared/b.lua.
	t.Chdir(dir)

	t.Run("LoadConfig relative name", func(t *testing.T) {
		cfg, err := LoadConfig(filepath.Join("sub", "config.toml"))
		if err != nil {
			t.Fatalf("LoadConfig: %v", err)
		}
		for i, want := range []string{"sub/scripts/a.lua", "shared/b.lua"} {
			got := cfg.Integrations[i].Script
			if !filepath.IsAbs(got) {
				t.Errorf("script %d = %q, want an absolute path", i, got)
			}
			assertSameFile(t, got, filepath.Join(dir, filepath.FromSlash(want)))
		}
		if !filepath.IsAbs(cfg.Path) {
			t.Errorf("Path = %q, want absolute", cfg.Path)
		}
		assertSameFile(t, cfg.Path, filepath.Join(dir, "sub", "config.toml"))
	})

	t.Run("ParseConfig relative name", func(t *testing.T) {
		cfg, err := ParseConfig("./sub/../sub/config.toml", []byte(data))
		if err != nil {
			t.Fatalf("ParseConfig: %v", err)
		}
		want := []string{filepath.Join("sub", "scripts", "a.lua"), filepath.Join("shared", "b.lua")}
		for i, w := range want {
			if got := cfg.Integrations[i].Script; got != w {
				t.Errorf("script %d = %q, want %q", i, got, w)
			}
		}
	})

	t.Run("ParseConfig absolute name", func(t *testing.T) {
		name := filepath.Join(dir, "sub", "config.toml")
		cfg, err := ParseConfig(name, []byte(data))
		if err != nil {
			t.Fatalf("ParseConfig: %v", err)
		}
		if cfg.Path != name {
			t.Errorf("Path = %q, want %q", cfg.Path, name)
		}
		if got, want := cfg.Integrations[1].Script, filepath.Join(dir, "shared", "b.lua"); got != want {
			t.Errorf("script = %q, want %q", got, want)
		}
	})

	t.Run("not found from the working directory", func(t *testing.T) {
		// From the cwd, scripts/a.lua does not exist: resolving against the
		// cwd instead of the config folder would fail here.
		writeFiles(t, dir, map[string]string{"scripts/a.lua": "", "other/config.toml": lines(
			`[[integration]]`, `name = "a"`, `path = "/a"`, `script = "a.lua"`)})
		_, err := LoadConfig(filepath.Join("other", "config.toml"))
		want := "other/config.toml:4: integration[1].script: a.lua: no such file"
		if err == nil || err.Error() != filepath.FromSlash(want) {
			t.Fatalf("err = %v, want %s", err, want)
		}
	})
}

func assertSameFile(t *testing.T, a, b string) {
	t.Helper()
	fa, err := os.Stat(a)
	if err != nil {
		t.Fatal(err)
	}
	fb, err := os.Stat(b)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(fa, fb) {
		t.Errorf("%s and %s are different files", a, b)
	}
}

// integ is a valid [[integration]] block, to append after the lines under test.
var integ = []string{``, `[[integration]]`, `name = "chat"`, `path = "/chat"`, `script = "chat.lua"`}

func withInteg(ls ...string) string { return lines(append(ls, integ...)...) }

func TestLoadConfigErrors(t *testing.T) {
	tests := []struct {
		name  string
		data  string
		files map[string]string // besides config.toml and chat.lua
		want  []string
	}{
		{
			name: "unknown key",
			data: withInteg(`[server]`, `listen = "127.0.0.1:9000"`, `lisen = "x"`),
			want: []string{`config.toml:3: server.lisen: unknown key; did you mean "listen"?`},
		},
		{
			name: "unknown table",
			data: withInteg(`[servr]`, `listen = "x"`),
			want: []string{`config.toml:1: servr: unknown key; did you mean "server"?`},
		},
		{
			name: "unknown nested table",
			data: withInteg(`[server]`, `listen = "127.0.0.1:1"`, ``, `[server.tls]`, `cert = "x"`),
			want: []string{`config.toml:4: server.tls: unknown key`},
		},
		{
			name: "unknown quoted key",
			data: withInteg(`[log]`, `"my level" = "x"`),
			want: []string{`config.toml:2: log."my level": unknown key`},
		},
		{
			name: "string for integer",
			data: withInteg(`[server]`, `listen = "127.0.0.1:1"`, `max_message_bytes = "64k"`),
			want: []string{`config.toml:3: server.max_message_bytes: expected an integer, got string`},
		},
		{
			name: "float for integer",
			data: withInteg(`[lua]`, `pool_size = 2.5`),
			want: []string{`config.toml:2: lua.pool_size: expected an integer, got float`},
		},
		{
			name: "integer for string",
			data: withInteg(`[server]`, `listen = 8080`),
			want: []string{`config.toml:2: server.listen: expected a string, got integer`},
		},
		{
			name: "string for boolean",
			data: withInteg(`[lua]`, `watch = "yes"`),
			want: []string{`config.toml:2: lua.watch: expected a boolean, got string`},
		},
		{
			name: "array for string",
			data: withInteg(`[log]`, `level = ["info"]`),
			want: []string{`config.toml:2: log.level: expected a string, got array`},
		},
		{
			name: "dates and times",
			data: withInteg(`[server]`, `listen = 1979-05-27`, `auth_timeout = 07:32:00`,
				`write_timeout = 1979-05-27T07:32:00Z`, `close_timeout = 1979-05-27T07:32:00`, `max_depth = {}`),
			want: []string{
				`config.toml:2: server.listen: expected a string, got local date`,
				`config.toml:3: server.auth_timeout: expected a duration string such as "10s", got local time`,
				`config.toml:4: server.write_timeout: expected a duration string such as "10s", got datetime`,
				`config.toml:5: server.close_timeout: expected a duration string such as "10s", got local datetime`,
				`config.toml:6: server.max_depth: expected an integer, got table`,
			},
		},
		{
			name: "bad duration",
			data: withInteg(`[lua]`, `timeout = "1 s"`),
			want: []string{`config.toml:2: lua.timeout: invalid duration "1 s": want a number and a unit with no space, such as "1s", "250ms" or "1m30s" (units: ms, s, m, h)`},
		},
		{
			name: "empty duration",
			data: withInteg(`[server]`, `auth_timeout = ""`),
			want: []string{`config.toml:2: server.auth_timeout: invalid duration "": want a number and a unit with no space, such as "1s", "250ms" or "1m30s" (units: ms, s, m, h)`},
		},
		{
			name: "whitespace duration",
			data: withInteg(`[server]`, ``, `write_timeout = "  "`),
			want: []string{`config.toml:3: server.write_timeout: invalid duration "  ": want a number and a unit with no space, such as "1s", "250ms" or "1m30s" (units: ms, s, m, h)`},
		},
		{
			name: "duration without unit",
			data: withInteg(`[server]`, `shutdown_timeout = "10"`),
			want: []string{`config.toml:2: server.shutdown_timeout: invalid duration "10": want a number and a unit with no space, such as "1s", "250ms" or "1m30s" (units: ms, s, m, h)`},
		},
		{
			name: "integer for duration",
			data: withInteg(`[server]`, `close_timeout = 5`),
			want: []string{`config.toml:2: server.close_timeout: expected a duration string such as "10s", got integer`},
		},
		{
			name: "zero timeout",
			data: withInteg(`[lua]`, `timeout = "0s"`),
			want: []string{`config.toml:2: lua.timeout: must be greater than 0`},
		},
		{
			name: "negative timeouts",
			data: withInteg(`[server]`, `auth_timeout = "-1s"`, `shutdown_timeout = "-1s"`, `close_timeout = "0s"`),
			want: []string{
				`config.toml:2: server.auth_timeout: must be greater than 0`,
				`config.toml:3: server.shutdown_timeout: must not be negative`,
			},
		},
		{
			name: "max_message_bytes too big",
			data: withInteg(`[server]`, `max_message_bytes = 67108865`),
			want: []string{`config.toml:2: server.max_message_bytes: must be between 1 and 67108864`},
		},
		{
			name: "max_message_bytes zero",
			data: withInteg(`[server]`, `max_message_bytes = 0`),
			want: []string{`config.toml:2: server.max_message_bytes: must be between 1 and 67108864`},
		},
		{
			name: "max_depth",
			data: withInteg(`[server]`, `max_depth = 1001`),
			want: []string{`config.toml:2: server.max_depth: must be between 1 and 1000`},
		},
		{
			name: "negative pool_size",
			data: withInteg(`[lua]`, `pool_size = -1`),
			want: []string{`config.toml:2: lua.pool_size: must not be negative`},
		},
		{
			name: "max_retries",
			data: withInteg(`[broker]`, `max_retries = 1001`),
			want: []string{`config.toml:2: broker.max_retries: must be between 0 and 1000`},
		},
		{
			name: "broker kind",
			data: withInteg(`[broker]`, `kind = "kafka"`),
			want: []string{`config.toml:2: broker.kind: must be one of "memory", "redis"; got "kafka"`},
		},
		{
			name: "redis url",
			data: withInteg(`[broker]`, `url = "http://x"`, `kind = "redis"`),
			want: []string{`config.toml:2: broker.url: invalid redis URL "http://x": scheme must be one of "redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel", "redis+cluster", "rediss+cluster"`},
		},
		{
			name: "redis url options",
			data: withInteg(`[broker]`, `kind = "redis"`, `url = "redis://:secret@h/0?dial_timeout=1s&nope=1"`),
			want: []string{`config.toml:3: broker.url: invalid redis URL "redis://:xxxxx@h/0?dial_timeout=1s&nope=1": redis: unexpected option: nope`},
		},
		{
			name: "redis sentinel url without master",
			data: withInteg(`[broker]`, `kind = "redis"`, `url = "redis+sentinel://s1:26379"`),
			want: []string{`config.toml:3: broker.url: invalid redis URL "redis+sentinel://s1:26379": a sentinel URL needs ?master_name=NAME`},
		},
		{
			name: "retry_backoff",
			data: withInteg(`[broker]`, `retry_backoff = "-1ms"`, `[broker.x]`),
			want: []string{
				`config.toml:2: broker.retry_backoff: must not be negative`,
				`config.toml:3: broker.x: unknown key`,
			},
		},
		{
			name: "retry_backoff not a duration",
			data: withInteg(`[broker]`, `retry_backoff = 5`),
			want: []string{`config.toml:2: broker.retry_backoff: expected a duration string such as "10s", got integer`},
		},
		{
			name: "orphan_timeout below 1s",
			data: withInteg(`[broker]`, `orphan_timeout = "500ms"`),
			want: []string{`config.toml:2: broker.orphan_timeout: must be at least 1s; got 500ms`},
		},
		{
			name: "lease_renew too long for orphan_timeout",
			data: withInteg(`[broker]`, `orphan_timeout = "4s"`, `lease_renew = "2s"`),
			want: []string{`config.toml:3: broker.lease_renew: must be at most orphan_timeout / 4 (1s); got 2s`},
		},
		{
			name: "lease_renew zero",
			data: withInteg(`[broker]`, `lease_renew = "0s"`),
			want: []string{`config.toml:2: broker.lease_renew: must be greater than 0`},
		},
		{
			name: "redis url ignored by memory",
			data: withInteg(`[broker]`, `url = "http://x"`, `kind = "memory"`, `[sink]`, `kind = "file"`),
			want: []string{`config.toml:5: sink.kind: must be one of "log", "webhook", "redis_stream"; got "file"`},
		},
		{
			name: "webhook without url",
			data: withInteg(`[sink]`, `kind = "webhook"`),
			want: []string{`config.toml:1: sink.url: required when sink.kind is "webhook"`},
		},
		{
			name: "webhook url",
			data: withInteg(`[sink]`, `kind = "webhook"`, `url = "ftp://h/x"`),
			want: []string{`config.toml:3: sink.url: invalid webhook URL "ftp://h/x": want http://host/... or https://host/...`},
		},
		{
			name: "redis_stream url from the broker",
			data: withInteg(`[broker]`, `url = "redis+cluster://n1:7000"`, `[sink]`, `kind = "redis_stream"`),
			want: []string{`config.toml:3: sink.url: invalid redis URL "redis+cluster://n1:7000" (from broker.url; set sink.url): scheme must be one of "redis", "rediss", "unix"`},
		},
		{
			name: "redis_stream url",
			data: withInteg(`[sink]`, `kind = "redis_stream"`, `url = "redis://:pw@h/0?nope=1"`),
			want: []string{`config.toml:3: sink.url: invalid redis URL "redis://:xxxxx@h/0?nope=1": redis: unexpected option: nope`},
		},
		{
			name: "sink values",
			data: withInteg(`[sink]`, `timeout = "0s"`, `max_attempts = -1`, `retry_backoff = "0s"`, `max_backoff = 3`,
				`queue_size = 0`, `batch_size = 10001`, `stream = ""`, `max_len = 0`, `headers = { A = 1 }`, `url = 5`),
			want: []string{
				`config.toml:2: sink.timeout: must be greater than 0`,
				`config.toml:3: sink.max_attempts: must not be negative`,
				`config.toml:4: sink.retry_backoff: must be greater than 0`,
				`config.toml:5: sink.max_backoff: expected a duration string such as "10s", got integer`,
				`config.toml:6: sink.queue_size: must be between 1 and 10000000`,
				`config.toml:7: sink.batch_size: must be between 1 and 10000`,
				`config.toml:8: sink.stream: must not be empty`,
				`config.toml:9: sink.max_len: must be at least 1`,
				`config.toml:10: sink.headers.A: expected a string, got integer`,
				`config.toml:11: sink.url: expected a string, got integer`,
			},
		},
		{
			name: "sink headers not a table",
			data: withInteg(`[sink]`, `headers = "Authorization: x"`),
			want: []string{`config.toml:2: sink.headers: expected a table, got string`},
		},
		{
			name: "admin listen",
			data: withInteg(`[admin]`, `listen = "9090"`, `pprof = true`),
			want: []string{
				`config.toml:2: admin.listen: invalid address "9090": want host:port`,
				`config.toml:3: admin.pprof: unknown key`,
			},
		},
		{
			name: "admin listen on the WebSocket listener",
			data: withInteg(`[server]`, `listen = "127.0.0.1:8080"`, `[admin]`, `listen = "127.0.0.1:8080"`),
			want: []string{`config.toml:4: admin.listen: must differ from server.listen ("127.0.0.1:8080")`},
		},
		{
			name: "web root",
			data: withInteg(`[web]`, `root = "nope"`, `[web.x]`),
			want: []string{
				`config.toml:2: web.root: nope: no such folder`,
				`config.toml:3: web.x: unknown key`,
			},
		},
		{
			name: "web root is a file",
			data: withInteg(`[web]`, `root = "chat.lua"`),
			want: []string{`config.toml:2: web.root: chat.lua: not a folder`},
		},
		{
			name: "log level and format",
			data: withInteg(`[log]`, `level = "verbose"`, `format = "xml"`),
			want: []string{
				`config.toml:2: log.level: must be one of "debug", "info", "warn", "error"; got "verbose"`,
				`config.toml:3: log.format: must be one of "text", "json"; got "xml"`,
			},
		},
		{
			name: "listen without port",
			data: withInteg(`[server]`, `listen = "localhost"`),
			want: []string{`config.toml:2: server.listen: invalid address "localhost": want host:port`},
		},
		{
			name: "section is not a table",
			data: withInteg(`sink = "log"`),
			want: []string{`config.toml:1: sink: expected a table, got string`},
		},
		{
			name: "inline table",
			data: withInteg(`# comment`, `server = { listen = "127.0.0.1:1",`, `  max_depth = 0 }`),
			want: []string{`config.toml:3: server.max_depth: must be between 1 and 1000`},
		},
		{
			name: "dotted key",
			data: withInteg(``, `lua.timeout = "x"`),
			want: []string{`config.toml:2: lua.timeout: invalid duration "x": want a number and a unit with no space, such as "1s", "250ms" or "1m30s" (units: ms, s, m, h)`},
		},
		{
			name: "missing integration fields",
			data: lines(
				`[[integration]]`, `name = "chat"`, `path = "/chat"`, `script = "chat.lua"`,
				``,
				`[[integration]] # second`,
				`name = "game"`,
			),
			want: []string{
				`config.toml:6: integration[2].path: missing required key`,
				`config.toml:6: integration[2].script: missing required key`,
			},
		},
		{
			name: "empty integration",
			data: lines(`[[integration]]`),
			want: []string{
				`config.toml:1: integration[1].name: missing required key`,
				`config.toml:1: integration[1].path: missing required key`,
				`config.toml:1: integration[1].script: missing required key`,
			},
		},
		{
			name: "unknown integration key",
			data: lines(`[[integration]]`, `name = "chat"`, `path = "/chat"`, `scrpt = "chat.lua"`),
			want: []string{
				`config.toml:1: integration[1].script: missing required key`,
				`config.toml:4: integration[1].scrpt: unknown key; did you mean "script"?`,
			},
		},
		{
			name: "integration subtable",
			data: lines(`[[integration]]`, `name = "chat"`, `path = "/chat"`, `script = "chat.lua"`, `[integration.extra]`, `x = 1`),
			want: []string{`config.toml:5: integration[1].extra: unknown key`},
		},
		{
			name: "duplicate name and path",
			data: lines(
				`[[integration]]`, `name = "chat"`, `path = "/chat"`, `script = "chat.lua"`,
				`[[integration]]`, `name = "other"`, `path = "/other"`, `script = "chat.lua"`,
				`[[integration]]`, `name = "chat"`, `path = "/chat"`, `script = "chat.lua"`,
			),
			want: []string{
				`config.toml:10: integration[3].name: duplicate name "chat" (also used by integration[1] at line 1)`,
				`config.toml:11: integration[3].path: duplicate path "/chat" (also used by integration[1] at line 1)`,
			},
		},
		{
			name: "bad name and path",
			data: lines(`[[integration]]`, `name = "chat room"`, `path = "chat"`, `script = "chat.lua"`),
			want: []string{
				`config.toml:2: integration[1].name: must match ^[A-Za-z0-9_-]+$; got "chat room"`,
				`config.toml:3: integration[1].path: must start with "/"; got "chat"`,
			},
		},
		{
			name: "wrong types in integration",
			data: lines(`[[integration]]`, `name = 1`, `path = true`, `script = 2.0`),
			want: []string{
				`config.toml:2: integration[1].name: expected a string, got integer`,
				`config.toml:3: integration[1].path: expected a string, got boolean`,
				`config.toml:4: integration[1].script: expected a string, got float`,
			},
		},
		{
			name: "missing script file",
			data: lines(`[[integration]]`, `name = "chat"`, `path = "/chat"`, `script = "scripts/nope.lua"`),
			want: []string{`config.toml:4: integration[1].script: scripts/nope.lua: no such file`},
		},
		{
			name:  "script is a directory",
			data:  lines(`[[integration]]`, `name = "chat"`, `path = "/chat"`, `script = "scripts"`),
			files: map[string]string{"scripts/": ""},
			want:  []string{`config.toml:4: integration[1].script: scripts: not a regular file`},
		},
		{
			name: "empty script",
			data: lines(`[[integration]]`, `name = "chat"`, `path = "/chat"`, `script = ""`),
			want: []string{`config.toml:4: integration[1].script: must not be empty`},
		},
		{
			name: "inline integration array",
			data: lines(
				`integration = [`,
				`  { name = "a", path = "/a", script = "chat.lua" },`,
				`  { name = "b" },`,
				`]`,
			),
			want: []string{
				`config.toml:3: integration[2].path: missing required key`,
				`config.toml:3: integration[2].script: missing required key`,
			},
		},
		{
			name: "integration element not a table",
			data: lines(`integration = [`, `  "chat",`, `]`),
			want: []string{`config.toml:2: integration[1]: expected a table, got string`},
		},
		{
			name: "integration not an array",
			data: lines(`integration = "chat"`),
			want: []string{`config.toml:1: integration: expected an array of tables ([[integration]]), got string`},
		},
		{
			name: "integration table instead of array",
			data: lines(`[integration]`, `name = "chat"`),
			want: []string{`config.toml:1: integration: expected an array of tables ([[integration]]), got table`},
		},
		{
			name: "empty integration array",
			data: lines(`[server]`, `integration = []`, `[lua]`, `integration = []`),
			want: []string{
				`config.toml:2: server.integration: unknown key`,
				`config.toml:4: lua.integration: unknown key`,
				`config.toml: integration: at least one [[integration]] is required`,
			},
		},
		{
			name: "no integrations",
			data: lines(`[server]`, `listen = "127.0.0.1:1"`),
			want: []string{`config.toml: integration: at least one [[integration]] is required`},
		},
		{
			name: "empty integration list",
			data: lines(`integration = []`),
			want: []string{`config.toml:1: integration: at least one [[integration]] is required`},
		},
		{
			name: "empty file",
			data: "",
			want: []string{`config.toml: integration: at least one [[integration]] is required`},
		},
		{
			name: "several problems",
			data: lines(
				`[server]`,             // 1
				`lisen = "x"`,          // 2
				`max_depth = "deep"`,   // 3
				``,                     // 4
				`[lua]`,                // 5
				`timeout = "1 s"`,      // 6
				`pool_size = -3`,       // 7
				``,                     // 8
				`[log]`,                // 9
				`level = "loud"`,       // 10
				``,                     // 11
				`[bogus]`,              // 12
				``,                     // 13
				`[[integration]]`,      // 14
				`name = "a"`,           // 15
				`script = "nope.lua"`,  // 16
				`[[integration]]`,      // 17
				`name = "a"`,           // 18
				`path = "/b"`,          // 19
				`script = "chat.lua"`,  // 20
				`[sink]`,               // 21
				`kind = 3`,             // 22
				`[broker]`,             // 23
				`kind = "redis"`,       // 24
				`url = "ftp://h/"`,     // 25
				`[server.extra]`,       // 26
				`close_timeout = "1h"`, // 27
			),
			want: []string{
				`config.toml:2: server.lisen: unknown key; did you mean "listen"?`,
				`config.toml:3: server.max_depth: expected an integer, got string`,
				`config.toml:6: lua.timeout: invalid duration "1 s": want a number and a unit with no space, such as "1s", "250ms" or "1m30s" (units: ms, s, m, h)`,
				`config.toml:7: lua.pool_size: must not be negative`,
				`config.toml:10: log.level: must be one of "debug", "info", "warn", "error"; got "loud"`,
				`config.toml:12: bogus: unknown key`,
				`config.toml:14: integration[1].path: missing required key`,
				`config.toml:16: integration[1].script: nope.lua: no such file`,
				`config.toml:18: integration[2].name: duplicate name "a" (also used by integration[1] at line 14)`,
				`config.toml:22: sink.kind: expected a string, got integer`,
				`config.toml:25: broker.url: invalid redis URL "ftp://h/": scheme must be one of "redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel", "redis+cluster", "rediss+cluster"`,
				`config.toml:26: server.extra: unknown key`,
			},
		},
		{
			name: "several problems with a file-wide one",
			data: lines(`[server]`, `lisen = "x"`, `[lua]`, `watch = 1`),
			want: []string{
				`config.toml:2: server.lisen: unknown key; did you mean "listen"?`,
				`config.toml:4: lua.watch: expected a boolean, got integer`,
				`config.toml: integration: at least one [[integration]] is required`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			files := map[string]string{"config.toml": tt.data, "chat.lua": ""}
			for k, v := range tt.files {
				files[k] = v
			}
			writeFiles(t, dir, files)
			t.Chdir(dir)

			cfg, err := LoadConfig("config.toml")
			if err == nil {
				t.Fatalf("LoadConfig succeeded: %+v", cfg)
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %T %v, want *ConfigError", err, err)
			}
			if got, want := err.Error(), strings.Join(tt.want, "\n"); got != want {
				t.Errorf("error:\n%s\nwant:\n%s", got, want)
			}
			if len(ce.Problems) != len(tt.want) {
				t.Errorf("%d problems, want %d", len(ce.Problems), len(tt.want))
			}

			// ParseConfig reports the same problems under the given name.
			_, err = ParseConfig("config.toml", []byte(tt.data))
			if err == nil || err.Error() != strings.Join(tt.want, "\n") {
				t.Errorf("ParseConfig error:\n%v\nwant:\n%s", err, strings.Join(tt.want, "\n"))
			}
		})
	}
}

// An invalid configuration still gives what could be read, each wrong value
// left at its default, so that check can load the scripts too.
func TestConfigErrorKeepsWhatCouldBeRead(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"chat.lua": "",
		"config.toml": lines(`[server]`, `lisen = "x"`, `max_depth = 7`, `[lua]`, `timeout = "1 s"`,
			`[[integration]]`, `name = "chat"`, `path = "/chat"`, `script = "chat.lua"`),
	})
	cfg, err := LoadConfig(filepath.Join(dir, "config.toml"))
	var ce *ConfigError
	if !errors.As(err, &ce) || len(ce.Problems) != 2 {
		t.Fatalf("err = %v, want the two problems", err)
	}
	if cfg.Server.MaxDepth != 7 || cfg.Lua.Timeout != DefaultConfig().Lua.Timeout {
		t.Errorf("max_depth %d, timeout %v: want 7 (read) and the default", cfg.Server.MaxDepth, cfg.Lua.Timeout)
	}
	if len(cfg.Integrations) != 1 || cfg.Integrations[0].Script != filepath.Join(dir, "chat.lua") {
		t.Errorf("integrations %+v, want chat with its script", cfg.Integrations)
	}
}

func TestConfigErrorFields(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "config.toml")
	data := lines(`[server]`, `max_depth = 0`)
	_, err := ParseConfig(name, []byte(data))
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %T %v, want *ConfigError", err, err)
	}
	want := []ConfigProblem{
		{File: name, Line: 2, Key: "server.max_depth", Msg: "must be between 1 and 1000"},
		{File: name, Line: 0, Key: "integration", Msg: "at least one [[integration]] is required"},
	}
	if !reflect.DeepEqual(ce.Problems, want) {
		t.Fatalf("problems = %+v, want %+v", ce.Problems, want)
	}
}

func TestSyntaxErrors(t *testing.T) {
	tests := []struct {
		name      string
		data      string
		want      string
		line, col int
	}{
		{
			name: "double equals",
			data: lines(`[server]`, `max_depth = = 3`),
			want: `config.toml:2:13: unexpected character U+003D '=' at start of value`,
			line: 2, col: 13,
		},
		{
			name: "unterminated string",
			data: lines(`# c`, ``, `[log]`, `level = "info`),
			want: `config.toml:4:14: basic strings cannot have new lines`,
			line: 4, col: 14,
		},
		{
			name: "unclosed header",
			data: lines(`[server]`, `listen = "127.0.0.1:1"`, `[lua`),
			want: `config.toml:3:5: expected ']' to close table name`,
			line: 3, col: 5,
		},
		{
			name: "duplicate key",
			data: lines(`[server]`, `listen = "127.0.0.1:1"`, `listen = "127.0.0.1:2"`),
			want: `config.toml:3:1: key listen is already defined`,
			line: 3, col: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig("config.toml", []byte(tt.data))
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %T %v, want *ConfigError", err, err)
			}
			if err.Error() != tt.want {
				t.Errorf("error:\n%s\nwant:\n%s", err, tt.want)
			}
			if len(ce.Problems) != 1 || ce.Problems[0].Line != tt.line || ce.Problems[0].Column != tt.col {
				t.Errorf("problems = %+v, want one at %d:%d", ce.Problems, tt.line, tt.col)
			}
		})
	}
}

func TestLoadConfigMissingFile(t *testing.T) {
	_, err := LoadConfig(filepath.Join(t.TempDir(), "nope.toml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want fs.ErrNotExist", err)
	}
}

func TestConfigProblemString(t *testing.T) {
	tests := []struct {
		p    ConfigProblem
		want string
	}{
		{ConfigProblem{File: "c.toml", Line: 12, Key: "server.listen", Msg: "bad"}, "c.toml:12: server.listen: bad"},
		{ConfigProblem{File: "c.toml", Line: 3, Column: 7, Msg: "syntax"}, "c.toml:3:7: syntax"},
		{ConfigProblem{File: "c.toml", Key: "integration", Msg: "none"}, "c.toml: integration: none"},
		{ConfigProblem{File: "c.toml", Msg: "none"}, "c.toml: none"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.p.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestKeyIndex(t *testing.T) {
	data := lines(
		`top = 1`,                  // 1
		`a.b = { c = 1, "d.e" = [`, // 2
		`  { f = 2 },`,             // 3
		`  [3],`,                   // 4
		`] }`,                      // 5
		`[[arr]]`,                  // 6
		`x = 1`,                    // 7
		`[[arr]]`,                  // 8
		`[arr.sub]`,                // 9
		`y = 2`,                    // 10
		`[[arr.list]]`,             // 11
		`[[arr.list]]`,             // 12
		`[ "q r" . s ]`,            // 13
		`'t.u' = 3`,                // 14
	)
	ix := buildKeyIndex([]byte(data))
	want := map[string]int{
		`top`:             1,
		`a`:               2,
		`a.b`:             2,
		`a.b.c`:           2,
		`a.b."d.e"`:       2,
		`a.b."d.e"[1]`:    3,
		`a.b."d.e"[1].f`:  3,
		`a.b."d.e"[2]`:    2, // arrays carry no position: the key's line
		`a.b."d.e"[2][1]`: 4, // scalars do
		`arr`:             6,
		`arr[1]`:          6,
		`arr[1].x`:        7,
		`arr[2]`:          8,
		`arr[2].sub`:      9,
		`arr[2].sub.y`:    10,
		`arr[2].list`:     11,
		`arr[2].list[1]`:  11,
		`arr[2].list[2]`:  12,
		`"q r"`:           13,
		`"q r".s`:         13,
		`"q r".s."t.u"`:   14,
	}
	if !reflect.DeepEqual(map[string]int(ix), want) {
		t.Errorf("index = %v\nwant    %v", ix, want)
	}
	for path, line := range map[string]int{
		`arr[2].sub.y`:        10,
		`arr[2].sub.missing`:  9,
		`arr[2].missing.deep`: 8,
		`arr[3].x`:            6,
		`"q r".s."t.u".v`:     14,
		`"q r".s."x.y"`:       13,
		`nothing.here`:        0,
		``:                    0,
	} {
		if got := ix.line(path); got != line {
			t.Errorf("line(%s) = %d, want %d", path, got, line)
		}
	}
}

// The keys of the handshake, the transport and [limits] (RELIABILITY.md):
// every one set to a non-default value, and each one's errors at its line.
func TestLoadConfigTransportAndLimits(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"chat.lua": "", "tls/cert.pem": "x", "tls/key.pem": "y"})
	data := lines(
		`[server]`,
		`handshake_timeout = "3s"`,
		`max_header_bytes = 4096`,
		`allowed_origins = ["https://Example.com", "https://*.example.com", "http://localhost:8080/"]`,
		`tls_cert = "tls/cert.pem"`,
		`tls_key = "tls/key.pem"`,
		`ping_interval = "0s"`,
		`pong_timeout = "2s"`,
		`idle_poll = false`,
		`[lua]`,
		`max_memory = 0`,
		`[limits]`,
		`max_connections = 0`,
		`max_connections_per_ip = 5`,
		`message_rate = 2.5`,
		`message_burst = 3`,
		`max_queued_bytes = 65536`,
		`rate_action = "close"`,
		`rate_close_after = "30s"`,
		`[[integration]]`, `name = "chat"`, `path = "/chat"`, `script = "chat.lua"`,
	)
	writeFiles(t, dir, map[string]string{"config.toml": data})
	got, err := LoadConfig(filepath.Join(dir, "config.toml"))
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	want := DefaultConfig()
	want.Server.HandshakeTimeout = 3 * time.Second
	want.Server.MaxHeaderBytes = 4096
	want.Server.AllowedOrigins = []string{"https://example.com", "https://*.example.com", "http://localhost:8080"}
	want.Server.TLSCert = filepath.Join(dir, "tls", "cert.pem")
	want.Server.TLSKey = filepath.Join(dir, "tls", "key.pem")
	want.Server.PingInterval = 0
	want.Server.PongTimeout = 2 * time.Second
	want.Server.IdlePoll = false
	want.Lua.MaxMemory = 0
	want.Limits = LimitsConfig{MaxConnections: 0, MaxConnectionsPerIP: 5, MessageRate: 2.5, MessageBurst: 3, MaxQueuedBytes: 65536,
		RateAction: "close", RateCloseAfter: 30 * time.Second}
	if !reflect.DeepEqual(got.Server, want.Server) || got.Lua != want.Lua || got.Limits != want.Limits {
		t.Fatalf("LoadConfig =\n%+v\n%+v\n%+v\nwant\n%+v\n%+v\n%+v", got.Server, got.Lua, got.Limits, want.Server, want.Lua, want.Limits)
	}

	for _, tt := range []struct {
		name string
		data string
		want []string
	}{
		{"bad values", withInteg(`[server]`, `handshake_timeout = "0s"`, `max_header_bytes = 100`, `pong_timeout = "-1s"`,
			`ping_interval = 5`, `[lua]`, `max_memory = -1`, `[limits]`, `message_rate = -1`, `message_burst = 0`,
			`max_queued_bytes = 10`, `max_connections = -3`, `max_connections_per_ip = "many"`,
			`rate_action = "drop"`, `rate_close_after = "-1s"`),
			[]string{
				`config.toml:2: server.handshake_timeout: must be greater than 0`,
				`config.toml:3: server.max_header_bytes: must be between 1024 and 1048576`,
				`config.toml:4: server.pong_timeout: must be greater than 0`,
				`config.toml:5: server.ping_interval: expected a duration string such as "10s", got integer`,
				`config.toml:7: lua.max_memory: must not be negative`,
				`config.toml:9: limits.message_rate: must be between 0 and 1e9`,
				`config.toml:10: limits.message_burst: must be between 1 and 1000000`,
				`config.toml:11: limits.max_queued_bytes: must be between 1024 and 1073741824`,
				`config.toml:12: limits.max_connections: must not be negative`,
				`config.toml:13: limits.max_connections_per_ip: expected an integer, got string`,
				`config.toml:14: limits.rate_action: must be one of "throttle", "close"; got "drop"`,
				`config.toml:15: limits.rate_close_after: must not be negative`,
			}},
		{"idle_poll not a boolean", withInteg(`[server]`, `idle_poll = "yes"`),
			[]string{`config.toml:2: server.idle_poll: expected a boolean, got string`}},
		{"origins", withInteg(`[server]`, `allowed_origins = ["example.com", "https://a.example/path", 3]`),
			[]string{
				`config.toml:2: server.allowed_origins: invalid origin "example.com": want scheme://host[:port], e.g. "https://example.com"`,
				`config.toml:2: server.allowed_origins: invalid origin "https://a.example/path": want scheme://host[:port], e.g. "https://example.com"`,
				`config.toml:2: server.allowed_origins: expected strings, got integer`,
			}},
		{"origins not a list", withInteg(`[server]`, `allowed_origins = "*"`),
			[]string{`config.toml:2: server.allowed_origins: expected an array of origins such as ["https://example.com"], got string`}},
		{"a certificate without its key", withInteg(`[server]`, `tls_cert = "chat.lua"`),
			[]string{`config.toml:2: server.tls_cert: server.tls_key is required with it`}},
		{"a missing key file", withInteg(`[server]`, `tls_cert = "chat.lua"`, `tls_key = "nope.pem"`),
			[]string{`config.toml:3: server.tls_key: nope.pem: no such file`}},
		{"unknown limit", withInteg(`[limits]`, `max_conections = 3`),
			[]string{`config.toml:2: limits.max_conections: unknown key; did you mean "max_connections"?`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, map[string]string{"config.toml": tt.data, "chat.lua": ""})
			t.Chdir(dir)
			_, err := LoadConfig("config.toml")
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("got %v, want a *ConfigError", err)
			}
			var gotLines []string
			for _, p := range ce.Problems {
				gotLines = append(gotLines, p.String())
			}
			if strings.Join(gotLines, "\n") != strings.Join(tt.want, "\n") {
				t.Fatalf("problems:\n%s\nwant:\n%s", strings.Join(gotLines, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}
