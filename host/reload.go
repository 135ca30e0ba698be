package host

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/electric-socket/electric-socket/host/engine"
	"github.com/fsnotify/fsnotify"
)

// Reload compiles and checks the scripts of the given integrations again
// and switches each that loads to its new version (SPEC section 9): calls in
// flight finish on the old version, every later call, on live connections
// too, runs the new one. A script that fails keeps its previous version
// serving; every failure is returned and logged with its file:line.
func (a *App) Reload(ins ...*engine.Integration) error {
	if len(ins) == 0 {
		ins = a.Integrations
	}
	var errs []error
	for _, in := range ins {
		if err := a.reload(in, false); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// reload switches in to its script on disk if that loads. A quiet reload
// (the watcher's attempt in the middle of a burst of events, when the file
// may be half written) neither logs nor counts a failure: the reload at the
// end of the burst does.
func (a *App) reload(in *engine.Integration, quiet bool) error {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	if in.Source == "" {
		return nil // embedded: nothing on disk to reload
	}
	s, err := loadScript(a.Config, in.Name, in.Source, a.log)
	if err != nil {
		err = fmt.Errorf("integration %q: %w", in.Name, err)
		if quiet {
			return err
		}
		if a.reloadFailing == nil {
			a.reloadFailing = map[*engine.Integration]bool{}
		}
		a.reloadFailing[in] = true
		a.log.Error("reload failed; the previous version keeps serving", "integration", in.Name,
			"version", in.Script().Hash, "err", err)
		a.reloadFailures.Add(1) // after the line: who sees the count sees the line
		return err
	}
	var v *versions
	if a.rollbackOn() {
		v = a.versionsOf(in)
		if v.refused != "" && v.refused == s.Hash {
			s.Close()
			err := fmt.Errorf("integration %q: version %s of %s was rolled back; it is not loaded again until the file changes",
				in.Name, s.Hash, s.Name)
			if !quiet {
				a.log.Warn("reload refused; the previous version keeps serving", "integration", in.Name,
					"script", s.Name, "refused", s.Hash, "version", in.Script().Hash)
				a.refusals.Add(1)
			}
			return err
		}
		v.refused = "" // the file changed
	}
	failing := a.reloadFailing[in]
	delete(a.reloadFailing, in)
	old := in.Script()
	if old.Hash == s.Hash {
		s.Close()
		if failing {
			// The file is back to the version that serves: say so, or the
			// last line logged would still be the failure.
			a.log.Info("reload ok: the script loads again; its version keeps serving", "integration", in.Name,
				"script", s.Name, "version", s.Hash)
		}
		return nil
	}
	in.Swap(s)
	if v != nil {
		v.startWatch(s, old) // old stays compiled until the watch ends
	} else {
		old.Close()
	}
	a.reloads.Add(1)
	a.log.Info("reloaded", "integration", in.Name, "script", s.Name, "version", s.Hash, "previous", old.Hash)
	return nil
}

// Reloads returns how many reloads switched a version and how many failed.
func (a *App) Reloads() (switched, failed int64) { return a.reloads.Load(), a.reloadFailures.Load() }

// watcher reloads integrations when their script files change: in-place
// writes, editors that save by rename, new and deleted files. It watches the
// scripts' folders (a file replaced by rename is a new inode).
//
// A save is served as soon as the file loads: each event of a burst tries a
// quiet reload until one switches (a rename-save, or the write that
// completes an in-place save, switches at once), and once the file has been
// quiet for the debounce period a last reload switches to what the burst
// left or reports why it does not load. So the debounce delays only the
// report of a broken save, never a good one.
type watcher struct {
	app      *App
	fsw      *fsnotify.Watcher
	debounce time.Duration
	byFile   map[string][]*engine.Integration // cleaned absolute path -> integrations
	log      *slog.Logger

	mu      sync.Mutex
	pending map[string]*burst
	stopped bool
	last    string // the path of the last event handled (tests sync on it)
	done    chan struct{}
}

// Watch starts watching the scripts of every integration on disk; Close
// stops it. It is a no-op when [lua] watch is false.
//
// With [lua] rollback_after on it also starts counting each version's calls
// and errors (watching on or off: SIGHUP reloads are watched too), so that
// the first reload is compared with them (rollback.go).
func (a *App) Watch() error {
	if a.rollbackOn() {
		a.reloadMu.Lock()
		for _, in := range a.Integrations {
			if in.Source != "" {
				a.versionsOf(in)
			}
		}
		a.reloadMu.Unlock()
	}
	if !a.Config.Lua.Watch {
		return nil
	}
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch scripts: %w", err)
	}
	w := &watcher{app: a, fsw: fsw, debounce: a.Config.Lua.Debounce, byFile: map[string][]*engine.Integration{},
		log: a.log, pending: map[string]*burst{}, done: make(chan struct{})}
	if w.debounce <= 0 {
		w.debounce = 100 * time.Millisecond
	}
	dirs := map[string]bool{}
	for _, in := range a.Integrations {
		if in.Source == "" {
			continue
		}
		p, err := filepath.Abs(in.Source)
		if err != nil {
			fsw.Close()
			return err
		}
		w.byFile[p] = append(w.byFile[p], in)
		dirs[filepath.Dir(p)] = true
	}
	for d := range dirs {
		if err := fsw.Add(d); err != nil {
			fsw.Close()
			return fmt.Errorf("watch %s: %w", d, err)
		}
	}
	a.watcher = w
	go w.run()
	a.log.Info("watching scripts for changes", "folders", len(dirs))
	return nil
}

func (w *watcher) run() {
	defer close(w.done)
	for {
		select {
		case ev, ok := <-w.fsw.Events:
			if !ok {
				return
			}
			p := filepath.Clean(ev.Name)
			if _, ok := w.byFile[p]; ok && ev.Op != fsnotify.Chmod {
				w.schedule(p)
			}
			w.mu.Lock()
			w.last = p
			w.mu.Unlock()
		case err, ok := <-w.fsw.Errors:
			if !ok {
				return
			}
			w.log.Warn("script watcher", "err", err)
		}
	}
}

// burst is the state of one file's burst of events.
type burst struct {
	timer    *time.Timer // the reload at the end of the burst
	switched bool        // a quiet reload switched during the burst
	attempts int         // quiet reloads tried
}

// maxQuietAttempts bounds the quiet reloads of one burst: a file written in
// many small pieces is not compiled once per piece.
const maxQuietAttempts = 8

// schedule handles an event on p: a quiet reload until one switches, and
// a reload once no event has come for the debounce period.
func (w *watcher) schedule(p string) {
	w.mu.Lock()
	if w.stopped {
		w.mu.Unlock()
		return
	}
	b := w.pending[p]
	if b == nil {
		b = &burst{}
		w.pending[p] = b
		b.timer = time.AfterFunc(w.debounce, func() {
			w.mu.Lock()
			delete(w.pending, p)
			stopped := w.stopped
			w.mu.Unlock()
			if !stopped {
				w.app.Reload(w.byFile[p]...)
			}
		})
	} else {
		b.timer.Reset(w.debounce)
	}
	try := !b.switched && b.attempts < maxQuietAttempts
	if try {
		b.attempts++
	}
	w.mu.Unlock()
	if !try {
		return
	}
	ok := true
	for _, in := range w.byFile[p] {
		if w.app.reload(in, true) != nil {
			ok = false
		}
	}
	if ok {
		w.mu.Lock()
		b.switched = true
		w.mu.Unlock()
	}
}

// lastEvent returns the path of the last event handled: events are handled
// in order, one at a time, so once a file written after others shows here,
// the events of those are handled too (with their quiet reloads).
func (w *watcher) lastEvent() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}

// endBursts forgets every open burst without its final reload (tests use
// it with a long debounce, so that each save starts a burst of its own).
func (w *watcher) endBursts() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for p, b := range w.pending {
		b.timer.Stop()
		delete(w.pending, p)
	}
}

func (w *watcher) close() error {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
	w.endBursts()
	err := w.fsw.Close()
	<-w.done
	return err
}
