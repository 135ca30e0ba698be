package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/electric-socket/electric-socket/broker/redistest"
)

// runCmd runs the command line args in-process and returns its exit code,
// stdout and stderr.
func runCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// writeProject writes files (by slash-separated name) into a new folder
// and returns it.
func writeProject(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// --help, -h and help print the one usage on stdout and exit 0, for every
// command.
func TestHelpExitsZeroWithOneUsage(t *testing.T) {
	for _, args := range [][]string{
		{"--help"}, {"-h"}, {"help"}, {"serve", "--help"}, {"check", "-h"}, {"test", "--help"},
		{"test", "scripts", "--help"}, {"init", "--help"},
	} {
		code, stdout, stderr := runCmd(t, args...)
		if code != 0 || strings.Count(stdout, "Usage:") != 1 || stderr != "" {
			t.Errorf("%q: exit %d, %d usages on stdout, stderr %q; want exit 0, one usage, nothing on stderr",
				args, code, strings.Count(stdout, "Usage:"), stderr)
		}
	}
	// A bad flag: its error and the usage once, on stderr, exit 2.
	code, stdout, stderr := runCmd(t, "check", "--bogus")
	if code != 2 || stdout != "" || strings.Count(stderr, "Usage:") != 1 || !strings.Contains(stderr, "-bogus") {
		t.Errorf("check --bogus: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// Flags work after paths too, as the README's example runs them.
func TestTestFlagsAfterPaths(t *testing.T) {
	for _, args := range [][]string{
		{"test", "scripts/chat_test.lua", "--run", "whisper reaches", "-v"},
		{"test", "--run", "whisper reaches", "scripts/chat_test.lua", "-v"},
		{"test", "-v", "--run=whisper reaches", "scripts/chat_test.lua"},
	} {
		code, stdout, stderr := runCmd(t, args...)
		if code != 0 || !strings.Contains(stdout, "ok   a whisper reaches only its target") ||
			!strings.HasSuffix(stdout, "1 passed, 0 failed\n") {
			t.Errorf("%q: exit %d\nstdout:\n%s\nstderr:\n%s", args, code, stdout, stderr)
		}
	}
	// After "--" everything is a path.
	code, stdout, stderr := runCmd(t, "test", "--", "-v")
	if code == 0 || !strings.Contains(stdout+stderr, "-v") {
		t.Errorf("test -- -v: exit %d, stdout %q, stderr %q; want a failure about the path -v", code, stdout, stderr)
	}
}

// check does not fall back to the built-in example: with no config.toml it
// fails and says so.
func TestCheckWithoutConfigFails(t *testing.T) {
	t.Chdir(t.TempDir())
	code, stdout, stderr := runCmd(t, "check")
	if code != 1 || stdout != "" || !strings.Contains(stderr, "no configuration found: config.toml does not exist") {
		t.Errorf("exit %d, stdout %q, stderr %q; want exit 1 and that no configuration was found", code, stdout, stderr)
	}
	code, _, stderr = runCmd(t, "check", "--config", "elsewhere.toml")
	if code != 1 || !strings.Contains(stderr, "elsewhere.toml does not exist") {
		t.Errorf("--config elsewhere.toml: exit %d, stderr %q", code, stderr)
	}
}

// check reports the scripts' problems even when the configuration has
// problems of its own.
func TestCheckReportsScriptProblemsWithConfigProblems(t *testing.T) {
	dir := writeProject(t, map[string]string{
		"config.toml": "[server]\nlisen = \"127.0.0.1:8080\"\n\n[lua]\ntimeout = \"1 s\"\n\n" +
			"[[integration]]\nname = \"poll\"\npath = \"/poll\"\nscript = \"poll.lua\"\n\n" +
			"[[integration]]\nname = \"gone\"\npath = \"/gone\"\nscript = \"gone.lua\"\n",
		"poll.lua": "local M = {}\nfunction M.initial_authorisation(c, m)\n  local x = = 1\nend\nreturn M\n",
	})
	code, stdout, stderr := runCmd(t, "check", "--config", filepath.Join(dir, "config.toml"))
	cfg := filepath.Join(dir, "config.toml")
	for _, want := range []string{
		cfg + `:2: server.lisen: unknown key; did you mean "listen"?`,
		cfg + `:5: lua.timeout: invalid duration "1 s"`,
		cfg + `:15: integration[2].script: gone.lua: no such file`,
		`integration "poll": ` + filepath.Join(dir, "poll.lua") + `:3: syntax error near "="`,
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr does not report %q:\n%s", want, stderr)
		}
	}
	if code != 1 || stdout != "" {
		t.Errorf("exit %d, stdout %q; want exit 1 and nothing on stdout", code, stdout)
	}
}

// check says it did not contact the broker, and contacts it with --broker.
func TestCheckBroker(t *testing.T) {
	project := func(url string) string {
		dir := writeProject(t, map[string]string{
			"config.toml": "[broker]\nkind = \"redis\"\nurl = \"" + url + "\"\n\n" +
				"[[integration]]\nname = \"chat\"\npath = \"/chat\"\nscript = \"chat.lua\"\n",
		})
		src, err := os.ReadFile("scripts/chat.lua")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "chat.lua"), src, 0o644); err != nil {
			t.Fatal(err)
		}
		return filepath.Join(dir, "config.toml")
	}
	dead := project("redis://" + closedAddr(t) + "/0")
	code, stdout, stderr := runCmd(t, "check", "--config", dead)
	if code != 0 || !strings.Contains(stdout, "the redis broker was not contacted (check --broker connects to it)") {
		t.Errorf("without --broker: exit %d, stdout %q, stderr %q; want ok, saying the broker was not contacted", code, stdout, stderr)
	}
	code, stdout, stderr = runCmd(t, "check", "--config", dead, "--broker")
	if code != 1 || stdout != "" || !strings.Contains(stderr, "the connection was refused") {
		t.Errorf("--broker, nothing listening: exit %d, stdout %q, stderr %q; want exit 1, the connection refused", code, stdout, stderr)
	}
	if strings.Contains(stderr, "redis: ") && strings.Contains(stderr, "pool.go") {
		t.Errorf("go-redis wrote a line of its own:\n%s", stderr)
	}

	srv := redistest.New(t)
	code, stdout, stderr = runCmd(t, "check", "--broker", "--config", project(srv.URL))
	if code != 0 || !strings.Contains(stdout, "the redis broker at "+srv.URL+" answered") {
		t.Errorf("--broker, redis up: exit %d, stdout %q, stderr %q; want ok, the broker answered", code, stdout, stderr)
	}
}

// closedAddr is a loopback address nothing listens on (it did a moment ago).
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
