package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// fullOptions: an HMAC secret and every kind of public key, iss and aud
// required, the defaults otherwise.
func fullOptions(tb testing.TB) Options {
	testKeys(tb)
	return Options{
		HMACSecret: testSecret,
		PublicKeys: []PublicKey{
			{PEM: rsaPEM},
			{PEM: pemOf(&ecKey.PublicKey)},
			{PEM: pemOf(edKey.Public())},
		},
		Issuer:       testIssuer,
		Audience:     []string{testAudience},
		BearerHeader: true,
	}
}

// tamper replaces the claims of a signed token, keeping its signature.
func tamper(tb testing.TB, tok string, c jwt.MapClaims) string {
	tb.Helper()
	parts := strings.Split(tok, ".")
	b, err := json.Marshal(c)
	if err != nil {
		tb.Fatal(err)
	}
	parts[1] = base64.RawURLEncoding.EncodeToString(b)
	return strings.Join(parts, ".")
}

// rawToken builds a token from a header and claims, with a given signature.
func rawToken(header, payload string, sig string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(header)) + "." + enc([]byte(payload)) + "." + sig
}

// withHeader signs valid claims with one extra header parameter.
func withHeader(tb testing.TB, name string, value any, m jwt.SigningMethod, key any) string {
	tb.Helper()
	t := jwt.NewWithClaims(m, claims(nil))
	t.Header[name] = value
	s, err := t.SignedString(key)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func TestVerifyAccepts(t *testing.T) {
	v := newVerifier(t, fullOptions(t))
	for _, tc := range []struct {
		name string
		m    jwt.SigningMethod
		key  any
	}{
		{"HS256", jwt.SigningMethodHS256, testSecret},
		{"RS256", jwt.SigningMethodRS256, rsaKey},
		{"PS256", jwt.SigningMethodPS256, rsaKey},
		{"ES256", jwt.SigningMethodES256, ecKey},
		{"EdDSA", jwt.SigningMethodEdDSA, edKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			exp := time.Now().Add(time.Hour).Truncate(time.Second)
			tok := sign(t, tc.m, tc.key, "", claims(map[string]any{
				"exp":  exp.Unix(),
				"uid":  json.Number("9007199254740993"), // 2^53+1: lost as a float64
				"tags": []string{"a", "b"},
				"aud":  []string{"other", testAudience},
			}))
			c, err := v.Verify(context.Background(), tok)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if c.Map["sub"] != "alice" || !c.Expiry.Equal(exp) {
				t.Fatalf("claims %v, expiry %v; want sub alice, expiry %v", c.Map, c.Expiry, exp)
			}
			if c.Map["uid"] != json.Number("9007199254740993") || !strings.Contains(string(c.JSON), `"uid":9007199254740993`) {
				t.Fatalf("uid not kept exactly: map %v, JSON %s", c.Map["uid"], c.JSON)
			}
			if at, ok := v.CloseAt(c); !ok || !at.Equal(exp) {
				t.Fatalf("CloseAt = %v, %v; want %v, true", at, ok, exp)
			}
		})
	}
}

func TestVerifyRefuses(t *testing.T) {
	full := newVerifier(t, fullOptions(t))
	rsaOnly := newVerifier(t, Options{PublicKeys: []PublicKey{{PEM: rsaPEM}}, BearerHeader: true})
	valid := sign(t, jwt.SigningMethodRS256, rsaKey, "", claims(nil))
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, claims(nil)).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	// The classic key confusion: the RSA public key (public!) used as an HMAC secret.
	confused := sign(t, jwt.SigningMethodHS256, rsaPEM, "", claims(nil))
	confusedDER := sign(t, jwt.SigningMethodHS256, rsaPEMPKC, "", claims(nil))
	sig := strings.Split(valid, ".")[2]
	flipped := []byte(sig)
	if flipped[10] = 'A'; sig[10] == 'A' {
		flipped[10] = 'B'
	}
	// A token carrying its own key (jwk header) signed with that key: the
	// header must never be trusted.
	embedded := jwt.NewWithClaims(jwt.SigningMethodRS256, claims(nil))
	embedded.Header["jwk"] = map[string]any{"kty": "RSA", "n": "attacker", "e": "AQAB"}
	embeddedTok, err := embedded.SignedString(rsaKey2)
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name  string
		v     *Verifier
		token string
		want  Reason
		msg   string // part of the client message
	}{
		{"alg none", full, none, ReasonAlgorithm, `"none" is not accepted`},
		{"RS256 re-signed as HS256 with the public key, HS not allowed", rsaOnly, confused, ReasonAlgorithm, `"HS256"`},
		{"RS256 re-signed as HS256 with the public key, HS allowed", full, confused, ReasonBadSignature, "signature"},
		{"RS256 re-signed as HS256 with the PKCS1 public key", full, confusedDER, ReasonBadSignature, "signature"},
		{"tampered payload", full, tamper(t, valid, claims(map[string]any{"sub": "admin"})), ReasonBadSignature, "signature"},
		{"tampered signature", full, strings.Join(append(strings.Split(valid, ".")[:2], string(flipped)), "."), ReasonBadSignature, "signature"},
		{"signed by another key", full, sign(t, jwt.SigningMethodRS256, rsaKey2, "", claims(nil)), ReasonBadSignature, "signature"},
		{"embedded jwk header", full, embeddedTok, ReasonBadSignature, "signature"},
		{"expired", full, sign(t, jwt.SigningMethodHS256, testSecret, "", claims(map[string]any{"exp": time.Now().Add(-time.Hour).Unix()})), ReasonExpired, "expired at"},
		{"not yet valid", full, sign(t, jwt.SigningMethodHS256, testSecret, "", claims(map[string]any{"nbf": time.Now().Add(time.Hour).Unix()})), ReasonNotYetValid, "not valid before"},
		{"issued in the future", full, sign(t, jwt.SigningMethodHS256, testSecret, "", claims(map[string]any{"iat": time.Now().Add(time.Hour).Unix()})), ReasonNotYetValid, "future"},
		{"wrong issuer", full, sign(t, jwt.SigningMethodHS256, testSecret, "", claims(map[string]any{"iss": "https://evil.example"})), ReasonWrongIssuer, "issuer"},
		{"no issuer", full, sign(t, jwt.SigningMethodHS256, testSecret, "", claims(map[string]any{"iss": nil})), ReasonMissingClaim, "no iss claim"},
		{"wrong audience", full, sign(t, jwt.SigningMethodHS256, testSecret, "", claims(map[string]any{"aud": "other-service"})), ReasonWrongAudience, "aud"},
		{"no expiry", full, sign(t, jwt.SigningMethodHS256, testSecret, "", claims(map[string]any{"exp": nil})), ReasonMissingClaim, "no exp claim"},
		{"expiry not a number", full, sign(t, jwt.SigningMethodHS256, testSecret, "", claims(map[string]any{"exp": "tomorrow"})), ReasonMalformed, "not a number"},
		{"oversized", full, sign(t, jwt.SigningMethodHS256, testSecret, "", claims(map[string]any{"pad": strings.Repeat("x", DefaultMaxTokenBytes)})), ReasonTooLarge, "over the limit of 8192"},
		{"oversized garbage", full, strings.Repeat("A", DefaultMaxTokenBytes+1), ReasonTooLarge, "over the limit"},
		{"empty", full, "", ReasonMissing, "empty"},
		{"not a JWT", full, "hello", ReasonMalformed, "well-formed"},
		{"bad base64", full, "a.b.c", ReasonMalformed, "well-formed"},
		{"unknown alg", full, rawToken(`{"alg":"XS256","typ":"JWT"}`, `{"sub":"alice"}`, "c2ln"), ReasonAlgorithm, `"XS256"`},
		{"no alg", full, rawToken(`{"typ":"JWT"}`, `{"sub":"alice"}`, "c2ln"), ReasonAlgorithm, "algorithm"},
		{"crit header", full, withHeader(t, "crit", []string{"b64"}, jwt.SigningMethodHS256, testSecret), ReasonMalformed, "crit"},
		{"kid not a string", full, withHeader(t, "kid", 7, jwt.SigningMethodES256, ecKey), ReasonMalformed, "kid"},
		{"ES384 when only a P-256 key is configured", full, sign(t, jwt.SigningMethodES384, ecKey384, "", claims(nil)), ReasonAlgorithm, `"ES384"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.v.Verify(context.Background(), tc.token)
			if err == nil {
				t.Fatalf("accepted with claims %v", c.Map)
			}
			wantReason(t, err, tc.want)
			if msg := ClientMessage(err); !strings.Contains(msg, tc.msg) {
				t.Fatalf("client message %q does not contain %q", msg, tc.msg)
			}
			if !errors.Is(err, &Error{Reason: tc.want}) {
				t.Fatalf("errors.Is(%v, sentinel of %s) is false", err, tc.want)
			}
		})
	}
}

// A static key with an ID is the only one tried for a token naming it; a
// kid no key has, without a JWKS, tries the keys without an ID.
func TestVerifyStaticKeyIDs(t *testing.T) {
	testKeys(t)
	v := newVerifier(t, Options{
		PublicKeys:   []PublicKey{{ID: "k1", PEM: rsaPEM}, {ID: "k2", PEM: pemOf(&rsaKey2.PublicKey)}},
		BearerHeader: true,
	})
	if _, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodRS256, rsaKey, "k1", claims(nil))); err != nil {
		t.Fatalf("kid k1 signed by k1: %v", err)
	}
	if _, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodRS256, rsaKey2, "", claims(nil))); err != nil {
		t.Fatalf("no kid, signed by k2 (every key tried): %v", err)
	}
	_, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodRS256, rsaKey, "k2", claims(nil)))
	wantReason(t, err, ReasonBadSignature)
	_, err = v.Verify(context.Background(), sign(t, jwt.SigningMethodRS256, rsaKey, "k3", claims(nil)))
	wantReason(t, err, ReasonUnknownKey)
	// Key k1 is RSA: an ES256 token naming it is not tried with it.
	withEC := newVerifier(t, Options{
		PublicKeys:   []PublicKey{{ID: "k1", PEM: rsaPEM}, {PEM: pemOf(&ecKey.PublicKey)}},
		BearerHeader: true,
	})
	_, err = withEC.Verify(context.Background(), sign(t, jwt.SigningMethodES256, ecKey, "k1", claims(nil)))
	wantReason(t, err, ReasonUnknownKey)
}

// Leeway, AllowNoExpiry and KeepAfterExpiry, each against its default.
func TestVerifyTimeOptions(t *testing.T) {
	testKeys(t)
	expired := sign(t, jwt.SigningMethodHS256, testSecret, "", claims(map[string]any{"exp": time.Now().Add(-time.Hour).Unix()}))
	noExp := sign(t, jwt.SigningMethodHS256, testSecret, "", claims(map[string]any{"exp": nil}))
	base := Options{HMACSecret: testSecret, BearerHeader: true}

	strict := newVerifier(t, base)
	_, err := strict.Verify(context.Background(), expired)
	wantReason(t, err, ReasonExpired)
	_, err = strict.Verify(context.Background(), noExp)
	wantReason(t, err, ReasonMissingClaim)

	o := base
	o.Leeway = 2 * time.Hour
	lenient := newVerifier(t, o)
	c, err := lenient.Verify(context.Background(), expired)
	if err != nil {
		t.Fatalf("expired an hour ago, leeway 2h: %v", err)
	}
	if at, ok := lenient.CloseAt(c); !ok || !at.Equal(c.Expiry.Add(2*time.Hour)) {
		t.Fatalf("CloseAt = %v, %v; want exp + leeway", at, ok)
	}

	o = base
	o.AllowNoExpiry = true
	forever := newVerifier(t, o)
	c, err = forever.Verify(context.Background(), noExp)
	if err != nil {
		t.Fatalf("AllowNoExpiry: %v", err)
	}
	if _, ok := forever.CloseAt(c); ok || !c.Expiry.IsZero() {
		t.Fatalf("a token without exp has a close time (expiry %v)", c.Expiry)
	}

	o = base
	o.KeepAfterExpiry = true
	keep := newVerifier(t, o)
	c, err = keep.Verify(context.Background(), sign(t, jwt.SigningMethodHS256, testSecret, "", claims(nil)))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := keep.CloseAt(c); ok {
		t.Fatal("KeepAfterExpiry: CloseAt says close")
	}
	if _, ok := strict.CloseAt(c); !ok {
		t.Fatal("default: CloseAt says keep")
	}
}

// MaxTokenBytes: a token just over a lowered limit is refused, one at it is
// verified.
func TestVerifyMaxTokenBytes(t *testing.T) {
	testKeys(t)
	tok := sign(t, jwt.SigningMethodHS256, testSecret, "", claims(nil))
	at := newVerifier(t, Options{HMACSecret: testSecret, BearerHeader: true, MaxTokenBytes: len(tok)})
	if _, err := at.Verify(context.Background(), tok); err != nil {
		t.Fatalf("token of exactly MaxTokenBytes: %v", err)
	}
	under := newVerifier(t, Options{HMACSecret: testSecret, BearerHeader: true, MaxTokenBytes: len(tok) - 1})
	_, err := under.Verify(context.Background(), tok)
	wantReason(t, err, ReasonTooLarge)
}
