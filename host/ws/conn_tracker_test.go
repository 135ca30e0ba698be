package ws

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/electric-socket/electric-socket/broker"
	"github.com/electric-socket/electric-socket/host/engine"
	"github.com/electric-socket/electric-socket/host/sink"
	"github.com/electric-socket/electric-socket/luabridge"
	"github.com/electric-socket/electric-socket/tests/testkit"
)

// Once the wait has begun, no connection is added to it.
func TestConnTrackerRefusesAfterClose(t *testing.T) {
	var tr connTracker
	if !tr.add() {
		t.Fatal("add before close refused")
	}
	waited := make(chan struct{})
	go func() { tr.closeAndWait(); close(waited) }()
	testkit.Eventually(t, 10*time.Second, "closeAndWait to refuse new connections", func() bool {
		if tr.add() {
			tr.done()
			return false
		}
		return true
	})
	select {
	case <-waited:
		t.Fatal("closeAndWait returned while a connection was still counted")
	default:
	}
	tr.done()
	select {
	case <-waited:
	case <-time.After(waitBound):
		t.Fatal("closeAndWait did not return after the last connection ended")
	}
}

// A Shutdown that starts as soon as the client has read its 101, before
// the handler has gone on: the connection is counted before the upgrade,
// so Shutdown waits for it and closes it, and under -race the count is
// never added to while it is being waited on (the CI failure of
// TestHostileConnectionCaps: a WaitGroup.Add after the 101 raced with
// Shutdown's Wait).
func TestShutdownRightAfterUpgrade(t *testing.T) {
	script, err := luabridge.Load("echo.lua", []byte(testkit.EchoScript), luabridge.Options{})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for i := range 50 {
		e := newEngine(broker.NewMemory(0), sink.Log{Log: log}, log, engine.Options{})
		srv := NewServer(e, []*engine.Integration{engine.NewIntegration("echo", "/echo", script)}, Options{}, log)
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go srv.Serve(l)
		nc, err := net.DialTimeout("tcp", l.Addr().String(), waitBound)
		if err != nil {
			t.Fatal(err)
		}
		nc.SetDeadline(time.Now().Add(waitBound))
		br, resp, err := testkit.RawUpgrade(nc, "/echo")
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("round %d: handshake %v %v", i, resp, err)
		}
		shut := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), waitBound)
			defer cancel()
			shut <- srv.Shutdown(ctx, 0)
		}()
		c := &rawClient{t: t, nc: nc, br: br}
		c.expectClose(engine.CloseGoingAway)
		c.write(control(0x8, closeBody(1000, "")))
		c.expectEOF()
		if err := <-shut; err != nil {
			t.Errorf("round %d: Shutdown: %v", i, err)
		}
		nc.Close()
	}
}

// Upgrades that race with Shutdown (the client has read its 101 before
// the handler went on) are all either closed by the shutdown or refused
// with 503: Shutdown returns, and no client is left open. Under -race this
// also checks that the count of connections is never added to while it is
// being waited on (the CI failure of TestHostileConnectionCaps).
func TestShutdownRacesUpgrades(t *testing.T) {
	script, err := luabridge.Load("echo.lua", []byte(testkit.EchoScript), luabridge.Options{})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	e := newEngine(broker.NewMemory(0), sink.Log{Log: log}, log, engine.Options{})
	srv := NewServer(e, []*engine.Integration{engine.NewIntegration("echo", "/echo", script)}, Options{}, log)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	go srv.Serve(l)

	var upgraded, ended atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				nc, err := net.DialTimeout("tcp", addr, waitBound)
				if err != nil {
					return // the listener is closed
				}
				nc.SetDeadline(time.Now().Add(waitBound))
				br, resp, err := testkit.RawUpgrade(nc, "/echo")
				if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
					nc.Close()
					continue
				}
				upgraded.Add(1)
				// Read until the server closes: a close frame then EOF.
				wg.Go(func() {
					defer nc.Close()
					if _, err := io.Copy(io.Discard, br); err == nil {
						ended.Add(1)
					}
				})
			}
		})
	}
	testkit.Eventually(t, 10*time.Second, "some upgrades", func() bool { return upgraded.Load() >= 20 })
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitBound)
	defer cancel()
	if err := srv.Shutdown(ctx, 0); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	close(stop)
	wg.Wait()
	if u, d := upgraded.Load(), ended.Load(); u != d {
		t.Errorf("%d clients upgraded, %d were closed by the server (the rest hit the deadline)", u, d)
	}
}
