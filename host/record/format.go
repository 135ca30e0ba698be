// Package record writes and reads the records of [integration] record: one
// JSON-lines file per connection, holding its channel view, every event it
// ran (client messages, broker messages, its close) and what the host did
// for each, so that `electric-socket test --replay DIR` can run the same
// traffic through another version of the script (host/fixture).
package record

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/electric-socket/electric-socket/broker"
	"github.com/electric-socket/electric-socket/host/engine"
	"github.com/electric-socket/electric-socket/luabridge"
)

// Version is the format's version, the header's "record" field.
const Version = 1

// Header is a record's first line.
type Header struct {
	Record      int       `json:"record"`
	Integration string    `json:"integration"`
	Script      string    `json:"script"` // the script's file when recorded
	Opened      time.Time `json:"opened"`
	Channel     channel   `json:"channel"`
}

// channel is luabridge.Channel as a record holds it.
type channel struct {
	ID         string              `json:"id"`
	Path       string              `json:"path"`
	RemoteAddr string              `json:"remote_addr,omitempty"`
	Query      map[string]string   `json:"query,omitempty"`
	QueryAll   map[string][]string `json:"query_all,omitempty"`
	Claims     *bstr               `json:"claims,omitempty"` // JSON text
}

// ChannelView returns the channel view the connection had.
func (h *Header) ChannelView() *luabridge.Channel {
	c := h.Channel
	return &luabridge.Channel{
		ID: c.ID, Integration: h.Integration, Path: c.Path, RemoteAddr: c.RemoteAddr,
		Query: c.Query, QueryAll: c.QueryAll, Claims: bytesOf(c.Claims),
	}
}

// line is one event as a record holds it. Byte strings are kept as JSON
// strings, exactly as they were (a client's frame need not be JSON).
type line struct {
	Event    string    `json:"event,omitempty"`
	Text     *bstr     `json:"text,omitempty"`
	Envelope *envelope `json:"envelope,omitempty"`
	Code     string    `json:"code,omitempty"`
	Message  string    `json:"message,omitempty"`
	Close    int       `json:"close,omitempty"`
	Updates  []update  `json:"updates,omitempty"`
	Out      []output  `json:"out,omitempty"`
	// Truncated ends a record that reached its size limit.
	Truncated bool `json:"truncated,omitempty"`
}

type envelope struct {
	Target    string `json:"target"`
	Message   bstr   `json:"message"`
	BrokerKey string `json:"broker_key"`
	Source    string `json:"source"`
}

type update struct {
	Ran  bool   `json:"ran"`
	Seen *bstr  `json:"seen,omitempty"` // absent: nothing stored
	Err  string `json:"err,omitempty"`
}

type output struct {
	Send       *bstr    `json:"send,omitempty"`
	Commit     *commit  `json:"commit,omitempty"`
	Publish    *publish `json:"publish,omitempty"`
	SideEffect *bstr    `json:"side_effect,omitempty"`
	Close      int      `json:"close,omitempty"`
}

type commit struct {
	Op   string `json:"op"` // "set" or "delete"
	Data *bstr  `json:"data,omitempty"`
}

type publish struct {
	Target  string `json:"target"`
	Message bstr   `json:"message"`
}

// bstr is bytes as a record holds them: a JSON string when they are valid
// UTF-8 (a frame, broker data: nearly always), else {"base64": "..."}, so
// that every byte reads back as it was.
type bstr []byte

func (b bstr) MarshalJSON() ([]byte, error) {
	if utf8.Valid(b) {
		return json.Marshal(string(b))
	}
	return json.Marshal(map[string]string{"base64": base64.StdEncoding.EncodeToString(b)})
}

func (b *bstr) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err == nil {
		*b = bstr(s)
		return nil
	}
	var o struct {
		Base64 *string `json:"base64"`
	}
	if err := json.Unmarshal(data, &o); err != nil || o.Base64 == nil {
		return fmt.Errorf("bytes must be a string or {\"base64\": ...}, got %.40s", data)
	}
	d, err := base64.StdEncoding.DecodeString(*o.Base64)
	if err != nil {
		return fmt.Errorf("base64: %w", err)
	}
	*b = d
	return nil
}

func strOf(b []byte) *bstr {
	if b == nil {
		return nil
	}
	s := bstr(b)
	return &s
}

func bytesOf(s *bstr) []byte {
	if s == nil {
		return nil
	}
	if *s == nil {
		return []byte{}
	}
	return []byte(*s)
}

// encode turns a recorded event into its line.
func encode(r *engine.Recorded) line {
	l := line{Event: r.Kind, Text: strOf(r.Text), Code: r.Code, Message: r.Message, Close: int(r.Close)}
	if e := r.Envelope; e != nil {
		l.Envelope = &envelope{Target: e.Target, Message: bstr(e.Message), BrokerKey: e.BrokerKey, Source: e.Source}
	}
	for _, u := range r.Updates {
		l.Updates = append(l.Updates, update{Ran: u.Ran, Seen: strOf(u.Seen), Err: u.Err})
	}
	for _, o := range r.Out {
		l.Out = append(l.Out, encodeOutput(o))
	}
	return l
}

func encodeOutput(o engine.Output) output {
	switch {
	case o.Send != nil:
		return output{Send: strOf(o.Send)}
	case o.Commit != nil:
		c := &commit{Op: "set", Data: strOf(o.Commit.Data)}
		if o.Commit.Op == broker.Delete {
			c = &commit{Op: "delete"}
		}
		return output{Commit: c}
	case o.Publish != nil:
		return output{Publish: &publish{Target: o.Publish.Target, Message: bstr(o.Publish.Message)}}
	case o.SideEffect != nil:
		return output{SideEffect: strOf(o.SideEffect)}
	}
	return output{Close: int(o.Close)}
}

var kinds = map[string]bool{
	engine.RecMessage: true, engine.RecBroker: true, engine.RecClosed: true, engine.RecFail: true,
	engine.RecAuthTimeout: true, engine.RecTokenExpired: true, engine.RecShutdown: true,
}

// decode turns a line back into the event it records.
func decode(l line) (*engine.Recorded, error) {
	if !kinds[l.Event] {
		return nil, fmt.Errorf("unknown event %q", l.Event)
	}
	r := &engine.Recorded{Kind: l.Event, Text: bytesOf(l.Text), Code: l.Code, Message: l.Message, Close: engine.CloseCode(l.Close)}
	if r.Kind == engine.RecMessage && r.Text == nil {
		return nil, fmt.Errorf("a message event without its text")
	}
	if e := l.Envelope; e != nil {
		r.Envelope = &broker.Envelope{Target: e.Target, Message: json.RawMessage(e.Message), BrokerKey: e.BrokerKey, Source: e.Source}
	} else if r.Kind == engine.RecBroker {
		return nil, fmt.Errorf("a broker event without its envelope")
	}
	for _, u := range l.Updates {
		r.Updates = append(r.Updates, engine.RecordedUpdate{Ran: u.Ran, Seen: bytesOf(u.Seen), Err: u.Err})
	}
	for i, o := range l.Out {
		out, err := decodeOutput(o)
		if err != nil {
			return nil, fmt.Errorf("out[%d]: %w", i+1, err)
		}
		r.Out = append(r.Out, out)
	}
	return r, nil
}

func decodeOutput(o output) (engine.Output, error) {
	switch {
	case o.Send != nil:
		return engine.Output{Send: bytesOf(o.Send)}, nil
	case o.Commit != nil:
		switch o.Commit.Op {
		case "set":
			return engine.Output{Commit: &engine.Commit{Op: broker.Set, Data: bytesOf(o.Commit.Data)}}, nil
		case "delete":
			return engine.Output{Commit: &engine.Commit{Op: broker.Delete}}, nil
		}
		return engine.Output{}, fmt.Errorf("commit op %q is not set or delete", o.Commit.Op)
	case o.Publish != nil:
		return engine.Output{Publish: &luabridge.Message{Target: o.Publish.Target, Message: []byte(o.Publish.Message)}}, nil
	case o.SideEffect != nil:
		return engine.Output{SideEffect: bytesOf(o.SideEffect)}, nil
	case o.Close != 0:
		return engine.Output{Close: engine.CloseCode(o.Close)}, nil
	}
	return engine.Output{}, fmt.Errorf("an output with no field")
}
