package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/coder/websocket"

	"github.com/electric-socket/electric-socket/broker"
	"github.com/electric-socket/electric-socket/broker/redistest"
	"github.com/electric-socket/electric-socket/host/admin"
	"github.com/electric-socket/electric-socket/host/config"
	"github.com/electric-socket/electric-socket/tests/testkit"
)

// embeddedApp builds an App from files as main embeds them (config.ParseFS)
// and serves it on loopback; it returns the WebSocket and admin addresses
// ("" when the admin listener is off).
func embeddedApp(t *testing.T, cfgText string) (*App, string, string) {
	t.Helper()
	fsys := fstest.MapFS{
		"config.toml":            {Data: []byte(cfgText)},
		"scripts/echo.lua":       {Data: []byte(testkit.EchoScript)},
		"scripts/web/index.html": {Data: []byte("<!doctype html><title>demo</title><p>hello")},
		"scripts/web/app.js":     {Data: []byte("console.log(1)")},
		"scripts/web/.secret":    {Data: []byte("no")},
		"scripts/web/sub/x.css":  {Data: []byte("p{}")},
	}
	cfg, err := config.ParseFS(fsys, "config.toml (embedded)", fsys["config.toml"].Data)
	if err != nil {
		t.Fatal(err)
	}
	return serveApp(t, cfg, slog.New(slog.DiscardHandler))
}

// serveApp starts an App for cfg: its listener, and its admin listener
// when cfg has one. It returns the addresses ("" for an admin listener
// that is off); the test's end shuts the App down.
func serveApp(t *testing.T, cfg config.Config, log *slog.Logger) (*App, string, string) {
	t.Helper()
	app, err := NewApp(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	l, err := app.Listen()
	if err != nil {
		t.Fatal(err)
	}
	go app.Serve(l)
	adminAddr := ""
	al, err := app.ListenAdmin()
	if err != nil {
		t.Fatal(err)
	}
	if al != nil {
		adminAddr = al.Addr().String()
		go app.ServeAdmin(al)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		app.Shutdown(ctx)
	})
	return app, l.Addr().String(), adminAddr
}

const embeddedConfig = `
[server]
listen = "127.0.0.1:0"
shutdown_spread = "0s"
[admin]
listen = "127.0.0.1:0"
[web]
root = "scripts/web"
[[integration]]
name = "echo"
path = "/echo"
script = "scripts/echo.lua"
`

func get(t *testing.T, method, url string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), resp.Header
}

// The [web] root is served beside the integrations, from the embedded
// files: index.html at /, assets, no listings, no dot-files, GET and HEAD
// only; the integration's path still upgrades.
func TestWebPageBesideTheIntegrations(t *testing.T) {
	_, addr, _ := embeddedApp(t, embeddedConfig)
	base := "http://" + addr
	for _, c := range []struct {
		method, path string
		status       int
		body         string
	}{
		{"GET", "/", 200, "hello"},
		{"HEAD", "/", 200, ""},
		{"GET", "/app.js", 200, "console.log(1)"},
		{"GET", "/sub/x.css", 200, "p{}"},
		{"GET", "/sub/", 404, ""},
		{"GET", "/.secret", 404, ""},
		{"GET", "/nope", 404, ""},
		{"POST", "/", 405, ""},
	} {
		status, body, h := get(t, c.method, base+c.path)
		if status != c.status || !strings.Contains(body, c.body) {
			t.Errorf("%s %s: %d %q, want %d with %q", c.method, c.path, status, body, c.status, c.body)
		}
		if status == 200 && h.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s %s: no nosniff header", c.method, c.path)
		}
	}
	ws := testkit.Dial(t, "echo", addr, "/echo")
	ws.Send(map[string]any{"user": "a"})
	ws.Expect(map[string]any{"ok": true})
	ws.Send(map[string]any{"text": "hi"})
	ws.Expect(map[string]any{"text": "hi"})
	ws.Conn.Close(websocket.StatusNormalClosure, "")
}

// Without [web] root nothing but the integrations is served.
func TestNoWebPageUnlessConfigured(t *testing.T) {
	cfg := strings.Replace(embeddedConfig, "[web]\nroot = \"scripts/web\"\n", "", 1)
	_, addr, _ := embeddedApp(t, cfg)
	if status, _, _ := get(t, "GET", "http://"+addr+"/"); status != 404 {
		t.Errorf("GET / = %d, want 404", status)
	}
}

// pingBroker is a broker whose Ping answers err.
type pingBroker struct {
	broker.Broker
	err error
}

func (b pingBroker) Ping(context.Context) error { return b.err }

// /healthz answers while the process runs; /readyz says whether the broker
// answers and scripts are loaded, and turns 503 during shutdown; /metrics
// serves the private registry.
func TestAdminEndpoints(t *testing.T) {
	app, _, adminAddr := embeddedApp(t, embeddedConfig)
	base := "http://" + adminAddr
	if status, body, _ := get(t, "GET", base+"/healthz"); status != 200 || body != "ok\n" {
		t.Errorf("healthz: %d %q", status, body)
	}
	status, body, _ := get(t, "GET", base+"/readyz")
	var r admin.Readiness
	if err := json.Unmarshal([]byte(body), &r); err != nil || status != 200 || !r.Ready || r.Broker != "ok" || r.Integrations["echo"] == "" {
		t.Errorf("readyz: %d %s (%v)", status, body, err)
	}

	mem := app.Broker
	app.Broker = pingBroker{Broker: mem, err: errors.New("broker_unavailable: no answer")}
	status, body, _ = get(t, "GET", base+"/readyz")
	if status != 503 || !strings.Contains(body, `"broker":"broker_unavailable: no answer"`) || !strings.Contains(body, `"ready":false`) {
		t.Errorf("readyz with the broker down: %d %s", status, body)
	}
	app.Broker = pingBroker{Broker: mem}
	if status, body, _ = get(t, "GET", base+"/readyz"); status != 200 {
		t.Errorf("readyz with the broker back: %d %s", status, body)
	}

	status, body, h := get(t, "GET", base+"/metrics")
	if status != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/plain") {
		t.Fatalf("metrics: %d %s", status, h.Get("Content-Type"))
	}
	for _, want := range []string{
		`electric_socket_connections{integration="echo"} 0`,
		`electric_socket_reloads_total 0`,
		`electric_socket_broker_subscriptions 0`,
		`go_goroutines `,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// The WebSocket listener serves none of these.
	app.stopping.Store(true)
	if status, body, _ = get(t, "GET", base+"/readyz"); status != 503 || !strings.Contains(body, `"shutting_down":true`) {
		t.Errorf("readyz while shutting down: %d %s", status, body)
	}
}

// With [admin] listen off there is no listener and no metrics.
func TestAdminOff(t *testing.T) {
	cfg := strings.Replace(embeddedConfig, "[admin]\nlisten = \"127.0.0.1:0\"\n", "", 1)
	app, addr, adminAddr := embeddedApp(t, cfg)
	if adminAddr != "" || app.Metrics() != nil || app.Engine.Metrics() != nil {
		t.Errorf("admin %q, metrics %v with [admin] listen off", adminAddr, app.Metrics())
	}
	if status, _, _ := get(t, "GET", "http://"+addr+"/metrics"); status != 404 {
		t.Errorf("the WebSocket listener serves /metrics: %d", status)
	}
}

// /readyz says not ready while a subscription is silent: a proxy between
// the instance and Redis stops forwarding the subscription connection
// without closing it. At the moment the broker logs that no probe came back
// and it replaces the connection, /readyz answers 503 naming it; once the
// new connection's probe comes back, 200 again.
func TestReadyzFalseWhileASubscriptionIsSilent(t *testing.T) {
	srv := redistest.New(t)
	proxy := redistest.NewProxy(t, srv)
	prefix := srv.Prefix(t)
	script := filepath.Join(t.TempDir(), "echo.lua")
	if err := os.WriteFile(script, []byte(testkit.EchoScript), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse("config.toml", []byte(fmt.Sprintf(`
[admin]
listen = "127.0.0.1:0"
[broker]
kind = "redis"
url = %q
prefix = %q
[[integration]]
name = "echo"
path = "/echo"
script = %q
`, proxy.URL, prefix, script)))
	if err != nil {
		t.Fatal(err)
	}
	var base atomic.Pointer[string]
	during := make(chan string, 1)
	logs := &testkit.LogBuffer{}
	log := slog.New(&testkit.OnLog{Handler: logs.Logger().Handler(), Match: "replacing its connection", Do: func() {
		if b := base.Load(); b != nil {
			c := http.Client{Timeout: 10 * time.Second}
			resp, err := c.Get(*b + "/readyz")
			s := fmt.Sprint(err)
			if err == nil {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				s = fmt.Sprintf("%d %s", resp.StatusCode, body)
			}
			select {
			case during <- s:
			default:
			}
		}
	}})
	app, err := NewApp(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	al, err := app.ListenAdmin()
	if err != nil {
		t.Fatal(err)
	}
	go app.ServeAdmin(al)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		app.Shutdown(ctx)
	})
	url := "http://" + al.Addr().String()
	if _, err := app.Broker.Subscribe(context.Background(), broker.Topic{Namespace: "echo", Key: "r"}, func(broker.Envelope) {}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "/readyz to say ready", func() bool { s, _, _ := get(t, "GET", url+"/readyz"); return s == 200 })
	base.Store(&url)
	if n := proxy.StallPubSub(); n < 1 {
		t.Fatalf("stalled %d subscription connections, want 1 or more", n)
	}
	select {
	case got := <-during:
		if !strings.HasPrefix(got, "503 ") || !strings.Contains(got, `"ready":false`) || !strings.Contains(got, "no probe came back") {
			t.Errorf("/readyz while the subscription is silent: %s; want 503, not ready, no probe came back", got)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the silent subscription was not detected within 30s:\n%s", logs)
	}
	base.Store(nil)
	testkit.Eventually(t, 10*time.Second, "/readyz to say ready again", func() bool { s, _, _ := get(t, "GET", url+"/readyz"); return s == 200 })
}
