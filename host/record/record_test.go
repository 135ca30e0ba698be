package record

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/electric-socket/electric-socket/broker"
	"github.com/electric-socket/electric-socket/host/engine"
	"github.com/electric-socket/electric-socket/luabridge"
)

func newDir(t *testing.T) (*Dir, *bytes.Buffer) {
	t.Helper()
	var log bytes.Buffer
	d, err := NewDir(t.TempDir(), "chat", "/scripts/chat.lua", slog.New(slog.NewTextHandler(&log, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return d, &log
}

func onlyFile(t *testing.T, d *Dir) string {
	t.Helper()
	files, err := Find([]string{filepath.Dir(d.dir)})
	if err != nil || len(files) != 1 {
		t.Fatalf("records: %v, %v; want one", files, err)
	}
	return files[0]
}

// Every field of every kind of event and output reads back as written,
// including bytes that are not JSON and data absent versus empty.
func TestRecordRoundTrip(t *testing.T) {
	d, _ := newDir(t)
	ch := &luabridge.Channel{ID: "abc", Integration: "chat", Path: "/chat", RemoteAddr: "10.0.0.1:5",
		Query: map[string]string{"room": "a"}, QueryAll: map[string][]string{"room": {"a", "b"}}, Claims: []byte(`{"sub":"al"}`)}
	rec := d.Open(ch)
	events := []*engine.Recorded{
		{Kind: engine.RecMessage, Text: []byte(`{"user":"al"}`),
			Updates: []engine.RecordedUpdate{{Ran: true}},
			Out: []engine.Output{
				{Commit: &engine.Commit{Op: broker.Set, Data: []byte(`{"n":1}`)}},
				{SideEffect: []byte(`{"e":1}`)},
				{Publish: &luabridge.Message{Target: "bob", Message: []byte(`{"hi":true}`)}},
				{Send: []byte(`{"type":"welcome"}`)},
			}},
		{Kind: engine.RecMessage, Text: []byte("not json \xff"), Out: []engine.Output{{Send: []byte(`{"id":"error"}`)}, {Close: 1007}}},
		{Kind: engine.RecBroker, Envelope: &broker.Envelope{Target: "al", Message: []byte(`{"x":1}`), BrokerKey: "a", Source: "def"},
			Updates: []engine.RecordedUpdate{{Ran: true, Seen: []byte(`{"n":1}`)}, {Ran: false, Err: "broker_unavailable"}}},
		{Kind: engine.RecFail, Code: "slow_client", Message: "too slow", Close: 1008},
		{Kind: engine.RecClosed, Updates: []engine.RecordedUpdate{{Ran: true, Seen: []byte(`{"n":1}`)}},
			Out: []engine.Output{{Commit: &engine.Commit{Op: broker.Delete}}}},
	}
	for _, ev := range events {
		rec.Event(ev)
	}
	rec.End()
	f, err := Read(onlyFile(t, d))
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Header.ChannelView(); !reflect.DeepEqual(got, ch) {
		t.Errorf("channel view\n got %+v\nwant %+v", got, ch)
	}
	if f.Header.Script != "/scripts/chat.lua" || f.Header.Integration != "chat" || f.Header.Opened.IsZero() {
		t.Errorf("header %+v", f.Header)
	}
	if len(f.Events) != len(events) {
		t.Fatalf("%d events read, want %d", len(f.Events), len(events))
	}
	for i, ev := range f.Events {
		if ev.Line != i+2 {
			t.Errorf("event %d on line %d, want %d", i, ev.Line, i+2)
		}
		if !reflect.DeepEqual(ev.Recorded, events[i]) {
			t.Errorf("event %d\n got %+v\nwant %+v", i, ev.Recorded, events[i])
		}
	}
}

// A record stops at MaxFileBytes with a last line saying so; the reader
// reports it truncated.
func TestRecordTruncated(t *testing.T) {
	d, _ := newDir(t)
	rec := d.Open(&luabridge.Channel{ID: "big", Path: "/chat"})
	text := []byte(`"` + strings.Repeat("x", 1<<20) + `"`)
	written := 0
	for i := 0; i < 20; i++ {
		rec.Event(&engine.Recorded{Kind: engine.RecMessage, Text: text})
		written++
	}
	rec.End()
	path := onlyFile(t, d)
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Size() > MaxFileBytes {
		t.Errorf("record of %d bytes, over MaxFileBytes %d", info.Size(), MaxFileBytes)
	}
	f, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if !f.Truncated || len(f.Events) == 0 || len(f.Events) >= written {
		t.Errorf("truncated %v with %d of %d events", f.Truncated, len(f.Events), written)
	}
}

// A record that cannot be written is logged once and dropped; the
// recorder's caller (the connection) never sees it.
func TestRecordWriteFailureLoggedOnce(t *testing.T) {
	d, log := newDir(t)
	if err := os.RemoveAll(d.dir); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		rec := d.Open(&luabridge.Channel{ID: "c", Path: "/chat"})
		rec.Event(&engine.Recorded{Kind: engine.RecClosed})
		rec.End()
	}
	if n := strings.Count(log.String(), "could not be written"); n != 1 {
		t.Errorf("%d log lines for the failed writes, want 1:\n%s", n, log)
	}
}

// A damaged record is refused with its file:line and what is wrong.
func TestReadErrorsNameTheLine(t *testing.T) {
	dir := t.TempDir()
	header := `{"record":1,"integration":"chat","script":"c.lua","opened":"2026-01-01T00:00:00Z","channel":{"id":"a","path":"/chat"}}`
	cases := map[string]struct{ text, want string }{
		"bad json":      {header + "\n{\"event\":\"closed\"}\n{not json\n", ":3: "},
		"unknown event": {header + "\n{\"event\":\"teleport\"}\n", `:2: unknown event "teleport"`},
		"unknown field": {header + "\n{\"event\":\"closed\",\"colour\":1}\n", `:2: json: unknown field "colour"`},
		"version":       {strings.Replace(header, `"record":1`, `"record":9`, 1) + "\n", ":1: record format 9"},
		"no text":       {header + "\n{\"event\":\"message\"}\n", ":2: a message event without its text"},
		"empty output":  {header + "\n{\"event\":\"closed\",\"out\":[{}]}\n", ":2: out[1]: an output with no field"},
	}
	for name, c := range cases {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".jsonl")
		if err := os.WriteFile(path, []byte(c.text), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Read(path)
		if err == nil || !strings.Contains(err.Error(), path+c.want) {
			t.Errorf("%s: error %v, want it to contain %q", name, err, path+c.want)
		}
	}
}
