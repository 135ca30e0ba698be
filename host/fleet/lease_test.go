package fleet

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/electric-socket/electric-socket/broker"
	"github.com/electric-socket/electric-socket/host/engine"
	"github.com/electric-socket/electric-socket/host/engine/enginetest"
	"github.com/electric-socket/electric-socket/luabridge"
)

// recorder is an engine.Fleet that keeps the last connection it was told
// of, as Leases would record it.
type recorder struct {
	mu   sync.Mutex
	last engine.Conn
}

func (r *recorder) Authorised(c engine.Conn) { r.mu.Lock(); r.last = c; r.mu.Unlock() }
func (r *recorder) Changed(c engine.Conn)    { r.mu.Lock(); r.last = c; r.mu.Unlock() }
func (r *recorder) CloseContext(ctx context.Context, _ string) context.Context {
	return ctx
}
func (r *recorder) Closed(string, error) {}

func (r *recorder) conn() engine.Conn { r.mu.Lock(); defer r.mu.Unlock(); return r.last }

// recorded returns a harness whose engine tells a recorder of its sessions.
func recorded(t *testing.T, src string, b broker.Broker) (*enginetest.Harness, *recorder) {
	te := enginetest.New(t, src, b)
	r := &recorder{}
	te.Engine.SetFleet(r)
	return te, r
}

// The records of lease.go carry what on_close needs: the channel view, the
// identifier, the key and the last committed channel data.
func TestConnRecordCarriesTheChannelView(t *testing.T) {
	te, r := recorded(t, enginetest.RoomScript, nil)
	s, _ := te.Connect(map[string]string{"v": "2"})
	s.Message([]byte(`{"user":"alice","room":"lobby"}`))
	var rec connRecord
	if err := json.Unmarshal(recordOf(r.conn()), &rec); err != nil {
		t.Fatal(err)
	}
	if got, want := rec.conn().Channel, s.Channel(); !reflect.DeepEqual(got, want) {
		t.Fatalf("channel view %+v, want %+v", got, want)
	}
	if rec.Identifier == nil || *rec.Identifier != "alice" || rec.Key == nil || *rec.Key != "lobby" {
		t.Fatalf("identifier %v, key %v", rec.Identifier, rec.Key)
	}
	if want := `{"room":"lobby","user":"alice"}`; string(rec.ChannelData) != want {
		t.Fatalf("channel data %s, want %s", rec.ChannelData, want)
	}
	if string(rec.ChannelData) != string(r.conn().ChannelData) {
		t.Fatalf("channel data %s, want %s", rec.ChannelData, r.conn().ChannelData)
	}

	noKey, r2 := recorded(t, strings.Replace(enginetest.RoomScript, "function M.broker_key(channel, cd) return cd.room end",
		"function M.broker_key(channel, cd) return nil end", 1), nil)
	s2, _ := noKey.Connect(nil)
	s2.Message([]byte(`{"user":"bob"}`))
	var rec2 connRecord
	json.Unmarshal(recordOf(r2.conn()), &rec2)
	if rec2.Identifier == nil || *rec2.Identifier != "bob" {
		t.Fatalf("bob's connection was not recorded: %+v", rec2)
	}
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
	dead, r := recorded(t, enginetest.RoomScript, mem)
	alice, _ := dead.Login("alice", "lobby")
	record := recordOf(r.conn())

	survivor := enginetest.New(t, enginetest.RoomScript, mem)
	survivor.IDPrefix = "survivor-" // its channel ids must differ from the dead engine's
	_, bob := survivor.Login("bob", "lobby")
	var rec connRecord
	if err := json.Unmarshal(record, &rec); err != nil {
		t.Fatal(err)
	}
	l := &Leases{engine: survivor.Engine}
	if err := l.orphanClose(t.Context(), survivor.In, &rec); err != nil {
		t.Fatal(err)
	}
	if got := bob.Take(); len(got) != 1 || !strings.Contains(got[0], `"left":"alice"`) {
		t.Fatalf("bob got %v, want alice's leave", got)
	}
	if got := string(mem.Get(broker.Topic{Namespace: "chat", Key: "lobby"})); strings.Contains(got, "alice") {
		t.Fatalf("the room still holds alice: %s", got)
	}
	fx := survivor.Sink.Payloads()
	if len(fx) == 0 || fx[len(fx)-1] != `on_close {"leave":"alice"}` {
		t.Fatalf("side effects on the survivor: %v", fx)
	}
	got := survivor.Sink.Effects()
	if e := got[len(got)-1]; e.Channel != alice.Channel().ID {
		t.Fatalf("the side effect names channel %s, want alice's %s", e.Channel, alice.Channel().ID)
	}
}

// A verified token's claims are recorded, so that on_close on another
// instance sees channel.claims.
func TestConnRecordCarriesTheClaims(t *testing.T) {
	c := engine.Conn{Integration: "chat", ChannelData: json.RawMessage(`{}`),
		Channel: &luabridge.Channel{ID: "c1", Integration: "chat", Path: "/chat", RemoteAddr: "1.2.3.4:5", Claims: []byte(`{"sub":"alice"}`)}}
	var rec connRecord
	if err := json.Unmarshal(recordOf(c), &rec); err != nil {
		t.Fatal(err)
	}
	if got := string(rec.conn().Channel.Claims); got != `{"sub":"alice"}` {
		t.Fatalf("claims after the record: %q", got)
	}
}
