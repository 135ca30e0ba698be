package broker

import (
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
)

// Only an error after the request may have reached Redis counts as a lost
// reply: a refused connection sent nothing, and must fail at once (as
// broker_unavailable) instead of being resolved for resolveFor.
func TestReplyLostClassification(t *testing.T) {
	dial := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	read := &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
	for _, tc := range []struct {
		name string
		err  error
		lost bool
	}{
		{"refused dial", dial, false},
		{"wrapped refused dial", fmt.Errorf("redis: %w", dial), false},
		{"Redis error reply", redisErr("WRONGTYPE Operation against a key holding the wrong kind of value"), false},
		{"reset while reading the reply", read, true},
		{"EOF", io.EOF, true},
	} {
		if got := replyLost(tc.err); got != tc.lost {
			t.Errorf("%s: replyLost = %v, want %v", tc.name, got, tc.lost)
		}
	}
}

// redisErr is an error reply as go-redis gives it (redis.Error).
type redisErr string

func (e redisErr) Error() string { return string(e) }
func (redisErr) RedisError()     {}
