package tests

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/coder/websocket"
	"github.com/redis/go-redis/v9"

	"github.com/electric-socket/electric-socket/broker"
	"github.com/electric-socket/electric-socket/broker/redistest"
)

// counterConfig serves testdata/redis_counter.lua at /counter with the
// given [broker] table.
func counterConfig(brokerTable string) string {
	return `
[server]
listen = "127.0.0.1:0"

[lua]
watch = false

` + brokerTable + `

[[integration]]
name = "counter"
path = "/counter"
script = "redis_counter.lua"
`
}

// An entity that another program wrote as something other than JSON is a
// broker data problem (SPEC sections 5.7 and 6): the client gets
// broker_data_invalid (not invalid_json, not 1007), the server logs it with
// the key, an authorised connection stays open and works again once the
// entity is valid, and a login on that key is closed with 1011.
func TestBrokerDataInvalidMemory(t *testing.T) {
	s := startServer(t, counterConfig(`[broker]
kind = "memory"`))
	checkBrokerDataInvalid(t, s, func(raw string) {
		if err := s.memory().Set(broker.Topic{Namespace: "counter", Key: "c1"}, []byte(raw)); err != nil {
			t.Fatal(err)
		}
	})
}

// The same with a real redis-server, the entity SET by a Redis client.
func TestBrokerDataInvalidRedis(t *testing.T) {
	srv := redistest.New(t)
	const prefix = "bdi:"
	s := startServer(t, counterConfig(fmt.Sprintf("[broker]\nkind = \"redis\"\nurl = %s\nprefix = %q",
		strconv.Quote(srv.URL), prefix)))
	opts, err := redis.ParseURL(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { rdb.Close() })
	checkBrokerDataInvalid(t, s, func(raw string) {
		ctx, cancel := context.WithTimeout(context.Background(), waitBound)
		defer cancel()
		if err := rdb.Set(ctx, prefix+"counter.c1", raw, 0).Err(); err != nil {
			t.Fatal(err)
		}
	})
}

func checkBrokerDataInvalid(t *testing.T, s *server, set func(raw string)) {
	a := s.dial("/counter")
	a.Send(map[string]any{"counter": "c1"})
	a.Expect(map[string]any{"type": "ready", "n": float64(0)})
	a.Send(map[string]any{})
	a.Expect(map[string]any{"n": float64(1)})

	set(`{"n": 1, oops`)
	a.Send(map[string]any{})
	msg := a.ExpectError("broker_data_invalid")
	if strings.Contains(msg, "invalid_json") || !strings.Contains(msg, "not valid JSON") {
		t.Errorf("error message %q", msg)
	}
	if log := s.log.String(); !strings.Contains(log, `msg="broker error"`) || !strings.Contains(log, "key=c1") ||
		!strings.Contains(log, "the stored entity is not valid JSON") {
		t.Errorf("the log does not name the broker error and its key:\n%s", log)
	}

	// The connection stayed open: once the entity is valid again it works.
	set(`{"n": 41}`)
	a.Send(map[string]any{})
	a.Expect(map[string]any{"n": float64(42)})

	// A login on the key while the entity is not JSON: the error, then 1011.
	set(`<html>`)
	b := s.dial("/counter")
	b.Send(map[string]any{"counter": "c1"})
	b.ExpectError("broker_data_invalid")
	b.ExpectClose(websocket.StatusInternalError)

	// Another key is not affected.
	c := s.dial("/counter")
	c.Send(map[string]any{"counter": "c2"})
	c.Expect(map[string]any{"type": "ready", "n": float64(0)})

	set(`{"n": 7}`)
	a.Send(map[string]any{})
	a.Expect(map[string]any{"n": float64(8)})
}
