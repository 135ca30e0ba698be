package broker

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// The Fleet capability of the Redis broker: the leases of the instances
// and the records of their connections, so that a survivor runs on_close
// for the connections of an instance that died (SPEC 5.12).
//
// Redis holds, under the hash tag {<prefix>fleet} (one Cluster slot):
//
//	{<prefix>fleet}:leases      sorted set: instance id -> expiry (ms, Redis clock)
//	{<prefix>fleet}:claims      hash: claimed instance id -> claimer id
//	{<prefix>fleet}:conns:<id>  hash: connection id -> the host's record
//	{<prefix>fleet}:gone:<id>   tombstone of a claimed instance, for goneKeep
//
// The names start with "{", so a SCAN of <prefix>* still finds the
// entities alone. redis_lease.lua does every change that must be atomic;
// the records are plain HSET, HDEL and HSCAN.

//go:embed redis_lease.lua
var leaseSource string

var leaseScript = redis.NewScript(leaseSource)

// goneKeep is how long the tombstone of a claimed instance is kept: an
// instance that comes back from a pause that long after its lease was
// claimed still learns that it lost it.
const goneKeep = 24 * time.Hour

var _ Fleet = (*Redis)(nil)

func (r *Redis) fleetKey(suffix string) string { return "{" + r.prefix + "fleet}:" + suffix }

// leaseCmd is a run of redis_lease.lua, never resent by go-redis: the
// callers retry on their own schedule.
type leaseCmd struct{ *redis.Cmd }

func (leaseCmd) NoRetry() bool { return true }

// lease runs redis_lease.lua's command cmd about instance id.
func (r *Redis) lease(ctx context.Context, cmd, id string, ms int64, claimer string) (any, error) {
	if r.isClosed() {
		return nil, r.errClosed(cmd, id)
	}
	keys := []string{r.fleetKey("leases"), r.fleetKey("claims"), r.fleetKey("conns:" + id), r.fleetKey("gone:" + id)}
	run := func(command, script string) *redis.Cmd {
		args := []any{command, script, len(keys)}
		for _, k := range keys {
			args = append(args, k)
		}
		args = append(args, cmd, id, max(ms, 1), claimer, goneKeep.Milliseconds())
		c := redis.NewCmd(ctx, args...)
		c.SetFirstKeyPos(3)
		_ = r.client.Process(ctx, leaseCmd{c})
		return c
	}
	c := run("evalsha", leaseScript.Hash())
	if redis.HasErrorPrefix(c.Err(), "NOSCRIPT") {
		c = run("eval", leaseSource)
	}
	v, err := c.Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil // a Lua false
	}
	if err != nil {
		return nil, r.fail(ctx, "lease "+cmd, id, err)
	}
	return v, nil
}

func (r *Redis) lost(op, id string) error {
	return fmt.Errorf("redis broker: %s %s: %w", op, id, ErrLeaseLost)
}

// JoinFleet implements Fleet.
func (r *Redis) JoinFleet(ctx context.Context, id string, ttl time.Duration) error {
	_, err := r.lease(ctx, "join", id, ttl.Milliseconds(), "")
	return err
}

// RenewLease implements Fleet.
func (r *Redis) RenewLease(ctx context.Context, id string, ttl time.Duration) (bool, error) {
	v, err := r.lease(ctx, "renew", id, ttl.Milliseconds(), "")
	if err != nil {
		return false, err
	}
	switch v {
	case int64(-1):
		return false, r.lost("renew lease", id)
	case int64(2):
		return true, nil
	}
	return false, nil
}

// LeaveFleet implements Fleet.
func (r *Redis) LeaveFleet(ctx context.Context, id string) error {
	v, err := r.lease(ctx, "leave", id, 0, "")
	if err != nil {
		return err
	}
	if v == int64(-1) {
		return r.lost("leave", id)
	}
	return nil
}

// ClaimExpired implements Fleet.
func (r *Redis) ClaimExpired(ctx context.Context, me string, ttl time.Duration) (string, error) {
	v, err := r.lease(ctx, "claim", me, ttl.Milliseconds(), "")
	if err != nil || v == nil {
		return "", err
	}
	s, _ := v.(string)
	return s, nil
}

// RenewClaim implements Fleet.
func (r *Redis) RenewClaim(ctx context.Context, dead, me string, ttl time.Duration) error {
	v, err := r.lease(ctx, "renew_claim", dead, ttl.Milliseconds(), me)
	if err != nil {
		return err
	}
	if v != int64(1) {
		return r.lost("renew claim on", dead)
	}
	return nil
}

// FinishClaim implements Fleet.
func (r *Redis) FinishClaim(ctx context.Context, dead, me string, retry time.Duration) (bool, error) {
	v, err := r.lease(ctx, "finish", dead, retry.Milliseconds(), me)
	if err != nil {
		return false, err
	}
	switch v {
	case int64(1):
		return true, nil
	case int64(2):
		return false, nil
	}
	return false, r.lost("finish claim on", dead)
}

// PutConns implements Fleet.
func (r *Redis) PutConns(ctx context.Context, id string, records map[string][]byte) error {
	if len(records) == 0 {
		return nil
	}
	if r.isClosed() {
		return r.errClosed("put conns", id)
	}
	args := make([]any, 0, 2*len(records))
	for k, v := range records {
		args = append(args, k, v)
	}
	key := r.fleetKey("conns:" + id)
	if err := r.client.HSet(ctx, key, args...).Err(); err != nil {
		return r.fail(ctx, "put conns", key, err)
	}
	return nil
}

// DeleteConns implements Fleet.
func (r *Redis) DeleteConns(ctx context.Context, id string, conns ...string) (int, error) {
	if len(conns) == 0 {
		return 0, nil
	}
	if r.isClosed() {
		return 0, r.errClosed("delete conns", id)
	}
	key := r.fleetKey("conns:" + id)
	n, err := r.client.HDel(ctx, key, conns...).Result()
	if err != nil {
		return 0, r.fail(ctx, "delete conns", key, err)
	}
	return int(n), nil
}

// ScanConns implements Fleet.
func (r *Redis) ScanConns(ctx context.Context, id string, cursor uint64, count int) (map[string][]byte, uint64, error) {
	if r.isClosed() {
		return nil, 0, r.errClosed("scan conns", id)
	}
	key := r.fleetKey("conns:" + id)
	kv, next, err := r.client.HScan(ctx, key, cursor, "", int64(count)).Result()
	if err != nil {
		return nil, 0, r.fail(ctx, "scan conns", key, err)
	}
	out := make(map[string][]byte, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = []byte(kv[i+1])
	}
	return out, next, nil
}

// ForgetOperation implements Fleet.
func (r *Redis) ForgetOperation(ctx context.Context, t Topic, id string) error {
	if r.isClosed() {
		return r.errClosed("forget operation", id)
	}
	key := opKey(r.name(t), id)
	if err := r.client.Del(ctx, key).Err(); err != nil {
		return r.fail(ctx, "forget operation", key, err)
	}
	return nil
}
