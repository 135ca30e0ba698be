package broker

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/electric-socket/electric-socket/broker/redistest"
)

func TestRedisLeases(t *testing.T) {
	srv := redistest.New(t)
	prefix := srv.Prefix(t)
	var a, b, c Fleet = newTestRedis(t, srv, RedisOptions{Prefix: prefix}),
		newTestRedis(t, srv, RedisOptions{Prefix: prefix}), newTestRedis(t, srv, RedisOptions{Prefix: prefix})
	ctx := context.Background()
	raw := srv.Client(t)
	leases := "{" + prefix + "fleet}:leases"
	// Every lease and claim lives a minute, so none expires by itself while
	// the test runs, however slow the machine; expire makes id's lease (or
	// the claim on it) expire now, as a minute without renewal would.
	const long = time.Minute
	expire := func(id string) {
		t.Helper()
		if n, err := raw.ZAddXX(ctx, leases, redis.Z{Score: 0, Member: id}).Result(); err != nil || n != 0 {
			t.Fatalf("expiring %s: %v", id, err)
		}
		if s, err := raw.ZScore(ctx, leases, id).Result(); err != nil || s != 0 {
			t.Fatalf("expiring %s: score %v, %v", id, s, err)
		}
	}
	redisMillis := func() int64 {
		t.Helper()
		tm, err := raw.Time(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		return tm.UnixMilli()
	}

	t.Run("a lease expires ttl after it is set, on Redis's clock", func(t *testing.T) {
		before := redisMillis()
		if err := a.JoinFleet(ctx, "A0", long); err != nil {
			t.Fatal(err)
		}
		after := redisMillis()
		score, err := raw.ZScore(ctx, leases, "A0").Result()
		if err != nil {
			t.Fatal(err)
		}
		if lo, hi := before+long.Milliseconds(), after+long.Milliseconds(); int64(score) < lo || int64(score) > hi {
			t.Fatalf("A0 expires at %d, want between %d and %d (Redis's TIME around the join, plus %v)", int64(score), lo, hi, long)
		}
		if err := a.LeaveFleet(ctx, "A0"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("a live lease is never claimed; an expired one by one survivor", func(t *testing.T) {
		if err := a.JoinFleet(ctx, "A1", long); err != nil {
			t.Fatal(err)
		}
		if err := b.JoinFleet(ctx, "B1", long); err != nil {
			t.Fatal(err)
		}
		if err := a.PutConns(ctx, "A1", map[string][]byte{"c1": []byte(`{"n":1}`), "c2": []byte(`{"n":2}`)}); err != nil {
			t.Fatal(err)
		}
		if got, _ := b.ClaimExpired(ctx, "B1", long); got != "" {
			t.Fatalf("claimed %s while every lease is live", got)
		}
		// A stops renewing (it died): B claims it, C finds nothing more.
		expire("A1")
		if got, err := b.ClaimExpired(ctx, "B1", long); got != "A1" || err != nil {
			t.Fatalf("B claimed %q, %v; want A1", got, err)
		}
		if got, _ := c.ClaimExpired(ctx, "C1", long); got != "" {
			t.Fatalf("C claimed %q, which B holds", got)
		}
		// A comes back (it was only paused): its lease is lost for good.
		if _, err := a.RenewLease(ctx, "A1", long); !errors.Is(err, ErrLeaseLost) {
			t.Fatalf("renew after the claim: %v, want ErrLeaseLost", err)
		}
		recs, _, err := b.ScanConns(ctx, "A1", 0, 100)
		if err != nil || len(recs) != 2 || string(recs["c2"]) != `{"n":2}` {
			t.Fatalf("ScanConns = %q, %v", recs, err)
		}
		if n, err := b.DeleteConns(ctx, "A1", "c1"); n != 1 || err != nil {
			t.Fatalf("DeleteConns = %d, %v", n, err)
		}
		if done, err := b.FinishClaim(ctx, "A1", "B1", long); done || err != nil {
			t.Fatalf("FinishClaim with a record left = %v, %v; want not done", done, err)
		}
		if n, _ := b.DeleteConns(ctx, "A1", "c2", "c1"); n != 1 {
			t.Fatalf("DeleteConns counted %d, want 1 (c1 was gone already)", n)
		}
		if done, err := b.FinishClaim(ctx, "A1", "B1", long); !done || err != nil {
			t.Fatalf("FinishClaim = %v, %v; want done", done, err)
		}
		if _, err := a.RenewLease(ctx, "A1", long); !errors.Is(err, ErrLeaseLost) {
			t.Fatalf("renew after the claim finished: %v, want ErrLeaseLost (its tombstone)", err)
		}
	})

	t.Run("a dead claimer's claim is taken over", func(t *testing.T) {
		if err := a.JoinFleet(ctx, "A2", long); err != nil {
			t.Fatal(err)
		}
		if err := a.PutConns(ctx, "A2", map[string][]byte{"c1": []byte(`1`)}); err != nil {
			t.Fatal(err)
		}
		expire("A2")
		if got, err := b.ClaimExpired(ctx, "B2", long); got != "A2" || err != nil { // B claims, then dies
			t.Fatalf("B claimed %q, %v; want A2", got, err)
		}
		if got, _ := c.ClaimExpired(ctx, "C2", long); got != "" {
			t.Fatalf("C claimed %q while B's claim is live", got)
		}
		expire("A2") // B's claim runs out
		if got, err := c.ClaimExpired(ctx, "C2", long); got != "A2" || err != nil {
			t.Fatalf("C claimed %q, %v; want A2 after B's claim expired", got, err)
		}
		if err := b.RenewClaim(ctx, "A2", "B2", long); !errors.Is(err, ErrLeaseLost) {
			t.Fatalf("B renews a claim C took over: %v, want ErrLeaseLost", err)
		}
		if _, err := b.FinishClaim(ctx, "A2", "B2", long); !errors.Is(err, ErrLeaseLost) {
			t.Fatalf("B finishes a claim C took over: %v, want ErrLeaseLost", err)
		}
		if err := c.RenewClaim(ctx, "A2", "C2", long); err != nil {
			t.Fatal(err)
		}
		c.DeleteConns(ctx, "A2", "c1")
		if done, err := c.FinishClaim(ctx, "A2", "C2", long); !done || err != nil {
			t.Fatalf("FinishClaim = %v, %v", done, err)
		}
	})

	t.Run("leaving", func(t *testing.T) {
		if err := a.JoinFleet(ctx, "A3", long); err != nil {
			t.Fatal(err)
		}
		if err := a.LeaveFleet(ctx, "A3"); err != nil {
			t.Fatal(err)
		}
		if got, _ := b.ClaimExpired(ctx, "B3", long); got != "" {
			t.Fatalf("claimed %q: an instance that left with nothing recorded is gone", got)
		}
		// Leaving with records left (an on_close that could not commit):
		// the lease expires at once for a survivor to finish.
		if err := a.JoinFleet(ctx, "A4", long); err != nil {
			t.Fatal(err)
		}
		a.PutConns(ctx, "A4", map[string][]byte{"c1": []byte(`1`)})
		if err := a.LeaveFleet(ctx, "A4"); err != nil {
			t.Fatal(err)
		}
		if got, _ := b.ClaimExpired(ctx, "B3", long); got != "A4" {
			t.Fatalf("claimed %q, want A4 at once", got)
		}
	})

	t.Run("Redis lost the lease: it is recreated", func(t *testing.T) {
		if err := a.JoinFleet(ctx, "A5", long); err != nil {
			t.Fatal(err)
		}
		if err := raw.ZRem(ctx, leases, "A5").Err(); err != nil { // as a restart without persistence would
			t.Fatal(err)
		}
		if recreated, err := a.RenewLease(ctx, "A5", long); !recreated || err != nil {
			t.Fatalf("RenewLease = %v, %v; want recreated", recreated, err)
		}
		if recreated, err := a.RenewLease(ctx, "A5", long); recreated || err != nil {
			t.Fatalf("RenewLease = %v, %v; want plainly renewed", recreated, err)
		}
		keys := raw.Keys(ctx, prefix+"*").Val()
		if len(keys) != 0 {
			t.Fatalf("keys under %s*: %v; the fleet's keys must not look like entities", prefix, keys)
		}
		all := raw.Keys(ctx, "{"+prefix+"fleet}:*").Val()
		slices.Sort(all)
		t.Logf("fleet keys: %v", all)
	})
}
