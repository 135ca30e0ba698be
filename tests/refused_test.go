package tests

import (
	"encoding/json"
	"github.com/electric-socket/electric-socket/tests/testkit"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"github.com/electric-socket/electric-socket/broker"
)

// refusedConfig serves testdata/refused.lua at /refused with the memory
// broker and the [sink] given ("" = the log sink).
func refusedConfig(sink string) string {
	return `
[server]
listen = "127.0.0.1:0"

[lua]
watch = false

[broker]
kind = "memory"

` + sink + `

[[integration]]
name = "refused"
path = "/refused"
script = "refused.lua"
`
}

// A broker_authorisation that returns es.fail commits nothing (SPEC 5.2,
// 5.7): its broker_data is not written, its broker messages are not
// published and its side effects reach no sink (the log, a webhook), while
// the client gets the failure body and close 1008. The logins before and
// after it commit all of that.
func TestRefusedBrokerAuthorisationCommitsNothing(t *testing.T) {
	t.Run("log sink", func(t *testing.T) {
		s := startServer(t, refusedConfig(""))
		checkRefusedLogin(t, s, func() []string {
			// The log sink writes a side effect before the response that
			// follows it is sent: every one is in the log by now.
			var users []string
			for _, line := range strings.Split(s.log.String(), "\n") {
				if !strings.Contains(line, `msg="side effect"`) {
					continue
				}
				for _, u := range []string{"a", "b", "c"} {
					if strings.Contains(line, `\"user\":\"`+u+`\"`) {
						users = append(users, u)
					}
				}
			}
			return users
		})
	})
	t.Run("webhook sink", func(t *testing.T) {
		h := testkit.NewWebhook(t, 0)
		s := startServer(t, refusedConfig(hookSink(h)))
		checkRefusedLogin(t, s, func() []string {
			// The webhook delivers in the order the effects were handed
			// on: once c's arrived, b's would have too.
			var users []string
			testkit.Eventually(t, waitBound, "c's join side effect at the webhook", func() bool {
				users = users[:0]
				for _, e := range h.Effects() {
					var v struct{ User string }
					if err := json.Unmarshal(e.Effect, &v); err != nil {
						t.Fatalf("effect %s: %v", e.Effect, err)
					}
					users = append(users, v.User)
				}
				return len(users) > 0 && users[len(users)-1] == "c"
			})
			return users
		})
	})
}

// checkRefusedLogin logs a in, has b refused, logs c in, and checks what
// was committed; effects returns the users of the side effects delivered.
func checkRefusedLogin(t *testing.T, s *server, effects func() []string) {
	a := s.dial("/refused")
	a.Send(map[string]any{"user": "a"})
	a.Expect(map[string]any{"type": "welcome", "user": "a", "logins": float64(1)})

	b := s.dial("/refused")
	b.Send(map[string]any{"user": "b", "refuse": true})
	b.Expect(map[string]any{"id": "auth", "success": false, "error": "refused"})
	b.ExpectClose(websocket.StatusPolicyViolation)

	c := s.dial("/refused")
	c.Send(map[string]any{"user": "c"})
	// logins 2: b's count was not committed.
	c.Expect(map[string]any{"type": "welcome", "user": "c", "logins": float64(2)})
	// a hears of c, and heard nothing of b before.
	a.Expect(map[string]any{"type": "joined", "user": "c"})

	raw := s.memory().Get(broker.Topic{Namespace: "refused", Key: "r"})
	var entity map[string]any
	if err := json.Unmarshal(raw, &entity); err != nil {
		t.Fatalf("entity %s: %v", raw, err)
	}
	if entity["logins"] != float64(2) || entity["last"] != "c" {
		t.Errorf("entity = %s, want logins 2, last c (b's refused login committed nothing)", raw)
	}
	if got := strings.Join(effects(), ","); got != "a,c" {
		t.Errorf("side effects delivered for %q, want a,c: the refused login of b handed its side effect on", got)
	}
}
