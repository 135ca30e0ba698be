package host

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/electric-socket/electric-socket/host/engine"
	"github.com/electric-socket/electric-socket/luabridge"
)

// A reload that undoes itself ([lua] rollback_after, rollback_within): after
// a switch the new version is watched over its first rollback_after calls
// (at most rollback_within). It is "clearly worse" than the version it
// replaced when it made at least rollbackMinErrors script errors and its
// error rate exceeds the previous version's by more than rollbackMargin
// (20 points): the host then switches back to the previous compiled version,
// logs both versions with the errors, counts it in
// electric_socket_reload_rollbacks_total, and refuses that content until the
// file holds something else.
const (
	rollbackMinErrors = 5
	rollbackMargin    = 0.20
	rollbackKeepErrs  = 5 // errors of the watched version kept for the log line
)

// versionStats counts the calls and script errors of the version serving.
type versionStats struct {
	script      *luabridge.Script
	calls, errs atomic.Int64
	watched     atomic.Bool
}

// versionWatch is a watch of a new version after a reload.
type versionWatch struct {
	stats     *versionStats
	prev      *luabridge.Script // kept compiled to switch back to
	prevCalls int64
	prevErrs  int64
	errs      []string // the first errors of the watched version
	timer     *time.Timer
	decided   bool
}

// versions tracks one integration's versions for the rollback.
type versions struct {
	a   *App
	in  *engine.Integration
	cur atomic.Pointer[versionStats]

	mu      sync.Mutex
	watch   *versionWatch // nil when no version is watched
	refused string        // the hash of a version rolled back (under the App's reloadMu)
}

// rollbackOn reports whether reloads are watched.
func (a *App) rollbackOn() bool { return a.Config.Lua.RollbackAfter > 0 }

// versionsOf returns in's tracker, starting it on first use (under
// reloadMu).
func (a *App) versionsOf(in *engine.Integration) *versions {
	if v := a.tracked[in]; v != nil {
		return v
	}
	if a.tracked == nil {
		a.tracked = map[*engine.Integration]*versions{}
	}
	v := &versions{a: a, in: in}
	st := &versionStats{script: in.Script()}
	v.cur.Store(st)
	in.Observe(v.observe)
	a.tracked[in] = v
	return v
}

// Rollbacks returns how many watched versions were switched back.
func (a *App) Rollbacks() int64 { return a.rollbacks.Load() }

// observe counts one call; on a watched version it decides as soon as the
// outcome is certain.
func (v *versions) observe(s *luabridge.Script, err error) {
	st := v.cur.Load()
	if st == nil || st.script != s {
		return // a call that started on an older version
	}
	n := st.calls.Add(1)
	e := st.errs.Load()
	if err != nil {
		e = st.errs.Add(1)
	}
	if !st.watched.Load() {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	w := v.watch
	if w == nil || w.stats != st || w.decided {
		return
	}
	if err != nil && len(w.errs) < rollbackKeepErrs {
		w.errs = append(w.errs, err.Error())
	}
	limit := int64(v.a.Config.Lua.RollbackAfter)
	switch {
	case w.worse(e, limit): // worse even if every call left succeeds
		v.decide(w, n, e, true)
	case n >= limit:
		v.decide(w, n, e, w.worse(e, n))
	}
}

// worse reports whether e errors in n calls are clearly worse than the
// previous version's rate.
func (w *versionWatch) worse(e, n int64) bool {
	if e < rollbackMinErrors || n == 0 {
		return false
	}
	prev := 0.0
	if w.prevCalls > 0 {
		prev = float64(w.prevErrs) / float64(w.prevCalls)
	}
	return float64(e)/float64(n) > prev+rollbackMargin
}

// decide ends the watch w (under v.mu): back to the previous version when
// back, else the new one is kept and the previous released.
func (v *versions) decide(w *versionWatch, n, e int64, back bool) {
	w.decided = true
	w.stats.watched.Store(false)
	if w.timer != nil {
		w.timer.Stop()
	}
	if !back {
		v.watch = nil
		w.prev.Close()
		return
	}
	// Off the caller's goroutine: a connection's call must not wait for
	// the reload lock.
	go v.a.rollback(v, w, n, e)
}

// timeUp ends the watch after rollback_within on what it has seen.
func (v *versions) timeUp(w *versionWatch) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.watch != w || w.decided {
		return
	}
	n, e := w.stats.calls.Load(), w.stats.errs.Load()
	v.decide(w, n, e, w.worse(e, n))
}

// startWatch watches s, which just replaced prev (under reloadMu). It
// ends the watch of an earlier version, if any.
func (v *versions) startWatch(s, prev *luabridge.Script) {
	old := v.cur.Load()
	st := &versionStats{script: s}
	v.mu.Lock()
	if w := v.watch; w != nil && !w.decided {
		w.decided = true
		w.stats.watched.Store(false)
		if w.timer != nil {
			w.timer.Stop()
		}
		w.prev.Close()
	}
	w := &versionWatch{stats: st, prev: prev, prevCalls: old.calls.Load(), prevErrs: old.errs.Load()}
	v.watch = w
	st.watched.Store(true)
	v.cur.Store(st)
	if d := v.a.Config.Lua.RollbackWithin; d > 0 {
		w.timer = time.AfterFunc(d, func() { v.timeUp(w) })
	}
	v.mu.Unlock()
}

// serving records that s serves, unwatched (under reloadMu).
func (v *versions) serving(s *luabridge.Script) {
	v.cur.Store(&versionStats{script: s})
}

// rollback switches in back to the version the watch w kept, unless
// another reload switched meanwhile.
func (a *App) rollback(v *versions, w *versionWatch, n, e int64) {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	v.mu.Lock()
	current := v.watch == w
	if current {
		v.watch = nil
	}
	v.mu.Unlock()
	bad := w.stats.script
	if !current || v.in.Script() != bad {
		w.prev.Close()
		return
	}
	v.in.Swap(w.prev)
	v.serving(w.prev)
	v.refused = bad.Hash
	prevRate := 0.0
	if w.prevCalls > 0 {
		prevRate = float64(w.prevErrs) / float64(w.prevCalls)
	}
	a.log.Error("reload rolled back: the new version's script errors were clearly worse; the previous version serves again",
		"integration", v.in.Name, "script", bad.Name, "version", bad.Hash, "previous", w.prev.Hash,
		"calls", n, "errors", e, "previous_calls", w.prevCalls, "previous_errors", w.prevErrs,
		"previous_error_rate", fmt.Sprintf("%.2f", prevRate),
		"first_errors", strings.Join(w.errs, " | "))
	a.rollbacks.Add(1) // after the line: who sees the count sees the line
	bad.Close()
}
