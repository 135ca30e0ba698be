package config

import (
	"errors"
	"strings"
	"testing"
)

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
			name: "negative rollback_after",
			data: withInteg(`[lua]`, `rollback_after = -1`),
			want: []string{`config.toml:2: lua.rollback_after: must not be negative`},
		},
		{
			name: "zero rollback_within",
			data: withInteg(`[lua]`, `rollback_within = "0s"`),
			want: []string{`config.toml:2: lua.rollback_within: must be greater than 0`},
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
			name: "record blank",
			data: lines(`[[integration]]`, `name = "chat"`, `path = "/chat"`, `script = "chat.lua"`, `record = " "`),
			want: []string{`config.toml:5: integration[1].record: must be a folder, or "" to record nothing; got " "`},
		},
		{
			name:  "record is a file",
			data:  lines(`[[integration]]`, `name = "chat"`, `path = "/chat"`, `script = "chat.lua"`, `record = "notes.txt"`),
			files: map[string]string{"notes.txt": "x"},
			want:  []string{`config.toml:5: integration[1].record: notes.txt: not a folder`},
		},
		{
			name: "record not a string",
			data: lines(`[[integration]]`, `name = "chat"`, `path = "/chat"`, `script = "chat.lua"`, `record = true`),
			want: []string{`config.toml:5: integration[1].record: expected a string, got boolean`},
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

			cfg, err := Load("config.toml")
			if err == nil {
				t.Fatalf("Load succeeded: %+v", cfg)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("err = %T %v, want *Error", err, err)
			}
			if got, want := err.Error(), strings.Join(tt.want, "\n"); got != want {
				t.Errorf("error:\n%s\nwant:\n%s", got, want)
			}
			if len(ce.Problems) != len(tt.want) {
				t.Errorf("%d problems, want %d", len(ce.Problems), len(tt.want))
			}

			// Parse reports the same problems under the given name.
			_, err = Parse("config.toml", []byte(tt.data))
			if err == nil || err.Error() != strings.Join(tt.want, "\n") {
				t.Errorf("Parse error:\n%v\nwant:\n%s", err, strings.Join(tt.want, "\n"))
			}
		})
	}
}

// An invalid configuration still gives what could be read, each wrong value
// left at its default, so that check can load the scripts too.
