package auth

import (
	"context"
	"net/http"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// BenchmarkVerify is the cost of verifying one token per algorithm, and,
// as the reference, jwt/v5's own ParseWithClaims of the same token with
// the same key (what the Verifier adds: key selection, classification,
// the JSON copy of the claims).
//
//	go test -run '^$' -bench Verify -benchmem ./host/auth
func BenchmarkVerify(b *testing.B) {
	testKeys(b)
	v := newVerifier(b, fullOptions(b))
	for _, tc := range []struct {
		name string
		m    jwt.SigningMethod
		key  any
		pub  any
	}{
		{"HS256", jwt.SigningMethodHS256, testSecret, testSecret},
		{"RS256", jwt.SigningMethodRS256, rsaKey, &rsaKey.PublicKey},
		{"ES256", jwt.SigningMethodES256, ecKey, &ecKey.PublicKey},
		{"EdDSA", jwt.SigningMethodEdDSA, edKey, edKey.Public()},
	} {
		tok := sign(b, tc.m, tc.key, "", claims(map[string]any{"room": "lobby", "roles": []string{"user"}}))
		b.Run(tc.name+"/verifier", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(context.Background(), tok); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(tc.name+"/jwt-reference", func(b *testing.B) {
			p := jwt.NewParser(jwt.WithValidMethods([]string{tc.m.Alg()}))
			kf := func(*jwt.Token) (any, error) { return tc.pub, nil }
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.ParseWithClaims(tok, jwt.MapClaims{}, kf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkFromRequest adds reading the token from the handshake.
func BenchmarkFromRequest(b *testing.B) {
	testKeys(b)
	v := newVerifier(b, Options{HMACSecret: testSecret, BearerHeader: true, Subprotocol: true, QueryParam: "access_token"})
	tok := sign(b, jwt.SigningMethodHS256, testSecret, "", claims(nil))
	r, _ := http.NewRequest("GET", "/chat", nil)
	r.Header.Set("Sec-WebSocket-Protocol", Subprotocol+", "+SubprotocolPrefix+tok)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.FromRequest(r); err != nil {
			b.Fatal(err)
		}
	}
}
