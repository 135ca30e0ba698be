package luabridge

import (
	"context"
	"strings"
	"testing"
)

// string.byte returns up to maxByteResults values at once; a longer slice
// is refused before any is pushed (as Lua 5.1 refuses one of about 8,000),
// whichever way the slice is given, and a single byte of a long string is
// still one value.
func TestStringByteIsBounded(t *testing.T) {
	for _, tc := range []struct {
		name, expr string
		want       string // the response's n; empty: refused
	}{
		{"the cap", `select("#", string.byte(string.rep("a", 65536), 1, -1))`, `{"n":65536}`},
		{"one over the cap", `select("#", string.byte(string.rep("a", 65537), 1, -1))`, ""},
		{"negative start", `select("#", string.byte(string.rep("a", 70000), -65537, -1))`, ""},
		{"the string alone (gopher-lua returns every byte)", `select("#", string.byte(string.rep("a", 70000)))`, ""},
		{"as a method", `select("#", (string.rep("a", 70000)):byte(1, 70000))`, ""},
		{"one byte of a long string", `string.byte(string.rep("a", 70000), 70000)`, `{"n":97}`},
		{"a slice past the end", `select("#", string.byte("abc", 2, 100000))`, `{"n":2}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := mustLoad(t, wsScript("return { websocket_response = { n = "+tc.expr+" } }"), Options{})
			a, err := s.ProcessWebsocketMessage(context.Background(), testChannel(), []byte(`{}`), nil, nil)
			if tc.want != "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if string(a.Response) != tc.want {
					t.Fatalf("response %s, want %s", a.Response, tc.want)
				}
				return
			}
			se := asScriptError(t, err)
			if se.Kind != KindRuntime || !strings.Contains(se.Error(), "string slice too long") {
				t.Fatalf("got %v (%s), want a script_error naming the slice", se, se.Kind)
			}
		})
	}
}
