package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/electric-socket/electric-socket/broker"
	"github.com/electric-socket/electric-socket/broker/redistest"
)

// effectsConfig serves testdata/effects.lua at /effects with the memory
// broker (2 compare-and-set retries) and the [sink] given.
func effectsConfig(sink string) string {
	return `
[server]
listen = "127.0.0.1:0"

[lua]
watch = false

[broker]
kind = "memory"
max_retries = 2

` + sink + `

[[integration]]
name = "effects"
path = "/effects"
script = "effects.lua"
`
}

var fxTopic = broker.Topic{Namespace: "effects", Key: "fx"}

// effect is one side effect as a sink delivered it.
type effect struct {
	ID          string          `json:"id"`
	Integration string          `json:"integration"`
	Channel     string          `json:"channel"`
	Function    string          `json:"function"`
	Effect      json.RawMessage `json:"effect"`
	Time        time.Time       `json:"time"`
}

// hook is a real HTTP server receiving webhook batches: it fails its first
// failFirst requests with 503, holds requests while held, and keeps what
// it accepted in order.
type hook struct {
	srv *httptest.Server

	mu        sync.Mutex
	failFirst int
	requests  int
	held      chan struct{}
	waiting   int // requests held now
	got       []effect
}

func newHook(t *testing.T, failFirst int) *hook {
	h := &hook{failFirst: failFirst}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		held := h.held
		h.mu.Unlock()
		if held != nil {
			h.mu.Lock()
			h.waiting++
			h.mu.Unlock()
			select {
			case <-held:
			case <-r.Context().Done():
			}
			h.mu.Lock()
			h.waiting--
			h.mu.Unlock()
			if r.Context().Err() != nil {
				return
			}
		}
		body, _ := io.ReadAll(r.Body)
		var batch struct{ Effects []effect }
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" ||
			json.Unmarshal(body, &batch) != nil {
			http.Error(w, "bad batch", http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		h.requests++
		if h.requests <= h.failFirst {
			http.Error(w, "try later", http.StatusServiceUnavailable)
			return
		}
		h.got = append(h.got, batch.Effects...)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hook) hold() {
	h.mu.Lock()
	h.held = make(chan struct{})
	h.mu.Unlock()
}

func (h *hook) release() {
	h.mu.Lock()
	close(h.held)
	h.held = nil
	h.mu.Unlock()
}

// heldNow returns how many requests the hook holds now.
func (h *hook) heldNow() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.waiting
}

func (h *hook) effects() []effect {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.got)
}

// sink is the [sink] table of a webhook to h with short backoffs.
func (h *hook) sink() string {
	return fmt.Sprintf("[sink]\nkind = \"webhook\"\nurl = %q\nretry_backoff = \"10ms\"\nmax_backoff = \"50ms\"\n", h.srv.URL+"/effects")
}

// payloads returns the effects' JSON per channel, in delivery order,
// dropping redeliveries (an id seen before), as a receiver should.
func payloads(list []effect) map[string][]string {
	seen := map[string]bool{}
	out := map[string][]string{}
	for _, e := range list {
		if seen[e.ID] {
			continue
		}
		seen[e.ID] = true
		out[e.Channel] = append(out[e.Channel], string(e.Effect))
	}
	return out
}

// fxLogin dials /effects as user and checks the welcome.
func (s *server) fxLogin(user string) *client {
	s.t.Helper()
	c := s.dial("/effects")
	c.name = user
	c.send(map[string]any{"user": user})
	c.expect(map[string]any{"type": "welcome", "user": user})
	return c
}

// fx sends {"type":"fx","n":n} and checks the answer.
func (c *client) fx(n int) {
	c.t.Helper()
	c.send(map[string]any{"type": "fx", "n": n})
	c.expect(map[string]any{"type": "ok", "n": float64(n)})
}

// byUser groups delivered payloads by the user in them (the channel ids
// are random); it checks that each channel is one user.
func byUser(t *testing.T, list []effect) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for ch, ps := range payloads(list) {
		var first struct{ User string }
		json.Unmarshal([]byte(ps[0]), &first)
		for _, p := range ps {
			var e struct{ User string }
			json.Unmarshal([]byte(p), &e)
			if e.User != first.User {
				t.Errorf("channel %s delivered effects of %s and %s", ch, first.User, e.User)
			}
		}
		out[first.User] = ps
	}
	return out
}

// Exactly one delivery per committed call, in order per connection; none
// for an attempt that lost its compare-and-set, a call that ended in
// broker_conflict, a malformed action or a script error.
func TestWebhookOneDeliveryPerCommittedCall(t *testing.T) {
	h := newHook(t, 0)
	s := startServer(t, effectsConfig(h.sink()))
	alice := s.fxLogin("alice")
	for n := 1; n <= 5; n++ {
		alice.fx(n)
	}
	s.memory().ForceConflicts(fxTopic, 2) // runs three times, commits once
	alice.fx(6)
	s.memory().ForceConflicts(fxTopic, 3) // more than max_retries: nothing commits
	alice.send(map[string]any{"type": "fx", "n": 7})
	alice.expectError("broker_conflict")

	bob := s.fxLogin("bob")
	bob.send(map[string]any{"type": "malformed", "n": 8})
	bob.expectError("malformed_action")
	bob.expectClose(websocket.StatusInternalError)
	carol := s.fxLogin("carol")
	carol.send(map[string]any{"type": "error", "n": 9})
	carol.expectError("script_error")
	carol.expectClose(websocket.StatusInternalError)
	alice.conn.Close(websocket.StatusNormalClosure, "")

	want := map[string][]string{
		"alice": {`{"event":"join","user":"alice"}`, `{"n":1,"user":"alice"}`, `{"n":2,"user":"alice"}`,
			`{"n":3,"user":"alice"}`, `{"n":4,"user":"alice"}`, `{"n":5,"user":"alice"}`,
			`{"n":6,"user":"alice"}`, `{"event":"leave","user":"alice"}`},
		"bob":   {`{"event":"join","user":"bob"}`, `{"event":"leave","user":"bob"}`},
		"carol": {`{"event":"join","user":"carol"}`, `{"event":"leave","user":"carol"}`},
	}
	eventually(t, waitBound, "12 side effects at the webhook", func() bool { return len(h.effects()) >= 12 })
	s.waitIdle()
	time.Sleep(100 * time.Millisecond) // anything extra would arrive now
	got := h.effects()
	if len(got) != 12 {
		t.Errorf("%d deliveries, want 12: %v", len(got), got)
	}
	if g := byUser(t, got); !mapsEqual(g, want) {
		t.Errorf("delivered\n%v\nwant\n%v", g, want)
	}
	for _, e := range got {
		if e.Integration != "effects" || e.ID == "" || e.Time.IsZero() || e.Function == "" {
			t.Errorf("delivered %+v", e)
		}
	}
}

func mapsEqual(a, b map[string][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// A receiver that fails twice before accepting loses nothing: the batch is
// retried with backoff and every effect arrives, in order, once; the
// failures are logged.
func TestWebhookSurvivesAReceiverThatFailsTwice(t *testing.T) {
	h := newHook(t, 2)
	s := startServer(t, effectsConfig(h.sink()))
	alice := s.fxLogin("alice")
	for n := 1; n <= 3; n++ {
		alice.fx(n)
	}
	alice.conn.Close(websocket.StatusNormalClosure, "")
	eventually(t, waitBound, "5 side effects at the webhook", func() bool { return len(h.effects()) >= 5 })
	want := []string{`{"event":"join","user":"alice"}`, `{"n":1,"user":"alice"}`, `{"n":2,"user":"alice"}`,
		`{"n":3,"user":"alice"}`, `{"event":"leave","user":"alice"}`}
	if got := byUser(t, h.effects())["alice"]; !slices.Equal(got, want) {
		t.Errorf("delivered %v, want %v", got, want)
	}
	if n := strings.Count(s.log.String(), "side-effect delivery failed; retrying"); n != 2 {
		t.Errorf("%d retries logged, want 2:\n%s", n, s.log)
	}
}

// A receiver that does not answer does not slow the connections: their
// answers come at once while the effects wait in the sink's queue, and are
// delivered when it answers again.
func TestWebhookSlowReceiverDoesNotStallSessions(t *testing.T) {
	h := newHook(t, 0)
	h.hold()
	s := startServer(t, effectsConfig(h.sink()+"timeout = \"30s\"\n"))
	alice := s.fxLogin("alice")
	start := time.Now()
	for n := 1; n <= 20; n++ {
		alice.fx(n)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("20 messages took %v while the webhook was stalled", d)
	}
	if len(h.effects()) != 0 {
		t.Fatal("delivered while held")
	}
	h.release()
	eventually(t, waitBound, "21 side effects", func() bool { return len(h.effects()) == 21 })
	got := byUser(t, h.effects())["alice"]
	for n := 1; n <= 20; n++ {
		if want := fmt.Sprintf(`{"n":%d,"user":"alice"}`, n); got[n] != want {
			t.Fatalf("effect %d = %s, want %s", n, got[n], want)
		}
	}
}

// streamEntries reads the whole stream: one map of fields per entry.
func streamEntries(t *testing.T, r *redistest.Server, stream string) []map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	msgs, err := r.Client(t).XRange(ctx, stream, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := make([]map[string]any, len(msgs))
	for i, m := range msgs {
		out[i] = m.Values
	}
	return out
}

func streamEffects(entries []map[string]any) []string {
	var out []string
	for _, e := range entries {
		s, _ := e["effect"].(string)
		out = append(out, s)
	}
	return out
}

// The redis_stream sink: one XADD per committed call's side effect, none
// for a retried attempt or a failed call, in order, with the stream capped
// at max_len entries.
func TestRedisStreamSink(t *testing.T) {
	r := redistest.New(t)
	stream := r.Prefix(t) + "effects"
	s := startServer(t, effectsConfig(fmt.Sprintf("[sink]\nkind = \"redis_stream\"\nurl = %q\nstream = %q\nmax_len = 5\n",
		r.URL, stream)))
	alice := s.fxLogin("alice")
	for n := 1; n <= 3; n++ {
		alice.fx(n)
	}
	eventually(t, waitBound, "4 stream entries", func() bool { return len(streamEntries(t, r, stream)) == 4 })
	first := streamEntries(t, r, stream)
	if got, want := streamEffects(first), []string{`{"event":"join","user":"alice"}`, `{"n":1,"user":"alice"}`,
		`{"n":2,"user":"alice"}`, `{"n":3,"user":"alice"}`}; !slices.Equal(got, want) {
		t.Fatalf("stream %v, want %v", got, want)
	}
	e := first[1]
	if e["integration"] != "effects" || e["function"] != "process_websocket_message" || e["id"] == "" || e["time"] == "" || e["channel"] == "" {
		t.Errorf("entry fields %v", e)
	}

	for n := 4; n <= 6; n++ {
		alice.fx(n)
	}
	s.memory().ForceConflicts(fxTopic, 2)
	alice.fx(7)
	s.memory().ForceConflicts(fxTopic, 3)
	alice.send(map[string]any{"type": "fx", "n": 8})
	alice.expectError("broker_conflict")
	alice.send(map[string]any{"type": "malformed", "n": 9})
	alice.expectError("malformed_action")
	alice.expectClose(websocket.StatusInternalError)
	want := []string{`{"n":4,"user":"alice"}`, `{"n":5,"user":"alice"}`, `{"n":6,"user":"alice"}`,
		`{"n":7,"user":"alice"}`, `{"event":"leave","user":"alice"}`}
	eventually(t, waitBound, "the leave effect in the stream", func() bool {
		got := streamEffects(streamEntries(t, r, stream))
		return len(got) > 0 && got[len(got)-1] == want[len(want)-1]
	})
	s.waitIdle()
	time.Sleep(100 * time.Millisecond)
	if got := streamEffects(streamEntries(t, r, stream)); !slices.Equal(got, want) {
		t.Errorf("stream (max_len 5) %v, want %v", got, want)
	}
}

// Effects survive a Redis that is down: they wait in the queue, are
// retried, and land once it is back.
func TestRedisStreamSinkSurvivesRedisDown(t *testing.T) {
	r := redistest.NewLocal(t)
	stream := "effects"
	s := startServer(t, effectsConfig(fmt.Sprintf("[sink]\nkind = \"redis_stream\"\nurl = %q\nstream = %q\nretry_backoff = \"20ms\"\nmax_backoff = \"100ms\"\ntimeout = \"500ms\"\n",
		r.URL, stream)))
	alice := s.fxLogin("alice")
	eventually(t, waitBound, "the join in the stream", func() bool { return len(streamEntries(t, r, stream)) == 1 })
	r.Stop(t)
	for n := 1; n <= 3; n++ {
		alice.fx(n) // the memory broker does not need Redis
	}
	eventually(t, waitBound, "a failed attempt", func() bool {
		return strings.Contains(s.log.String(), "side-effect delivery failed; retrying")
	})
	r.Start(t) // empty again: no persistence
	want := []string{`{"n":1,"user":"alice"}`, `{"n":2,"user":"alice"}`, `{"n":3,"user":"alice"}`}
	eventually(t, 3*waitBound, "the queued effects in the stream", func() bool {
		return len(streamEntries(t, r, stream)) == 3
	})
	if got := streamEffects(streamEntries(t, r, stream)); !slices.Equal(got, want) {
		t.Errorf("stream %v, want %v", got, want)
	}
}
