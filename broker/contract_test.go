package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// factory makes a fresh broker for one contract test; each call must give
// a broker with no state shared with earlier calls.
type factory func(t *testing.T) Broker

// runContract is the behaviour every Broker implementation shares.
func runContract(t *testing.T, newBroker factory) {
	ctx := context.Background()
	topic := Topic{Namespace: "chat", Key: "room1"}

	t.Run("absent entity is nil, set then read back", func(t *testing.T) {
		b := newBroker(t)
		var seen []byte
		mustUpdate(t, b, topic, func(cur []byte, _ bool) ([]byte, Op, error) {
			seen = cur
			return []byte(`{"n":1}`), Set, nil
		})
		if seen != nil {
			t.Fatalf("first update saw %q, want nil", seen)
		}
		mustUpdate(t, b, topic, func(cur []byte, _ bool) ([]byte, Op, error) {
			seen = append([]byte(nil), cur...)
			return nil, Abort, nil
		})
		if string(seen) != `{"n":1}` {
			t.Fatalf("second update saw %q", seen)
		}
	})

	t.Run("abort writes nothing, delete removes", func(t *testing.T) {
		b := newBroker(t)
		mustUpdate(t, b, topic, func([]byte, bool) ([]byte, Op, error) { return []byte(`{"a":1}`), Abort, nil })
		if got := read(t, b, topic); got != nil {
			t.Fatalf("abort committed %q", got)
		}
		mustUpdate(t, b, topic, func([]byte, bool) ([]byte, Op, error) { return []byte(`{"a":1}`), Set, nil })
		mustUpdate(t, b, topic, func([]byte, bool) ([]byte, Op, error) { return nil, Delete, nil })
		if got := read(t, b, topic); got != nil {
			t.Fatalf("delete left %q", got)
		}
	})

	t.Run("an error from fn commits nothing and is returned", func(t *testing.T) {
		b := newBroker(t)
		boom := errors.New("boom")
		err := b.Update(ctx, topic, func([]byte, bool) ([]byte, Op, error) { return []byte(`{"x":1}`), Set, boom })
		if !errors.Is(err, boom) {
			t.Fatalf("err = %v, want boom", err)
		}
		if got := read(t, b, topic); got != nil {
			t.Fatalf("failed update committed %q", got)
		}
	})

	t.Run("keys and namespaces are separate", func(t *testing.T) {
		b := newBroker(t)
		other := []Topic{{"chat", "room2"}, {"game", "room1"}}
		mustUpdate(t, b, topic, func([]byte, bool) ([]byte, Op, error) { return []byte(`1`), Set, nil })
		for _, o := range other {
			if got := read(t, b, o); got != nil {
				t.Fatalf("%s sees %q", o, got)
			}
		}
	})

	t.Run("no lost update under concurrency", func(t *testing.T) {
		b := newBroker(t)
		const workers, each = 8, 50
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < each; i++ {
					err := b.Update(ctx, topic, func(cur []byte, _ bool) ([]byte, Op, error) {
						n := 0
						if cur != nil {
							if err := json.Unmarshal(cur, &n); err != nil {
								return nil, Abort, err
							}
						}
						return []byte(fmt.Sprint(n + 1)), Set, nil
					})
					if err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		if got := string(read(t, b, topic)); got != fmt.Sprint(workers*each) {
			t.Fatalf("counter = %s, want %d", got, workers*each)
		}
	})

	t.Run("publish reaches subscribers once active, not after close", func(t *testing.T) {
		b := newBroker(t)
		got := make(chan Envelope, 4)
		sub, err := b.Subscribe(ctx, topic, func(e Envelope) { got <- e })
		if err != nil {
			t.Fatal(err)
		}
		other := make(chan Envelope, 4)
		osub, err := b.Subscribe(ctx, Topic{"chat", "room2"}, func(e Envelope) { other <- e })
		if err != nil {
			t.Fatal(err)
		}
		defer osub.Close()
		env := Envelope{Target: "bob", Message: json.RawMessage(`{"text":"hi"}`), BrokerKey: "room1", Source: "c1"}
		if err := b.Publish(ctx, topic, env); err != nil {
			t.Fatal(err)
		}
		select {
		case e := <-got:
			if e.Target != "bob" || string(e.Message) != `{"text":"hi"}` || e.BrokerKey != "room1" || e.Source != "c1" {
				t.Fatalf("envelope = %+v", e)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no delivery within 5s")
		}
		if err := sub.Close(); err != nil {
			t.Fatal(err)
		}
		if err := sub.Close(); err != nil {
			t.Fatalf("second close: %v", err)
		}
		if err := b.Publish(ctx, topic, env); err != nil {
			t.Fatal(err)
		}
		// A message on another topic proves delivery still works; the closed
		// subscription must have received nothing by then.
		if err := b.Publish(ctx, Topic{"chat", "room2"}, env); err != nil {
			t.Fatal(err)
		}
		select {
		case <-other:
		case <-time.After(5 * time.Second):
			t.Fatal("no delivery on room2 within 5s")
		}
		select {
		case e := <-got:
			t.Fatalf("closed subscription received %+v", e)
		default:
		}
	})
}

func mustUpdate(t *testing.T, b Broker, tp Topic, fn UpdateFunc) {
	t.Helper()
	if err := b.Update(context.Background(), tp, fn); err != nil {
		t.Fatalf("update %s: %v", tp, err)
	}
}

func read(t *testing.T, b Broker, tp Topic) []byte {
	t.Helper()
	var v []byte
	mustUpdate(t, b, tp, func(cur []byte, _ bool) ([]byte, Op, error) {
		v = append([]byte(nil), cur...)
		if cur == nil {
			v = nil
		}
		return nil, Abort, nil
	})
	return v
}
