package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNewRefusesOptions(t *testing.T) {
	testKeys(t)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	privPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER})
	p224DER, err := x509.MarshalPKIXPublicKey(&p224.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	rsaOnly := func(o Options) Options {
		o.PublicKeys = []PublicKey{{PEM: rsaPEM}}
		o.BearerHeader = true
		return o
	}
	secret := func(o Options) Options {
		o.HMACSecret = testSecret[:32]
		o.BearerHeader = true
		return o
	}
	for _, tc := range []struct {
		name  string
		o     Options
		field string
		index int
		msg   string
	}{
		{"no key", Options{BearerHeader: true}, "HMACSecret", -1, "no key"},
		{"no source", Options{HMACSecret: testSecret}, "QueryParam", -1, "no token source"},
		{"short secret", Options{HMACSecret: []byte("short"), BearerHeader: true}, "HMACSecret", -1, "5 bytes"},
		{"none", rsaOnly(Options{Algorithms: []string{"RS256", "none"}}), "Algorithms", 1, `"none" is never allowed`},
		{"unknown alg", rsaOnly(Options{Algorithms: []string{"RS257"}}), "Algorithms", 0, `"RS257" is not one of`},
		{"HS with a public key only", rsaOnly(Options{Algorithms: []string{"HS256"}}), "Algorithms", 0, "needs HMACSecret"},
		{"RS with a secret only", secret(Options{Algorithms: []string{"RS256"}}), "Algorithms", 0, "needs a public key"},
		{"HS512 with a 32-byte secret", secret(Options{Algorithms: []string{"HS512"}}), "Algorithms", 0, "at least 64 bytes"},
		{"alg twice", rsaOnly(Options{Algorithms: []string{"RS256", "RS256"}}), "Algorithms", 1, "twice"},
		{"private key", Options{PublicKeys: []PublicKey{{PEM: rsaPEM}, {PEM: privPEM}}, BearerHeader: true}, "PublicKeys", 1, "private key"},
		{"not PEM", Options{PublicKeys: []PublicKey{{PEM: []byte("MIIBIjANBgkq")}}, BearerHeader: true}, "PublicKeys", 0, "no PEM block"},
		{"two blocks", Options{PublicKeys: []PublicKey{{PEM: append(slices.Clone(rsaPEM), rsaPEM...)}}, BearerHeader: true}, "PublicKeys", 0, "one key per entry"},
		{"RSA 1024", Options{PublicKeys: []PublicKey{{PEM: pemOf(&small.PublicKey)}}, BearerHeader: true}, "PublicKeys", 0, "1024 bits"},
		{"P-224", Options{PublicKeys: []PublicKey{{PEM: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: p224DER})}}, BearerHeader: true}, "PublicKeys", 0, "P-224"},
		{"ID twice", Options{PublicKeys: []PublicKey{{ID: "a", PEM: rsaPEM}, {ID: "a", PEM: rsaPEM}}, BearerHeader: true}, "PublicKeys", 1, `"a" is given twice`},
		{"plain http JWKS", Options{JWKSURL: "http://idp.example/jwks", BearerHeader: true}, "JWKSURL", -1, "plain http"},
		{"not a URL", Options{JWKSURL: "idp.example/jwks", BearerHeader: true}, "JWKSURL", -1, "not an http(s) URL"},
		{"unknown-kid interval under the timeout", Options{JWKSURL: "https://idp.example/jwks", JWKSUnknownKIDInterval: time.Second, BearerHeader: true}, "JWKSUnknownKIDInterval", -1, "shorter than JWKSTimeout"},
		{"negative leeway", secret(Options{Leeway: -time.Second}), "Leeway", -1, "negative"},
		{"empty audience", secret(Options{Audience: []string{"a", ""}}), "Audience", 1, "empty audience"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := New(tc.o)
			if err == nil {
				v.Close()
				t.Fatal("accepted")
			}
			var oe *OptionError
			if !errors.As(err, &oe) || oe.Field != tc.field || oe.Index != tc.index || !strings.Contains(oe.Msg, tc.msg) {
				t.Fatalf("got %v; want an OptionError on %s[%d] saying %q", err, tc.field, tc.index, tc.msg)
			}
			if strings.Contains(err.Error(), string(testSecret[:16])) {
				t.Fatalf("error %q reveals the secret", err)
			}
		})
	}
}

// The default allow-list follows the keys: an HMAC secret never brings an
// RS algorithm nor a public key an HS one; HS384/512 need a longer secret.
func TestDefaultAlgorithms(t *testing.T) {
	testKeys(t)
	for _, tc := range []struct {
		name string
		o    Options
		want []string
	}{
		{"32-byte secret", Options{HMACSecret: testSecret[:32]}, []string{"HS256"}},
		{"64-byte secret", Options{HMACSecret: []byte(strings.Repeat("k", 64))}, []string{"HS256", "HS384", "HS512"}},
		{"RSA PEM", Options{PublicKeys: []PublicKey{{PEM: rsaPEMPKC}}}, []string{"PS256", "PS384", "PS512", "RS256", "RS384", "RS512"}},
		{"P-256 and P-384", Options{PublicKeys: []PublicKey{{PEM: pemOf(&ecKey.PublicKey)}, {PEM: pemOf(&ecKey384.PublicKey)}}}, []string{"ES256", "ES384"}},
		{"Ed25519", Options{PublicKeys: []PublicKey{{PEM: pemOf(edKey.Public())}}}, []string{"EdDSA"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.QueryParam = "token"
			v := newVerifier(t, tc.o)
			if got := v.Algorithms(); !slices.Equal(got, tc.want) {
				t.Fatalf("algorithms %v; want %v", got, tc.want)
			}
		})
	}
}
