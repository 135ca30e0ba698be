package config

import (
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
	got := Default()
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
			ForwardedHeader:  "X-Forwarded-For",
			IdlePoll:         true,
		},
		Lua: LuaConfig{Timeout: time.Second, PoolSize: 0, Watch: true, Debounce: 100 * time.Millisecond, MaxMemory: defaultMaxMemory(), RollbackWithin: 30 * time.Second},
		Limits: LimitsConfig{MaxConnections: 10000, MaxConnectionsPerIP: 1000, MessageRate: 1000, MessageBurst: 1000,
			RateAction: "throttle", MaxQueuedBytes: 4 << 20},
		Broker: BrokerConfig{Kind: "memory", URL: "redis://127.0.0.1:6379/0", Prefix: "es:", MaxRetries: 10, RetryBackoff: time.Millisecond,
			OrphanTimeout: 15 * time.Second, LeaseRenew: 2500 * time.Millisecond},
		Sink: SinkConfig{Kind: "log", Timeout: 5 * time.Second, RetryBackoff: 100 * time.Millisecond, MaxBackoff: 30 * time.Second,
			QueueSize: 10000, BatchSize: 100, Stream: "es:side_effects", MaxLen: 100000},
		Log: LogConfig{Level: "info", Format: "text"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Default() =\n%+v\nwant\n%+v", got, want)
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

	got, err := Load(cfgPath)
	if err != nil {
		t.Fatalf("Load: %v", err)
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
			ForwardedHeader:  "X-Forwarded-For",
			IdlePoll:         true,
		},
		Lua:    LuaConfig{Timeout: 250 * time.Millisecond, PoolSize: 8, Watch: false, Debounce: 50 * time.Millisecond, MaxMemory: defaultMaxMemory(), RollbackWithin: 30 * time.Second},
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
		t.Fatalf("Load =\n%+v\nwant\n%+v", got, want)
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
			got, err := Load(cfgPath)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			want := Default()
			want.Path = cfgPath
			want.Integrations = []IntegrationConfig{
				{Name: "chat", Path: "/chat", Script: filepath.Join(dir, "chat.lua"), Line: tt.line},
			}
			if tt.modify != nil {
				tt.modify(&want)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("Load =\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

// record is resolved from the config file's folder and need not exist.
func TestRecordResolvedFromConfigFolder(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"sub/chat.lua": "", "sub/config.toml": lines(
		`[[integration]]`, `name = "chat"`, `path = "/chat"`, `script = "chat.lua"`, `record = "recordings"`,
		`[[integration]]`, `name = "b"`, `path = "/b"`, `script = "chat.lua"`,
	)})
	cfg, err := Load(filepath.Join(dir, "sub", "config.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.Integrations[0].Record, filepath.Join(dir, "sub", "recordings"); got != want || cfg.Integrations[0].RecordLine != 5 {
		t.Errorf("record = %q at line %d, want %q at line 5", got, cfg.Integrations[0].RecordLine, want)
	}
	if got := cfg.Integrations[1].Record; got != "" {
		t.Errorf("record of an integration without the key = %q, want off", got)
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

	t.Run("Load relative name", func(t *testing.T) {
		cfg, err := Load(filepath.Join("sub", "config.toml"))
		if err != nil {
			t.Fatalf("Load: %v", err)
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

	t.Run("Parse relative name", func(t *testing.T) {
		cfg, err := Parse("./sub/../sub/config.toml", []byte(data))
		if err != nil {
			t.Fatalf("Parse: %v", err)
		}
		want := []string{filepath.Join("sub", "scripts", "a.lua"), filepath.Join("shared", "b.lua")}
		for i, w := range want {
			if got := cfg.Integrations[i].Script; got != w {
				t.Errorf("script %d = %q, want %q", i, got, w)
			}
		}
	})

	t.Run("Parse absolute name", func(t *testing.T) {
		name := filepath.Join(dir, "sub", "config.toml")
		cfg, err := Parse(name, []byte(data))
		if err != nil {
			t.Fatalf("Parse: %v", err)
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
		_, err := Load(filepath.Join("other", "config.toml"))
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
