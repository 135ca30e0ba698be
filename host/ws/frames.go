package ws

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/electric-socket/electric-socket/host/engine"
	"github.com/gobwas/ws"
)

// protocolError is bad input from the client that ends the connection: the
// client gets an error frame with code and text (when that makes sense) and
// a close with status.
type protocolError struct {
	status engine.CloseCode
	code   string // error code for the error frame
	text   string
}

func (e *protocolError) Error() string { return fmt.Sprintf("%d %s: %s", e.status, e.code, e.text) }

const codeProtocol = "protocol_error"

func violation(format string, args ...any) *protocolError {
	return &protocolError{status: engine.CloseProtocolError, code: codeProtocol, text: fmt.Sprintf(format, args...)}
}

// controlHandler receives the control frames met while reading a message.
type controlHandler interface {
	// ping reports a ping; payload is made for this frame and is the
	// handler's to keep.
	ping(payload []byte)
	// pong reports a pong: the client is alive.
	pong()
	// closeFrame reports the client's close frame: code 0 when it had none.
	closeFrame(code engine.CloseCode, reason string)
}

// frameReader reads client frames and assembles messages, checking RFC 6455
// as a server must: masked frames, no reserved bits or opcodes, well-formed
// control frames and fragmentation, UTF-8 text, and the size limit counted
// over the whole message before anything is allocated for it.
//
// It is used by one goroutine, the connection's reader.
type frameReader struct {
	r        io.Reader
	max      int64 // whole-message limit in bytes
	control  controlHandler
	hdr      [ws.MaxHeaderSize - 2]byte
	msg      []byte // the message being assembled
	inFrag   bool   // a fragmented message has started
	fragText bool   // ... and it is text
	// stopWhenEmpty, when set, is looked at after each control frame met
	// between messages: if it holds no more input, next returns errIdle
	// instead of waiting for a message (poll mode: a pong must not keep a
	// reader waiting).
	stopWhenEmpty *bufio.Reader
}

// errIdle: a control frame was handled and no more input has arrived.
var errIdle = errors.New("no message yet")

// errClientClosed ends reading after the client's close frame.
var errClientClosed = errors.New("client sent close")

// next returns the next complete text message. It returns errClientClosed
// after a close frame (already reported to control), a *protocolError for
// bad input, or the read error. The returned slice is valid until the next
// call.
func (fr *frameReader) next() ([]byte, error) {
	fr.msg = fr.msg[:0]
	for {
		h, err := ws.ReadHeaderBuffer(fr.r, fr.hdr[:0:len(fr.hdr)])
		if err != nil {
			if errors.Is(err, ws.ErrHeaderLengthMSB) || errors.Is(err, ws.ErrHeaderLengthUnexpected) {
				return nil, violation("invalid frame length")
			}
			return nil, err
		}
		if h.Rsv != 0 {
			return nil, violation("reserved bits set (no extension was negotiated)")
		}
		if !h.Masked {
			return nil, violation("client frames must be masked")
		}
		if h.OpCode.IsReserved() {
			return nil, violation("reserved opcode %d", h.OpCode)
		}
		if h.OpCode.IsControl() {
			if err := fr.readControl(h); err != nil {
				return nil, err
			}
			if !fr.inFrag && fr.stopWhenEmpty != nil && fr.stopWhenEmpty.Buffered() == 0 {
				return nil, errIdle
			}
			continue
		}
		switch h.OpCode {
		case ws.OpContinuation:
			if !fr.inFrag {
				return nil, violation("continuation frame without a message to continue")
			}
		case ws.OpText, ws.OpBinary:
			if fr.inFrag {
				return nil, violation("new data frame inside a fragmented message")
			}
			if h.OpCode == ws.OpBinary {
				return nil, &protocolError{status: engine.CloseUnsupported, code: engine.CodeBinaryFrame, text: "binary frames are not accepted; send JSON text"}
			}
			fr.inFrag, fr.fragText = true, true
		}
		if h.Length > fr.max-int64(len(fr.msg)) {
			return nil, &protocolError{status: engine.CloseTooBig, code: engine.CodeTooLarge,
				text: fmt.Sprintf("the message is over the limit of %d bytes", fr.max)}
		}
		start := len(fr.msg)
		fr.msg = grow(fr.msg, int(h.Length))
		if _, err := io.ReadFull(fr.r, fr.msg[start:]); err != nil {
			return nil, unexpectedEOF(err)
		}
		ws.Cipher(fr.msg[start:], h.Mask, 0)
		if h.Fin {
			fr.inFrag = false
			if !utf8.Valid(fr.msg) {
				return nil, &protocolError{status: engine.CloseInvalidData, code: engine.CodeInvalidUTF8, text: "the message is not valid UTF-8"}
			}
			return fr.msg, nil
		}
	}
}

func (fr *frameReader) readControl(h ws.Header) error {
	if !h.Fin {
		return violation("fragmented control frame")
	}
	if h.Length > 125 {
		return violation("control frame payload over 125 bytes")
	}
	// Made for each control frame, rare next to messages, rather than
	// held by every connection, most of which are idle; a ping's payload
	// goes into its pong as it is.
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(fr.r, p); err != nil {
		return unexpectedEOF(err)
	}
	ws.Cipher(p, h.Mask, 0)
	switch h.OpCode {
	case ws.OpPing:
		fr.control.ping(p)
	case ws.OpPong:
		// Answers the server's pings; an unsolicited one is a heartbeat.
		fr.control.pong()
	case ws.OpClose:
		if len(p) == 0 {
			fr.control.closeFrame(0, "")
			return errClientClosed
		}
		if len(p) == 1 {
			return violation("close frame with a 1-byte payload")
		}
		code, reason := ws.ParseCloseFrameData(p)
		if code > 4999 { // no range of RFC 6455 7.4.2 holds it (gobwas lets it pass)
			return violation("invalid close code %d", code)
		}
		if err := ws.CheckCloseFrameData(code, reason); err != nil {
			if !utf8.ValidString(reason) {
				return &protocolError{status: engine.CloseInvalidData, code: engine.CodeInvalidUTF8, text: "close reason is not valid UTF-8"}
			}
			return violation("invalid close code %d", code)
		}
		fr.control.closeFrame(engine.CloseCode(code), reason)
		return errClientClosed
	}
	return nil
}

// grow extends b by n bytes, reallocating geometrically.
func grow(b []byte, n int) []byte {
	if need := len(b) + n; need > cap(b) {
		nb := make([]byte, len(b), max(need, 2*cap(b)))
		copy(nb, b)
		b = nb
	}
	return b[:len(b)+n]
}

func unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
