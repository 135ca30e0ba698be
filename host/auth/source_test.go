package auth

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/golang-jwt/jwt/v5"
)

// authServer is the upgrade path the host is meant to follow (see the
// package documentation): verify before the upgrade and answer 401, or
// upgrade and verify the first message; then send the claims as JSON, or
// an error frame and close 1008.
func authServer(t *testing.T, v *Verifier) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := v.FromRequest(r)
		deferred := errors.Is(err, ErrMissing) && v.ReadsFirstMessage()
		if err != nil && !deferred {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			w.Write(errorBody(err))
			return
		}
		conn, rw, _, err := ws.HTTPUpgrader{Protocol: AcceptSubprotocol}.Upgrade(r, w)
		if err != nil {
			return
		}
		defer conn.Close()
		if deferred {
			msg, err := wsutil.ReadClientText(rw)
			if err != nil {
				return
			}
			if c, err = v.FromMessage(r.Context(), msg); err != nil {
				wsutil.WriteServerText(conn, errorBody(err))
				ws.WriteFrame(conn, ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusPolicyViolation, "unauthenticated")))
				return
			}
		}
		wsutil.WriteServerText(conn, c.JSON)
		ws.WriteFrame(conn, ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, "")))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func errorBody(err error) []byte {
	var e *Error
	errors.As(err, &e)
	b, _ := json.Marshal(map[string]string{"id": "error", "error": "unauthenticated", "reason": string(e.Reason), "message": ClientMessage(err)})
	return b
}

// dial opens a WebSocket with coder/websocket and returns the first text
// message, the subprotocol chosen, or the HTTP status and body of a refusal.
func dial(t *testing.T, u string, opts *websocket.DialOptions, first string) (msg, proto string, status int, body string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(u, "http"), opts)
	if err != nil {
		if resp == nil {
			t.Fatalf("dial: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		return "", "", resp.StatusCode, string(b)
	}
	defer c.CloseNow()
	if first != "" {
		if err := c.Write(ctx, websocket.MessageText, []byte(first)); err != nil {
			t.Fatalf("write: %v", err)
		}
	}
	_, data, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(data), c.Subprotocol(), http.StatusSwitchingProtocols, ""
}

func TestTokenSources(t *testing.T) {
	testKeys(t)
	v := newVerifier(t, Options{
		HMACSecret: testSecret, BearerHeader: true, Subprotocol: true,
		QueryParam: "access_token", Cookie: "es_session", MessageField: "token",
	})
	srv := authServer(t, v)
	good := sign(t, jwt.SigningMethodHS256, testSecret, "", claims(map[string]any{"sub": "bob"}))
	expired := sign(t, jwt.SigningMethodHS256, testSecret, "", claims(map[string]any{"exp": time.Now().Add(-time.Hour).Unix()}))
	header := func(k, v string) *websocket.DialOptions {
		return &websocket.DialOptions{HTTPHeader: http.Header{k: {v}}}
	}

	for _, tc := range []struct {
		name   string
		query  string
		opts   *websocket.DialOptions
		first  string
		status int
		want   string // in the claims JSON or the refusal body
		proto  string
	}{
		{"Authorization header", "", header("Authorization", "Bearer "+good), "", 101, `"sub":"bob"`, ""},
		{"bearer in lower case", "", header("Authorization", "bearer "+good), "", 101, `"sub":"bob"`, ""},
		{"subprotocol", "", &websocket.DialOptions{Subprotocols: []string{Subprotocol, SubprotocolPrefix + good}}, "", 101, `"sub":"bob"`, Subprotocol},
		{"subprotocol, token offered first", "", &websocket.DialOptions{Subprotocols: []string{SubprotocolPrefix + good, "graphql-ws", Subprotocol}}, "", 101, `"sub":"bob"`, Subprotocol},
		{"query", "?access_token=" + url.QueryEscape(good), nil, "", 101, `"sub":"bob"`, ""},
		{"cookie", "", header("Cookie", "es_session="+good), "", 101, `"sub":"bob"`, ""},
		{"first message", "", nil, `{"token":"` + good + `","hello":1}`, 101, `"sub":"bob"`, ""},
		{"header before query", "?access_token=" + expired, header("Authorization", "Bearer "+good), "", 101, `"sub":"bob"`, ""},
		{"expired in the query", "?access_token=" + expired, nil, "", 401, `"reason":"expired"`, ""},
		{"expired in the subprotocol", "", &websocket.DialOptions{Subprotocols: []string{Subprotocol, SubprotocolPrefix + expired}}, "", 401, `"reason":"expired"`, ""},
		{"two subprotocol tokens", "", &websocket.DialOptions{Subprotocols: []string{SubprotocolPrefix + good, SubprotocolPrefix + good}}, "", 401, "more than one", ""},
		{"tampered cookie", "", header("Cookie", "es_session="+tamper(t, good, claims(map[string]any{"sub": "admin"}))), "", 401, `"reason":"bad_signature"`, ""},
		{"oversized query token", "?access_token=" + strings.Repeat("A", 10000), nil, "", 401, `"reason":"too_large"`, ""},
		{"first message without the field", "", nil, `{"hello":1}`, 101, `"reason":"missing"`, ""},
		{"first message field not a string", "", nil, `{"token":42}`, 101, `"reason":"malformed"`, ""},
		{"first message, expired", "", nil, `{"token":"` + expired + `"}`, 101, `"reason":"expired"`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg, proto, status, body := dial(t, srv.URL+"/chat"+tc.query, tc.opts, tc.first)
			if status != tc.status {
				t.Fatalf("status %d (body %q); want %d", status, body, tc.status)
			}
			if got := msg + body; !strings.Contains(got, tc.want) {
				t.Fatalf("got %q; want %q in it", got, tc.want)
			}
			if proto != tc.proto {
				t.Fatalf("subprotocol %q; want %q", proto, tc.proto)
			}
		})
	}
}

// Without MessageField, a handshake without a token is refused before the
// upgrade, and the message says where the token goes; a source that is not
// enabled is not read.
func TestMissingToken(t *testing.T) {
	testKeys(t)
	v := newVerifier(t, Options{HMACSecret: testSecret, QueryParam: "access_token", Subprotocol: true})
	srv := authServer(t, v)
	good := sign(t, jwt.SigningMethodHS256, testSecret, "", claims(nil))
	_, _, status, body := dial(t, srv.URL, &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + good}}}, "")
	if status != http.StatusUnauthorized {
		t.Fatalf("token in a source that is not enabled: status %d", status)
	}
	for _, want := range []string{`"reason":"missing"`, `query parameter \"access_token\"`, `es.token.\u003ctoken\u003e`} {
		if !strings.Contains(body, want) {
			t.Fatalf("body %s lacks %s", body, want)
		}
	}
	if _, err := v.FromMessage(context.Background(), []byte(`{"token":"`+good+`"}`)); !errors.Is(err, ErrMissing) {
		t.Fatalf("FromMessage without MessageField: %v; want ErrMissing", err)
	}
}
