package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"github.com/electric-socket/electric-socket/host/engine"
	"github.com/electric-socket/electric-socket/host/record"
	"github.com/electric-socket/electric-socket/tests/testkit"
)

// Traffic recorded through the binary ([integration] record) replays
// unchanged through the same script, and a script edit that changes one
// field of one output is named by the replay: the record's file:line, the
// event and the field's path, exit 1.
func TestRecordThenReplay(t *testing.T) {
	bin := testkit.Binary(t)
	dir := t.TempDir()
	src, err := os.ReadFile(filepath.Join("..", "scripts", "chat.lua"))
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(dir, "chat.lua")
	if err := os.WriteFile(script, src, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := `
[[integration]]
name = "chat"
path = "/chat"
script = "chat.lua"
record = "recordings"
`
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p := testkit.Serve(t, "serve", bin, dir, waitBound)

	alice := testkit.Dial(t, "alice", p.Addr, "/chat")
	alice.Send(map[string]any{"user": "alice", "room": "r"})
	alice.Expect(map[string]any{"type": "welcome", "user": "alice"})
	bob := testkit.Dial(t, "bob", p.Addr, "/chat")
	bob.Send(map[string]any{"user": "bob", "room": "r"})
	bob.Expect(map[string]any{"type": "welcome", "user": "bob"})
	alice.Expect(map[string]any{"type": "joined", "user": "bob"})
	alice.Send(map[string]any{"type": "say", "text": "hi"})
	alice.Expect(map[string]any{"type": "sent", "text": "hi"})
	bob.Expect(map[string]any{"type": "message", "from": "alice", "text": "hi"})
	bob.Send(map[string]any{"type": "whisper", "to": "alice", "text": "psst"})
	bob.Expect(map[string]any{"type": "sent", "to": "alice"})
	alice.Expect(map[string]any{"type": "whisper", "from": "bob", "text": "psst"})
	alice.Send(map[string]any{"type": "leave"})
	alice.Expect(map[string]any{"type": "bye"})
	alice.ExpectClose(websocket.StatusNormalClosure)
	bob.Expect(map[string]any{"type": "left", "user": "alice"})
	bob.Conn.Close(websocket.StatusNormalClosure, "")

	// Each record is complete once its last event closed the connection.
	recordings := filepath.Join(dir, "recordings")
	var files []*record.File
	testkit.Eventually(t, waitBound, "two complete records", func() bool {
		files = completeRecords(t, recordings)
		return len(files) == 2
	})
	var aliceRec *record.File
	for _, f := range files {
		if f.Header.Integration != "chat" || f.Header.Channel.Path != "/chat" {
			t.Errorf("%s: header %+v", f.Path, f.Header)
		}
		if strings.Contains(string(f.Events[0].Text), "alice") {
			aliceRec = f
		}
	}
	if aliceRec == nil {
		t.Fatalf("no record of alice's connection among %d", len(files))
	}
	// alice's record: her three messages (login, say, leave) and the two
	// broker messages bob's actions sent her (joined, whisper).
	count := map[string]int{}
	for _, ev := range aliceRec.Events {
		count[ev.Kind]++
	}
	if count[engine.RecMessage] != 3 || count[engine.RecBroker] != 2 || len(aliceRec.Events) != 5 {
		t.Errorf("alice's record has %v, want 3 messages and 2 broker messages", count)
	}
	last := aliceRec.Events[len(aliceRec.Events)-1]
	// leave: bye, close 1000, then on_close's commit, side effect and
	// broker message
	var closes []engine.CloseCode
	for _, o := range last.Out {
		if o.Close != 0 {
			closes = append(closes, o.Close)
		}
	}
	if len(closes) != 1 || closes[0] != engine.CloseNormal || len(last.Out) != 5 {
		t.Errorf("alice's last event: closes %v in %d outputs, want one 1000 in 5", closes, len(last.Out))
	}

	replay := func() (int, string) {
		t.Helper()
		code, stdout, stderr := runBinary(t, bin, "test", "--replay", recordings, "--config", filepath.Join(dir, "config.toml"))
		return code, stdout + stderr
	}
	code, out := replay()
	if code != 0 || !strings.Contains(out, "2 connections replayed: 2 unchanged, 0 changed") {
		t.Fatalf("replay through the same script: exit %d\n%s", code, out)
	}

	// One field of the room message changes: alice's publish of her say.
	edited := strings.Replace(string(src), `local out = { type = "message", from = data.user,`,
		`local out = { type = "message", from = string.upper(data.user),`, 1)
	if edited == string(src) {
		t.Fatal("the edit did not apply: scripts/chat.lua changed")
	}
	if err := os.WriteFile(script, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out = replay()
	t.Logf("replay after the edit:\n%s", out)
	if code != 1 {
		t.Fatalf("replay after the edit: exit %d, want 1\n%s", code, out)
	}
	sayLine := 0
	for _, ev := range aliceRec.Events {
		if strings.Contains(string(ev.Text), `"say"`) {
			sayLine = ev.Line
		}
	}
	for _, want := range []string{
		"2 connections replayed: 1 unchanged, 1 changed",
		fmt.Sprintf("%s:%d: message {", filepath.Base(aliceRec.Path), sayLine),
		`publish.message.from: got "ALICE", want "alice"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("replay output lacks %q:\n%s", want, out)
		}
	}
}

// completeRecords reads the records under dir that ended with a close.
func completeRecords(t *testing.T, dir string) []*record.File {
	t.Helper()
	paths, err := record.Find([]string{dir})
	if err != nil {
		return nil
	}
	var out []*record.File
	for _, p := range paths {
		f, err := record.Read(p)
		if err != nil || len(f.Events) == 0 {
			continue // not yet written
		}
		last := f.Events[len(f.Events)-1]
		closed := last.Kind == engine.RecClosed
		for _, o := range last.Out {
			closed = closed || o.Close != 0
		}
		if closed {
			out = append(out, f)
		}
	}
	return out
}
