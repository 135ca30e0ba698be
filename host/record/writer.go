package record

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/electric-socket/electric-socket/host/engine"
	"github.com/electric-socket/electric-socket/luabridge"
)

// MaxFileBytes bounds one connection's record: past it, a last line says
// the record was truncated and the connection's later events are dropped.
const MaxFileBytes = 16 << 20

// flushBytes is how much of a record waits in memory before it is appended
// to its file: a connection holds no open file between flushes.
const flushBytes = 32 << 10

// Dir records an integration's connections into files under a folder: it
// is the integration's engine.Recorder.
type Dir struct {
	dir         string // <folder>/<integration>
	integration string
	script      string
	log         *slog.Logger
	failed      atomic.Bool // a write failed: said once
}

// NewDir records the connections of integration (whose script is at
// script) into folder/<integration>/, which it creates.
func NewDir(folder, integration, script string, log *slog.Logger) (*Dir, error) {
	dir := filepath.Join(folder, integration)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("record: %w", err)
	}
	return &Dir{dir: dir, integration: integration, script: script, log: log}, nil
}

// Open starts the record of a connection: <time>-<channel id>.jsonl.
func (d *Dir) Open(ch *luabridge.Channel) engine.SessionRecord {
	now := time.Now().UTC()
	name := now.Format("20060102T150405.000000") + "-" + safeName(ch.ID) + ".jsonl"
	return &conn{d: d, ch: ch, path: filepath.Join(d.dir, name), opened: now}
}

func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
			return r
		}
		return '_'
	}, s)
}

// conn is one connection's record. The session calls it on its runner, one
// call at a time.
type conn struct {
	d       *Dir
	ch      *luabridge.Channel
	path    string
	opened  time.Time
	buf     bytes.Buffer
	written int  // bytes in the file
	started bool // the header is written (or in buf)
	stopped bool // truncated or a write failed: later events are dropped
}

func (c *conn) Event(ev *engine.Recorded) {
	if c.stopped {
		return
	}
	if !c.started {
		// Written with the first event, not at Open: a token in the first
		// message sets the channel's claims while it runs.
		c.started = true
		ch := c.ch
		c.add(Header{Record: Version, Integration: c.d.integration, Script: c.d.script, Opened: c.opened,
			Channel: channel{ID: ch.ID, Path: ch.Path, RemoteAddr: ch.RemoteAddr, Query: ch.Query, QueryAll: ch.QueryAll, Claims: strOf(ch.Claims)}})
	}
	c.add(encode(ev))
	if c.stopped {
		return
	}
	if c.buf.Len() >= flushBytes {
		c.flush()
	}
}

func (c *conn) End() { c.flush() }

// add appends v as a line, or ends the record when it would pass
// MaxFileBytes.
func (c *conn) add(v any) {
	b, err := json.Marshal(v)
	if err != nil { // every field is a string, number or bool
		c.fail(err)
		return
	}
	if c.written+c.buf.Len()+len(b)+1 > MaxFileBytes-64 {
		c.buf.WriteString(`{"truncated":true}` + "\n")
		c.flush()
		c.stopped = true
		return
	}
	c.buf.Write(b)
	c.buf.WriteByte('\n')
}

func (c *conn) flush() {
	if c.buf.Len() == 0 || c.stopped {
		return
	}
	f, err := os.OpenFile(c.path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err == nil {
		var n int
		n, err = f.Write(c.buf.Bytes())
		c.written += n
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	c.buf.Reset()
	if err != nil {
		c.fail(err)
	}
}

// fail stops the record: recording never touches the connection itself.
func (c *conn) fail(err error) {
	c.stopped = true
	if !c.d.failed.Swap(true) {
		c.d.log.Error("record: a connection's record could not be written; recording goes on for others",
			"integration", c.d.integration, "file", c.path, "err", err)
	}
}
