package host

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/electric-socket/electric-socket/broker"
)

// The records of lease.go carry what on_close needs: the channel view, the
// identifier, the key and the last committed channel data.
func TestConnRecordCarriesTheChannelView(t *testing.T) {
	te := newTestEngine(t, roomScript, nil)
	s, _ := te.connect(map[string]string{"v": "2"})
	s.Message([]byte(`{"user":"alice","room":"lobby"}`))
	var rec connRecord
	if err := json.Unmarshal(recordOf(s), &rec); err != nil {
		t.Fatal(err)
	}
	if got, want := rec.channel(), s.channel; !reflect.DeepEqual(got, want) {
		t.Fatalf("channel view %+v, want %+v", got, want)
	}
	if rec.Identifier == nil || *rec.Identifier != "alice" || rec.Key == nil || *rec.Key != "lobby" {
		t.Fatalf("identifier %v, key %v", rec.Identifier, rec.Key)
	}
	if string(rec.ChannelData) != string(s.channelData) {
		t.Fatalf("channel data %s, want %s", rec.ChannelData, s.channelData)
	}

	noKey := newTestEngine(t, strings.Replace(roomScript, "function M.broker_key(channel, cd) return cd.room end",
		"function M.broker_key(channel, cd) return nil end", 1), nil)
	s2, _ := noKey.connect(nil)
	s2.Message([]byte(`{"user":"bob"}`))
	var rec2 connRecord
	json.Unmarshal(recordOf(s2), &rec2)
	if rec2.Key != nil {
		t.Fatalf("a connection without a broker key recorded key %q", *rec2.Key)
	}
}

// orphanClose runs on_close for a recorded connection through the same
// code as a closing session: inside the update, then the broker messages
// and the side effects, here on another engine sharing the broker, as a
// surviving instance would.
func TestOrphanCloseActsLikeASessionClosing(t *testing.T) {
	mem := broker.NewMemory(3)
	dead := newTestEngine(t, roomScript, mem)
	alice, _ := dead.login("alice", "lobby")
	record := recordOf(alice)

	survivor := newTestEngine(t, roomScript, mem)
	survivor.n = 100 // its channel ids must differ from the dead engine's
	_, bob := survivor.login("bob", "lobby")
	var rec connRecord
	if err := json.Unmarshal(record, &rec); err != nil {
		t.Fatal(err)
	}
	if err := survivor.engine.orphanClose(t.Context(), survivor.in, &rec); err != nil {
		t.Fatal(err)
	}
	if got := bob.take(); len(got) != 1 || !strings.Contains(got[0], `"left":"alice"`) {
		t.Fatalf("bob got %v, want alice's leave", got)
	}
	if got := string(mem.Get(broker.Topic{Namespace: "chat", Key: "lobby"})); strings.Contains(got, "alice") {
		t.Fatalf("the room still holds alice: %s", got)
	}
	fx := survivor.sink.payloads()
	if len(fx) == 0 || fx[len(fx)-1] != `on_close {"leave":"alice"}` {
		t.Fatalf("side effects on the survivor: %v", fx)
	}
	if e := survivor.sink.got[len(survivor.sink.got)-1]; e.Channel != alice.channel.ID {
		t.Fatalf("the side effect names channel %s, want alice's %s", e.Channel, alice.channel.ID)
	}
}
