package tests

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/electric-socket/electric-socket/broker/redistest"
	"github.com/electric-socket/electric-socket/tests/testkit"
)

// runIn runs bin with args in dir (bounded) and returns its exit code and
// combined output.
func runIn(t *testing.T, dir, bin string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	return 0, string(out)
}

// serveIn starts `bin serve --listen addr` in dir and stops it with SIGTERM
// when the test ends; it returns once the server listens.
func serveIn(t *testing.T, dir, bin string, args ...string) *testkit.Process {
	t.Helper()
	return testkit.Serve(t, "serve", bin, dir, redisBound, args...)
}

func TestOneBinary(t *testing.T) {
	bin := testkit.Binary(t)

	t.Run("serves the embedded example with nothing beside it", func(t *testing.T) {
		empty := t.TempDir()
		in := serveIn(t, empty, bin)
		if !strings.Contains(in.Stderr.String(), "embedded") {
			t.Errorf("the log does not say the embedded example is served:\n%s", in.Stderr.String())
		}
		alice := loginAt(t, in.Addr, "alice", "lobby")
		bob := loginAt(t, in.Addr, "bob", "lobby")
		alice.Expect(map[string]any{"type": "joined", "user": "bob"})
		bob.Send(map[string]any{"type": "say", "text": "embedded"})
		alice.Expect(map[string]any{"type": "message", "from": "bob", "text": "embedded"})
		// check never falls back to the example: with no config.toml it fails.
		if code, out := runIn(t, empty, bin, "check"); code != 1 || !strings.Contains(out, "no configuration found") {
			t.Errorf("check with no config.toml: exit %d\n%s\nwant exit 1 and that no configuration was found", code, out)
		}
	})

	t.Run("a config on disk takes precedence", func(t *testing.T) {
		dir := t.TempDir()
		copyFile(t, filepath.Join("testdata", "reload_v.lua"), filepath.Join(dir, "reload_v.lua"))
		if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(reloadConfig), 0o644); err != nil {
			t.Fatal(err)
		}
		in := serveIn(t, dir, bin)
		c := testkit.Dial(t, "v", in.Addr, "/v")
		c.Send(map[string]any{})
		c.Expect(map[string]any{"type": "ready", "version": 1.0})
	})

	t.Run("init writes a project that tests, checks and serves as written", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "proj")
		code, out := runIn(t, ".", bin, "init", dir)
		if code != 0 {
			t.Fatalf("init: exit %d\n%s", code, out)
		}
		// The next commands it prints name this binary, and run as printed.
		_, next, _ := strings.Cut(out, "Next:\n")
		want := "  cd " + dir + "\n  " + bin + " test "
		if !strings.HasPrefix(next, want) || !strings.Contains(next, "  "+bin+" serve ") {
			t.Fatalf("init's next commands:\n%s\nwant them to start with %q and name %s serve", next, want, bin)
		}
		// Editor support: .luarc.json and the es module's annotations.
		luarc, err := os.ReadFile(filepath.Join(dir, ".luarc.json"))
		if err != nil || !strings.Contains(string(luarc), `"workspace.library": ["scripts/types"]`) {
			t.Errorf(".luarc.json: %v\n%s", err, luarc)
		}
		for _, f := range []string{"es.lua", "es/testing.lua"} {
			got, err := os.ReadFile(filepath.Join(dir, "scripts", "types", f))
			want, _ := os.ReadFile(filepath.Join("..", "scripts", "types", f))
			if err != nil || len(want) == 0 || string(got) != string(want) {
				t.Errorf("scripts/types/%s in the new project differs from the repository's (err %v)", f, err)
			}
		}
		code, out = runIn(t, dir, bin, "test")
		if code != 0 || !strings.Contains(out, "3 passed, 0 failed") {
			t.Fatalf("test in the new project: exit %d\n%s", code, out)
		}
		if code, out := runIn(t, dir, bin, "check"); code != 0 {
			t.Fatalf("check in the new project: exit %d\n%s", code, out)
		}
		if code, out := runIn(t, ".", bin, "init", dir); code == 0 || !strings.Contains(out, "already exists") {
			t.Fatalf("init over an existing project: exit %d\n%s", code, out)
		}
		in := serveIn(t, dir, bin)
		a := testkit.Dial(t, "ada", in.Addr, "/counter")
		a.Send(map[string]any{"name": "ada"})
		a.Expect(map[string]any{"type": "hello", "count": 0.0})
		b := testkit.Dial(t, "bob", in.Addr, "/counter")
		b.Send(map[string]any{"name": "bob"})
		b.Expect(map[string]any{"type": "hello"})
		b.Send(map[string]any{"op": "inc", "by": 5})
		b.Expect(map[string]any{"type": "count", "count": 5.0})
		a.Expect(map[string]any{"type": "count", "count": 5.0, "by": "bob"})
	})

	t.Run("SIGHUP reloads", func(t *testing.T) {
		dir := t.TempDir()
		script := filepath.Join(dir, "reload_v.lua")
		copyFile(t, filepath.Join("testdata", "reload_v.lua"), script)
		cfg := strings.Replace(reloadConfig, "watch = true", "watch = false", 1)
		if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		in := serveIn(t, dir, bin)
		c := testkit.Dial(t, "v", in.Addr, "/v")
		c.Send(map[string]any{})
		c.Expect(map[string]any{"type": "ready", "version": 1.0})
		src, _ := os.ReadFile(script)
		if err := os.WriteFile(script, []byte(strings.Replace(string(src), "local VERSION = 1", "local VERSION = 2", 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := in.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, waitBound, "the reload to be logged", func() bool { return strings.Contains(in.Stderr.String(), "msg=reloaded") })
		c.Send(map[string]any{"seq": 1})
		c.Expect(map[string]any{"version": 2.0, "count": 1.0})
	})
}

// SIGTERM with clients in rooms on the redis broker: on_close runs for each,
// so Redis holds no entity afterwards, every client gets 1001, and the
// process exits 0.
func TestShutdownCleansRedis(t *testing.T) {
	rs := redistest.New(t)
	bin := testkit.Binary(t)
	prefix := rs.Prefix(t)
	cfg := writeRedisConfig(t, rs.URL, prefix)
	in := startInstance(t, "a", bin, cfg)
	var clients []*testkit.Client
	for i, user := range []string{"alice", "bob", "carol", "dave"} {
		room := []string{"red", "blue"}[i%2]
		clients = append(clients, loginAt(t, in.Addr, user, room))
	}
	rdb := rs.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	keys, err := rdb.Keys(ctx, prefix+"*").Result()
	if err != nil || len(keys) != 2 {
		t.Fatalf("before shutdown: keys %v, err %v; want the two rooms", keys, err)
	}
	if err := in.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for _, c := range clients {
		select {
		case <-c.End():
		case <-time.After(redisBound):
			t.Fatalf("%s: not closed after SIGTERM", c.Name)
		}
		if st := websocket.CloseStatus(c.Err()); st != websocket.StatusGoingAway {
			t.Errorf("%s: ended with %v, want 1001", c.Name, c.Err())
		}
	}
	select {
	case <-in.Exited():
		if in.Err() != nil {
			t.Fatalf("exit: %v", in.Err())
		}
	case <-time.After(redisBound):
		t.Fatal("no exit after SIGTERM")
	}
	keys, err = rdb.Keys(ctx, prefix+"*").Result()
	if err != nil || len(keys) != 0 {
		t.Fatalf("after shutdown: keys %v, err %v; want none", keys, err)
	}
}
