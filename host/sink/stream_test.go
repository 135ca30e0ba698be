package sink

import (
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/electric-socket/electric-socket/host/config"
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
