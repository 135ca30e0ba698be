package tests

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/electric-socket/electric-socket/tests/skipreport"
)

// browserBound bounds the whole browser run: start Chromium, two tabs,
// login, a message each way, a whisper, logout.
const browserBound = 2 * time.Minute

// browserTools finds node, Debian's chromium (or $CHROMIUM) and the
// installed playwright-core of tests/browser. When one is missing the test
// is skipped, loudly, except under CI=true where it fails.
func browserTools(t *testing.T) (node, chromium string) {
	t.Helper()
	missing := func(why string) {
		t.Helper()
		if os.Getenv("CI") == "true" {
			t.Fatalf("browser test: %s: FAILING because CI=true (.ci/run installs chromium and runs npm ci --prefix tests/browser)", why)
		}
		skipreport.Skip(t, "browser test: "+why+": SKIPPING (tests/install.sh installs what the suite needs; or apt-get install chromium and npm ci --prefix tests/browser; with CI=true it fails)")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("no node in PATH")
	}
	chromium = os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		missing("no Chromium at " + chromium)
	}
	if _, err := os.Stat(filepath.Join("browser", "node_modules", "playwright-core", "package.json")); err != nil {
		missing("playwright-core is not installed in tests/browser/node_modules")
	}
	return node, chromium
}

// The chat page, served beside /chat as config.toml serves it, works in a
// real browser: two headless Chromium tabs log in to one room, each says
// something the other sees, one whispers, both log out. Screenshots are
// saved to a temporary folder whose path is logged.
func TestBrowserChat(t *testing.T) {
	node, chromium := browserTools(t)
	web, err := filepath.Abs(filepath.Join("..", "scripts", "web"))
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, chatConfig+"\n[web]\nroot = "+strconv.Quote(web)+"\n")

	shots, err := os.MkdirTemp("", "es-browser-")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), browserBound)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "chat.mjs", "--url", "http://"+s.addr+"/",
		"--out", shots, "--chromium", chromium, "--room", "browser")
	cmd.Dir = "browser"
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	t.Logf("node chat.mjs:\n%s", out)
	if err != nil {
		t.Fatalf("the browser run failed: %v", err)
	}
	for _, name := range []string{"chat-alice.png", "chat-bob.png", "chat-after-logout.png"} {
		p := filepath.Join(shots, name)
		fi, err := os.Stat(p)
		if err != nil || fi.Size() < 1000 {
			t.Errorf("screenshot %s: %v (size %s)", p, err, sizeOf(fi))
		}
	}
	t.Logf("screenshots in %s (kept for a look)", shots)

	// The server saw the same: both logged in and out, the room is gone.
	s.waitIdle()
	if room := s.room("browser"); room != nil {
		t.Errorf("room browser still holds %v after both logged out", room)
	}
	logs := s.log.String()
	for _, want := range []string{`\"event\":\"join\",\"room\":\"browser\",\"user\":\"alice\"`,
		`\"event\":\"leave\",\"room\":\"browser\",\"user\":\"bob\"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("the server log lacks the side effect %s", want)
		}
	}
	if n := strings.Count(logs, `msg="connection closed"`); n != 2 {
		t.Errorf("%d connection closed lines, want 2", n)
	}
}

func sizeOf(fi os.FileInfo) string {
	if fi == nil {
		return "-"
	}
	return fmt.Sprint(fi.Size())
}
