package host

import (
	"context"
	"log/slog"
	"net/http"
	"testing"
	"testing/fstest"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/electric-socket/electric-socket/host/config"
	"github.com/electric-socket/electric-socket/tests/testkit"
)

const claimsScript = `
local es = require("es")
local M = {}
function M.initial_authorisation(ch, m) return {} end
function M.broker_authorisation(ch, cd, bd)
  return { websocket_response = { sub = ch.claims.sub, addr = ch.remote_addr,
    mac = es.hmac_sha256(es.secret("hook"), "x", "hex") } }
end
function M.process_websocket_message(ch, m, cd, bd) return {} end
return M
`

// TestAuthFromConfig: [integration.auth], [secrets] and trusted_proxies as
// the configuration gives them reach the running server.
func TestAuthFromConfig(t *testing.T) {
	secret := "0123456789abcdef0123456789abcdef-app"
	t.Setenv("ES_APP_TEST_SECRET", secret)
	t.Setenv("ES_APP_TEST_HOOK", "Jefe")
	cfgText := `
[server]
listen = "127.0.0.1:0"
shutdown_spread = "0s"
trusted_proxies = ["127.0.0.1"]
[secrets]
hook = "ES_APP_TEST_HOOK"
[[integration]]
name = "c"
path = "/c"
script = "scripts/c.lua"
[integration.auth]
secret_env = "ES_APP_TEST_SECRET"
audience = "c"
token_query = "token"
`
	fsys := fstest.MapFS{"config.toml": {Data: []byte(cfgText)}, "scripts/c.lua": {Data: []byte(claimsScript)}}
	cfg, err := config.ParseFS(fsys, "config.toml", fsys["config.toml"].Data)
	if err != nil {
		t.Fatal(err)
	}
	_, addr, _ := serveApp(t, cfg, slog.New(slog.DiscardHandler))
	sign := func(aud string) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "alice", "aud": aud, "exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte(secret))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	ctx, cancel := context.WithTimeout(context.Background(), testkit.WaitBound)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, "ws://"+addr+"/c?token="+sign("other"), nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong audience: %v %v", resp, err)
	}
	conn, _, err := websocket.Dial(ctx, "ws://"+addr+"/c?token="+sign("c"),
		&websocket.DialOptions{HTTPHeader: http.Header{"X-Forwarded-For": {"198.51.100.9"}}})
	if err != nil {
		t.Fatal(err)
	}
	c := testkit.NewClient(t, "alice", conn)
	t.Cleanup(func() { conn.CloseNow() })
	c.Send(map[string]any{})
	got := c.Recv()
	// mac: printf x | openssl dgst -sha256 -hmac Jefe
	if got["sub"] != "alice" || got["addr"] != "198.51.100.9" || got["mac"] != "30c1a252726d9f629121f7efb69852b3d25b3accb5410de2dfdd3b069eb51745" {
		t.Errorf("got %v", got)
	}
}
