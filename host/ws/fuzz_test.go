package ws

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"unicode/utf8"
)

// The frame reader never panics and never hands on what it must refuse:
// every message it returns is within the size limit and valid UTF-8, and
// every error is a client protocol error, the client's close or the end of
// the input. Longer runs: see RELIABILITY.md, e.g.
//
//	go test ./host -run '^$' -fuzz '^FuzzFrameReader$' -fuzztime 10m
func FuzzFrameReader(f *testing.F) {
	for _, seed := range [][]byte{
		text(`{"a":1}`),
		bytes.Join([][]byte{fragment(1, "he"), control(9, []byte("p")), final("llo")}, nil),
		bytes.Join([][]byte{fragment(1, "\xce"), final("\xba")}, nil),
		control(8, closeBody(1000, "bye")),
		control(8, []byte{3}),
		rawFrame(true, 1, 1, []byte("a"), false),
		rawFrame(true, 0, 1, []byte("a"), true),
		{0x81, 0xff, 0x40, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4},
		text("\xff"),
	} {
		f.Add(seed)
	}
	const max = 1 << 10
	f.Fuzz(func(t *testing.T, data []byte) {
		fr := &frameReader{r: bytes.NewReader(data), max: max, control: &recordControl{}}
		for {
			msg, err := fr.next()
			if err != nil {
				var pe *protocolError
				if !errors.As(err, &pe) && !errors.Is(err, errClientClosed) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("unexpected error %T %v", err, err)
				}
				if cap(fr.msg) > 2*max {
					t.Fatalf("buffer of %d bytes for a limit of %d", cap(fr.msg), max)
				}
				return
			}
			if len(msg) > max || !utf8.Valid(msg) {
				t.Fatalf("handed on a message of %d bytes, valid UTF-8 %t", len(msg), utf8.Valid(msg))
			}
		}
	})
}
