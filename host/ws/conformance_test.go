package ws

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/electric-socket/electric-socket/host/engine"
)

// The conformance table mirrors the Autobahn TestSuite's server cases 1 to
// 7 and 10 (Autobahn itself cannot run on these machines), over a real TCP
// connection to the real server, frame by frame. Each case sends its frames
// after the login and expects the server's frames in order; a case that
// ends without a close then shows the connection still echoes, and after
// every case a new client logs in and is served.
//
// Where this server deliberately differs from an echo server, the case says
// so: every message must be a JSON object (an empty or non-JSON text
// message is refused with 1007) and binary messages are refused (1003).
// Text payloads are therefore JSON objects; echoes are compared as JSON.

type expect struct {
	kind    byte   // 't' text, 'p' pong, 'f' error frame then close, 'c' close, 'x' anything until close
	payload string // 't', 'p': the payload
	code    engine.CloseCode
}

func echoed(s string) expect           { return expect{kind: 't', payload: s} }
func pongOf(p string) expect           { return expect{kind: 'p', payload: p} }
func failed(c engine.CloseCode) expect { return expect{kind: 'f', code: c} }
func closed(c engine.CloseCode) expect { return expect{kind: 'c', code: c} }

type conformanceCase struct {
	id     string // Autobahn case
	name   string
	frames [][]byte
	chop   int // write in pieces of this many bytes (0: each frame whole)
	want   []expect
}

// jsonOf is a JSON object of exactly n bytes: {"t":"xxx..."}.
func jsonOf(n int) string { return `{"t":"` + strings.Repeat("x", n-8) + `"}` }

func fragments(op byte, parts ...string) [][]byte {
	var out [][]byte
	for i, p := range parts {
		o := byte(0)
		if i == 0 {
			o = op
		}
		out = append(out, rawFrame(i == len(parts)-1, 0, o, []byte(p), false))
	}
	return out
}

// bytewise splits s into one fragment per byte.
func bytewise(s string) [][]byte {
	parts := make([]string, len(s))
	for i := 0; i < len(s); i++ { // bytes, not runes
		parts[i] = s[i : i+1]
	}
	return fragments(1, parts...)
}

func frames(fs ...[]byte) [][]byte { return fs }

func conformanceCases() []conformanceCase {
	var cs []conformanceCase
	add := func(c conformanceCase) { cs = append(cs, c) }

	// 1 Framing: text payloads across the 7-bit, 16-bit and 64-bit lengths.
	add(conformanceCase{id: "1.1.1", name: "empty text (not JSON: 1007)", frames: frames(text("")), want: []expect{failed(engine.CloseInvalidData)}})
	for i, n := range []int{125, 126, 127, 128, 65535, 65536} {
		s := jsonOf(n)
		add(conformanceCase{id: fmt.Sprintf("1.1.%d", i+2), name: fmt.Sprintf("text of %d bytes", n), frames: frames(text(s)), want: []expect{echoed(s)}})
	}
	s64k := jsonOf(65536)
	add(conformanceCase{id: "1.1.8", name: "text of 65536 bytes in chops of 997", frames: frames(text(s64k)), chop: 997, want: []expect{echoed(s64k)}})
	add(conformanceCase{id: "1.2.1", name: "binary (refused: 1003)", frames: frames(rawFrame(true, 0, 2, []byte{1, 2, 3}, false)), want: []expect{failed(engine.CloseUnsupported)}})

	// 2 Pings and pongs.
	bin := string([]byte{0, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0, 0xff})
	p125 := strings.Repeat("\xfe", 125)
	add(conformanceCase{id: "2.1", name: "ping without payload", frames: frames(control(9, nil)), want: []expect{pongOf("")}})
	add(conformanceCase{id: "2.2", name: "ping with text payload", frames: frames(control(9, []byte("Hello, world!"))), want: []expect{pongOf("Hello, world!")}})
	add(conformanceCase{id: "2.3", name: "ping with binary payload", frames: frames(control(9, []byte(bin))), want: []expect{pongOf(bin)}})
	add(conformanceCase{id: "2.4", name: "ping with 125-byte payload", frames: frames(control(9, []byte(p125))), want: []expect{pongOf(p125)}})
	add(conformanceCase{id: "2.5", name: "ping with 126-byte payload", frames: frames(control(9, []byte(p125+"x"))), want: []expect{failed(engine.CloseProtocolError)}})
	add(conformanceCase{id: "2.6", name: "ping with 125-byte payload, byte by byte", frames: frames(control(9, []byte(p125))), chop: 1, want: []expect{pongOf(p125)}})
	add(conformanceCase{id: "2.7", name: "unsolicited pong without payload", frames: frames(control(10, nil))})
	add(conformanceCase{id: "2.8", name: "unsolicited pong with payload", frames: frames(control(10, []byte("unsolicited pong payload")))})
	add(conformanceCase{id: "2.9", name: "unsolicited pong, then ping", frames: frames(control(10, []byte("unsolicited")), control(9, []byte("ping payload"))),
		want: []expect{pongOf("ping payload")}})
	var tenPings [][]byte
	var tenPongs []expect
	for i := range 10 {
		tenPings = append(tenPings, control(9, []byte(fmt.Sprintf("payload-%d", i))))
		tenPongs = append(tenPongs, pongOf(fmt.Sprintf("payload-%d", i)))
	}
	add(conformanceCase{id: "2.10", name: "10 pings", frames: tenPings, want: tenPongs})
	add(conformanceCase{id: "2.11", name: "10 pings, byte by byte", frames: tenPings, chop: 1, want: tenPongs})

	// 3 Reserved bits.
	hello := `{"t":"Hello, world!"}`
	add(conformanceCase{id: "3.1", name: "text with RSV1", frames: frames(rawFrame(true, 1, 1, []byte(hello), false)), want: []expect{failed(engine.CloseProtocolError)}})
	add(conformanceCase{id: "3.2", name: "text, text with RSV2, ping", frames: frames(text(hello), rawFrame(true, 2, 1, []byte(hello), false), control(9, nil)),
		want: []expect{echoed(hello), failed(engine.CloseProtocolError)}})
	add(conformanceCase{id: "3.3", name: "text, text with RSV3, ping, byte by byte", frames: frames(text(hello), rawFrame(true, 3, 1, []byte(hello), false), control(9, nil)),
		chop: 1, want: []expect{echoed(hello), failed(engine.CloseProtocolError)}})
	add(conformanceCase{id: "3.4", name: "text, text with RSV4, ping", frames: frames(text(hello), rawFrame(true, 4, 1, []byte(hello), false), control(9, nil)),
		want: []expect{echoed(hello), failed(engine.CloseProtocolError)}})
	add(conformanceCase{id: "3.5", name: "binary with RSV5", frames: frames(rawFrame(true, 5, 2, []byte{1}, false)), want: []expect{failed(engine.CloseProtocolError)}})
	add(conformanceCase{id: "3.6", name: "ping with RSV6", frames: frames(rawFrame(true, 6, 9, []byte("x"), false)), want: []expect{failed(engine.CloseProtocolError)}})
	add(conformanceCase{id: "3.7", name: "close with RSV7", frames: frames(rawFrame(true, 7, 8, closeBody(1000, ""), false)), want: []expect{failed(engine.CloseProtocolError)}})

	// 4 Opcodes.
	for i, op := range []byte{3, 4, 5, 6, 7} {
		add(conformanceCase{id: fmt.Sprintf("4.1.%d", i+1), name: fmt.Sprintf("reserved data opcode %d after a text", op),
			frames: frames(text(hello), rawFrame(true, 0, op, []byte("x"), false), control(9, nil)),
			want:   []expect{echoed(hello), failed(engine.CloseProtocolError)}})
	}
	for i, op := range []byte{11, 12, 13, 14, 15} {
		add(conformanceCase{id: fmt.Sprintf("4.2.%d", i+1), name: fmt.Sprintf("reserved control opcode %d after a text", op),
			frames: frames(text(hello), rawFrame(true, 0, op, []byte("x"), false), control(9, nil)),
			want:   []expect{echoed(hello), failed(engine.CloseProtocolError)}})
	}

	// 5 Fragmentation.
	frag1, frag2 := `{"t":"fragm`, `ent"}`
	whole := frag1 + frag2
	add(conformanceCase{id: "5.1", name: "fragmented ping", frames: frames(rawFrame(false, 0, 9, []byte("frag"), false), rawFrame(true, 0, 0, []byte("ment"), false)),
		want: []expect{failed(engine.CloseProtocolError)}})
	add(conformanceCase{id: "5.2", name: "fragmented pong", frames: frames(rawFrame(false, 0, 10, []byte("frag"), false), rawFrame(true, 0, 0, []byte("ment"), false)),
		want: []expect{failed(engine.CloseProtocolError)}})
	add(conformanceCase{id: "5.3", name: "text in 2 fragments", frames: fragments(1, frag1, frag2), want: []expect{echoed(whole)}})
	add(conformanceCase{id: "5.4", name: "text in 2 fragments, byte by byte", frames: fragments(1, frag1, frag2), chop: 1, want: []expect{echoed(whole)}})
	inPing := frames(rawFrame(false, 0, 1, []byte(frag1), false), control(9, []byte("ping")), rawFrame(true, 0, 0, []byte(frag2), false))
	add(conformanceCase{id: "5.6", name: "text in 2 fragments, a ping between", frames: inPing, want: []expect{pongOf("ping"), echoed(whole)}})
	add(conformanceCase{id: "5.7", name: "text in 2 fragments, a ping between, byte by byte", frames: inPing, chop: 1, want: []expect{pongOf("ping"), echoed(whole)}})
	add(conformanceCase{id: "5.9", name: "a final continuation with nothing to continue", frames: frames(rawFrame(true, 0, 0, []byte(frag2), false), text(hello)),
		want: []expect{failed(engine.CloseProtocolError)}})
	add(conformanceCase{id: "5.10", name: "the same, byte by byte", frames: frames(rawFrame(true, 0, 0, []byte(frag2), false), text(hello)), chop: 1,
		want: []expect{failed(engine.CloseProtocolError)}})
	add(conformanceCase{id: "5.12", name: "a continuation with nothing to continue", frames: frames(rawFrame(false, 0, 0, []byte(frag1), false), text(hello)),
		want: []expect{failed(engine.CloseProtocolError)}})
	add(conformanceCase{id: "5.15", name: "a message, then a continuation with nothing to continue", frames: append(fragments(1, frag1, frag2),
		rawFrame(false, 0, 0, []byte(frag1), false), rawFrame(true, 0, 0, []byte(frag2), false)),
		want: []expect{echoed(whole), failed(engine.CloseProtocolError)}})
	add(conformanceCase{id: "5.16", name: "continuations then text, twice", frames: frames(rawFrame(false, 0, 0, []byte("a"), false), rawFrame(true, 0, 0, []byte("b"), false), text(hello)),
		want: []expect{failed(engine.CloseProtocolError)}})
	add(conformanceCase{id: "5.18", name: "a text fragment, then a text frame", frames: frames(rawFrame(false, 0, 1, []byte(frag1), false), rawFrame(true, 0, 1, []byte(frag2), false)),
		want: []expect{failed(engine.CloseProtocolError)}})
	five := []string{`{"t":`, `"fra`, `gme`, `nts`, `"}`}
	interleaved := frames(rawFrame(false, 0, 1, []byte(five[0]), false), rawFrame(false, 0, 0, []byte(five[1]), false), control(9, []byte("pongme 1!")),
		rawFrame(false, 0, 0, []byte(five[2]), false), control(9, []byte("pongme 2!")), rawFrame(false, 0, 0, []byte(five[3]), false), rawFrame(true, 0, 0, []byte(five[4]), false))
	add(conformanceCase{id: "5.19", name: "5 fragments with 2 pings between", frames: interleaved,
		want: []expect{pongOf("pongme 1!"), pongOf("pongme 2!"), echoed(strings.Join(five, ""))}})
	add(conformanceCase{id: "5.20", name: "the same, byte by byte", frames: interleaved, chop: 1,
		want: []expect{pongOf("pongme 1!"), pongOf("pongme 2!"), echoed(strings.Join(five, ""))}})

	// 6 UTF-8.
	add(conformanceCase{id: "6.1.2", name: "3 empty fragments (not JSON: 1007)", frames: fragments(1, "", "", ""), want: []expect{failed(engine.CloseInvalidData)}})
	valid := map[string]string{
		"6.2.1": "Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!!",
		"6.5.1": "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5",                   // κόσμε
		"6.7.2": "\xc2\x80", "6.7.3": "\xe0\xa0\x80", "6.7.4": "\xf0\x90\x80\x80", // first of each length
		"6.8.2": "\x7f", "6.8.3": "\xdf\xbf", "6.8.4": "\xef\xbf\xbf", "6.8.5": "\xf4\x8f\xbf\xbf", // last of each length
		"6.9.1": "\xed\x9f\xbf", "6.9.2": "\xee\x80\x80", "6.9.3": "\xef\xbf\xbd", // around the surrogates; U+FFFD
		"6.22.1": "\xef\xbf\xbe", "6.22.2": "\xf0\x9f\xbf\xbe", // noncharacters are valid
	}
	for _, id := range sortedStrings(valid) {
		s := `{"t":"` + valid[id] + `"}`
		add(conformanceCase{id: id, name: fmt.Sprintf("valid UTF-8 %q", valid[id]), frames: frames(text(s)), want: []expect{echoed(s)}})
		add(conformanceCase{id: id + "+", name: fmt.Sprintf("valid UTF-8 %q, one byte per fragment", valid[id]), frames: bytewise(s), want: []expect{echoed(s)}})
	}
	kosme := `{"t":"` + valid["6.5.1"] + `"}`
	add(conformanceCase{id: "6.2.2", name: "valid UTF-8 split inside a code point", frames: fragments(1, kosme[:8], kosme[8:]), want: []expect{echoed(kosme)}})
	invalid := map[string]string{
		"6.3.1":  "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
		"6.8.1":  "\xf8\x88\x80\x80\x80", // 5 bytes
		"6.8.6":  "\xfc\x84\x80\x80\x80\x80",
		"6.9.4":  "\xf4\x90\x80\x80",                                     // over U+10FFFF
		"6.10.1": "\x80", "6.10.2": "\xbf", "6.10.3": "\x80\xbf\x80\xbf", // unexpected continuation bytes
		"6.12.1": "\xc0 ", "6.12.3": "\xe0 ", "6.12.5": "\xf8 ", // lonely start characters
		"6.13.1": "\xc0", "6.13.2": "\xe0\x80", "6.13.3": "\xf0\x80\x80", // last continuation byte missing
		"6.15.1": "\xfe", "6.15.2": "\xff", "6.15.3": "\xfe\xfe\xff\xff", // impossible bytes
		"6.16.1": "\xc0\xaf", "6.16.2": "\xe0\x80\xaf", "6.16.3": "\xf0\x80\x80\xaf", // overlong '/'
		"6.17.1": "\xc1\xbf", "6.17.2": "\xe0\x9f\xbf", // maximum overlong
		"6.18.1": "\xc0\x80", "6.18.2": "\xe0\x80\x80", // overlong NUL
		"6.19.1": "\xed\xa0\x80", "6.19.4": "\xed\xbf\xbf", // single UTF-16 surrogates
		"6.20.1": "\xed\xa0\x80\xed\xb0\x80", // paired surrogates
	}
	for _, id := range sortedStrings(invalid) {
		s := `{"t":"` + invalid[id] + `"}`
		add(conformanceCase{id: id, name: fmt.Sprintf("invalid UTF-8 %q", invalid[id]), frames: frames(text(s)), want: []expect{failed(engine.CloseInvalidData)}})
		add(conformanceCase{id: id + "+", name: fmt.Sprintf("invalid UTF-8 %q, one byte per fragment", invalid[id]), frames: bytewise(s), want: []expect{failed(engine.CloseInvalidData)}})
	}
	add(conformanceCase{id: "6.4.1", name: "valid, invalid, valid in 3 fragments", frames: fragments(1, `{"t":"`+valid["6.5.1"], "\xf4\x90\x80\x80", `edited"}`),
		want: []expect{failed(engine.CloseInvalidData)}})

	// 7 Close handling.
	add(conformanceCase{id: "7.1.1", name: "text, then close", frames: frames(text(hello), control(8, closeBody(1000, ""))), want: []expect{echoed(hello), closed(1000)}})
	add(conformanceCase{id: "7.1.2", name: "close, then close", frames: frames(control(8, closeBody(1000, "")), control(8, closeBody(1000, ""))), want: []expect{closed(1000)}})
	add(conformanceCase{id: "7.1.3", name: "close, then ping", frames: frames(control(8, closeBody(1000, "")), control(9, []byte("x"))), want: []expect{closed(1000)}})
	add(conformanceCase{id: "7.1.4", name: "close, then text", frames: frames(control(8, closeBody(1000, "")), text(hello)), want: []expect{closed(1000)}})
	add(conformanceCase{id: "7.1.5", name: "a fragment, close, the last fragment", frames: frames(rawFrame(false, 0, 1, []byte(frag1), false), control(8, closeBody(1000, "")),
		rawFrame(true, 0, 0, []byte(frag2), false)), want: []expect{closed(1000)}})
	big := jsonOf(256 << 10)
	add(conformanceCase{id: "7.1.6", name: "a large text, ping, close", frames: frames(text(big), control(9, []byte("x")), control(8, closeBody(1000, ""))),
		want: []expect{{kind: 'x', code: 1000}}})
	add(conformanceCase{id: "7.3.1", name: "close without payload", frames: frames(control(8, nil)), want: []expect{closed(0)}})
	add(conformanceCase{id: "7.3.2", name: "close with a 1-byte payload", frames: frames(control(8, []byte{3})), want: []expect{failed(engine.CloseProtocolError)}})
	add(conformanceCase{id: "7.3.3", name: "close with code 1000", frames: frames(control(8, closeBody(1000, ""))), want: []expect{closed(1000)}})
	add(conformanceCase{id: "7.3.4", name: "close with code and reason", frames: frames(control(8, closeBody(1000, "Hello World!"))), want: []expect{closed(1000)}})
	add(conformanceCase{id: "7.3.5", name: "close with a 123-byte reason", frames: frames(control(8, closeBody(1000, strings.Repeat("*", 123)))), want: []expect{closed(1000)}})
	add(conformanceCase{id: "7.3.6", name: "close with a 124-byte reason (payload 126)", frames: frames(rawFrame(true, 0, 8, closeBody(1000, strings.Repeat("*", 124)), false)),
		want: []expect{failed(engine.CloseProtocolError)}})
	add(conformanceCase{id: "7.5.1", name: "close with an invalid UTF-8 reason", frames: frames(control(8, closeBody(1000, invalid["6.3.1"]))), want: []expect{failed(engine.CloseInvalidData)}})
	for i, code := range []engine.CloseCode{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999} {
		add(conformanceCase{id: fmt.Sprintf("7.7.%d", i+1), name: fmt.Sprintf("close with valid code %d", code), frames: frames(control(8, closeBody(uint16(code), ""))),
			want: []expect{closed(code)}})
	}
	for i, code := range []int{0, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 1100, 2000, 2999} {
		add(conformanceCase{id: fmt.Sprintf("7.9.%d", i+1), name: fmt.Sprintf("close with invalid code %d", code), frames: frames(control(8, closeBody(uint16(code), ""))),
			want: []expect{failed(engine.CloseProtocolError)}})
	}
	for i, code := range []int{5000, 65535} {
		add(conformanceCase{id: fmt.Sprintf("7.13.%d", i+1), name: fmt.Sprintf("close with code %d, outside every range", code), frames: frames(control(8, closeBody(uint16(code), ""))),
			want: []expect{failed(engine.CloseProtocolError)}})
	}

	// 10 Miscellaneous: a 64 KiB message in 1300-byte fragments.
	var parts []string
	for rest := s64k; rest != ""; {
		n := min(1300, len(rest))
		parts, rest = append(parts, rest[:n]), rest[n:]
	}
	add(conformanceCase{id: "10.1.1", name: "64 KiB text in 1300-byte fragments", frames: fragments(1, parts...), want: []expect{echoed(s64k)}})

	// Unmasked client frames.
	add(conformanceCase{id: "RFC 5.1", name: "unmasked text", frames: frames(rawFrame(true, 0, 1, []byte(hello), true)), want: []expect{failed(engine.CloseProtocolError)}})
	add(conformanceCase{id: "RFC 5.1+", name: "unmasked ping", frames: frames(rawFrame(true, 0, 9, nil, true)), want: []expect{failed(engine.CloseProtocolError)}})
	return cs
}

func sortedStrings(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := range keys {
		for j := i + 1; j < len(keys); j++ {
			if keys[j] < keys[i] {
				keys[i], keys[j] = keys[j], keys[i]
			}
		}
	}
	return keys
}

func sameJSON(a, b string) bool {
	var x, y any
	return json.Unmarshal([]byte(a), &x) == nil && json.Unmarshal([]byte(b), &y) == nil && reflect.DeepEqual(x, y)
}

func TestConformance(t *testing.T) {
	h := startHostile(t, Options{MaxMessageBytes: 1 << 20, PingInterval: -1, MessageRate: 0}, engine.Options{}, nil, nil)
	for _, tc := range conformanceCases() {
		t.Run(tc.id+" "+tc.name, func(t *testing.T) {
			c := h.login(t)
			c.nc.SetDeadline(time.Now().Add(2 * waitBound))
			all := bytes.Join(tc.frames, nil)
			step := tc.chop
			if step == 0 {
				step = len(all)
			}
			go func() {
				for i := 0; i < len(all); i += step {
					if _, err := c.nc.Write(all[i:min(i+step, len(all))]); err != nil {
						return // the server may close before all is sent
					}
				}
			}()
			open := true
			for _, w := range tc.want {
				switch w.kind {
				case 't':
					op, p := c.read()
					if op != 1 || !sameJSON(string(p), w.payload) {
						t.Fatalf("got opcode %d %.80q, want the echo %.80q", op, p, w.payload)
					}
				case 'p':
					if op, p := c.read(); op != 0xA || string(p) != w.payload {
						t.Fatalf("got opcode %d %.80q, want a pong %.80q", op, p, w.payload)
					}
				case 'f':
					op, p := c.read()
					if op != 1 || !strings.Contains(string(p), `"id":"error"`) {
						t.Fatalf("got opcode %d %.80q, want an error frame", op, p)
					}
					c.expectClose(w.code)
					open = false
				case 'c':
					op, p := c.read()
					if op != 8 || (w.code == 0 && len(p) != 0) || (w.code != 0 && (len(p) < 2 || engine.CloseCode(uint16(p[0])<<8|uint16(p[1])) != w.code)) {
						t.Fatalf("got opcode %d %q, want the close %d echoed", op, p, w.code)
					}
					open = false
				case 'x':
					for {
						op, p := c.read()
						if op == 8 {
							if len(p) < 2 || engine.CloseCode(uint16(p[0])<<8|uint16(p[1])) != w.code {
								t.Fatalf("close %q, want %d", p, w.code)
							}
							break
						}
					}
					open = false
				}
			}
			if open {
				c.echo("still open")
			} else {
				c.expectEOF()
			}
			h.login(t).echo("served")
		})
	}
}
