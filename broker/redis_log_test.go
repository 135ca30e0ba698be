package broker

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/electric-socket/electric-socket/broker/redistest"
	"github.com/electric-socket/electric-socket/tests/testkit"
)

// go-redis's own lines (here: the dial that failed) go through the logger
// SetRedisLogger was given, not straight to stderr.
func TestGoRedisLogsGoThroughSlog(t *testing.T) {
	var logs testkit.LogBuffer
	SetRedisLogger(logs.Logger())
	addr := closedAddr(t)
	if _, err := NewRedis(context.Background(), RedisOptions{URL: "redis://" + addr + "/0"}); err == nil {
		t.Fatal("NewRedis succeeded with nothing listening")
	}
	testkit.Eventually(t, waitBound, "go-redis's line about the failed dial in the log", func() bool {
		for _, line := range strings.Split(logs.String(), "\n") {
			if strings.Contains(line, "level=WARN") && strings.Contains(line, "from=go-redis") &&
				strings.Contains(line, "failed to dial") && strings.Contains(line, addr) {
				return true
			}
		}
		return false
	})
	if strings.Contains(logs.String(), "msg=\"redis: ") {
		t.Errorf("go-redis's \"redis: \" prefix is kept:\n%s", logs.String())
	}
}

// The start-up PING's error says what happened: a refused connection is not
// called a timeout, a server that does not answer is, and an error reply
// (a password required) is named as such.
func TestRedisPingErrorSaysWhatHappened(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		addr := closedAddr(t)
		_, err := NewRedis(context.Background(), RedisOptions{URL: "redis://" + addr + "/0"})
		checkPingError(t, err, addr, "the connection was refused", "nothing listens there")
		if strings.Contains(err.Error(), "no answer") || strings.Contains(err.Error(), "timeout") {
			t.Errorf("a refused connection is called a timeout: %v", err)
		}
	})
	t.Run("no answer", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0") // accepts, never answers
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				defer c.Close()
			}
		}()
		_, err = NewRedis(context.Background(), RedisOptions{URL: "redis://" + l.Addr().String() + "/0", Timeout: 300 * time.Millisecond})
		checkPingError(t, err, l.Addr().String(), "no answer to PING", "within 300ms")
		if strings.Contains(err.Error(), "refused") {
			t.Errorf("a server that does not answer is said to refuse: %v", err)
		}
	})
	t.Run("an error reply", func(t *testing.T) {
		srv := redistest.NewLocal(t)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Client(t).ConfigSet(ctx, "requirepass", "secret").Err(); err != nil {
			t.Fatal(err)
		}
		_, err := NewRedis(context.Background(), RedisOptions{URL: srv.URL})
		checkPingError(t, err, srv.Addr, "answered PING with an error", "NOAUTH")
	})
}

func checkPingError(t *testing.T, err error, addr string, contains ...string) {
	t.Helper()
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	for _, c := range append([]string{addr}, contains...) {
		if !strings.Contains(err.Error(), c) {
			t.Errorf("error %q does not say %q", err, c)
		}
	}
}

// closedAddr is a loopback address nothing listens on (it did a moment ago).
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
