package tests

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"testing"

	"github.com/coder/websocket"
	"github.com/electric-socket/electric-socket/tests/testkit"
)

// Many users log in to one room at once. Their broker_authorisation calls
// are serialised by the broker, so each welcome lists the members committed
// before it; every user who committed later must reach this one with a
// "joined" notice (SPEC 5.4, 5.9): nothing is lost, nothing is doubled.
//
// The burst is repeated in a few rooms of one server, as a lost message
// depends on scheduling.
func TestChatConcurrentLogins(t *testing.T) {
	s := startServer(t, chatConfig)
	for _, room := range []string{"lobby", "kitchen", "attic"} {
		t.Run(room, func(t *testing.T) { loginBurst(t, s, room, 12) })
	}
	s.waitIdle()
	if n := s.memory().Len(); n != 0 {
		t.Errorf("broker holds %d entities, want 0", n)
	}
}

// loginBurst logs n users in to room at once, has each say two things and
// has all leave at once.
func loginBurst(t *testing.T, s *server, room string, n int) {
	var all []string
	clients := make([]*testkit.Client, n)
	for i := range clients {
		name := fmt.Sprintf("%s%02d", room, i)
		all = append(all, name)
		clients[i] = testkit.Dial(t, name, s.addr, "/chat")
	}
	// all the logins go out before any answer is read
	for i, c := range clients {
		c.Send(map[string]any{"user": all[i], "room": room})
	}
	for i, c := range clients {
		w := c.Expect(map[string]any{"type": "welcome", "user": all[i]})
		before := strs(w["members"])
		if !slices.Contains(before, all[i]) {
			t.Fatalf("%s: welcome members %v without itself", all[i], before)
		}
		var want []string
		for _, u := range all {
			if !slices.Contains(before, u) {
				want = append(want, u)
			}
		}
		var got []string
		for range want {
			m, err := c.Read()
			if err != nil {
				t.Fatalf("%s: welcome listed %v, then joined notices for %v only, want %v: %v",
					all[i], before, got, want, err)
			}
			if m["type"] != "joined" {
				t.Fatalf("%s: got %s, want a joined notice", all[i], testkit.JSON(m))
			}
			got = append(got, m["user"].(string))
		}
		sort.Strings(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s: welcome listed %v, then joined notices for %v, want %v", all[i], before, got, want)
		}
	}
	var entity struct{ Members map[string]string }
	if err := json.Unmarshal(s.memory().Get(roomTopic(room)), &entity); err != nil {
		t.Fatalf("room entity: %v", err)
	}
	var members []string
	for u := range entity.Members {
		members = append(members, u)
	}
	sort.Strings(members)
	if !slices.Equal(members, all) {
		t.Fatalf("broker members %v, want %v", members, all)
	}
	// everyone hears everyone, in each sender's order
	for _, c := range clients {
		c.Send(map[string]any{"type": "say", "text": "one from " + c.Name})
		c.Send(map[string]any{"type": "say", "text": "two from " + c.Name})
	}
	for _, c := range clients {
		next := map[string]int{} // sender -> messages seen
		sent := 0
		for k := 0; k < 2*(n-1)+2; k++ {
			m := c.Recv()
			switch m["type"] {
			case "sent":
				sent++
			case "message":
				from := m["from"].(string)
				want := []string{"one from ", "two from "}[min(next[from], 1)] + from
				if m["text"] != want || next[from] > 1 {
					t.Fatalf("%s: got %q from %s, want %q", c.Name, m["text"], from, want)
				}
				next[from]++
			default:
				t.Fatalf("%s: unexpected %s", c.Name, testkit.JSON(m))
			}
		}
		if sent != 2 || len(next) != n-1 {
			t.Errorf("%s: %d sent, messages from %d users; want 2 and %d", c.Name, sent, len(next), n-1)
		}
	}
	// and all leave at once: the room is deleted
	for _, c := range clients {
		c.Send(map[string]any{"type": "leave"})
	}
	for _, c := range clients {
		c.ExpectCloseAllowing(websocket.StatusNormalClosure, func(m map[string]any) bool {
			return m["type"] == "bye" || m["type"] == "left"
		})
	}
	testkit.Eventually(t, waitBound, "the room's entity to be deleted", func() bool {
		return s.memory().Get(roomTopic(room)) == nil
	})
}
