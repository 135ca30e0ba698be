package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// An unknown kid triggers one refresh, which finds the rotated key; a
// second unknown kid soon after is refused at once without another fetch;
// a key removed from the set stops verifying after the refresh.
func TestJWKSRotation(t *testing.T) {
	testKeys(t)
	srv := newJWKSServer(t, jwk(t, &rsaKey.PublicKey, "old", jwkset.AlgRS256))
	v := newVerifier(t, srv.options())
	if n := srv.fetches.Load(); n != 1 {
		t.Fatalf("New fetched %d times; want 1", n)
	}
	if _, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodRS256, rsaKey, "old", claims(nil))); err != nil {
		t.Fatalf("kid old: %v", err)
	}
	if _, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodRS256, rsaKey, "", claims(nil))); err != nil {
		t.Fatalf("no kid, key in the set: %v", err)
	}

	srv.publish(t, jwk(t, &rsaKey2.PublicKey, "new", jwkset.AlgRS256), jwk(t, &ecKey.PublicKey, "ec", jwkset.AlgES256))
	if _, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodRS256, rsaKey2, "new", claims(nil))); err != nil {
		t.Fatalf("kid new after rotation: %v", err)
	}
	if n := srv.fetches.Load(); n != 2 {
		t.Fatalf("fetched %d times after one unknown kid; want 2", n)
	}
	if _, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodES256, ecKey, "ec", claims(nil))); err != nil {
		t.Fatalf("kid ec fetched in the same refresh: %v", err)
	}

	// The rate limit: neither a removed kid nor a made-up one fetches again.
	_, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodRS256, rsaKey, "old", claims(nil)))
	wantReason(t, err, ReasonUnknownKey)
	_, err = v.Verify(context.Background(), sign(t, jwt.SigningMethodRS256, rsaKey, "made-up", claims(nil)))
	wantReason(t, err, ReasonUnknownKey)
	if n := srv.fetches.Load(); n != 2 {
		t.Fatalf("fetched %d times; unknown kids within JWKSUnknownKIDInterval must not fetch again", n)
	}
	// A fetched key is used for its own family only.
	_, err = v.Verify(context.Background(), sign(t, jwt.SigningMethodES256, ecKey, "new", claims(nil)))
	if err == nil {
		t.Fatal("an ES256 token verified with the RSA key named by its kid")
	}
}

// The JWKS endpoint goes down after start: the keys already fetched keep
// verifying, through failed periodic refreshes and a failed unknown-kid
// refresh, and the failure is logged.
func TestJWKSDownAfterStart(t *testing.T) {
	testKeys(t)
	srv := newJWKSServer(t, jwk(t, &ecKey.PublicKey, "a", jwkset.AlgES256))
	logs := &logRecorder{}
	o := srv.options()
	o.JWKSRefreshInterval = time.Millisecond // the key under test: refresh often
	o.Logger = slog.New(logs)
	v := newVerifier(t, o)
	tok := sign(t, jwt.SigningMethodES256, ecKey, "a", claims(nil))
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}

	srv.fail(http.StatusServiceUnavailable)
	start := srv.fetches.Load()
	// Refreshes run one after the other: when fetch start+2 begins, fetch
	// start+1 (which failed) has been handled.
	srv.waitFetch(t, start+2)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("cached key after failed refreshes: %v", err)
	}
	_, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodES256, ecKey, "b", claims(nil)))
	wantReason(t, err, ReasonUnknownKey)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("cached key after a failed unknown-kid refresh: %v", err)
	}
	if !logs.has("JWKS refresh failed") {
		t.Fatalf("no log of the failed refresh; logged %q", logs.msgs)
	}

	// Back up with a rotated set: the periodic refresh picks it up.
	srv.publish(t, jwk(t, &ecKey.PublicKey, "b", jwkset.AlgES256))
	srv.waitFetch(t, srv.fetches.Load()+2)
	if _, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodES256, ecKey, "b", claims(nil))); err != nil {
		t.Fatalf("key b after the endpoint came back: %v", err)
	}
}

// Down at start: New fails, naming the field, unless JWKSOptionalAtStart;
// then tokens are refused until a fetch succeeds.
func TestJWKSDownAtStart(t *testing.T) {
	testKeys(t)
	srv := newJWKSServer(t)
	srv.fail(http.StatusInternalServerError)
	_, err := New(srv.options())
	var oe *OptionError
	if !errors.As(err, &oe) || oe.Field != "JWKSURL" || !strings.Contains(oe.Msg, "cannot fetch") {
		t.Fatalf("New with the JWKS down: %v; want an OptionError on JWKSURL", err)
	}

	o := srv.options()
	o.JWKSOptionalAtStart = true
	v := newVerifier(t, o)
	tok := sign(t, jwt.SigningMethodEdDSA, edKey, "ed", claims(nil))
	_, err = v.Verify(context.Background(), sign(t, jwt.SigningMethodEdDSA, edKey, "", claims(nil)))
	wantReason(t, err, ReasonUnknownKey)

	srv.publish(t, jwk(t, edKey.Public(), "ed", jwkset.AlgEdDSA))
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("after the JWKS came up (unknown kid refresh): %v", err)
	}
}

// A JWK Set response over JWKSMaxBytes is not read.
func TestJWKSMaxBytes(t *testing.T) {
	testKeys(t)
	keys := []jwkset.JWK{}
	for i := 0; i < 3000; i++ { // about 1.3 MiB of RSA public keys
		keys = append(keys, jwk(t, &rsaKey.PublicKey, "k"+strings.Repeat("x", 40)+strconv.Itoa(i), jwkset.AlgRS256))
	}
	srv := newJWKSServer(t, keys...)
	if len(srv.body) <= DefaultJWKSMaxBytes {
		t.Fatalf("test set is only %d bytes", len(srv.body))
	}
	_, err := New(srv.options())
	if err == nil || !strings.Contains(err.Error(), "request body too large") {
		t.Fatalf("New with a %d-byte set: %v; want refused as too large", len(srv.body), err)
	}
	o := srv.options()
	o.JWKSMaxBytes = int64(len(srv.body)) // the key under test
	v := newVerifier(t, o)
	if _, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodRS256, rsaKey, "", claims(nil))); err != nil {
		t.Fatalf("with JWKSMaxBytes raised to the set's size: %v", err)
	}
}

// A symmetric ("oct") key in the set is never used, not even for an HS256
// token naming it when HS256 is allowed: HS* tokens get HMACSecret only.
func TestJWKSSymmetricKeyIgnored(t *testing.T) {
	testKeys(t)
	octKey := []byte("a-symmetric-key-published-in-the-set-0123456789")
	srv := newJWKSServer(t, jwk(t, octKey, "oct", jwkset.AlgHS256), jwk(t, &rsaKey.PublicKey, "rsa", jwkset.AlgRS256))
	o := srv.options()
	o.HMACSecret = testSecret
	v := newVerifier(t, o)
	_, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodHS256, octKey, "oct", claims(nil)))
	wantReason(t, err, ReasonBadSignature)

	jwksOnly := newVerifier(t, srv.options())
	_, err = jwksOnly.Verify(context.Background(), sign(t, jwt.SigningMethodHS256, octKey, "oct", claims(nil)))
	wantReason(t, err, ReasonAlgorithm)
}

// Close ends the refresh goroutine.
func TestCloseStopsRefresh(t *testing.T) {
	testKeys(t)
	srv := newJWKSServer(t, jwk(t, &rsaKey.PublicKey, "a", jwkset.AlgRS256))
	o := srv.options()
	o.Logger = slog.New(slog.DiscardHandler)
	v, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	const refresher = "jwkset.NewStorageFromHTTP.func"
	if !goroutineRunning(refresher) {
		t.Fatal("no refresh goroutine while the verifier is open")
	}
	v.Close()
	deadline := time.Now().Add(10 * time.Second)
	for goroutineRunning(refresher) {
		if time.Now().After(deadline) {
			t.Fatal("refresh goroutine still running 10s after Close")
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, bounded above
	}
}

func goroutineRunning(fn string) bool {
	buf := make([]byte, 1<<20)
	return strings.Contains(string(buf[:runtime.Stack(buf, true)]), fn)
}

// Many connections at once, some with a kid the set does not hold: each
// gets its answer (run with -race).
func TestJWKSConcurrent(t *testing.T) {
	testKeys(t)
	srv := newJWKSServer(t, jwk(t, &ecKey.PublicKey, "a", jwkset.AlgES256))
	v := newVerifier(t, srv.options())
	good := sign(t, jwt.SigningMethodES256, ecKey, "a", claims(nil))
	unknown := sign(t, jwt.SigningMethodES256, ecKey, "zz", claims(nil))
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		go func() {
			for i := 0; i < 25; i++ {
				if _, err := v.Verify(context.Background(), good); err != nil {
					errs <- err
					return
				}
				if _, err := v.Verify(context.Background(), unknown); !errors.Is(err, ErrUnknownKey) {
					errs <- fmt.Errorf("unknown kid: %v", err)
					return
				}
			}
			errs <- nil
		}()
	}
	for g := 0; g < 8; g++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.fetches.Load(); n != 2 {
		t.Fatalf("fetched %d times for 200 unknown kids; want 2 (start, one refresh)", n)
	}
}

// A JWKS URL that redirects to plain http is not followed.
func TestJWKSRedirectToHTTP(t *testing.T) {
	testKeys(t)
	plain := newJWKSServer(t, jwk(t, &rsaKey.PublicKey, "a", jwkset.AlgRS256))
	redirect := newJWKSServer(t)
	redirect.srv.Config.Handler = http.RedirectHandler("http://"+plain.srv.Listener.Addr().String()+"/jwks", http.StatusFound)
	_, err := New(redirect.options())
	if err == nil || !strings.Contains(err.Error(), "which is not https") {
		t.Fatalf("New with a JWKS redirecting to http: %v; want refused", err)
	}
}
