package ws

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/electric-socket/electric-socket/host/engine"
	"github.com/gobwas/ws"
)

// rawFrame encodes a client frame by hand (not with the library under
// test), masked unless unmasked is set.
func rawFrame(fin bool, rsv byte, op byte, payload []byte, unmasked bool) []byte {
	var b bytes.Buffer
	b0 := rsv<<4 | op
	if fin {
		b0 |= 0x80
	}
	b.WriteByte(b0)
	mask := byte(0x80)
	if unmasked {
		mask = 0
	}
	switch n := len(payload); {
	case n < 126:
		b.WriteByte(mask | byte(n))
	case n < 1<<16:
		b.WriteByte(mask | 126)
		binary.Write(&b, binary.BigEndian, uint16(n))
	default:
		b.WriteByte(mask | 127)
		binary.Write(&b, binary.BigEndian, uint64(n))
	}
	if unmasked {
		b.Write(payload)
		return b.Bytes()
	}
	key := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	b.Write(key[:])
	for i, c := range payload {
		b.WriteByte(c ^ key[i%4])
	}
	return b.Bytes()
}

func text(s string) []byte              { return rawFrame(true, 0, 0x1, []byte(s), false) }
func fragment(op byte, s string) []byte { return rawFrame(false, 0, op, []byte(s), false) }
func final(s string) []byte             { return rawFrame(true, 0, 0x0, []byte(s), false) }
func control(op byte, p []byte) []byte  { return rawFrame(true, 0, op, p, false) }
func closeBody(code uint16, r string) []byte {
	b := binary.BigEndian.AppendUint16(nil, code)
	return append(b, r...)
}

type recordControl struct {
	pings  []string
	closes []engine.CloseCode
}

func (r *recordControl) ping(p []byte)                           { r.pings = append(r.pings, string(p)) }
func (r *recordControl) pong()                                   {}
func (r *recordControl) closeFrame(c engine.CloseCode, _ string) { r.closes = append(r.closes, c) }

func TestFrameReader(t *testing.T) {
	cases := []struct {
		name   string
		input  [][]byte
		max    int64
		msgs   []string           // messages read before the end
		pings  []string           // pings answered
		status engine.CloseCode   // 0: ends with a clean client close or EOF
		close  []engine.CloseCode // client close frames seen
	}{
		{name: "one text frame", input: [][]byte{text(`{"a":1}`)}, msgs: []string{`{"a":1}`}},
		{name: "empty text frame", input: [][]byte{text(``)}, msgs: []string{``}},
		{name: "16-bit length", input: [][]byte{text(strings.Repeat("x", 300))}, msgs: []string{strings.Repeat("x", 300)}},
		{name: "64-bit length", input: [][]byte{text(strings.Repeat("y", 70000))}, max: 1 << 20, msgs: []string{strings.Repeat("y", 70000)}},
		{name: "fragments", input: [][]byte{fragment(1, "he"), fragment(0, "ll"), final("o")}, msgs: []string{"hello"}},
		{name: "ping between fragments", input: [][]byte{fragment(1, "he"), control(0x9, []byte("p")), final("llo")},
			msgs: []string{"hello"}, pings: []string{"p"}},
		{name: "pong ignored", input: [][]byte{control(0xA, []byte("x")), text("a")}, msgs: []string{"a"}},
		{name: "ping with 125 bytes", input: [][]byte{control(0x9, bytes.Repeat([]byte("z"), 125))}, pings: []string{strings.Repeat("z", 125)}},
		{name: "ping with 126 bytes", input: [][]byte{control(0x9, bytes.Repeat([]byte("z"), 126))}, status: engine.CloseProtocolError},
		{name: "fragmented ping", input: [][]byte{rawFrame(false, 0, 0x9, []byte("p"), false)}, status: engine.CloseProtocolError},
		{name: "code point split across fragments", input: [][]byte{fragment(1, "\xce"), final("\xba")}, msgs: []string{"κ"}},
		{name: "invalid utf-8", input: [][]byte{text("\xce\xba\xe1\xbd")}, status: engine.CloseInvalidData},
		{name: "invalid utf-8 over fragments", input: [][]byte{fragment(1, "ok"), final("\xff")}, status: engine.CloseInvalidData},
		{name: "binary frame", input: [][]byte{rawFrame(true, 0, 0x2, []byte{1, 2}, false)}, status: engine.CloseUnsupported},
		{name: "reserved bits", input: [][]byte{rawFrame(true, 1, 0x1, []byte("a"), false)}, status: engine.CloseProtocolError},
		{name: "reserved data opcode", input: [][]byte{rawFrame(true, 0, 0x3, nil, false)}, status: engine.CloseProtocolError},
		{name: "reserved control opcode", input: [][]byte{rawFrame(true, 0, 0xB, nil, false)}, status: engine.CloseProtocolError},
		{name: "unmasked frame", input: [][]byte{rawFrame(true, 0, 0x1, []byte("a"), true)}, status: engine.CloseProtocolError},
		{name: "continuation without start", input: [][]byte{final("x")}, status: engine.CloseProtocolError},
		{name: "text inside fragmented message", input: [][]byte{fragment(1, "a"), text("b")}, status: engine.CloseProtocolError},
		{name: "over the limit in one frame", input: [][]byte{text(strings.Repeat("x", 101))}, max: 100, status: engine.CloseTooBig},
		{name: "over the limit across fragments", input: [][]byte{fragment(1, strings.Repeat("x", 60)), final(strings.Repeat("x", 41))}, max: 100, status: engine.CloseTooBig},
		{name: "exactly the limit", input: [][]byte{fragment(1, strings.Repeat("x", 60)), final(strings.Repeat("x", 40))}, max: 100, msgs: []string{strings.Repeat("x", 100)}},
		{name: "close with code", input: [][]byte{control(0x8, closeBody(1000, "bye"))}, close: []engine.CloseCode{1000}},
		{name: "close without code", input: [][]byte{control(0x8, nil)}, close: []engine.CloseCode{0}},
		{name: "close with 1-byte payload", input: [][]byte{control(0x8, []byte{3})}, status: engine.CloseProtocolError},
		{name: "close with reserved code 1005", input: [][]byte{control(0x8, closeBody(1005, ""))}, status: engine.CloseProtocolError},
		{name: "close with code 999", input: [][]byte{control(0x8, closeBody(999, ""))}, status: engine.CloseProtocolError},
		{name: "close with app code 4000", input: [][]byte{control(0x8, closeBody(4000, ""))}, close: []engine.CloseCode{4000}},
		{name: "close with invalid utf-8 reason", input: [][]byte{control(0x8, closeBody(1000, "\xff"))}, status: engine.CloseInvalidData},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			max := tc.max
			if max == 0 {
				max = 64 << 10
			}
			rc := &recordControl{}
			fr := &frameReader{r: bytes.NewReader(bytes.Join(tc.input, nil)), max: max, control: rc}
			var msgs []string
			var err error
			for {
				var m []byte
				if m, err = fr.next(); err != nil {
					break
				}
				msgs = append(msgs, string(m))
			}
			var pe *protocolError
			switch {
			case tc.status != 0:
				if !errors.As(err, &pe) || pe.status != tc.status {
					t.Fatalf("err = %v, want close %d", err, tc.status)
				}
			case tc.close != nil:
				if !errors.Is(err, errClientClosed) {
					t.Fatalf("err = %v, want the client's close", err)
				}
			default:
				if !errors.Is(err, io.EOF) {
					t.Fatalf("err = %v, want EOF", err)
				}
			}
			if strings.Join(msgs, "|") != strings.Join(tc.msgs, "|") {
				t.Fatalf("messages %q, want %q", msgs, tc.msgs)
			}
			if strings.Join(rc.pings, "|") != strings.Join(tc.pings, "|") {
				t.Fatalf("pings %q, want %q", rc.pings, tc.pings)
			}
			if len(rc.closes) != len(tc.close) || (len(tc.close) == 1 && rc.closes[0] != tc.close[0]) {
				t.Fatalf("closes %v, want %v", rc.closes, tc.close)
			}
		})
	}
}

// A header declaring 2^62 bytes is refused at once, before any payload is
// read or allocated.
func TestFrameReaderHugeDeclaredLength(t *testing.T) {
	h := []byte{0x81, 0x80 | 127}
	h = binary.BigEndian.AppendUint64(h, 1<<62)
	h = append(h, 1, 2, 3, 4)
	fr := &frameReader{r: io.MultiReader(bytes.NewReader(h), neverEnding{}), max: 64 << 10, control: &recordControl{}}
	_, err := fr.next()
	var pe *protocolError
	if !errors.As(err, &pe) || pe.status != engine.CloseTooBig {
		t.Fatalf("err = %v, want 1009", err)
	}
	if cap(fr.msg) != 0 {
		t.Fatalf("allocated %d bytes for a refused message", cap(fr.msg))
	}
}

type neverEnding struct{}

func (neverEnding) Read(p []byte) (int, error) { return len(p), nil }

func TestWriteFrameIsReadableByTheLibrary(t *testing.T) {
	var b bytes.Buffer
	payload := strings.Repeat("é", 40000)
	if err := writeFrame(&b, outFrame{op: ws.OpText, payload: []byte(payload)}); err != nil {
		t.Fatal(err)
	}
	f, err := ws.ReadFrame(&b)
	if err != nil {
		t.Fatal(err)
	}
	if !f.Header.Fin || f.Header.OpCode != ws.OpText || f.Header.Masked || string(f.Payload) != payload {
		t.Fatalf("frame %+v", f.Header)
	}
}

func BenchmarkFrameReadWrite(b *testing.B) {
	msg := []byte(`{"type":"say","text":"hello there, how are you doing today?"}`)
	in := bytes.Repeat(text(string(msg)), 1)
	r := bytes.NewReader(in)
	fr := &frameReader{r: r, max: 64 << 10, control: &recordControl{}}
	var fb frameBatch // as the writer does: pooled scratch, reused
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for i := 0; i < b.N; i++ {
		r.Reset(in)
		m, err := fr.next()
		if err != nil {
			b.Fatal(err)
		}
		fb.frames = append(fb.frames, outFrame{op: ws.OpText, payload: m})
		if err := fb.writeTo(io.Discard); err != nil {
			b.Fatal(err)
		}
		fb.reset()
	}
}

// A batch of frames goes out as one write of consecutive frames, in order,
// empty payloads included, and the batch is reusable.
func TestFrameBatchWritesFramesInOrder(t *testing.T) {
	var b frameBatch
	for round := range 2 {
		b.frames = append(b.frames[:0],
			outFrame{op: ws.OpText, payload: []byte(`{"n":1}`)},
			outFrame{op: ws.OpPing, payload: nil},
			outFrame{op: ws.OpText, payload: bytes.Repeat([]byte("x"), 70000)},
			outFrame{op: ws.OpClose, payload: ws.NewCloseFrameBody(ws.StatusNormalClosure, "bye")},
		)
		var w bytes.Buffer
		if err := b.writeTo(&w); err != nil {
			t.Fatal(err)
		}
		want := append([]outFrame(nil), b.frames...)
		b.reset()
		for i, f := range want {
			got, err := ws.ReadFrame(&w)
			if err != nil {
				t.Fatalf("round %d frame %d: %v", round, i, err)
			}
			if got.Header.OpCode != f.op || !bytes.Equal(got.Payload, f.payload) || got.Header.Masked || !got.Header.Fin {
				t.Fatalf("round %d frame %d: got %+v (%d bytes), want opcode %d (%d bytes)", round, i, got.Header, len(got.Payload), f.op, len(f.payload))
			}
		}
		if w.Len() != 0 {
			t.Fatalf("round %d: %d bytes after the frames", round, w.Len())
		}
	}
}
