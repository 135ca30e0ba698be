package tests

import (
	"context"
	"encoding/binary"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/coder/websocket"
	"github.com/electric-socket/electric-socket/tests/testkit"
)

// A login with an invalid user name is refused with the script's failure
// body (id "auth") and close 1008; nothing is left behind.
func TestChatFailedLogin(t *testing.T) {
	s := startServer(t, chatConfig)
	for _, user := range []any{"not a name!", "", 42} {
		c := s.dial("/chat")
		c.Send(map[string]any{"user": user, "room": "lobby"})
		got := c.Expect(map[string]any{"id": "auth", "success": false, "error": "invalid_user"})
		if msg, _ := got["message"].(string); msg == "" {
			t.Errorf("failure body has no message: %s", testkit.JSON(got))
		}
		c.ExpectClose(websocket.StatusPolicyViolation)
	}
	// an invalid room from the query string
	c := s.dial("/chat?room=bad%20room")
	c.Send(map[string]any{"user": "alice"})
	c.Expect(map[string]any{"id": "auth", "success": false, "error": "invalid_room"})
	c.ExpectClose(websocket.StatusPolicyViolation)

	s.waitIdle()
	if n := s.memory().Len(); n != 0 {
		t.Errorf("broker holds %d entities after failed logins, want 0", n)
	}
	checkHealthy(s, "lobby")
}

// The room comes from the query string when the login message has none.
func TestChatRoomFromQuery(t *testing.T) {
	s := startServer(t, chatConfig)
	c := s.dial("/chat?room=kitchen")
	c.Send(map[string]any{"user": "alice"})
	c.Expect(map[string]any{"type": "welcome", "user": "alice", "room": "kitchen"})
	if got := s.members("kitchen"); !slices.Equal(got, []string{"alice"}) {
		t.Errorf("kitchen members %v, want [alice]", got)
	}
}

// Two users in one room: welcome with members, joined notice, say reaches
// the other with from/text, the sender gets sent.
func TestChatTwoUsers(t *testing.T) {
	s := startServer(t, chatConfig)
	alice := s.login("alice", "lobby")
	bob := s.dial("/chat")
	bob.Name = "bob"
	bob.Send(map[string]any{"user": "bob", "room": "lobby"})
	w := bob.Expect(map[string]any{"type": "welcome", "user": "bob", "room": "lobby"})
	if got := strs(w["members"]); !slices.Equal(got, []string{"alice", "bob"}) {
		t.Errorf("welcome members %v, want [alice bob]", got)
	}
	alice.Expect(map[string]any{"type": "joined", "user": "bob", "room": "lobby"})

	alice.Send(map[string]any{"type": "say", "text": "hello bob"})
	alice.Expect(map[string]any{"type": "sent", "text": "hello bob"})
	bob.Expect(map[string]any{"type": "message", "from": "alice", "room": "lobby", "text": "hello bob"})

	bob.Send(map[string]any{"type": "say", "text": "hi alice"})
	bob.Expect(map[string]any{"type": "sent", "text": "hi alice"})
	alice.Expect(map[string]any{"type": "message", "from": "bob", "room": "lobby", "text": "hi alice"})

	// a failure response does not close the connection
	alice.Send(map[string]any{"type": "say", "text": ""})
	alice.Expect(map[string]any{"id": "comm", "success": false, "error": "invalid_text"})
	alice.Send(map[string]any{"type": "dance"})
	alice.Expect(map[string]any{"id": "comm", "success": false, "error": "unknown_type"})
	alice.Send(map[string]any{"type": "members"})
	m := alice.Expect(map[string]any{"type": "members", "room": "lobby"})
	if got := strs(m["members"]); !slices.Equal(got, []string{"alice", "bob"}) {
		t.Errorf("members %v, want [alice bob]", got)
	}
	if got := s.members("lobby"); len(got) != 2 {
		t.Errorf("broker members %v, want alice and bob", got)
	}
	// users in another room hear nothing of the lobby
	carol := s.login("carol", "kitchen")
	alice.Send(map[string]any{"type": "say", "text": "lobby only"})
	alice.Expect(map[string]any{"type": "sent"})
	bob.Expect(map[string]any{"type": "message", "text": "lobby only"})
	carol.Send(map[string]any{"type": "members"})
	m = carol.Expect(map[string]any{"type": "members", "room": "kitchen"})
	if got := strs(m["members"]); !slices.Equal(got, []string{"carol"}) {
		t.Errorf("kitchen members %v, want [carol]", got)
	}
}

// A whisper reaches its target only; a whisper to someone absent is a
// failure with id "comm" and the connection stays open.
func TestChatWhisper(t *testing.T) {
	s := startServer(t, chatConfig)
	alice := s.login("alice", "lobby")
	bob := s.login("bob", "lobby")
	alice.Expect(map[string]any{"type": "joined", "user": "bob"})
	carol := s.login("carol", "lobby")
	alice.Expect(map[string]any{"type": "joined", "user": "carol"})
	bob.Expect(map[string]any{"type": "joined", "user": "carol"})

	alice.Send(map[string]any{"type": "whisper", "to": "bob", "text": "psst"})
	alice.Expect(map[string]any{"type": "sent", "to": "bob", "text": "psst"})
	bob.Expect(map[string]any{"type": "whisper", "from": "alice", "text": "psst"})

	// Carol got nothing: the next thing she receives is what alice said
	// after the whisper (broker messages of one sender arrive in order).
	alice.Send(map[string]any{"type": "say", "text": "after the whisper"})
	alice.Expect(map[string]any{"type": "sent"})
	carol.Expect(map[string]any{"type": "message", "from": "alice", "text": "after the whisper"})
	bob.Expect(map[string]any{"type": "message", "from": "alice", "text": "after the whisper"})

	// no such user: failure, still open
	alice.Send(map[string]any{"type": "whisper", "to": "dave", "text": "hello?"})
	f := alice.Expect(map[string]any{"id": "comm", "success": false, "error": "no_such_user"})
	if msg, _ := f["message"].(string); !strings.Contains(msg, "dave") {
		t.Errorf("failure message %q does not name dave", msg)
	}
	alice.Send(map[string]any{"type": "say", "text": "still open"})
	alice.Expect(map[string]any{"type": "sent", "text": "still open"})
	bob.Expect(map[string]any{"type": "message", "text": "still open"})
	carol.Expect(map[string]any{"type": "message", "text": "still open"})
}

// A second login of the same user in the same room replaces the first: the
// older connection is told "replaced" and closed 1000, the newer one keeps
// working, the others hear no "left", and the user stays a member.
func TestChatDoubleLogin(t *testing.T) {
	s := startServer(t, chatConfig)
	alice1 := s.login("alice", "lobby")
	bob := s.login("bob", "lobby")
	alice1.Expect(map[string]any{"type": "joined", "user": "bob"})

	alice2 := s.dial("/chat")
	alice2.Name = "alice2"
	alice2.Send(map[string]any{"user": "alice", "room": "lobby"})
	w := alice2.Expect(map[string]any{"type": "welcome", "user": "alice", "room": "lobby"})
	if got := strs(w["members"]); !slices.Equal(got, []string{"alice", "bob"}) {
		t.Errorf("welcome members %v, want [alice bob]", got)
	}
	alice1.Expect(map[string]any{"type": "replaced"})
	alice1.ExpectClose(websocket.StatusNormalClosure)
	// the replaced connection's on_close has run once its session is gone
	testkit.Eventually(t, waitBound, "the replaced session to end", func() bool { return s.app.Engine.Sessions() == 2 })

	if got := s.members("lobby"); !slices.Contains(got, "alice") || !slices.Contains(got, "bob") || len(got) != 2 {
		t.Errorf("broker members %v, want alice and bob", got)
	}

	// Bob heard neither a "joined" for the new login nor a "left" for the
	// old one: the next thing he receives is what the new alice says.
	alice2.Send(map[string]any{"type": "say", "text": "it is me again"})
	alice2.Expect(map[string]any{"type": "sent", "text": "it is me again"})
	bob.Expect(map[string]any{"type": "message", "from": "alice", "text": "it is me again"})

	// whispers to alice reach the new connection
	bob.Send(map[string]any{"type": "whisper", "to": "alice", "text": "welcome back"})
	bob.Expect(map[string]any{"type": "sent", "to": "alice"})
	alice2.Expect(map[string]any{"type": "whisper", "from": "bob", "text": "welcome back"})

	// and when the new alice leaves, bob hears it once
	alice2.Send(map[string]any{"type": "leave"})
	alice2.Expect(map[string]any{"type": "bye"})
	alice2.ExpectClose(websocket.StatusNormalClosure)
	bob.Expect(map[string]any{"type": "left", "user": "alice"})
	if got := s.members("lobby"); !slices.Equal(got, []string{"bob"}) {
		t.Errorf("broker members %v, want [bob]", got)
	}
}

// on_close runs for a client that closes normally and for one whose TCP
// connection is dropped without a close frame: the others hear "left".
func TestChatOnCloseNotices(t *testing.T) {
	s := startServer(t, chatConfig)
	alice := s.login("alice", "lobby")
	bob := s.login("bob", "lobby")
	alice.Expect(map[string]any{"type": "joined", "user": "bob"})
	carol := s.login("carol", "lobby")
	alice.Expect(map[string]any{"type": "joined", "user": "carol"})
	bob.Expect(map[string]any{"type": "joined", "user": "carol"})

	// a normal close handshake
	if err := bob.Conn.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Fatalf("bob close: %v", err)
	}
	alice.Expect(map[string]any{"type": "left", "user": "bob", "room": "lobby"})
	carol.Expect(map[string]any{"type": "left", "user": "bob", "room": "lobby"})

	// the TCP connection dropped without a close frame
	carol.Conn.CloseNow()
	alice.Expect(map[string]any{"type": "left", "user": "carol", "room": "lobby"})

	// a close code the client chooses (going away) counts the same
	dave := s.login("dave", "lobby")
	alice.Expect(map[string]any{"type": "joined", "user": "dave"})
	if err := dave.Conn.Close(websocket.StatusGoingAway, ""); err != nil {
		t.Fatalf("dave close: %v", err)
	}
	alice.Expect(map[string]any{"type": "left", "user": "dave", "room": "lobby"})

	if got := s.members("lobby"); !slices.Equal(got, []string{"alice"}) {
		t.Errorf("broker members %v, want [alice]", got)
	}
	testkit.Eventually(t, waitBound, "one session left", func() bool { return s.app.Engine.Sessions() == 1 })
}

// When the room empties its entity is deleted, and the instance keeps no
// session and no subscription.
func TestChatCleanupWhenRoomEmpties(t *testing.T) {
	s := startServer(t, chatConfig)
	alice := s.login("alice", "lobby")
	bob := s.login("bob", "lobby")
	alice.Expect(map[string]any{"type": "joined", "user": "bob"})
	other := s.login("zed", "attic")
	if got := s.app.Engine.Subscriptions(); got != 2 {
		t.Errorf("subscriptions = %d, want 2 (lobby and attic)", got)
	}
	if got := s.app.Engine.Sessions(); got != 3 {
		t.Errorf("sessions = %d, want 3", got)
	}

	bob.Send(map[string]any{"type": "leave"})
	bob.Expect(map[string]any{"type": "bye"})
	bob.ExpectClose(websocket.StatusNormalClosure)
	alice.Expect(map[string]any{"type": "left", "user": "bob"})
	alice.Conn.CloseNow()
	other.Conn.Close(websocket.StatusNormalClosure, "")

	testkit.Eventually(t, waitBound, "the lobby entity to be deleted", func() bool {
		return s.memory().Get(roomTopic("lobby")) == nil
	})
	testkit.Eventually(t, waitBound, "the attic entity to be deleted", func() bool {
		return s.memory().Get(roomTopic("attic")) == nil
	})
	s.waitIdle()
	if n := s.memory().Len(); n != 0 {
		t.Errorf("broker holds %d entities, want 0", n)
	}
	if n := s.memory().Subscriptions(); n != 0 {
		t.Errorf("broker holds %d subscriptions, want 0", n)
	}

	// the room can be used again
	checkHealthy(s, "lobby")
}

// leave gets "bye" then close 1000, and the member is removed.
func TestChatLeave(t *testing.T) {
	s := startServer(t, chatConfig)
	alice := s.login("alice", "lobby")
	bob := s.login("bob", "lobby")
	alice.Expect(map[string]any{"type": "joined", "user": "bob"})
	bob.Send(map[string]any{"type": "leave"})
	bob.Expect(map[string]any{"type": "bye"})
	bob.ExpectClose(websocket.StatusNormalClosure)
	alice.Expect(map[string]any{"type": "left", "user": "bob"})
	if got := s.members("lobby"); !slices.Equal(got, []string{"alice"}) {
		t.Errorf("broker members %v, want [alice]", got)
	}
	checkHealthy(s, "lobby", alice)
}

// App.Shutdown closes every connection with 1001 after running its
// on_close, which empties the room.
func TestChatShutdownInProcess(t *testing.T) {
	s := startServer(t, chatConfig)
	alice := s.login("alice", "lobby")
	bob := s.login("bob", "lobby")
	alice.Expect(map[string]any{"type": "joined", "user": "bob"})
	idle := s.dial("/chat") // connected, never authorised

	// Shutdown with the broker still inspectable afterwards.
	m := s.memory()
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitBound)
		defer cancel()
		done <- s.app.Shutdown(ctx)
	}()
	left := func(v map[string]any) bool { return v["type"] == "left" }
	alice.ExpectCloseAllowing(websocket.StatusGoingAway, left)
	bob.ExpectCloseAllowing(websocket.StatusGoingAway, left)
	idle.ExpectClose(websocket.StatusGoingAway)
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if got := m.Get(roomTopic("lobby")); got != nil {
		t.Errorf("lobby entity after shutdown: %s, want none (on_close of both members)", got)
	}
	if n := s.app.Engine.Sessions(); n != 0 {
		t.Errorf("sessions after shutdown = %d, want 0", n)
	}
	if n := strings.Count(s.log.String(), `event\":\"leave`); n != 2 {
		t.Errorf("log has %d leave side effects, want 2", n)
	}
}

// A frame that arrives after should_close was decided is not processed:
// the "say" sent right behind "leave" reaches nobody.
func TestChatFrameAfterClose(t *testing.T) {
	s := startServer(t, chatConfig)
	alice := s.login("alice", "lobby")
	// bob's client is raw: its leave and its ghost reach the server in one
	// write, so the ghost is sent however fast the server closes
	bob := dialRawClient(t, s.addr, "/chat")
	bob.write(textFrame(map[string]any{"user": "bob", "room": "lobby"}))
	bob.expect(map[string]any{"type": "welcome", "user": "bob"})
	alice.Expect(map[string]any{"type": "joined", "user": "bob"})
	bob.write(textFrame(map[string]any{"type": "leave"}), textFrame(map[string]any{"type": "say", "text": "ghost"}))
	bob.expect(map[string]any{"type": "bye"})
	if op, p := bob.read(); op != 0x8 || len(p) < 2 || binary.BigEndian.Uint16(p) != uint16(websocket.StatusNormalClosure) {
		t.Fatalf("bob: got opcode %d %q, want close 1000", op, p)
	}
	alice.Expect(map[string]any{"type": "left", "user": "bob"})
	// alice's next message is the newcomer's joined, not bob's ghost
	checkHealthy(s, "lobby", alice)
}

// The server answers a ping with a pong while the session goes on.
func TestPing(t *testing.T) {
	s := startServer(t, chatConfig)
	alice := s.login("alice", "lobby")
	// coder/websocket reads the pong in Read: keep one read going.
	type result struct {
		msg map[string]any
		err error
	}
	next := make(chan result, 1)
	go func() {
		m, err := alice.Read()
		next <- result{m, err}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	if err := alice.Conn.Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
	alice.Send(map[string]any{"type": "members"})
	r := <-next // bounded by read's own deadline
	if r.err != nil || r.msg["type"] != "members" {
		t.Fatalf("after the ping: %v, %v; want the members answer", testkit.JSON(r.msg), r.err)
	}
}

// A path no integration serves is refused before the upgrade.
func TestUnknownPath(t *testing.T) {
	s := startServer(t, chatConfig)
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, "ws://"+s.addr+"/nope", nil)
	if err == nil {
		conn.CloseNow()
		t.Fatal("dial /nope succeeded, want a refusal")
	}
	if resp == nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("dial /nope: %v, response %v; want 404", err, resp)
	}
	checkHealthy(s, "lobby")
}
