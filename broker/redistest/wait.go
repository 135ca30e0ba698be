package redistest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// topologyBound bounds each wait of the Cluster and Sentinel helpers: for
// a topology to form, a failover to end, a node to rejoin.
const topologyBound = 30 * time.Second

// pollEvery is how often those waits look again.
const pollEvery = 25 * time.Millisecond

// waitUntil calls check every pollEvery until it returns nil, and fails t
// with check's last error, naming what, when bound passed first.
func waitUntil(t testing.TB, bound time.Duration, what string, check func(ctx context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := check(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: %s: not done within %v: %v", what, bound, err)
		}
		time.Sleep(pollEvery)
	}
}

// adminClient is a client of one server for the helpers' own commands:
// short timeouts, no retries, so a dead server answers at once.
func adminClient(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr: addr, DialTimeout: time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: time.Second,
		MaxRetries: -1, DialerRetries: 1, PoolSize: 2, Protocol: 2,
	})
}

// infoField returns field's value in the INFO text info ("" when absent).
func infoField(info, field string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			return v
		}
	}
	return ""
}
