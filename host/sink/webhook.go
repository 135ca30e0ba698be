package sink

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"

	"github.com/electric-socket/electric-socket/host/config"
	"github.com/electric-socket/electric-socket/host/metrics"
)

// webhookSink POSTs side effects to a URL as a JSON batch,
//
//	{"effects": [{"id": "...", "integration": "chat", "channel": "...",
//	  "function": "on_close", "effect": {...}, "time": "..."}, ...]}
//
// with Content-Type application/json and the configured headers. Any 2xx
// reply accepts the batch; anything else (another status, a redirect, a
// network error, no reply within [sink] timeout) is a failed attempt, and
// the same batch is sent again after a backoff (see batcher). Receivers
// should drop effects whose id they have seen: at least once means a
// batch whose reply was lost comes again.
//
// Deliver and Close may be called concurrently.
type webhookSink struct {
	*batcher
	url     string
	shown   string // url without its password, for messages
	headers map[string]string
	client  *http.Client
}

func newWebhookSink(c config.SinkConfig, log *slog.Logger, m *metrics.Metrics) (*webhookSink, error) {
	u, err := url.Parse(c.URL)
	if err != nil {
		return nil, fmt.Errorf("webhook sink: %w", err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	w := &webhookSink{
		url: c.URL, shown: u.Redacted(), headers: c.Headers,
		client: &http.Client{
			Transport: tr,
			// a redirect is not an acceptance: it would turn the POST into a GET
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
	w.batcher = newBatcher("webhook", c, w.send, log, m)
	log.Info("side effects go to a webhook", "url", w.shown)
	return w, nil
}

// send POSTs one batch; nil means the receiver accepted it.
func (w *webhookSink) send(ctx context.Context, batch []deliveredEffect) error {
	body, err := json.Marshal(struct {
		Effects []deliveredEffect `json:"effects"`
	}{batch})
	if err != nil {
		return fmt.Errorf("encode batch: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "electric-socket")
	for k, v := range w.headers {
		req.Header.Set(k, v)
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w", w.shown, unwrapURLError(err))
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("POST %s: %s", w.shown, resp.Status)
	}
	return nil
}

// Close implements Closer.
func (w *webhookSink) Close(ctx context.Context) error {
	err := w.batcher.Close(ctx)
	w.client.CloseIdleConnections()
	return err
}

// unwrapURLError drops the *url.Error wrapper, whose text repeats the URL
// (with its password).
func unwrapURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}
