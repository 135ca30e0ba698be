package engine_test

import (
	"context"
	"strings"
	"testing"

	"github.com/electric-socket/electric-socket/broker"
	"github.com/electric-socket/electric-socket/host/engine"
	"github.com/electric-socket/electric-socket/host/engine/enginetest"
	"github.com/electric-socket/electric-socket/luabridge"
)

// memRecorder keeps every session's events; panicAt > 0 panics on that
// call of Event.
type memRecorder struct {
	events  []*engine.Recorded
	ended   int
	calls   int
	panicAt int
}

func (r *memRecorder) Open(*luabridge.Channel) engine.SessionRecord { return r }
func (r *memRecorder) Event(ev *engine.Recorded) {
	r.calls++
	if r.calls == r.panicAt {
		panic("recorder bug")
	}
	r.events = append(r.events, ev)
}
func (r *memRecorder) End() { r.ended++ }

// The record of an event whose update lost a compare-and-set holds the
// broker data the committing attempt saw and only that attempt's outputs,
// in the order the host acted: commit, side effect, broker message, frame.
func TestRecordHoldsTheCommittedAttempt(t *testing.T) {
	rb := &racingBroker{Memory: broker.NewMemory(3)}
	te := enginetest.New(t, enginetest.RoomScript, rb)
	rec := &memRecorder{}
	te.In.Recorder = rec
	a, ca := te.Login("alice", "r")
	te.In.Recorder = nil
	_, _ = te.Login("peer", "r")
	ca.Take()

	rb.race.Store(true)
	a.Message([]byte(`{"type":"bump"}`))
	if len(rec.events) != 2 {
		t.Fatalf("%d events recorded, want the login and the bump", len(rec.events))
	}
	ev := rec.events[1]
	if ev.Kind != engine.RecMessage || string(ev.Text) != `{"type":"bump"}` {
		t.Fatalf("event %+v", ev)
	}
	if len(ev.Updates) != 1 || !ev.Updates[0].Ran || !strings.Contains(string(ev.Updates[0].Seen), `"n":10`) {
		t.Fatalf("updates %+v, want one that saw the other writer's n = 10", ev.Updates)
	}
	var kinds []string
	for _, o := range ev.Out {
		switch {
		case o.Commit != nil:
			kinds = append(kinds, "commit "+string(o.Commit.Data))
		case o.SideEffect != nil:
			kinds = append(kinds, "side_effect")
		case o.Publish != nil:
			kinds = append(kinds, "publish")
		case o.Send != nil:
			kinds = append(kinds, "send "+string(o.Send))
		}
	}
	got := strings.Join(kinds, "; ")
	if !strings.HasPrefix(got, "commit ") || !strings.Contains(got, `"n":11`) || !strings.HasSuffix(got, `send {"n":11}`) || strings.Contains(got, `"n":1}`) {
		t.Errorf("outputs %s, want the committed attempt's (n = 11) only, commit first, frame last", got)
	}
}

// A recorder that panics stops recording that connection; the connection
// goes on being served, and the session still ends.
func TestRecorderPanicDoesNotTouchTheConnection(t *testing.T) {
	te := enginetest.New(t, enginetest.RoomScript, nil)
	rec := &memRecorder{panicAt: 1}
	te.In.Recorder = rec
	s, c := te.Connect(nil)
	s.Message([]byte(`{"user":"a","room":"r"}`))
	if got := c.Take(); len(got) != 1 || !strings.Contains(got[0], "welcome") {
		t.Fatalf("login answered %v", got)
	}
	s.Message([]byte(`{"seq":1}`))
	if got := c.Take(); len(got) != 1 || got[0] != `{"echo":1}` {
		t.Fatalf("after the recorder's panic: %v", got)
	}
	if len(rec.events) != 0 || c.CloseCode() != 0 {
		t.Errorf("recorded %d events after the panic, close %d", len(rec.events), c.CloseCode())
	}
	s.Closed()
	if te.Engine.Sessions() != 0 {
		t.Error("session not forgotten")
	}
}

// A session records its close, and its record ends once.
func TestRecordEndsOnceWithTheClose(t *testing.T) {
	te := enginetest.New(t, enginetest.RoomScript, nil)
	rec := &memRecorder{}
	te.In.Recorder = rec
	s, _ := te.Login("alice", "r")
	s.Closed()
	s.Closed()
	if rec.ended != 1 {
		t.Fatalf("record ended %d times, want 1", rec.ended)
	}
	last := rec.events[len(rec.events)-1]
	if last.Kind != engine.RecClosed || len(last.Updates) != 1 {
		t.Errorf("last event %+v, want the close with on_close's update", last)
	}
}

// countingBroker counts the updates of the memory broker it wraps.
type countingBroker struct {
	*broker.Memory
	updates int
}

func (b *countingBroker) Update(ctx context.Context, t broker.Topic, fn broker.UpdateFunc) error {
	b.updates++
	return b.Memory.Update(ctx, t, fn)
}

// A broker message for a script without process_broker_message is sent on
// without a broker update of the key (a message to a room of 1,000 is not
// 1,000 updates of the room); with the function, it runs inside one.
func TestDefaultBrokerMessageNeedsNoUpdate(t *testing.T) {
	withoutFn := strings.Replace(enginetest.RoomScript, "function M.process_broker_message(", "local function unused(", 1)
	for _, c := range []struct {
		name, script string
		updates      int
		want         string
	}{
		{"default", withoutFn, 0, `{"hi":1}`},
		{"defined", enginetest.RoomScript, 1, `{"got":{"hi":1},"key":"r","source":"elsewhere"}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := &countingBroker{Memory: broker.NewMemory(3)}
			te := enginetest.New(t, c.script, b)
			_, conn := te.Login("alice", "r")
			conn.Take()
			before := b.updates
			te.Publish("r", "alice", `{"hi":1}`)
			if got := conn.Take(); len(got) != 1 || got[0] != c.want {
				t.Fatalf("alice got %v, want %s", got, c.want)
			}
			if n := b.updates - before; n != c.updates {
				t.Errorf("%d broker updates for the delivery, want %d", n, c.updates)
			}
		})
	}
}
