package main

import (
	"bufio"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// jwt.io's HS256 example token: the claims
// {"sub":"1234567890","name":"John Doe","iat":1516239022} signed with
// "your-256-bit-secret".
func TestHS256(t *testing.T) {
	got := hs256([]byte(`{"sub":"1234567890","name":"John Doe","iat":1516239022}`), []byte("your-256-bit-secret"))
	want := "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
	if got != want {
		t.Fatalf("hs256:\n got %s\nwant %s", got, want)
	}
}

func TestCentrifugoErrorReply(t *testing.T) {
	for line, want := range map[string]bool{
		`{"id":3,"error":{"code":103,"message":"permission denied"}}`: true,
		`{"id":3,"publish":{}}`: false,
		`{"push":{"channel":"bench:c1","pub":{"data":{"error":{"code":1}}}}}`:          false,
		`{"seq":1,"text":"hello, world"}`:                                              false,
		`{"id":"error","error":"bad_message","message":"electric-socket error frame"}`: false,
	} {
		if got := centrifugoError([]byte(line)); got != want {
			t.Errorf("centrifugoError(%s) = %v, want %v", line, got, want)
		}
	}
}

// centrifugoBinary is a Centrifugo built by run.sh's scenario peer
// ($CENTRIFUGO, or the newest in ~/.cache/es-bench); "" when there is none.
func centrifugoBinary() string {
	if b := os.Getenv("CENTRIFUGO"); b != "" {
		return b
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	found, _ := filepath.Glob(filepath.Join(home, ".cache", "es-bench", "centrifugo-v6.*", "centrifugo"))
	sort.Strings(found)
	if len(found) == 0 {
		return ""
	}
	return found[len(found)-1]
}

// startCentrifugo runs Centrifugo with run.sh's configuration, but for a
// ping every 2 s (pong timeout 1 s), and returns its WebSocket URL.
func startCentrifugo(t *testing.T) string {
	bin := centrifugoBinary()
	if bin == "" {
		t.Skip("no Centrifugo: tests/bench/run.sh peer builds one into ~/.cache/es-bench (or set CENTRIFUGO)")
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "centrifugo.json")
	err := os.WriteFile(cfg, []byte(`{
  "log": {"level": "info"},
  "engine": {"type": "memory"},
  "usage_stats": {"disabled": true},
  "client": {
    "token": {"hmac_secret_key": "test-secret"},
    "stale_close_delay": "300s",
    "ping_interval": "2s",
    "pong_timeout": "1s"
  },
  "channel": {
    "namespaces": [
      {"name": "bench", "allow_subscribe_for_client": true, "allow_publish_for_subscriber": true}
    ]
  }
}`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(bin, "-c", cfg, "-a", "127.0.0.1", "-p", strconv.Itoa(port))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "serving websocket") {
				ready <- nil
				break
			}
		}
		ready <- sc.Err()
		for sc.Scan() { // keep draining its log
		}
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("centrifugo: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("centrifugo did not start within 30 s")
	}
	// it logs that line just before it listens: wait until it accepts
	addr := "127.0.0.1:" + strconv.Itoa(port)
	for deadline := time.Now().Add(30 * time.Second); ; {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("centrifugo does not accept on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "ws://127.0.0.1:" + strconv.Itoa(port) + "/connection/websocket"
}

func dialCentrifugo(t *testing.T, url string, conn int, secret string) (*centrifugoClient, error) {
	t.Helper()
	*flagSecret = secret
	c, err := dialGobwas(context.Background(), url, net.IPv4(127, 0, 0, 1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.close() })
	cf := newCentrifugoClient(c, conn)
	cf.setReadDeadline(time.Now().Add(30 * time.Second))
	return cf, cf.handshake([]byte(`{"sub":"u` + strconv.Itoa(conn) + `"}`))
}

// Against a real Centrifugo: the echo (publications of a connection's own
// channel come back in order, the publish replies are dropped), error
// replies, a refused token, and pings answered so the server keeps the
// connection.
func TestCentrifugoClient(t *testing.T) {
	url := startCentrifugo(t)

	t.Run("echo", func(t *testing.T) {
		cf, err := dialCentrifugo(t, url, 7, "test-secret")
		if err != nil {
			t.Fatal(err)
		}
		if !cf.pong {
			t.Fatal("the connect reply did not ask for pongs")
		}
		msgT := parseTemplate(`{"seq":{seq},"text":"hello, world"}`)
		for seq := range 8 { // 8 in flight, as in the 100 × 8 shape
			if err := cf.send(msgT.render(nil, 7, 0, seq)); err != nil {
				t.Fatal(err)
			}
		}
		for seq := range 8 {
			p, err := cf.recv()
			if err != nil {
				t.Fatal(err)
			}
			if isErrorFrame(p) || parseSeq(p) != seq || !strings.Contains(string(p), `"channel":"bench:c7"`) {
				t.Fatalf("publication %d: %s", seq, p)
			}
		}
		if cf.n != 0 {
			t.Fatalf("%d publications still in flight", cf.n)
		}
	})

	t.Run("error reply", func(t *testing.T) {
		cf, err := dialCentrifugo(t, url, 8, "test-secret")
		if err != nil {
			t.Fatal(err)
		}
		cf.channel = []byte(`"bench:someone-else"`) // not subscribed: publishing is refused
		if err := cf.send([]byte(`{"seq":0}`)); err != nil {
			t.Fatal(err)
		}
		p, err := cf.recv()
		if err != nil {
			t.Fatal(err)
		}
		if !isErrorFrame(p) {
			t.Fatalf("want an error reply, got %s", p)
		}
	})

	t.Run("bad token", func(t *testing.T) {
		_, err := dialCentrifugo(t, url, 9, "wrong-secret")
		if err == nil || !strings.Contains(err.Error(), "invalid token") {
			t.Fatalf("want the connection refused for an invalid token, got %v", err)
		}
	})

	t.Run("pings", func(t *testing.T) {
		// The server pings every 2 s and closes a connection whose pong is
		// not back within 1 s: a second ping only comes if the first pong
		// was taken. Echo until two pings were answered (bounded).
		cf, err := dialCentrifugo(t, url, 10, "test-secret")
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		cf.setReadDeadline(deadline)
		for seq := 0; cf.pings < 2; seq++ {
			if time.Now().After(deadline) {
				t.Fatalf("%d pings in 30 s", cf.pings)
			}
			if err := cf.send([]byte(`{"seq":` + strconv.Itoa(seq) + `}`)); err != nil {
				t.Fatal(err)
			}
			if _, err := cf.recv(); err != nil {
				t.Fatalf("after %d pings: %v", cf.pings, err)
			}
		}
	})
}
