package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// go-redis writes lines of its own (a dial that failed after its retries, a
// pool connection dropped) with the standard log package, straight to
// stderr, among the server's structured log. SetRedisLogger routes them
// through log instead, as warnings with from=go-redis. go-redis has one
// logger per process: the last logger set receives every client's lines.
func SetRedisLogger(log *slog.Logger) {
	if log == nil {
		return
	}
	redisLog.Store(log)
	redisLogOnce.Do(func() { redis.SetLogger(redisLogger{}) })
}

var (
	redisLog     atomic.Pointer[slog.Logger]
	redisLogOnce sync.Once
)

// redisLogger is go-redis's Logging interface over redisLog.
type redisLogger struct{}

func (redisLogger) Printf(ctx context.Context, format string, v ...any) {
	log := redisLog.Load()
	if log == nil {
		return
	}
	msg := strings.TrimSpace(fmt.Sprintf(format, v...))
	log.Warn(strings.TrimPrefix(msg, "redis: "), "from", "go-redis")
}

// pingError says why the first PING to target failed (PingFailure).
func pingError(target redisTarget, timeout time.Duration, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, PingFailure(target.String(), timeout, err), err)
}

// PingFailure says in words why a first PING to the Redis named what failed
// with err: the connection was refused (nothing listens there), no answer
// came within timeout, the server answered with an error (such as a
// password required), or the host name does not resolve.
func PingFailure(what string, timeout time.Duration, err error) string {
	var dnsErr *net.DNSError
	var reply redis.Error
	var netErr net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "cannot PING " + what + ": the connection was refused: nothing listens there (is redis-server running, on that address?)"
	case errors.As(err, &dnsErr):
		return "cannot PING " + what + ": the host name does not resolve"
	case errors.As(err, &reply):
		return what + " answered PING with an error"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &netErr) && netErr.Timeout():
		return fmt.Sprintf("no answer to PING from %s within %v (a firewall, a wrong address, or a server too busy)", what, timeout)
	}
	return "cannot PING " + what
}
