package sink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/electric-socket/electric-socket/broker"
	"github.com/electric-socket/electric-socket/host/config"
	"github.com/electric-socket/electric-socket/host/metrics"
)

// streamSink appends side effects to a Redis stream: one entry per side
// effect, with the fields id, integration, channel, function, effect (its
// JSON) and time, by XADD <stream> MAXLEN <max_len> * ... (exact trimming:
// the stream never holds more than max_len entries). A batch is one
// MULTI/EXEC transaction, so it is added whole or not at all; a failed
// batch is sent again after a backoff (see batcher), and consumers should
// drop entries whose id they have seen.
//
// Deliver and Close may be called concurrently.
type streamSink struct {
	*batcher
	client *redis.Client
	stream string
	maxLen int64
}

func newStreamSink(c config.SinkConfig, log *slog.Logger, m *metrics.Metrics) (*streamSink, error) {
	shown := c.URL
	if u, err := url.Parse(c.URL); err == nil {
		shown = u.Redacted()
	}
	if err := config.CheckStreamURL(c.URL); err != nil {
		return nil, fmt.Errorf("redis_stream sink: invalid URL %q: %w", shown, err)
	}
	opt, _ := redis.ParseURL(c.URL)
	opt.MaxRetries = -1 // the batcher retries, with its backoff
	opt.DialerRetries = 1
	opt.ContextTimeoutEnabled = true
	client := redis.NewClient(opt)
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		client.Close()
		return nil, fmt.Errorf("redis_stream sink: %s: %w", broker.PingFailure(opt.Addr, c.Timeout, err), err)
	}
	s := &streamSink{client: client, stream: c.Stream, maxLen: int64(c.MaxLen)}
	s.batcher = newBatcher("redis_stream", c, s.send, log, m)
	log.Info("side effects go to a redis stream", "redis", opt.Addr, "stream", c.Stream, "max_len", c.MaxLen)
	return s, nil
}

// send adds one batch in a MULTI/EXEC transaction.
func (s *streamSink) send(ctx context.Context, batch []deliveredEffect) error {
	_, err := s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, e := range batch {
			p.XAdd(ctx, &redis.XAddArgs{
				Stream: s.stream, MaxLen: s.maxLen, ID: "*",
				Values: []any{
					"id", e.ID, "integration", e.Integration, "channel", e.Channel,
					"function", e.Function, "effect", string(e.Effect), "time", e.Time.Format(time.RFC3339Nano),
				},
			})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("XADD %s: %w", s.stream, err)
	}
	return nil
}

// Close implements Closer.
func (s *streamSink) Close(ctx context.Context) error {
	err := s.batcher.Close(ctx)
	return errors.Join(err, s.client.Close())
}
