package tests

import (
	"context"
	"encoding/json"
	"errors"
	"github.com/electric-socket/electric-socket/tests/testkit"
	"strings"
	"sync"
	"testing"

	"github.com/coder/websocket"

	"github.com/electric-socket/electric-socket/broker"
)

// floodConfig serves testdata/flood.lua at /flood with the memory broker,
// the admin listener and the extra TOML given.
func floodConfig(extra string) string {
	return `
[server]
listen = "127.0.0.1:0"

[lua]
watch = false

[broker]
kind = "memory"
` + adminSection + extra + `
[[integration]]
name = "flood"
path = "/flood"
script = "flood.lua"
`
}

var floodTopic = broker.Topic{Namespace: "flood", Key: "f"}

// floodTo publishes n broker messages {"type":"m","i":i,"pad":pad} to the
// connections of user on the entity "f", as another instance would.
func floodTo(t *testing.T, s *server, user string, n int, pad string) {
	t.Helper()
	for i := 0; i < n; i++ {
		msg, _ := json.Marshal(map[string]any{"type": "m", "i": i, "pad": pad})
		env := broker.Envelope{Target: user, Message: msg, BrokerKey: "f", Source: "elsewhere"}
		if err := s.memory().Publish(context.Background(), floodTopic, env); err != nil {
			t.Fatal(err)
		}
	}
}

// expectSlowClose reads what slow's client gets until the end: broker
// messages, an error frame slow_client (if it gets through), then it must be
// close 1008 with the reason slow_client.
func expectSlowClose(t *testing.T, slow *testkit.Client) {
	t.Helper()
	_, err := slow.ReadUntilEnd(func(v map[string]any) bool {
		return v["type"] == "m" || (v["id"] == "error" && v["error"] == "slow_client")
	})
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.StatusPolicyViolation || ce.Reason != "slow_client" {
		t.Fatalf("slow client: connection ended with %v, want close 1008 slow_client", err)
	}
}

// checkSlowClosed checks what a connection closed as slow_client leaves:
// on_close ran once (watch hears of it, the entity counts it); the close
// is counted and logged once; the server serves watch on.
func checkSlowClosed(t *testing.T, s *server, admin string, watch *testkit.Client) {
	t.Helper()
	watch.Expect(map[string]any{"type": "left", "user": "slow"})
	var entity map[string]any
	if err := json.Unmarshal(s.memory().Get(floodTopic), &entity); err != nil || entity["closed"] != float64(1) {
		t.Errorf("entity %s (%v): want closed 1 (on_close ran once)", s.memory().Get(floodTopic), err)
	}
	checkSeries(t, scrape(t, admin), map[string]float64{
		`electric_socket_slow_client_closes_total{integration="flood"}`: 1,
	})
	if n := strings.Count(s.log.String(), `msg="client closed as slow"`); n != 1 {
		t.Errorf("%d log lines say the client was closed as slow, want 1", n)
	}
	if strings.Contains(s.log.String(), "broker message dropped") {
		t.Errorf("a broker message was dropped with a log line only")
	}
	for i := 0; i < 3; i++ {
		watch.Send(map[string]any{"n": i})
		watch.Expect(map[string]any{"type": "echo", "n": float64(i)})
	}
}

// floodPair logs in "watch" and "slow" at /flood.
func floodPair(s *server) (watch, slow *testkit.Client) {
	s.t.Helper()
	for _, user := range []string{"watch", "slow"} {
		c := s.dial("/flood")
		c.Name = user
		c.Conn.SetReadLimit(-1)
		c.Send(map[string]any{"user": user})
		c.Expect(map[string]any{"type": "welcome", "user": user})
		if user == "watch" {
			watch = c
		} else {
			slow = c
		}
	}
	return watch, slow
}

// A connection whose queue of broker messages is full (its script cannot
// keep up) is a slow client (SPEC 5.4, 5.8): it is closed at once with
// slow_client and 1008, on_close runs, and the close is counted and logged
// once; no broker message is dropped while it stays open. The test holds
// the entity's update, so the connection's calls wait while the broker
// messages arrive: 1,100 of them, over the queue's 1,024, while its client
// reads nothing.
func TestSlowClientBrokerBacklog(t *testing.T) {
	s := startServer(t, floodConfig(""))
	admin := s.serveAdmin()
	watch, slow := floodPair(s)

	held, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) }) // before the server's cleanup
	done := make(chan error, 1)
	go func() {
		done <- s.memory().Update(context.Background(), floodTopic, func([]byte, bool) ([]byte, broker.Op, error) {
			close(held)
			<-release
			return nil, broker.Abort, nil
		})
	}()
	<-held
	floodTo(t, s, "slow", 1100, "")
	// Closed at once, while its script still waits for the entity.
	expectSlowClose(t, slow)
	once.Do(func() { close(release) })
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	checkSlowClosed(t, s, admin, watch)
}

// A client that stops reading while broker messages flood it (1,000 of 48
// KiB, under the queue of 1,024: the script keeps up, the socket does not;
// 48 MiB in all, past what the kernel's buffers can hold here: tcp_rmem's
// 32 MiB at most, tcp_wmem's 4 MiB)
// is closed as slow_client once over [limits] max_queued_bytes (shipped
// default): 1008, on_close runs, counted and logged once.
func TestSlowClientStopsReading(t *testing.T) {
	s := startServer(t, floodConfig(""))
	admin := s.serveAdmin()
	watch, slow := floodPair(s)
	floodTo(t, s, "slow", 1000, strings.Repeat("x", 48<<10))
	expectSlowClose(t, slow)
	checkSlowClosed(t, s, admin, watch)
}
