package tests

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TestNodeClientTokens: a browser's way of passing a signed token, with
// Node's ws package (tests/node/token.mjs) against the chat behind
// [integration.auth]: in the query and in the subprotocol form
// ["es", "es.token.<jwt>"] (the server answers "es"), the token's subject
// is the user whatever the login message says; a token signed with another
// key, or none, is refused before the upgrade with 401.
func TestNodeClientTokens(t *testing.T) {
	node := nodeWithWS(t)
	const secret = "a-secret-of-at-least-32-bytes-for-hs256"
	t.Setenv("ES_NODE_TOKEN_SECRET", secret)
	s := startServer(t, chatConfig+`
[integration.auth]
secret_env = "ES_NODE_TOKEN_SECRET"
token_query = "token"
token_subprotocol = true
`)
	sign := func(key string) string {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"sub": "alice", "exp": time.Now().Add(time.Hour).Unix(),
		}).SignedString([]byte(key))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	good, forged := sign(secret), sign("another-secret-of-at-least-32-bytes!!")
	base := "ws://" + s.addr + "/chat"
	login := `{"user":"mallory","room":"lobby"}`

	type result struct {
		Status   int            `json:"status"`
		Protocol string         `json:"protocol"`
		First    map[string]any `json:"first"`
		Error    string         `json:"error"`
	}
	run := func(url, protocols string) result {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, node, filepath.Join("node", "token.mjs"), url, protocols, login).Output()
		var r result
		if jerr := json.Unmarshal(out, &r); err != nil || jerr != nil {
			t.Fatalf("node token.mjs %s %q: %v, output %q (%v)", url, protocols, err, out, jerr)
		}
		return r
	}
	for _, tc := range []struct {
		name, url, protocols string
		status               int // 0: served
		protocol             string
	}{
		{"query", base + "?token=" + good, "", 0, ""},
		{"subprotocol", base, "es,es.token." + good, 0, "es"},
		{"query, another key", base + "?token=" + forged, "", 401, ""},
		{"subprotocol, another key", base, "es,es.token." + forged, 401, ""},
		{"no token", base, "", 401, ""},
	} {
		r := run(tc.url, tc.protocols)
		switch {
		case r.Error != "":
			t.Errorf("%s: %s", tc.name, r.Error)
		case tc.status != 0:
			if r.Status != tc.status {
				t.Errorf("%s: %+v, want the upgrade refused with %d", tc.name, r, tc.status)
			}
		case r.Status != 0 || r.Protocol != tc.protocol || r.First["user"] != "alice":
			t.Errorf("%s: %+v, want served (subprotocol %q) as alice, the token's subject, not the message's mallory", tc.name, r, tc.protocol)
		}
	}
}
