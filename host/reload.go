package host

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Reload compiles and checks the scripts of the given integrations again
// and switches each that loads to its new version (SPEC section 9): calls in
// flight finish on the old version, every later call, on live connections
// too, runs the new one. A script that fails keeps its previous version
// serving; every failure is returned and logged with its file:line.
func (a *App) Reload(ins ...*Integration) error {
	if len(ins) == 0 {
		ins = a.Integrations
	}
	var errs []error
	for _, in := range ins {
		if err := a.reload(in); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (a *App) reload(in *Integration) error {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	if in.Source == "" {
		return nil // embedded: nothing on disk to reload
	}
	s, err := loadScript(a.Config, in.Source)
	if err != nil {
		err = fmt.Errorf("integration %q: %w", in.Name, err)
		a.reloadFailures.Add(1)
		a.log.Error("reload failed; the previous version keeps serving", "integration", in.Name,
			"version", in.Script().Hash, "err", err)
		return err
	}
	old := in.Script()
	if old.Hash == s.Hash {
		s.Close()
		return nil
	}
	in.Swap(s)
	old.Close()
	a.reloads.Add(1)
	a.log.Info("reloaded", "integration", in.Name, "script", s.Name, "version", s.Hash, "previous", old.Hash)
	return nil
}

// Reloads returns how many reloads switched a version and how many failed.
func (a *App) Reloads() (switched, failed int64) { return a.reloads.Load(), a.reloadFailures.Load() }

// watcher reloads integrations when their script files change: in-place
// writes, editors that save by rename, new and deleted files. It watches the
// scripts' folders (a file replaced by rename is a new inode) and waits for a
// quiet period after a burst of events before reloading.
type watcher struct {
	app      *App
	fsw      *fsnotify.Watcher
	debounce time.Duration
	byFile   map[string][]*Integration // cleaned absolute path -> integrations
	log      *slog.Logger

	mu      sync.Mutex
	pending map[string]*time.Timer
	stopped bool
	done    chan struct{}
}

// Watch starts watching the scripts of every integration on disk; Close
// stops it. It is a no-op when [lua] watch is false.
func (a *App) Watch() error {
	if !a.Config.Lua.Watch {
		return nil
	}
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch scripts: %w", err)
	}
	w := &watcher{app: a, fsw: fsw, debounce: a.Config.Lua.Debounce, byFile: map[string][]*Integration{},
		log: a.log, pending: map[string]*time.Timer{}, done: make(chan struct{})}
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
		case err, ok := <-w.fsw.Errors:
			if !ok {
				return
			}
			w.log.Warn("script watcher", "err", err)
		}
	}
}

// schedule reloads p once no event has come for the debounce period.
func (w *watcher) schedule(p string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	if t := w.pending[p]; t != nil {
		t.Reset(w.debounce)
		return
	}
	w.pending[p] = time.AfterFunc(w.debounce, func() {
		w.mu.Lock()
		delete(w.pending, p)
		stopped := w.stopped
		w.mu.Unlock()
		if !stopped {
			w.app.Reload(w.byFile[p]...)
		}
	})
}

func (w *watcher) close() error {
	w.mu.Lock()
	w.stopped = true
	for p, t := range w.pending {
		t.Stop()
		delete(w.pending, p)
	}
	w.mu.Unlock()
	err := w.fsw.Close()
	<-w.done
	return err
}
