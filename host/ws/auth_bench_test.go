package ws

import (
	"context"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/electric-socket/electric-socket/host/auth"
)

// BenchmarkConnect: whole connections (handshake, first message and its
// answer, close) per second, on an integration without a token and on one
// verifying an HS256 token in the query, in the same run:
//
//	go test ./host/ws -run '^$' -bench BenchmarkConnect -benchtime 2000x -count 3
func BenchmarkConnect(b *testing.B) {
	o := hsOptions()
	addr, _ := authServerB(b, map[string]auth.Options{"/hs": o})
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, goodClaims(nil)).SignedString(hsSecret)
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct{ name, url string }{
		{"no_token", "ws://" + addr + "/plain"},
		{"hs256_token", "ws://" + addr + "/hs?token=" + tok},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				conn, _, err := websocket.Dial(ctx, tc.url, nil)
				if err != nil {
					b.Fatal(err)
				}
				if err := conn.Write(ctx, websocket.MessageText, []byte(`{}`)); err != nil {
					b.Fatal(err)
				}
				if _, _, err := conn.Read(ctx); err != nil {
					b.Fatal(err)
				}
				conn.Close(websocket.StatusNormalClosure, "")
				cancel()
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "conns/s")
		})
	}
}
