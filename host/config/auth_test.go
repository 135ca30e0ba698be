package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"
)

func ecPEM(t *testing.T) string {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// authConfig is a config whose one integration has the auth table ls.
func authConfig(ls ...string) string {
	return lines(append(append(append([]string{}, integ[1:]...), `[integration.auth]`), ls...)...)
}

func TestAuthConfigRead(t *testing.T) {
	t.Setenv("ES_TEST_SECRET", "0123456789abcdef0123456789abcdef")
	t.Setenv("ES_TEST_WEBHOOK", "w")
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"chat.lua": "", "k.pem": ecPEM(t), "config.toml": lines(
		`[server]`, `trusted_proxies = ["10.0.0.0/8", "192.168.1.1"]`, `forwarded_header = "Forwarded"`,
		`[secrets]`, `webhook = "ES_TEST_WEBHOOK"`,
	) + authConfig(`secret_env = "ES_TEST_SECRET"`, `public_keys = ["k.pem"]`, `algorithms = ["HS256", "ES256"]`,
		`leeway = "5s"`, `issuer = "https://id.example"`, `audience = "chat"`, `token_query = "token"`,
		`token_subprotocol = true`, `close_on_expiry = false`, `max_token_bytes = 4096`)})
	t.Chdir(dir)
	cfg, err := Load("config.toml")
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Integrations[0].Auth
	if a == nil {
		t.Fatal("no auth read")
	}
	o := a.Options
	if string(o.HMACSecret) != "0123456789abcdef0123456789abcdef" || len(o.PublicKeys) != 1 || o.Leeway != 5*time.Second || o.Issuer != "https://id.example" ||
		strings.Join(o.Audience, ",") != "chat" || o.QueryParam != "token" || !o.Subprotocol || !o.KeepAfterExpiry ||
		o.MaxTokenBytes != 4096 || strings.Join(o.Algorithms, ",") != "HS256,ES256" {
		t.Errorf("auth options = %+v", o)
	}
	if cfg.Secrets["webhook"] != "w" || strings.Join(cfg.Server.TrustedProxies, ",") != "10.0.0.0/8,192.168.1.1" || cfg.Server.ForwardedHeader != "Forwarded" {
		t.Errorf("secrets %v, proxies %v %q", cfg.Secrets, cfg.Server.TrustedProxies, cfg.Server.ForwardedHeader)
	}
	if Default().Server.ForwardedHeader != "X-Forwarded-For" {
		t.Error("default forwarded_header")
	}
}

func TestAuthConfigErrors(t *testing.T) {
	t.Setenv("ES_TEST_SECRET", "0123456789abcdef0123456789abcdef")
	for _, tt := range []struct{ name, data, want string }{
		{"unset env", authConfig(`secret_env = "ES_TEST_NOPE"`, `token_query = "t"`),
			`config.toml:6: integration[1].auth.secret_env: the environment variable "ES_TEST_NOPE" is not set or empty`},
		{"no source", authConfig(`secret_env = "ES_TEST_SECRET"`),
			`config.toml:5: integration[1].auth: no token source`},
		{"no key", authConfig(`token_query = "t"`),
			`config.toml:5: integration[1].auth: no key`},
		{"missing file", authConfig(`public_keys = ["nope.pem"]`, `token_query = "t"`),
			`config.toml:6: integration[1].auth.public_keys: nope.pem: no such file`},
		{"bad pem", authConfig(`public_keys = ["chat.lua"]`, `token_query = "t"`),
			`config.toml:6: integration[1].auth.public_keys: `},
		{"none alg", authConfig(`secret_env = "ES_TEST_SECRET"`, `algorithms = ["none"]`, `token_query = "t"`),
			`config.toml:7: integration[1].auth.algorithms: `},
		{"http jwks", authConfig(`jwks_url = "http://id.example/jwks"`, `token_query = "t"`),
			`config.toml:6: integration[1].auth.jwks_url: "http://id.example/jwks" is not an https:// URL`},
		{"typo", authConfig(`secret_env = "ES_TEST_SECRET"`, `token_qery = "t"`),
			`config.toml:7: integration[1].auth.token_qery: unknown key; did you mean "token_query"?`},
		{"bad leeway", authConfig(`secret_env = "ES_TEST_SECRET"`, `token_query = "t"`, `leeway = "-1s"`),
			`config.toml:8: integration[1].auth.leeway: must not be negative`},
		{"bad proxy", lines(`[server]`, `trusted_proxies = ["10.0.0.0/33"]`) + lines(integ...),
			`config.toml:2: server.trusted_proxies: "10.0.0.0/33" is not a CIDR`},
		{"bad header", lines(`[server]`, `forwarded_header = "X-Real-IP"`) + lines(integ...),
			`config.toml:2: server.forwarded_header: "X-Real-IP" is not`},
		{"unset secret", lines(`[secrets]`, `hook = "ES_TEST_NOPE"`) + lines(integ...),
			`config.toml:2: secrets.hook: the environment variable "ES_TEST_NOPE" is not set or empty`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, map[string]string{"config.toml": tt.data, "chat.lua": "x"})
			t.Chdir(dir)
			_, err := Load("config.toml")
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("error:\n%v\nwant prefix:\n%s\nconfig:\n%s", err, tt.want, tt.data)
			}
		})
	}
}
