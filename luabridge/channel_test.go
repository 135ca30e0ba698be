package luabridge

import (
	"context"
	"net/url"
	"reflect"
	"strings"
	"testing"
)

// queryChannel has a parameter given twice (?tag=a&tag=b&room=lobby).
func queryChannel() *Channel {
	q, all := SplitQuery(url.Values{"tag": {"a", "b"}, "room": {"lobby"}})
	return &Channel{ID: "ch-q", Integration: "chat", Path: "/chat", RemoteAddr: "127.0.0.1:1", Query: q, QueryAll: all}
}

func runChannel(t *testing.T, body string, ch *Channel) (*Action, error) {
	t.Helper()
	s := mustLoad(t, wsScript(body), Options{PoolSize: 1})
	return s.ProcessWebsocketMessage(context.Background(), ch, []byte(`{}`), nil, nil)
}

func TestSplitQuery(t *testing.T) {
	q, all := SplitQuery(url.Values{"tag": {"a", "b"}, "room": {"lobby"}, "empty": {}})
	if !reflect.DeepEqual(q, map[string]string{"tag": "a", "room": "lobby"}) ||
		!reflect.DeepEqual(all, map[string][]string{"tag": {"a", "b"}}) {
		t.Errorf("SplitQuery = %v, %v", q, all)
	}
	if q, all := SplitQuery(url.Values{}); q != nil || all != nil {
		t.Errorf("no parameters: %v, %v, want nil maps", q, all)
	}
}

// Repeated parameters: channel.query has the first value of each (a
// string), channel.query_all every value of each, in order (an array).
// Both are plain tables: indexing, pairs, # and encoding work.
func TestChannelQueryRepeated(t *testing.T) {
	a, err := runChannel(t, `
local n = 0
for k, v in pairs(channel.query) do n = n + 1 end
local tags = {}
for i, v in ipairs(channel.query_all.tag) do tags[i] = v end
return { websocket_response = { query = channel.query, all = channel.query_all, n = n, tags = tags,
  count = #channel.query_all.tag, first = channel.query.tag, same = channel.query == channel.query,
  kind = type(channel.query_all), none = channel.query_all.nope == nil } }`, queryChannel())
	if err != nil {
		t.Fatal(err)
	}
	want := `{"all":{"room":["lobby"],"tag":["a","b"]},"count":2,"first":"a","kind":"table","n":2,"none":true,` +
		`"query":{"room":"lobby","tag":"a"},"same":true,"tags":["a","b"]}`
	if string(a.Response) != want {
		t.Errorf("got  %s\nwant %s", a.Response, want)
	}
}

// Writing to channel.query or channel.query_all is an error (SPEC section
// 2): a new key at once, on its line; a change to an existing key, which
// no metamethod sees, when the call returns. Nothing of the call is kept,
// and the next call sees the channel as it was.
func TestChannelQueryReadOnly(t *testing.T) {
	for _, tt := range []struct {
		name, stmt, where, msg string
	}{
		{"a new key", `channel.query.added = "yes"`, at(wsFuncLine + 2), "channel.query is read-only: cannot set added"},
		{"a new key through a local", "local q = channel.query\nq.other = 1", at(wsFuncLine + 3), "channel.query is read-only: cannot set other"},
		{"an existing key", `channel.query.room = "changed"`, at(wsFuncLine), "channel.query was written to: the channel view is read-only"},
		{"an existing key to nil", `channel.query.room = nil`, at(wsFuncLine), "channel.query was written to"},
		{"rawset", `rawset(channel.query, "z", "1")`, at(wsFuncLine), "channel.query was written to"},
		{"its metatable", `setmetatable(channel.query, nil)`, at(wsFuncLine + 2), "cannot change a protected metatable"},
		{"query_all: a new key", `channel.query_all.new = {}`, at(wsFuncLine + 2), "channel.query_all is read-only: cannot set new"},
		{"query_all: replacing a list", `channel.query_all.tag = { "x" }`, at(wsFuncLine), "channel.query_all was written to"},
		{"query_all: a value", `channel.query_all.tag[1] = "x"`, at(wsFuncLine), "channel.query_all.tag was written to"},
		{"query_all: appending", `table.insert(channel.query_all.tag, "c")`, at(wsFuncLine), "channel.query_all.tag was written to"},
		{"query_all: a new index", `channel.query_all.tag[3] = "c"`, at(wsFuncLine + 2), "channel.query_all is read-only: cannot set 3"},
		{"query_all: sorting", `table.sort(channel.query_all.tag, function(a, b) return a > b end)`, at(wsFuncLine), "channel.query_all.tag was written to"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := mustLoad(t, wsScript("if message.check then return { websocket_response = { room = channel.query.room, tag = channel.query_all.tag } } end\n"+
				tt.stmt+"\nreturn { websocket_response = { ok = true } }"), Options{PoolSize: 1})
			a, err := s.ProcessWebsocketMessage(context.Background(), queryChannel(), []byte(`{}`), nil, nil)
			checkScriptError(t, err, KindRuntime, "process_websocket_message", tt.where, tt.msg)
			if a != nil {
				t.Errorf("got an action %s with the error", describe(a))
			}
			a, err = s.ProcessWebsocketMessage(context.Background(), queryChannel(), []byte(`{"check":true}`), nil, nil)
			if err != nil {
				t.Fatalf("the next call: %v", err)
			}
			if string(a.Response) != `{"room":"lobby","tag":["a","b"]}` {
				t.Errorf("the next call sees %s", a.Response)
			}
		})
	}
}

// TestChannelClaims: channel.claims is the verified token's claims, nil
// without a token, and a script cannot add to it.
func TestChannelClaims(t *testing.T) {
	s := mustLoad(t, wsScript(`if channel.claims == nil then return { websocket_response = { none = true } } end
	return { websocket_response = { sub = channel.claims.sub, role = channel.claims.roles[1] } }`), Options{})
	ch := testChannel()
	ch.Claims = []byte(`{"sub":"alice","roles":["admin"],"exp":1700000000}`)
	a, err := s.ProcessWebsocketMessage(context.Background(), ch, []byte(`{}`), nil, nil)
	if err != nil || string(a.Response) != `{"role":"admin","sub":"alice"}` {
		t.Fatalf("with claims: %v, %v", a, err)
	}
	if got := string(wsOK(t, s, `{}`).Response); got != `{"none":true}` {
		t.Fatalf("without claims: %s", got)
	}
	w := mustLoad(t, wsScript(`channel.claims.sub = "mallory"`), Options{})
	_, err = w.ProcessWebsocketMessage(context.Background(), ch, []byte(`{}`), nil, nil)
	if err == nil || !strings.Contains(err.Error(), "channel.claims was written to") {
		t.Fatalf("a write to channel.claims: %v", err)
	}
}
