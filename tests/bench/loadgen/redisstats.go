package main

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisCalls returns how many commands the redis-server at addr has run
// since its statistics were last reset, leaving out what is not the
// broker's work per message (pub/sub, PING, INFO, CONFIG, CLIENT, HELLO):
// from INFO commandstats. -1 when it cannot be read.
func redisCalls(addr string) int64 {
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := c.Info(ctx, "commandstats").Result()
	if err != nil {
		warnf("redis commandstats: %v", err)
		return -1
	}
	var n int64
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		switch strings.TrimPrefix(name, "cmdstat_") {
		case "publish", "subscribe", "unsubscribe", "ping", "info", "config", "client", "hello":
			continue
		}
		for _, kv := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(kv, "calls="); ok {
				calls, _ := strconv.ParseInt(v, 10, 64)
				n += calls
			}
		}
	}
	return n
}
