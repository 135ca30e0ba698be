package host

import (
	"errors"
	"testing"
	"time"

	"github.com/electric-socket/electric-socket/tests/testkit"
)

// rollbackApp serves version 1 with rollback_after = after, counts calls
// of version 1 (prevCalls, prevErrs of them failed), then reloads version 2
// and returns the tracker of its integration.
func rollbackApp(t *testing.T, after, prevCalls, prevErrs int) (*App, *versions) {
	t.Helper()
	app, script, _ := newReloadApp(t, false)
	app.Config.Lua.RollbackAfter = after
	app.Config.Lua.RollbackWithin = time.Hour // the tests end the watch themselves
	if err := app.Watch(); err != nil {
		t.Fatal(err)
	}
	in := app.Integrations[0]
	v := app.tracked[in]
	if v == nil {
		t.Fatal("Watch does not track the versions")
	}
	calls(v, prevCalls, prevErrs)
	writeVersion(t, script, 2)
	if err := app.Reload(); err != nil {
		t.Fatal(err)
	}
	if respond(t, app) != `{"version":2}` {
		t.Fatal("version 2 does not serve")
	}
	return app, v
}

// calls reports n calls of the serving version, the first errs of them
// failed, as the engine does.
func calls(v *versions, n, errs int) {
	s := v.in.Script()
	for i := range n {
		var err error
		if i < errs {
			err = errors.New("boom")
		}
		v.observe(s, err)
	}
}

func TestRollbackJudgesAgainstThePreviousRate(t *testing.T) {
	for _, tc := range []struct {
		name                string
		prevCalls, prevErrs int
		after, calls, errs  int
		back                bool
	}{
		{"4 errors of 10 are too few", 100, 0, 10, 8, 4, false},
		{"5 of 20 is 25 points above 0", 100, 0, 20, 18, 5, true},
		{"60% is not 20 points above 50%", 100, 50, 20, 18, 12, false},
		{"75% is 25 points above 50%", 100, 50, 20, 18, 15, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app, v := rollbackApp(t, tc.after, tc.prevCalls, tc.prevErrs)
			// respond made 2 calls of version 2; the rest up to after here.
			calls(v, tc.calls, tc.errs)
			if tc.back {
				testkit.Eventually(t, 5*time.Second, "the rollback", func() bool { return app.Rollbacks() == 1 })
				if got := respond(t, app); got != `{"version":1}` {
					t.Fatalf("after the rollback: %s, want version 1", got)
				}
				return
			}
			v.mu.Lock()
			watching := v.watch != nil
			v.mu.Unlock()
			if watching || app.Rollbacks() != 0 {
				t.Fatalf("after %d calls: watching %v, rollbacks %d; want the version kept", tc.after, watching, app.Rollbacks())
			}
			if got := respond(t, app); got != `{"version":2}` {
				t.Fatalf("%s, want version 2 kept", got)
			}
		})
	}
}

// rollback_within ends the watch on what came: 6 failed calls of 6.
func TestRollbackWithinJudgesTheCallsThatCame(t *testing.T) {
	app, v := rollbackApp(t, 1000, 10, 0)
	calls(v, 6, 6)
	if app.Rollbacks() != 0 {
		t.Fatal("rolled back before the watch ended")
	}
	v.mu.Lock()
	w := v.watch
	v.mu.Unlock()
	v.timeUp(w)
	testkit.Eventually(t, 5*time.Second, "the rollback", func() bool { return app.Rollbacks() == 1 })
	if got := respond(t, app); got != `{"version":1}` {
		t.Fatalf("after the rollback: %s, want version 1", got)
	}
	// The rolled-back content is refused; other content loads.
	if err := app.Reload(); err == nil {
		t.Fatal("the rolled-back content was loaded again")
	}
}
