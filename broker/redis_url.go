package broker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The URL of the redis broker names one of three deployments. Query
// parameters are go-redis's (dial_timeout, read_timeout, write_timeout,
// pool_size, client_name, protocol, skip_verify, ...); an unknown one is an
// error.
//
//	redis://[user:password@]host[:port][/db]          one server (rediss:// with TLS)
//	unix://[user:password@]/path/to/redis.sock[?db=N]  one server on a Unix socket
//	redis+sentinel://[user:password@]sentinel[:port][/db]?master_name=NAME[&addr=sentinel2:port...][&password=MASTERPW]
//	                                                  Sentinel (rediss+sentinel:// with TLS); the userinfo
//	                                                  authenticates to the sentinels, password= to the master
//	redis+cluster://[user:password@]node[:port][?addr=node2:port...]
//	                                                  Cluster (rediss+cluster:// with TLS); any nodes seed it
//
// Whatever the URL says, go-redis never resends a command (max_retries is
// ignored): a resent compare-and-set whose first reply was lost could apply
// an update twice.
type redisTarget struct {
	single   *redis.Options
	failover *redis.FailoverOptions
	cluster  *redis.ClusterOptions
}

// RedisSchemes are the URL schemes the redis broker accepts.
var RedisSchemes = []string{"redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel", "redis+cluster", "rediss+cluster"}

// CheckRedisURL reports what is wrong with a redis broker URL, without
// connecting. The error never repeats the URL, which may hold a password.
func CheckRedisURL(raw string) error {
	_, err := parseRedisURL(raw, defaultRedisTimeout)
	return err
}

// parseRedisURL reads raw. timeout is the default of dial_timeout,
// read_timeout and write_timeout.
func parseRedisURL(raw string, timeout time.Duration) (redisTarget, error) {
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the URL, password included
		}
		return redisTarget{}, err
	}
	i := strings.Index(raw, "://")
	if i < 0 || !slices.Contains(RedisSchemes, u.Scheme) {
		return redisTarget{}, fmt.Errorf("scheme must be one of %s", strings.Join(RedisSchemes, ", "))
	}
	base, deployment, _ := strings.Cut(u.Scheme, "+")
	plain := base + raw[i:] // go-redis's parsers know the base schemes only
	var t redisTarget
	switch deployment {
	case "":
		if t.single, err = redis.ParseURL(plain); err != nil {
			return t, err
		}
		o := t.single
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout = orDefault(o.DialTimeout, timeout), orDefault(o.ReadTimeout, timeout), orDefault(o.WriteTimeout, timeout)
		o.MaxRetries, o.DialerRetries = -1, 1
		if o.ClientName == "" {
			o.ClientName = "electric-socket"
		}
	case "sentinel":
		if t.failover, err = redis.ParseFailoverURL(plain); err != nil {
			return t, err
		}
		o := t.failover
		if o.MasterName == "" {
			return t, errors.New("a sentinel URL needs ?master_name=NAME")
		}
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout = orDefault(o.DialTimeout, timeout), orDefault(o.ReadTimeout, timeout), orDefault(o.WriteTimeout, timeout)
		o.MaxRetries, o.DialerRetries = -1, 1
		if o.ClientName == "" {
			o.ClientName = "electric-socket"
		}
	case "cluster":
		if t.cluster, err = redis.ParseClusterURL(plain); err != nil {
			return t, err
		}
		o := t.cluster
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout = orDefault(o.DialTimeout, timeout), orDefault(o.ReadTimeout, timeout), orDefault(o.WriteTimeout, timeout)
		o.MaxRetries, o.DialerRetries = -1, 1
		// The slot map is also reloaded on every failure that may come from
		// a stale one (the Redis type's doc: Cluster slot map).
		o.ClusterStateReloadInterval = clusterReloadInterval
		if o.ClientName == "" {
			o.ClientName = "electric-socket"
		}
	}
	return t, nil
}

// clusterReloadInterval is how old go-redis lets a Cluster's slot map get
// while commands flow (its default: 60 s).
const clusterReloadInterval = 5 * time.Second

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// client builds the go-redis client of t. It does not connect.
func (t redisTarget) client() redis.UniversalClient {
	switch {
	case t.failover != nil:
		return redis.NewFailoverClient(t.failover)
	case t.cluster != nil:
		return redis.NewClusterClient(t.cluster)
	}
	return redis.NewClient(t.single)
}

func (t redisTarget) setDialer(dial func(ctx context.Context, network, addr string) (net.Conn, error)) {
	switch {
	case t.failover != nil:
		t.failover.Dialer = dial
	case t.cluster != nil:
		t.cluster.Dialer = dial
	default:
		t.single.Dialer = dial
	}
}

// String names the deployment for messages, without credentials:
// "redis 127.0.0.1:6379", "redis sentinel master mymaster via s1:26379",
// "redis cluster n1:6379,n2:6379".
func (t redisTarget) String() string {
	switch {
	case t.failover != nil:
		return "redis sentinel master " + t.failover.MasterName + " via " + strings.Join(t.failover.SentinelAddrs, ",")
	case t.cluster != nil:
		return "redis cluster " + strings.Join(t.cluster.Addrs, ",")
	}
	return "redis " + t.single.Addr
}

// readTimeout is the read timeout the URL set (0 when unset or disabled).
func (t redisTarget) readTimeout() time.Duration {
	var d time.Duration
	switch {
	case t.failover != nil:
		d = t.failover.ReadTimeout
	case t.cluster != nil:
		d = t.cluster.ReadTimeout
	default:
		d = t.single.ReadTimeout
	}
	return max(d, 0)
}
