package ws

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/electric-socket/electric-socket/broker"
	"github.com/electric-socket/electric-socket/host/auth"
	"github.com/electric-socket/electric-socket/host/engine"
	"github.com/electric-socket/electric-socket/host/sink"
	"github.com/electric-socket/electric-socket/luabridge"
	"github.com/electric-socket/electric-socket/tests/testkit"
)

// authScript prints each call it gets (so a test sees whether a refused
// client reached it) and answers with what it knows of the client.
const authScript = `
local es = require("es")
local M = {}
function M.initial_authorisation(ch, m)
  print("called initial_authorisation")
  return {}
end
function M.broker_authorisation(ch, cd, bd)
  return { websocket_response = { sub = ch.claims and ch.claims.sub or es.null, addr = ch.remote_addr } }
end
function M.process_websocket_message(ch, m, cd, bd)
  print("called process_websocket_message")
  return { websocket_response = { sub = ch.claims and ch.claims.sub or es.null } }
end
function M.on_close(ch, cd) print("called on_close " .. tostring(ch.claims and ch.claims.sub)) end
return M
`

var hsSecret = []byte("0123456789abcdef0123456789abcdef-test-only")

// scriptLog keeps what the script printed.
type scriptLog struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (l *scriptLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *scriptLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// authServer serves authScript at each path with its verifier.
func authServer(t *testing.T, opts Options, verifiers map[string]auth.Options) (string, *scriptLog) {
	return authServerTB(t, opts, verifiers)
}

// authServerB is authServer for a benchmark, with /plain (no verifier) too.
func authServerB(b *testing.B, verifiers map[string]auth.Options) (string, *scriptLog) {
	verifiers["/plain"] = auth.Options{}
	return authServerTB(b, Options{}, verifiers)
}

func authServerTB(t testing.TB, opts Options, verifiers map[string]auth.Options) (string, *scriptLog) {
	t.Helper()
	out := &scriptLog{}
	log := slog.New(slog.NewTextHandler(out, nil))
	var ins []*engine.Integration
	for path, o := range verifiers {
		script, err := luabridge.Load("auth.lua", []byte(authScript), luabridge.Options{Log: log})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(script.Close)
		in := engine.NewIntegration(strings.Trim(path, "/"), path, script)
		if path != "/plain" {
			v, err := auth.New(o)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(v.Close)
			in.Auth = v
		}
		ins = append(ins, in)
	}
	e := newEngine(broker.NewMemory(0), sink.Log{Log: log}, log, engine.Options{})
	srv := NewServer(e, ins, opts, slog.New(slog.NewTextHandler(io.Discard, nil)))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx, 0)
	})
	return l.Addr().String(), out
}

func signTok(t *testing.T, m jwt.SigningMethod, key any, kid string, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func goodClaims(extra map[string]any) jwt.MapClaims {
	c := jwt.MapClaims{"sub": "alice", "iss": "https://id.test", "aud": "chat", "exp": time.Now().Add(time.Hour).Unix()}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

// dialTok opens path with tok in the query ("query") or the subprotocol
// ("subprotocol"); on a refusal it returns the status and body.
func dialTok(t *testing.T, addr, path, tok, via string, hdr http.Header) (*testkit.Client, int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testkit.WaitBound)
	defer cancel()
	o := &websocket.DialOptions{HTTPHeader: hdr}
	u := "ws://" + addr + path
	switch via {
	case "query":
		u += "?token=" + tok
	case "subprotocol":
		o.Subprotocols = []string{"es", "es.token." + tok}
	}
	conn, resp, err := websocket.Dial(ctx, u, o)
	if err != nil {
		if resp == nil {
			t.Fatalf("dial %s: %v", u, err)
		}
		b, _ := io.ReadAll(resp.Body)
		return nil, resp.StatusCode, string(b)
	}
	if via == "subprotocol" && conn.Subprotocol() != "es" {
		t.Errorf("subprotocol echoed %q, want \"es\"", conn.Subprotocol())
	}
	c := testkit.NewClient(t, "client", conn)
	t.Cleanup(func() { conn.CloseNow() })
	return c, 0, ""
}

func hsOptions() auth.Options {
	return auth.Options{HMACSecret: hsSecret, Issuer: "https://id.test", Audience: []string{"chat"}, QueryParam: "token", Subprotocol: true}
}

// TestHandshakeTokens: each bad token is refused 401 with its reason before
// the upgrade, in the query and in the subprotocol; nothing reaches the
// script; a good token's claims do, and the server serves it throughout.
func TestHandshakeTokens(t *testing.T) {
	addr, out := authServer(t, Options{}, map[string]auth.Options{"/hs": hsOptions()})
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	good := signTok(t, jwt.SigningMethodHS256, hsSecret, "", goodClaims(nil))
	parts := strings.Split(good, ".")
	forged, _ := json.Marshal(goodClaims(map[string]any{"sub": "admin"}))
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(forged) + "." + parts[2]
	none := signTok(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "", goodClaims(nil))
	for _, tc := range []struct{ name, tok, reason string }{
		{"missing", "", "no token"},
		{"alg none", none, `algorithm "none" is not accepted`},
		{"tampered payload", tampered, "signature does not verify"},
		{"other key", signTok(t, jwt.SigningMethodHS256, []byte("another-secret-of-at-least-32-bytes!!"), "", goodClaims(nil)), "signature does not verify"},
		{"RS256 where HS256 is expected", signTok(t, jwt.SigningMethodRS256, rsaKey, "", goodClaims(nil)), `algorithm "RS256" is not accepted`},
		{"expired", signTok(t, jwt.SigningMethodHS256, hsSecret, "", goodClaims(map[string]any{"exp": time.Now().Add(-time.Hour).Unix()})), "expired"},
		{"not yet valid", signTok(t, jwt.SigningMethodHS256, hsSecret, "", goodClaims(map[string]any{"nbf": time.Now().Add(time.Hour).Unix()})), "not valid before"},
		{"wrong issuer", signTok(t, jwt.SigningMethodHS256, hsSecret, "", goodClaims(map[string]any{"iss": "https://evil.test"})), "issuer"},
		{"wrong audience", signTok(t, jwt.SigningMethodHS256, hsSecret, "", goodClaims(map[string]any{"aud": "billing"})), "not meant for this service"},
		{"no exp", signTok(t, jwt.SigningMethodHS256, hsSecret, "", goodClaims(map[string]any{"exp": nil})), "no exp claim"},
		{"oversized", signTok(t, jwt.SigningMethodHS256, hsSecret, "", goodClaims(map[string]any{"pad": strings.Repeat("x", 9000)})), "over the limit"},
	} {
		for _, via := range []string{"query", "subprotocol"} {
			if tc.tok == "" && via == "subprotocol" {
				continue
			}
			_, status, body := dialTok(t, addr, "/hs", tc.tok, via, nil)
			if status != http.StatusUnauthorized || !strings.Contains(body, "unauthenticated: ") || !strings.Contains(body, tc.reason) {
				t.Errorf("%s via %s: status %d body %q; want 401 with %q", tc.name, via, status, body, tc.reason)
			}
			if strings.Contains(body, string(hsSecret)) {
				t.Errorf("%s: the body names the key", tc.name)
			}
		}
	}
	if strings.Contains(out.String(), "called") {
		t.Fatalf("a refused client reached the script:\n%s", out)
	}
	for _, via := range []string{"query", "subprotocol"} {
		c, status, body := dialTok(t, addr, "/hs", good, via, nil)
		if c == nil {
			t.Fatalf("good token via %s: %d %q", via, status, body)
		}
		c.Send(map[string]any{"hello": 1})
		c.Expect(map[string]any{"sub": "alice"})
		c.Send(map[string]any{"again": 1})
		c.Expect(map[string]any{"sub": "alice"})
	}
}

// TestFirstMessageToken: a token in the first message is verified before
// initial_authorisation; a bad one is closed 1008 unauthenticated with the
// reason, and the script never runs.
func TestFirstMessageToken(t *testing.T) {
	o := hsOptions()
	o.QueryParam, o.Subprotocol, o.MessageField = "", false, "token"
	addr, out := authServer(t, Options{}, map[string]auth.Options{"/msg": o})
	bad := testkit.Dial(t, "bad", addr, "/msg")
	bad.Send(map[string]any{"token": signTok(t, jwt.SigningMethodHS256, hsSecret, "", goodClaims(map[string]any{"aud": "billing"}))})
	if msg := bad.ExpectError("unauthenticated"); !strings.Contains(msg, "not meant for this service") {
		t.Errorf("message %q", msg)
	}
	bad.ExpectClose(websocket.StatusPolicyViolation)
	none := testkit.Dial(t, "none", addr, "/msg")
	none.Send(map[string]any{"hello": 1})
	none.ExpectError("unauthenticated")
	none.ExpectClose(websocket.StatusPolicyViolation)
	if strings.Contains(out.String(), "called") {
		t.Fatalf("a refused client reached the script:\n%s", out)
	}
	good := testkit.Dial(t, "good", addr, "/msg")
	good.Send(map[string]any{"token": signTok(t, jwt.SigningMethodHS256, hsSecret, "", goodClaims(nil))})
	good.Expect(map[string]any{"sub": "alice"})
}

// TestTokenExpiryCloses: at exp the connection is closed 1008 token_expired
// and on_close runs; with KeepAfterExpiry it stays open.
func TestTokenExpiryCloses(t *testing.T) {
	keep := hsOptions()
	keep.KeepAfterExpiry = true
	addr, out := authServer(t, Options{}, map[string]auth.Options{"/hs": hsOptions(), "/keep": keep})
	soon := signTok(t, jwt.SigningMethodHS256, hsSecret, "", goodClaims(map[string]any{"exp": time.Now().Add(3 * time.Second).Unix()}))
	kept, _, _ := dialTok(t, addr, "/keep", soon, "query", nil)
	c, status, body := dialTok(t, addr, "/hs", soon, "query", nil)
	if c == nil || kept == nil {
		t.Fatalf("dial: %d %q", status, body)
	}
	c.Send(map[string]any{"hello": 1})
	c.Expect(map[string]any{"sub": "alice"})
	kept.Send(map[string]any{"hello": 1})
	kept.Expect(map[string]any{"sub": "alice"})
	c.ExpectError("token_expired")
	c.ExpectClose(websocket.StatusPolicyViolation)
	testkit.Eventually(t, testkit.WaitBound, "on_close ran", func() bool { return strings.Contains(out.String(), "called on_close alice") })
	// The kept connection outlived the token: it still answers.
	kept.Send(map[string]any{"again": 1})
	kept.Expect(map[string]any{"sub": "alice"})
}

// TestJWKSRotationThroughServer: an RS256 JWKS served over TLS; a kid
// published after start is fetched on first sight; an HS256 token signed
// with the public key is refused; with the JWKS down the cached keys keep
// verifying.
func TestJWKSRotationThroughServer(t *testing.T) {
	k1, _ := rsa.GenerateKey(rand.Reader, 2048)
	k2, _ := rsa.GenerateKey(rand.Reader, 2048)
	var mu sync.Mutex
	status, keys := http.StatusOK, []*rsa.PrivateKey{k1}
	js := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if status != http.StatusOK {
			http.Error(w, "down", status)
			return
		}
		set := jwkset.JWKSMarshal{}
		for i, k := range keys {
			j, err := jwkset.NewJWKFromKey(&k.PublicKey, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: []string{"k1", "k2"}[i], ALG: jwkset.AlgRS256}})
			if err != nil {
				t.Error(err)
			}
			set.Keys = append(set.Keys, j.Marshal())
		}
		json.NewEncoder(w).Encode(set)
	}))
	t.Cleanup(js.Close)
	pool := x509.NewCertPool()
	pool.AddCert(js.Certificate())
	o := auth.Options{JWKSURL: js.URL + "/jwks.json", JWKSRootCAs: pool, QueryParam: "token", Subprotocol: true}
	addr, out := authServer(t, Options{}, map[string]auth.Options{"/rs": o})

	c, st, body := dialTok(t, addr, "/rs", signTok(t, jwt.SigningMethodRS256, k1, "k1", goodClaims(nil)), "subprotocol", nil)
	if c == nil {
		t.Fatalf("k1: %d %q", st, body)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: must(x509.MarshalPKIXPublicKey(&k1.PublicKey))})
	_, st, body = dialTok(t, addr, "/rs", signTok(t, jwt.SigningMethodHS256, pubPEM, "k1", goodClaims(nil)), "query", nil)
	if st != http.StatusUnauthorized || !strings.Contains(body, `"HS256" is not accepted`) {
		t.Errorf("HS256 signed with the public key: %d %q", st, body)
	}
	mu.Lock()
	keys = append(keys, k2) // rotation: k2 published after start
	mu.Unlock()
	c2, st, body := dialTok(t, addr, "/rs", signTok(t, jwt.SigningMethodRS256, k2, "k2", goodClaims(nil)), "query", nil)
	if c2 == nil {
		t.Fatalf("k2 after rotation: %d %q", st, body)
	}
	c2.Send(map[string]any{"hi": 1})
	c2.Expect(map[string]any{"sub": "alice"})
	mu.Lock()
	status = http.StatusServiceUnavailable // the JWKS goes down
	mu.Unlock()
	_, st, body = dialTok(t, addr, "/rs", signTok(t, jwt.SigningMethodRS256, k2, "k3", goodClaims(nil)), "query", nil)
	if st != http.StatusUnauthorized || !strings.Contains(body, "no key known") {
		t.Errorf("unknown kid with the JWKS down: %d %q", st, body)
	}
	c3, st, body := dialTok(t, addr, "/rs", signTok(t, jwt.SigningMethodRS256, k1, "k1", goodClaims(nil)), "query", nil)
	if c3 == nil {
		t.Fatalf("cached k1 with the JWKS down: %d %q", st, body)
	}
	c3.Send(map[string]any{"hi": 1})
	c3.Expect(map[string]any{"sub": "alice"})
	if n := strings.Count(out.String(), "called initial_authorisation"); n != 2 {
		t.Errorf("initial_authorisation ran %d times, want 2 (the accepted clients that sent a message)", n)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestForwardedFor: from an untrusted peer a forged X-Forwarded-For is
// ignored (remote_addr and the per-IP limit use the peer); from a trusted
// proxy it names the client.
func TestForwardedFor(t *testing.T) {
	for _, tc := range []struct {
		name    string
		trusted string
	}{{"untrusted", "10.0.0.0/8"}, {"trusted", "127.0.0.0/8"}} {
		t.Run(tc.name, func(t *testing.T) {
			tp, err := auth.ParseTrustedProxies([]string{tc.trusted}, "")
			if err != nil {
				t.Fatal(err)
			}
			addr, _ := authServer(t, Options{TrustedProxies: tp, MaxConnectionsPerIP: 1}, map[string]auth.Options{"/hs": hsOptions()})
			good := signTok(t, jwt.SigningMethodHS256, hsSecret, "", goodClaims(nil))
			a, st, _ := dialTok(t, addr, "/hs", good, "query", http.Header{"X-Forwarded-For": {"203.0.113.7"}})
			if a == nil {
				t.Fatalf("first: %d", st)
			}
			a.Send(map[string]any{})
			got := a.Recv()
			b, st, _ := dialTok(t, addr, "/hs", good, "query", http.Header{"X-Forwarded-For": {"203.0.113.8"}})
			if tc.name == "untrusted" {
				if addr, _ := got["addr"].(string); !strings.HasPrefix(addr, "127.0.0.1:") {
					t.Errorf("remote_addr %q from an untrusted peer, want the peer's", addr)
				}
				if b != nil || st != http.StatusTooManyRequests {
					t.Errorf("a second client from the same peer with another forged address: %d, want 429", st)
				}
				return
			}
			if got["addr"] != "203.0.113.7" {
				t.Errorf("remote_addr %v behind a trusted proxy, want 203.0.113.7", got["addr"])
			}
			if b == nil {
				t.Errorf("a second client behind the proxy: %d, want accepted", st)
			}
			_, st, _ = dialTok(t, addr, "/hs", good, "query", http.Header{"X-Forwarded-For": {"203.0.113.7"}})
			if st != http.StatusTooManyRequests {
				t.Errorf("a second connection of 203.0.113.7: %d, want 429", st)
			}
		})
	}
}
