package sink

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/electric-socket/electric-socket/broker/redistest"
	"github.com/electric-socket/electric-socket/host/config"
	"github.com/electric-socket/electric-socket/host/engine"
)

// A redis_stream sink whose Redis refuses the connection says so at start,
// rather than calling it a timeout.
func TestStreamSinkSaysTheConnectionWasRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	c := config.Default().Sink
	c.Kind, c.URL = "redis_stream", "redis://"+addr+"/0"
	_, err = newStreamSink(c, slog.New(slog.DiscardHandler), nil)
	if err == nil || !strings.Contains(err.Error(), "the connection was refused") || !strings.Contains(err.Error(), addr) ||
		strings.Contains(err.Error(), "no answer") {
		t.Fatalf("err = %v, want it to say %s refused the connection", err, addr)
	}
}

// Side effects that wait while Redis does not answer go out in batches of
// at most [sink] batch_size, one MULTI/EXEC each, in order: Redis counts
// the EXECs.
func TestStreamSinkSendsBatches(t *testing.T) {
	r := redistest.NewLocal(t)
	c := config.Default().Sink
	const batch, effects = 50, 200
	c.Kind, c.URL, c.Stream, c.BatchSize = "redis_stream", r.URL, "fx", batch
	s, err := newStreamSink(c, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Close(ctx)
	})
	opt, _ := redis.ParseURL(r.URL)
	rc := redis.NewClient(opt)
	t.Cleanup(func() { rc.Close() })
	ctx := context.Background()
	deliver := func(n int) {
		t.Helper()
		err := s.Deliver(ctx, engine.SideEffect{Integration: "i", Channel: "c", Function: "f", Payload: json.RawMessage(fmt.Sprintf(`{"n":%d}`, n))})
		if err != nil {
			t.Fatal(err)
		}
	}
	entries := func() []redis.XMessage {
		t.Helper()
		list, err := rc.XRange(ctx, "fx", "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		return list
	}
	if err := rc.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}

	r.Pause(t) // the sink's first batch waits for Redis; the others queue
	for n := 1; n <= effects; n++ {
		deliver(n)
	}
	r.Resume(t)
	deadline := time.Now().Add(15 * time.Second)
	for len(entries()) < effects {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d effects in the stream after 15s", len(entries()), effects)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// In order, each once (a batch sent again after a lost reply would
	// repeat ids: a consumer drops those; there is none here, Redis only
	// paused for a moment).
	seen := map[string]bool{}
	next := 1
	for _, e := range entries() {
		id := e.Values["id"].(string)
		if seen[id] {
			continue
		}
		seen[id] = true
		if want := fmt.Sprintf(`{"n":%d}`, next); e.Values["effect"] != want {
			t.Fatalf("entry %d is %v, want %s", next, e.Values["effect"], want)
		}
		next++
	}
	stats, err := rc.Info(ctx, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	execs := commandCalls(stats, "exec")
	// One batch may have gone alone before the others queued; the rest in
	// batches of at most 50, so at least effects/batch EXECs, and far fewer
	// than one per effect.
	if execs < effects/batch || execs > effects/batch+3 {
		t.Errorf("%d EXECs for %d effects with batch_size %d, want %d to %d", execs, effects, batch, effects/batch, effects/batch+3)
	}
	if xadds := commandCalls(stats, "xadd"); xadds < effects {
		t.Errorf("%d XADDs for %d effects", xadds, effects)
	}
}

// commandCalls reads calls=N of cmdstat_<name> from INFO commandstats.
func commandCalls(info, name string) int {
	for _, line := range strings.Split(info, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_"+name+":calls=")
		if !ok {
			continue
		}
		n, _ := strconv.Atoi(strings.SplitN(rest, ",", 2)[0])
		return n
	}
	return 0
}
