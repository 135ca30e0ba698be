package testkit

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"
)

// WebhookEffect is one side effect as the webhook sink delivers it.
type WebhookEffect struct {
	ID          string          `json:"id"`
	Integration string          `json:"integration"`
	Channel     string          `json:"channel"`
	Function    string          `json:"function"`
	Effect      json.RawMessage `json:"effect"`
	Time        time.Time       `json:"time"`
}

// Webhook is a real HTTP server receiving the webhook sink's batches (a
// POST of {"effects": [...]} as application/json). It answers 503 to its
// first failFirst requests, holds requests while held (Hold, Release), and
// keeps what it accepted (answered 204) in arrival order.
type Webhook struct {
	URL string // where it listens
	srv *httptest.Server

	mu        sync.Mutex
	failFirst int
	requests  int
	held      chan struct{}
	waiting   int // requests held now
	got       []WebhookEffect
	batches   []int       // size of each accepted batch
	headers   http.Header // of the last request
}

// NewWebhook starts a receiver; it stops when the test ends.
func NewWebhook(t testing.TB, failFirst int) *Webhook {
	h := &Webhook{failFirst: failFirst}
	h.srv = httptest.NewServer(http.HandlerFunc(h.serve))
	h.URL = h.srv.URL
	t.Cleanup(h.srv.Close)
	return h
}

func (h *Webhook) serve(w http.ResponseWriter, r *http.Request) {
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
	body, err := io.ReadAll(r.Body)
	var batch struct{ Effects []WebhookEffect }
	if err != nil || r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" ||
		json.Unmarshal(body, &batch) != nil {
		http.Error(w, "bad batch", http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.requests++
	h.headers = r.Header.Clone()
	if h.requests <= h.failFirst {
		http.Error(w, "try later", http.StatusServiceUnavailable)
		return
	}
	h.got = append(h.got, batch.Effects...)
	h.batches = append(h.batches, len(batch.Effects))
	w.WriteHeader(http.StatusNoContent)
}

// Hold makes requests wait until Release.
func (h *Webhook) Hold() {
	h.mu.Lock()
	h.held = make(chan struct{})
	h.mu.Unlock()
}

// Held returns how many requests are held now.
func (h *Webhook) Held() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.waiting
}

// Release lets the held requests go on.
func (h *Webhook) Release() {
	h.mu.Lock()
	close(h.held)
	h.held = nil
	h.mu.Unlock()
}

// Effects returns the side effects accepted so far, in arrival order.
func (h *Webhook) Effects() []WebhookEffect {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.got)
}

// Batches returns the size of each accepted batch.
func (h *Webhook) Batches() []int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.batches)
}

// Requests returns how many batches were posted (failed ones included).
func (h *Webhook) Requests() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.requests
}

// Headers returns the headers of the last request.
func (h *Webhook) Headers() http.Header {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.headers.Clone()
}
