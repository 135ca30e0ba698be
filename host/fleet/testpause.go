//go:build estest

package fleet

import (
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// testPause is a hook for tests/fleet_test.go, compiled only into a binary
// built with -tags estest (the production binary has the no-op of
// testpause.go): after `after` on_close calls
// of dead instances' connections, this instance stops starting new ones
// for `wait`, once, and logs "test pause: cleaning paused" when the calls
// in flight have finished, so that the test can kill it there. It is set
// with the environment variable ELECTRIC_SOCKET_TEST_ORPHAN_PAUSE=
// "<after>:<wait>" (e.g. "5:3s") and does nothing when unset.
type testPause struct {
	after int
	wait  time.Duration

	mu     sync.Mutex
	done   int
	active int
	used   bool
	until  time.Time
}

func testPauseFromEnv(log *slog.Logger) *testPause {
	v := os.Getenv("ELECTRIC_SOCKET_TEST_ORPHAN_PAUSE")
	if v == "" {
		return &testPause{}
	}
	n, d, _ := strings.Cut(v, ":")
	after, err1 := strconv.Atoi(n)
	wait, err2 := time.ParseDuration(d)
	if err1 != nil || err2 != nil || after < 0 {
		log.Warn("ignoring ELECTRIC_SOCKET_TEST_ORPHAN_PAUSE: want <records>:<duration>", "value", v)
		return &testPause{}
	}
	return &testPause{after: after, wait: wait}
}

// gate is called before each on_close call; it holds the caller while the
// pause lasts.
func (p *testPause) gate() {
	if p.wait <= 0 {
		return
	}
	for {
		p.mu.Lock()
		wait := time.Until(p.until)
		if wait <= 0 {
			p.active++
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		time.Sleep(wait)
	}
}

// ran is called after each call gate let through; done says whether it ran.
func (p *testPause) ran(done bool, log *slog.Logger) {
	if p.wait <= 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.active--
	if done {
		p.done++
	}
	if p.used || p.done < p.after {
		return
	}
	p.used, p.until = true, time.Now().Add(p.wait)
	go func() {
		for {
			p.mu.Lock()
			idle, n := p.active == 0, p.done
			p.mu.Unlock()
			if idle {
				log.Warn("test pause: cleaning paused", "after", n, "for", p.wait)
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
}
