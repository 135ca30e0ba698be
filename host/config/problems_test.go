package config

import (
	"errors"
	"io/fs"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestConfigErrorKeepsWhatCouldBeRead(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"chat.lua": "",
		"config.toml": lines(`[server]`, `lisen = "x"`, `max_depth = 7`, `[lua]`, `timeout = "1 s"`,
			`[[integration]]`, `name = "chat"`, `path = "/chat"`, `script = "chat.lua"`),
	})
	cfg, err := Load(filepath.Join(dir, "config.toml"))
	var ce *Error
	if !errors.As(err, &ce) || len(ce.Problems) != 2 {
		t.Fatalf("err = %v, want the two problems", err)
	}
	if cfg.Server.MaxDepth != 7 || cfg.Lua.Timeout != Default().Lua.Timeout {
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
	_, err := Parse(name, []byte(data))
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("err = %T %v, want *Error", err, err)
	}
	want := []Problem{
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
			_, err := Parse("config.toml", []byte(tt.data))
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("err = %T %v, want *Error", err, err)
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
	_, err := Load(filepath.Join(t.TempDir(), "nope.toml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want fs.ErrNotExist", err)
	}
}

func TestConfigProblemString(t *testing.T) {
	tests := []struct {
		p    Problem
		want string
	}{
		{Problem{File: "c.toml", Line: 12, Key: "server.listen", Msg: "bad"}, "c.toml:12: server.listen: bad"},
		{Problem{File: "c.toml", Line: 3, Column: 7, Msg: "syntax"}, "c.toml:3:7: syntax"},
		{Problem{File: "c.toml", Key: "integration", Msg: "none"}, "c.toml: integration: none"},
		{Problem{File: "c.toml", Msg: "none"}, "c.toml: none"},
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
	got, err := Load(filepath.Join(dir, "config.toml"))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := Default()
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
		t.Fatalf("Load =\n%+v\n%+v\n%+v\nwant\n%+v\n%+v\n%+v", got.Server, got.Lua, got.Limits, want.Server, want.Lua, want.Limits)
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
			_, err := Load("config.toml")
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("got %v, want a *Error", err)
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
