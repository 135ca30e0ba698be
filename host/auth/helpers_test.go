package auth

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// Test keys, made once per test binary (RSA generation is slow).
var (
	keysOnce          sync.Once
	rsaKey, rsaKey2   *rsa.PrivateKey
	ecKey, ecKey384   *ecdsa.PrivateKey
	edKey             ed25519.PrivateKey
	testSecret        = []byte("0123456789abcdef0123456789abcdef-test-secret")
	testIssuer        = "https://issuer.example"
	testAudience      = "es-test"
	rsaPEM, rsaPEMPKC []byte
)

func testKeys(tb testing.TB) {
	tb.Helper()
	keysOnce.Do(func() {
		var err error
		if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if rsaKey2, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if ecKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
		if ecKey384, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader); err != nil {
			panic(err)
		}
		if _, edKey, err = ed25519.GenerateKey(rand.Reader); err != nil {
			panic(err)
		}
		rsaPEM = pemOf(&rsaKey.PublicKey)
		rsaPEMPKC = pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&rsaKey.PublicKey)})
	})
}

// pemOf is the PKIX "PUBLIC KEY" PEM of pub.
func pemOf(pub crypto.PublicKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// claims are valid standard claims for the test issuer and audience, with
// extra fields merged in (a nil value deletes a field).
func claims(extra map[string]any) jwt.MapClaims {
	now := time.Now()
	c := jwt.MapClaims{
		"sub": "alice",
		"iss": testIssuer,
		"aud": testAudience,
		"iat": now.Unix(),
		"exp": now.Add(time.Hour).Unix(),
	}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

// sign makes a real token with jwt/v5; kid "" leaves the header without one.
func sign(tb testing.TB, m jwt.SigningMethod, key any, kid string, c jwt.MapClaims) string {
	tb.Helper()
	t := jwt.NewWithClaims(m, c)
	if kid != "" {
		t.Header["kid"] = kid
	}
	s, err := t.SignedString(key)
	if err != nil {
		tb.Fatalf("signing %s: %v", m.Alg(), err)
	}
	return s
}

// newVerifier is New that fails the test on error and closes at cleanup.
func newVerifier(tb testing.TB, o Options) *Verifier {
	tb.Helper()
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	v, err := New(o)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	tb.Cleanup(v.Close)
	return v
}

// wantReason checks that err is an *Error of reason r whose client message
// names no key material.
func wantReason(tb testing.TB, err error, r Reason) {
	tb.Helper()
	var e *Error
	if err == nil {
		tb.Fatalf("accepted; want %s", r)
	}
	if !errors.As(err, &e) || e.Reason != r {
		tb.Fatalf("got %v; want reason %s", err, r)
	}
	msg := ClientMessage(err)
	if msg == "" {
		tb.Fatalf("%s: empty client message", r)
	}
	for _, secret := range [][]byte{testSecret, rsaPEM[30:60], []byte("BEGIN")} {
		if bytes.Contains([]byte(msg), secret) {
			tb.Fatalf("client message %q reveals key material", msg)
		}
	}
}

// jwksServer is a real HTTPS server publishing a JWK Set that a test can
// rotate or take down; it counts fetches and reports each on fetched.
type jwksServer struct {
	srv     *httptest.Server
	mu      sync.Mutex
	body    []byte
	status  int
	fetches atomic.Int64
	fetched chan int64
}

func newJWKSServer(tb testing.TB, keys ...jwkset.JWK) *jwksServer {
	tb.Helper()
	s := &jwksServer{status: http.StatusOK, fetched: make(chan int64, 1000)}
	s.publish(tb, keys...)
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := s.fetches.Add(1)
		s.fetched <- n
		s.mu.Lock()
		status, body := s.status, s.body
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		w.Write(body)
	}))
	// A refresh cut short by Close or the end of the test is not news.
	s.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.srv.StartTLS()
	tb.Cleanup(s.srv.Close)
	return s
}

// publish replaces the set the server serves.
func (s *jwksServer) publish(tb testing.TB, keys ...jwkset.JWK) {
	tb.Helper()
	set := jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{}}
	for _, k := range keys {
		set.Keys = append(set.Keys, k.Marshal())
	}
	body, err := json.Marshal(set)
	if err != nil {
		tb.Fatal(err)
	}
	s.mu.Lock()
	s.body, s.status = body, http.StatusOK
	s.mu.Unlock()
}

// fail makes the server answer status with a body that is not a JWK Set.
func (s *jwksServer) fail(status int) {
	s.mu.Lock()
	s.status, s.body = status, []byte(`{"error":"down"}`)
	s.mu.Unlock()
}

// options are Options for this server (its TLS certificate trusted).
func (s *jwksServer) options() Options {
	pool := x509.NewCertPool()
	pool.AddCert(s.srv.Certificate())
	return Options{JWKSURL: s.srv.URL + "/.well-known/jwks.json", JWKSRootCAs: pool, BearerHeader: true}
}

// waitFetch waits, bounded, until the server has been fetched n times.
func (s *jwksServer) waitFetch(tb testing.TB, n int64) {
	tb.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case got := <-s.fetched:
			if got >= n {
				return
			}
		case <-deadline:
			tb.Fatalf("JWKS fetched %d times; waited for %d", s.fetches.Load(), n)
		}
	}
}

func jwk(tb testing.TB, pub any, kid string, alg jwkset.ALG) jwkset.JWK {
	tb.Helper()
	opts := jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: kid, ALG: alg}}
	_, opts.Marshal.Private = pub.([]byte) // a symmetric key is all private
	k, err := jwkset.NewJWKFromKey(pub, opts)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// logRecorder is a slog handler that keeps messages.
type logRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Message)
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }
func (l *logRecorder) has(sub string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range l.msgs {
		if strings.Contains(m, sub) {
			return true
		}
	}
	return false
}
