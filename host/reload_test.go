package host

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/electric-socket/electric-socket/host/config"
	"github.com/electric-socket/electric-socket/host/engine/enginetest"
	"github.com/electric-socket/electric-socket/luabridge"
	"github.com/electric-socket/electric-socket/tests/testkit"
)

const versionScript = `
local M = {}
function M.initial_authorisation(ch, m) return {} end
function M.process_websocket_message(ch, m, cd, bd) return { websocket_response = { version = %d } } end
return M
`

func newReloadApp(t *testing.T, watch bool) (*App, string, *testkit.LogBuffer) {
	t.Helper()
	dir := t.TempDir()
	script := filepath.Join(dir, "v.lua")
	if err := os.WriteFile(script, []byte(fmt.Sprintf(versionScript, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Lua.Watch = watch
	cfg.Lua.Debounce = 20 * time.Millisecond
	cfg.Integrations = []config.IntegrationConfig{{Name: "v", Path: "/v", Script: script}}
	logs := &testkit.LogBuffer{}
	app, err := NewApp(cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Watch(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		app.Shutdown(ctx)
	})
	return app, script, logs
}

// respond runs one message through the integration's current version, on
// the App's engine, and returns once the session is gone again.
func respond(t *testing.T, app *App) string {
	t.Helper()
	in := app.Integrations[0]
	before := app.Engine.Sessions()
	c := &enginetest.VConn{}
	s := app.Engine.Open(in, &luabridge.Channel{ID: "r"}, c)
	if s == nil {
		t.Fatal("engine closed")
	}
	s.Message([]byte(`{}`)) // the initial message: no response
	s.Message([]byte(`{}`))
	// The events run in order on the worker pool: once the second
	// message's response is there, both have run.
	testkit.Eventually(t, 10*time.Second, "the response", func() bool { return c.Pending() > 0 })
	got := c.Take()
	s.Closed()
	testkit.Eventually(t, 10*time.Second, "the session to end", func() bool { return app.Engine.Sessions() == before })
	if len(got) != 1 {
		t.Fatalf("sent %v", got)
	}
	return got[0]
}

func writeVersion(t *testing.T, path string, v int) {
	t.Helper()
	if err := os.WriteFile(path, []byte(fmt.Sprintf(versionScript, v)), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestWatchReloadsInPlaceWritesRenamesAndRecreations(t *testing.T) {
	app, script, logs := newReloadApp(t, true)
	in := app.Integrations[0]
	first := in.Script().Hash

	writeVersion(t, script, 2) // in place
	testkit.Eventually(t, 10*time.Second, "an in-place write to reload", func() bool { return in.Script().Hash != first })
	if got := respond(t, app); got != `{"version":2}` {
		t.Fatalf("after reload: %s", got)
	}
	// The line follows the switch: wait for it (bounded).
	testkit.Eventually(t, 10*time.Second, "the switch to be logged with the new version", func() bool {
		return strings.Contains(logs.String(), "version="+in.Script().Hash)
	})

	// An editor that saves by writing a new file and renaming it over.
	second := in.Script().Hash
	tmp := script + ".swp"
	if err := os.WriteFile(tmp, []byte(fmt.Sprintf(versionScript, 3)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, script); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "a rename-save to reload", func() bool { return in.Script().Hash != second })
	if got := respond(t, app); got != `{"version":3}` {
		t.Fatalf("after rename-save: %s", got)
	}

	// Deleted: the previous version keeps serving; created again: reloads.
	third := in.Script().Hash
	if err := os.Remove(script); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "the failed reload of a deleted file", func() bool { _, f := app.Reloads(); return f > 0 })
	if got := respond(t, app); got != `{"version":3}` {
		t.Fatalf("after delete: %s", got)
	}
	writeVersion(t, script, 4)
	testkit.Eventually(t, 10*time.Second, "a re-created file to reload", func() bool { return in.Script().Hash != third })
	if got := respond(t, app); got != `{"version":4}` {
		t.Fatalf("after re-create: %s", got)
	}
}

func TestBrokenSaveKeepsTheOldVersionAndNamesTheLine(t *testing.T) {
	app, script, logs := newReloadApp(t, true)
	in := app.Integrations[0]
	before := in.Script().Hash
	if err := os.WriteFile(script, []byte("local M = {}\nfunction M.x(\nreturn M\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "the broken save to be reported", func() bool { _, f := app.Reloads(); return f > 0 })
	if in.Script().Hash != before {
		t.Fatal("a broken version was switched to")
	}
	if got := respond(t, app); got != `{"version":1}` {
		t.Fatalf("the old version stopped serving: %s", got)
	}
	if !strings.Contains(logs.String(), "v.lua:3") || !strings.Contains(logs.String(), "reload failed") {
		t.Fatalf("the failure does not name file:line:\n%s", logs.String())
	}
	writeVersion(t, script, 5) // fixing it switches again
	testkit.Eventually(t, 10*time.Second, "the fixed save to reload", func() bool { return in.Script().Hash != before })
	if got := respond(t, app); got != `{"version":5}` {
		t.Fatalf("after the fix: %s", got)
	}
}

// Restoring a file after a broken save logs that the version serving loads
// again, so the last line about the script is no longer the failure.
func TestRestoredSaveAfterABrokenOneIsLogged(t *testing.T) {
	app, script, logs := newReloadApp(t, true)
	in := app.Integrations[0]
	before := in.Script().Hash
	if err := os.WriteFile(script, []byte("local M = {}\nfunction M.x(\nreturn M\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "the broken save to be reported", func() bool { _, f := app.Reloads(); return f > 0 })
	writeVersion(t, script, 1) // back to the version that serves
	const back = "reload ok: the script loads again"
	testkit.Eventually(t, 10*time.Second, "the restored save to be logged", func() bool { return strings.Contains(logs.String(), back) })
	var last string
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if strings.Contains(line, "reload") {
			last = line
		}
	}
	if !strings.Contains(last, back) || !strings.Contains(last, "integration=v") || !strings.Contains(last, "version="+before) {
		t.Fatalf("the last reload line is %q, want %q with integration=v version=%s\n%s", last, back, before, logs.String())
	}
	if in.Script().Hash != before {
		t.Fatal("the version changed")
	}
	if switched, _ := app.Reloads(); switched != 0 {
		t.Fatalf("%d switches counted for a file back to the version serving", switched)
	}
}

func TestReloadByCallAndWatchOff(t *testing.T) {
	app, script, _ := newReloadApp(t, false)
	in := app.Integrations[0]
	before := in.Script().Hash
	writeVersion(t, script, 7)
	if app.watcher != nil { // watching is off: nothing can reload on its own
		t.Fatal("a watcher runs with watch = false")
	}
	if in.Script().Hash != before {
		t.Fatal("reloaded with watch = false")
	}
	if err := app.Reload(); err != nil { // what SIGHUP does
		t.Fatal(err)
	}
	if got := respond(t, app); got != `{"version":7}` {
		t.Fatalf("after Reload: %s", got)
	}
	if err := os.WriteFile(script, []byte("return 1"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := app.Reload()
	if err == nil || !strings.Contains(err.Error(), "must return a table") {
		t.Fatalf("err = %v", err)
	}
	if got := respond(t, app); got != `{"version":7}` {
		t.Fatalf("a failed reload changed the version: %s", got)
	}
}

func TestHundredReloadsLeakNothing(t *testing.T) {
	app, script, _ := newReloadApp(t, true)
	in := app.Integrations[0]
	respond(t, app)
	runtime.GC()
	baseline := runtime.NumGoroutine()
	states := luabridge.LiveStates()
	for v := 10; v < 110; v++ {
		prev := in.Script().Hash
		writeVersion(t, script, v)
		testkit.Eventually(t, 10*time.Second, fmt.Sprintf("reload %d", v), func() bool { return in.Script().Hash != prev })
		if v%10 == 0 {
			if got := respond(t, app); got != fmt.Sprintf(`{"version":%d}`, v) {
				t.Fatalf("version %d answered %s", v, got)
			}
		}
	}
	if sw, _ := app.Reloads(); sw < 100 {
		t.Fatalf("%d reloads switched, want 100", sw)
	}
	testkit.Eventually(t, 10*time.Second, "goroutines to settle", func() bool {
		runtime.GC()
		return runtime.NumGoroutine() <= baseline+2
	})
	if n := luabridge.LiveStates(); n > states {
		t.Fatalf("%d Lua states alive after 100 reloads, %d before", n, states)
	}
	if n := len(app.watcher.fsw.WatchList()); n != 1 {
		t.Fatalf("%d watches, want 1 (the scripts' folder)", n)
	}
	if app.Engine.Sessions() != 0 {
		t.Fatalf("%d sessions left", app.Engine.Sessions())
	}
}

// syncWatcher waits (bounded) until app's watcher has handled every event
// of the files written so far in script's folder: it writes a file of its
// own there and waits for the watcher to reach its event.
func syncWatcher(t *testing.T, app *App, script string) {
	t.Helper()
	syncN++
	marker := filepath.Join(filepath.Dir(script), fmt.Sprintf("sync-%d.txt", syncN))
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "the watcher to reach "+marker, func() bool { return app.watcher.lastEvent() == marker })
}

var syncN int

// A good save is served as soon as it loads, not after the debounce: with
// a debounce of an hour, in-place writes and rename-saves still switch (only
// a quiet reload during the burst can have done it), and a broken save is
// neither switched to nor reported before the burst ends.
func TestGoodSaveSwitchesBeforeTheDebounce(t *testing.T) {
	app, script, logs := newReloadApp(t, false)
	app.Config.Lua.Watch = true
	app.Config.Lua.Debounce = time.Hour
	if err := app.Watch(); err != nil {
		t.Fatal(err)
	}
	in := app.Integrations[0]
	for v := 2; v <= 4; v++ {
		prev := in.Script().Hash
		writeVersion(t, script, v)
		testkit.Eventually(t, 10*time.Second, fmt.Sprintf("in-place save %d to switch", v), func() bool { return in.Script().Hash != prev })
		if got := respond(t, app); got != fmt.Sprintf(`{"version":%d}`, v) {
			t.Fatalf("after save %d: %s", v, got)
		}
		// The burst of this save is still open (an hour): wait for its
		// last event, so the next save starts a burst of its own.
		syncWatcher(t, app, script)
		app.watcher.endBursts()
	}
	prev := in.Script().Hash
	tmp := script + ".swp"
	if err := os.WriteFile(tmp, []byte(fmt.Sprintf(versionScript, 9)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, script); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "a rename-save to switch", func() bool { return in.Script().Hash != prev })
	syncWatcher(t, app, script)
	app.watcher.endBursts()

	prev = in.Script().Hash
	if err := os.WriteFile(script, []byte("local M = {}\nfunction M.x(\nreturn M\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	syncWatcher(t, app, script) // the quiet reloads have run and failed
	if in.Script().Hash != prev {
		t.Fatal("a broken save was switched to")
	}
	if _, f := app.Reloads(); f != 0 || strings.Contains(logs.String(), "reload failed") {
		t.Fatalf("a broken save was reported before its burst ended (%d failures):\n%s", f, logs.String())
	}
}
