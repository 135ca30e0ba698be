package tests

import (
	"context"
	"errors"
	"github.com/electric-socket/electric-socket/tests/testkit"
	"strings"
	"testing"

	"github.com/coder/websocket"
)

// rateConfig is floodConfig with the [limits] and [server] lines given.
func rateConfig(limits, server string) string {
	return strings.Replace(floodConfig("\n[limits]\n"+limits+"\n"), "[server]\n", "[server]\n"+server, 1)
}

// echoLogin logs user in at /flood.
func echoLogin(s *server, user string) *testkit.Client {
	s.t.Helper()
	c := s.dial("/flood")
	c.Name = user
	c.Send(map[string]any{"user": user})
	c.Expect(map[string]any{"type": "welcome", "user": user})
	return c
}

// roundTrips sends {"n":i} and reads its echo, one in flight, n times; it
// returns how many echoes came back, in order, and the error that ended
// the connection, if one did.
func roundTrips(c *testkit.Client, n int) (int, error) {
	for i := 0; i < n; i++ {
		if err := c.Conn.Write(c.T.Context(), websocket.MessageText, []byte(`{"n":`+itoa(i)+`}`)); err != nil {
			return i, err
		}
		v, err := c.Read()
		if err != nil {
			return i, err
		}
		if v["type"] != "echo" || v["n"] != float64(i) {
			if v["id"] == "error" {
				_, err := c.ReadUntilEnd(nil)
				return i, err
			}
			c.T.Fatalf("%s: answer %d is %s, want echo %d", c.Name, i, testkit.JSON(v), i)
		}
	}
	return n, nil
}

func itoa(i int) string { return testkit.JSON(i) }

// Over [limits] message_rate an honest client doing request/response (one
// message in flight, answered at once) is throttled by default: the server
// stops reading it until its bucket refills; every message is answered, in
// order, and the connection stays open. With rate_action = "close" the same
// client is closed with rate_limited and 1008, as before; with
// rate_close_after it is closed once it has stayed over the rate that long.
func TestRateLimitThrottles(t *testing.T) {
	const n = 30 // at 20/s after a burst of 2: some 1.4 s of throttling
	limits := "message_rate = 20\nmessage_burst = 2\n"

	t.Run("throttle (default)", func(t *testing.T) {
		s := startServer(t, rateConfig(limits, ""))
		c := echoLogin(s, "fast")
		if got, err := roundTrips(c, n); got != n || err != nil {
			t.Fatalf("%d of %d answers, then %v: want every answer and the connection open", got, n, err)
		}
		if got, err := roundTrips(c, 1); got != 1 || err != nil {
			t.Fatalf("after the throttled run: %v", err)
		}
	})

	t.Run("throttle, a reader goroutine per connection", func(t *testing.T) {
		s := startServer(t, rateConfig(limits, "idle_poll = false\n"))
		c := echoLogin(s, "fast")
		if got, err := roundTrips(c, n); got != n || err != nil {
			t.Fatalf("%d of %d answers, then %v: want every answer and the connection open", got, n, err)
		}
	})

	t.Run("rate_action close", func(t *testing.T) {
		s := startServer(t, rateConfig(limits+"rate_action = \"close\"\n", ""))
		c := echoLogin(s, "fast")
		got, err := roundTrips(c, n)
		if st := websocket.CloseStatus(err); got == n || st != websocket.StatusPolicyViolation {
			t.Fatalf("%d of %d answers, then %v: want close 1008 rate_limited before the end", got, n, err)
		}
		// The login spent a token: at most the rest of the burst, and
		// whatever refilled meanwhile, was served.
		t.Logf("closed after %d answers", got)
		echoLogin(s, "after") // the server serves on
	})

	t.Run("rate_close_after", func(t *testing.T) {
		s := startServer(t, rateConfig(limits+"rate_close_after = \"300ms\"\n", ""))
		c := echoLogin(s, "fast")
		got, err := roundTrips(c, n)
		var ce websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.StatusPolicyViolation || ce.Reason != "rate_limited" {
			t.Fatalf("%d of %d answers, then %v: want close 1008 rate_limited once over the rate for 300ms", got, n, err)
		}
		if got < 2 {
			t.Errorf("closed after %d answers: it was not throttled first", got)
		}
	})

	// A throttled client's pongs wait unread with the rest of its input:
	// it is not closed for pong_timeout (here much shorter than a wait for
	// a token, 250 ms).
	t.Run("pings while throttled", func(t *testing.T) {
		s := startServer(t, rateConfig("message_rate = 4\nmessage_burst = 1\n",
			"ping_interval = \"50ms\"\npong_timeout = \"50ms\"\n"))
		c := echoLogin(s, "fast")
		if got, err := roundTrips(c, 6); got != 6 || err != nil {
			t.Fatalf("%d of 6 answers, then %v: want every answer and the connection open", got, err)
		}
	})
}

// A connection throttled for long (one message per 100 s) does not hold up
// the server's shutdown: its client gets 1001 and on_close runs, in poll
// mode and with a reader goroutine per connection.
func TestRateLimitThrottledShutdown(t *testing.T) {
	for _, server := range []string{"", "idle_poll = false\n"} {
		t.Run("idle_poll="+strings.TrimSpace(strings.TrimPrefix(server, "idle_poll =")), func(t *testing.T) {
			s := startServer(t, rateConfig("message_rate = 0.01\nmessage_burst = 1\n", server))
			c := echoLogin(s, "slow")      // spends its only token
			c.Send(map[string]any{"n": 1}) // waits 100 s for a token
			ctx, cancel := context.WithTimeout(context.Background(), waitBound)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- s.app.Shutdown(ctx) }()
			if _, err := c.ReadUntilEnd(nil); websocket.CloseStatus(err) != websocket.StatusGoingAway {
				t.Fatalf("throttled client: connection ended with %v, want 1001", err)
			}
			if err := <-done; err != nil {
				t.Fatalf("shutdown with a throttled connection: %v", err)
			}
		})
	}
}
