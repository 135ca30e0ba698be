package testkit

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// WaitBound bounds every single wait of a Client: a dial, a write, the
// next message.
const WaitBound = 5 * time.Second

// Client is a WebSocket client for tests on github.com/coder/websocket (not
// the server's library). A goroutine reads its messages into a queue, so
// that waiting for one with a bound never closes the connection (a coder
// Read whose context ends does). Text messages are decoded as JSON
// objects; one that is not is queued as {"unparsable": text}, a binary one
// as {"binary": text}.
type Client struct {
	T    testing.TB
	Name string
	Conn *websocket.Conn
	msgs chan map[string]any
	end  chan struct{} // closed when the connection ended, after err is set
	err  error
}

// NewClient wraps conn and starts the goroutine that reads its messages
// into the queue.
func NewClient(t testing.TB, name string, conn *websocket.Conn) *Client {
	c := &Client{T: t, Name: name, Conn: conn, msgs: make(chan map[string]any, 1024), end: make(chan struct{})}
	go func() {
		defer close(c.end)
		for {
			typ, b, err := conn.Read(context.Background())
			if err != nil {
				c.err = err
				return
			}
			var v map[string]any
			switch {
			case typ != websocket.MessageText:
				v = map[string]any{"binary": string(b)}
			case json.Unmarshal(b, &v) != nil || v == nil:
				v = map[string]any{"unparsable": string(b)}
			}
			c.msgs <- v
		}
	}()
	return c
}

// Dial opens a WebSocket to ws://addr+path (path may hold a query), named
// name in failures; the connection is dropped when the test ends.
func Dial(t testing.TB, name, addr, path string) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), WaitBound)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, "ws://"+addr+path, nil)
	if err != nil {
		t.Fatalf("%s: dial %s%s: %v", name, addr, path, err)
	}
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	c := NewClient(t, name, conn)
	t.Cleanup(func() { conn.CloseNow() })
	return c
}

// Send writes v as one JSON text message.
func (c *Client) Send(v any) {
	c.T.Helper()
	if err := c.TrySend(v); err != nil {
		c.T.Fatalf("%s: write: %v", c.Name, err)
	}
}

// TrySend is Send that returns the write's error.
func (c *Client) TrySend(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return c.write(websocket.MessageText, b)
}

// SendRaw writes one message of type typ.
func (c *Client) SendRaw(typ websocket.MessageType, b []byte) {
	c.T.Helper()
	if err := c.write(typ, b); err != nil {
		c.T.Fatalf("%s: write: %v", c.Name, err)
	}
}

func (c *Client) write(typ websocket.MessageType, b []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), WaitBound)
	defer cancel()
	return c.Conn.Write(ctx, typ, b)
}

// Next returns the next message within bound, or nil with the reason.
func (c *Client) Next(bound time.Duration) (map[string]any, string) {
	select {
	case v := <-c.msgs:
		return v, ""
	default:
	}
	select {
	case v := <-c.msgs:
		return v, ""
	case <-c.end:
		select {
		case v := <-c.msgs:
			return v, ""
		default:
		}
		return nil, fmt.Sprintf("the connection ended: %v", c.err)
	case <-time.After(bound):
		return nil, fmt.Sprintf("nothing within %v", bound)
	}
}

// Read returns the next message within WaitBound; else the error that
// ended the connection (websocket.CloseStatus tells its close code), or
// one saying nothing came. A message that is not a JSON object is an
// error too.
func (c *Client) Read() (map[string]any, error) {
	v, why := c.Next(WaitBound)
	if v == nil {
		select {
		case <-c.end:
			return nil, c.err
		default:
			return nil, fmt.Errorf("%s", why)
		}
	}
	if b, ok := v["binary"]; ok && len(v) == 1 {
		return nil, fmt.Errorf("got a binary message: %q", b)
	}
	if u, ok := v["unparsable"]; ok && len(v) == 1 {
		return nil, fmt.Errorf("message is not a JSON object: %q", u)
	}
	return v, nil
}

// Recv returns the next message; it fails the test if none comes in time.
func (c *Client) Recv() map[string]any {
	c.T.Helper()
	v, err := c.Read()
	if err != nil {
		c.T.Fatalf("%s: recv: %v", c.Name, err)
	}
	return v
}

// Expect receives the next message and checks that it has every field of
// want, compared as JSON (so 1 and 1.0 are equal; other fields are
// allowed). It returns the whole message.
func (c *Client) Expect(want map[string]any) map[string]any {
	c.T.Helper()
	v, why := c.Next(WaitBound)
	if v == nil {
		c.T.Fatalf("%s: want %s: %s", c.Name, JSON(want), why)
	}
	if !HasFields(v, want) {
		c.T.Fatalf("%s: got %s, want %s", c.Name, JSON(v), JSON(want))
	}
	return v
}

// ExpectError receives an error frame {"id":"error","error":code,...} and
// returns its message, which must not be empty.
func (c *Client) ExpectError(code string) string {
	c.T.Helper()
	got := c.Expect(map[string]any{"id": "error", "error": code})
	msg, _ := got["message"].(string)
	if msg == "" {
		c.T.Errorf("%s: error frame without a message: %s", c.Name, JSON(got))
	}
	return msg
}

// ExpectClose reads until the connection ends and checks that it ended
// with a close frame of code; any message before it fails the test.
func (c *Client) ExpectClose(code websocket.StatusCode) {
	c.T.Helper()
	c.ExpectCloseAllowing(code, nil)
}

// ExpectCloseAllowing is ExpectClose that accepts messages for which allow
// returns true before the close, and returns them.
func (c *Client) ExpectCloseAllowing(code websocket.StatusCode, allow func(map[string]any) bool) []map[string]any {
	c.T.Helper()
	got, err := c.ReadUntilEnd(allow)
	if st := websocket.CloseStatus(err); st != code {
		c.T.Fatalf("%s: connection ended with %v (status %d), want close %d", c.Name, err, st, code)
	}
	return got
}

// ReadUntilEnd reads until the connection ends and returns the messages
// read and the error that ended it (websocket.CloseStatus tells its close
// code). A message allow rejects (every message if allow is nil) ends the
// read with an error naming it; so does WaitBound without a message.
func (c *Client) ReadUntilEnd(allow func(map[string]any) bool) ([]map[string]any, error) {
	var got []map[string]any
	for {
		v, err := c.Read()
		if err != nil {
			return got, err
		}
		if allow == nil || !allow(v) {
			return got, fmt.Errorf("got %s before the close", JSON(v))
		}
		got = append(got, v)
	}
}

// Open fails the test if the connection has ended.
func (c *Client) Open() {
	c.T.Helper()
	select {
	case <-c.end:
		c.T.Fatalf("%s: the connection ended: %v", c.Name, c.err)
	default:
	}
}

// End is closed once the connection has ended; Err then says how.
func (c *Client) End() <-chan struct{} { return c.end }

// Err is the error that ended the connection; nil while it is open.
func (c *Client) Err() error {
	select {
	case <-c.end:
		return c.err
	default:
		return nil
	}
}

// Until reads messages until one has every field of want, skipping others
// that skip accepts, within bound; it reports whether it found one. A
// message skip refuses, or the end of the connection, fails the test.
func (c *Client) Until(bound time.Duration, want map[string]any, skip func(map[string]any) bool) bool {
	c.T.Helper()
	deadline := time.Now().Add(bound)
	for {
		v, why := c.Next(time.Until(deadline))
		if v == nil {
			if strings.HasPrefix(why, "the connection ended") {
				c.T.Fatalf("%s: waiting for %s: %s", c.Name, JSON(want), why)
			}
			return false
		}
		if HasFields(v, want) {
			return true
		}
		if skip == nil || !skip(v) {
			c.T.Fatalf("%s: got %s while waiting for %s", c.Name, JSON(v), JSON(want))
		}
	}
}

// HasFields reports whether v has every field of want, compared as JSON.
func HasFields(v, want map[string]any) bool {
	for k, w := range want {
		if g, ok := v[k]; !ok || JSON(g) != JSON(w) {
			return false
		}
	}
	return true
}

// JSON is v as JSON text, for messages.
func JSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
