package tests

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/electric-socket/electric-socket/broker"
	"github.com/electric-socket/electric-socket/tests/testkit"
)

// reloadConfig serves testdata/reload_v.lua with watching on.
const reloadConfig = `
[server]
listen = "127.0.0.1:0"

[lua]
watch = true

[broker]
kind = "memory"

[[integration]]
name = "v"
path = "/v"
script = "reload_v.lua"
`

// startWatched is startServer with the script watcher running.
func startWatched(t *testing.T) (*server, string) {
	t.Helper()
	s := startServer(t, reloadConfig)
	if err := s.app.Watch(); err != nil {
		t.Fatal(err)
	}
	return s, filepath.Join(s.dir, "reload_v.lua")
}

// writeVersion rewrites the script as version v, the way an editor saves:
// a new file renamed over the old one when rename is set, in place
// otherwise (the new text written over the old, then the file cut to its
// length: it is never empty or half written, so no reload can fail on it
// however the test is scheduled; the report of a half-written save is
// host's TestBrokenSaveKeepsTheOldVersionAndNamesTheLine). It waits until
// the server serves the new content.
func writeVersion(t *testing.T, s *server, path string, v int, rename bool) {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := string(src)
	i := strings.Index(text, "local VERSION = ")
	j := i + strings.Index(text[i:], "\n")
	text = text[:i] + fmt.Sprintf("local VERSION = %d", v) + text[j:]
	before := s.app.Integrations[0].Script().Hash
	if rename {
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	} else {
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, werr := f.WriteAt([]byte(text), 0)
		terr := f.Truncate(int64(len(text)))
		if err := errors.Join(werr, terr, f.Close()); err != nil {
			t.Fatal(err)
		}
	}
	testkit.Eventually(t, waitBound, fmt.Sprintf("version %d to serve", v), func() bool {
		return s.app.Integrations[0].Script().Hash != before
	})
}

func TestReloadReachesLiveConnections(t *testing.T) {
	s, path := startWatched(t)
	c := s.dial("/v")
	c.Send(map[string]any{})
	c.Expect(map[string]any{"type": "ready", "version": 1.0})
	c.Send(map[string]any{"seq": 1})
	c.Expect(map[string]any{"version": 1.0, "count": 1.0})

	writeVersion(t, s, path, 2, false)
	c.Send(map[string]any{"seq": 2})
	c.Expect(map[string]any{"version": 2.0, "count": 2.0}) // same connection, channel data kept

	writeVersion(t, s, path, 3, true) // an editor that saves by rename
	c.Send(map[string]any{"seq": 3})
	c.Expect(map[string]any{"version": 3.0, "count": 3.0})

	var shared struct{ Total int }
	json.Unmarshal(s.memory().Get(struct2topic("v", "shared")), &shared)
	if shared.Total != 3 {
		t.Fatalf("broker data total = %d, want 3 (kept across reloads)", shared.Total)
	}
}

func TestBrokenSaveKeepsServingAndIsReported(t *testing.T) {
	s, path := startWatched(t)
	c := s.dial("/v")
	c.Send(map[string]any{})
	c.Expect(map[string]any{"type": "ready"})
	if err := os.WriteFile(path, []byte("local M = {}\nfunction M.initial_authorisation(\nreturn M\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, waitBound, "the failed reload", func() bool { _, failed := s.app.Reloads(); return failed > 0 })
	c.Send(map[string]any{"seq": 1})
	c.Expect(map[string]any{"version": 1.0, "count": 1.0})
	if logs := s.log.String(); !strings.Contains(logs, "reload_v.lua:3") || !strings.Contains(logs, "reload failed") {
		t.Fatalf("the failure is not logged with file:line:\n%s", logs)
	}
	copyFile(t, filepath.Join("testdata", "reload_v.lua"), path+".fixed")
	if err := os.Rename(path+".fixed", path); err != nil {
		t.Fatal(err)
	}
	writeVersion(t, s, path, 9, false)
	c.Send(map[string]any{"seq": 2})
	c.Expect(map[string]any{"version": 9.0, "count": 2.0})
}

// 20 reloads while 50 clients send continuously: no message lost, no
// connection closed, versions only move forward, channel and broker data kept.
func TestReloadsUnderTrafficLoseNothing(t *testing.T) {
	s, path := startWatched(t)
	const clients, reloads = 50, 20
	conns := make([]*testkit.Client, clients)
	for i := range conns {
		conns[i] = s.dial("/v")
		conns[i].Send(map[string]any{})
		conns[i].Expect(map[string]any{"type": "ready"})
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	sent := make([]int, clients)
	errs := make(chan error, clients)
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := 0.0
			for seq := 1; ; seq++ {
				select {
				case <-stop:
					if seq > 5 {
						return
					}
				default:
				}
				if err := c.TrySend(map[string]any{"seq": seq}); err != nil {
					errs <- fmt.Errorf("client %d: send %d: %v", i, seq, err)
					return
				}
				v, err := c.Read()
				if err != nil {
					errs <- fmt.Errorf("client %d: message %d: %v", i, seq, err)
					return
				}
				if v["seq"] != float64(seq) || v["count"] != float64(seq) {
					errs <- fmt.Errorf("client %d: sent %d, got %s", i, seq, testkit.JSON(v))
					return
				}
				version, _ := v["version"].(float64)
				if version < last {
					errs <- fmt.Errorf("client %d: version went back from %v to %v", i, last, version)
					return
				}
				last = version
				sent[i] = seq
			}
		}()
	}
	for v := 2; v < 2+reloads; v++ {
		writeVersion(t, s, path, v, v%2 == 0)
	}
	close(stop)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("the clients did not finish")
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	total := 0
	for _, n := range sent {
		total += n
	}
	var shared struct{ Total int }
	json.Unmarshal(s.memory().Get(struct2topic("v", "shared")), &shared)
	if shared.Total != total {
		t.Fatalf("broker total %d, want %d answered messages", shared.Total, total)
	}
	if sw, failed := s.app.Reloads(); sw != reloads || failed != 0 {
		t.Fatalf("reloads: %d switched, %d failed; want %d and 0", sw, failed, reloads)
	}
	if n := s.app.Engine.Sessions(); n != clients {
		t.Fatalf("%d sessions open, want %d: a reload closed connections", n, clients)
	}
	// Every client is still connected and answered by the last version.
	for i, c := range conns {
		c.Send(map[string]any{"seq": sent[i] + 1})
		c.Expect(map[string]any{"version": float64(1 + reloads)})
	}
}

func struct2topic(namespace, key string) broker.Topic {
	return broker.Topic{Namespace: namespace, Key: key}
}
