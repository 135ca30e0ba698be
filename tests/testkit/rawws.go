package testkit

import (
	"bufio"
	bin "encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// WebSocket spoken by hand over TCP, for what a client library will not
// do: several frames in one TCP write, a frame cut anywhere, a handshake
// with headers of one's choosing, a pong left unsent.

// UpgradeHeaders is a WebSocket handshake request for path without the
// blank line that ends it: a test may add headers before that line.
func UpgradeHeaders(path string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
}

// RawUpgrade sends the handshake for path over nc and reads the server's
// answer, whatever its status; br reads what the server sends after it.
func RawUpgrade(nc net.Conn, path string) (br *bufio.Reader, resp *http.Response, err error) {
	if _, err := fmt.Fprintf(nc, "%s\r\n", UpgradeHeaders(path)); err != nil {
		return nil, nil, fmt.Errorf("send the handshake: %w", err)
	}
	br = bufio.NewReader(nc)
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("read the handshake's answer: %w", err)
	}
	return br, resp, nil
}

// DialRaw opens a WebSocket connection to path on addr by hand: the
// handshake must be accepted (101). Each read and write on it is bounded by
// WaitBound from now; the test's end closes it.
func DialRaw(t testing.TB, addr, path string) (net.Conn, *bufio.Reader) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, WaitBound)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(WaitBound))
	br, resp, err := RawUpgrade(nc, path)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake status %d", resp.StatusCode)
	}
	return nc, br
}

// ReadRawFrame reads one frame a server sent: its opcode (FIN and the
// reserved bits left out) and its payload. A masked frame is an error: a
// server must not mask.
func ReadRawFrame(br *bufio.Reader) (op byte, payload []byte, err error) {
	var h [2]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return 0, nil, fmt.Errorf("read a frame's header: %w", err)
	}
	if h[1]&0x80 != 0 {
		return 0, nil, fmt.Errorf("the server masked a frame (header % x)", h)
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var l [2]byte
		if _, err := io.ReadFull(br, l[:]); err != nil {
			return 0, nil, fmt.Errorf("read a frame's length: %w", err)
		}
		n = uint64(bin.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		if _, err := io.ReadFull(br, l[:]); err != nil {
			return 0, nil, fmt.Errorf("read a frame's length: %w", err)
		}
		n = bin.BigEndian.Uint64(l[:])
	}
	if n > 1<<30 {
		return 0, nil, fmt.Errorf("a frame of %d bytes", n)
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(br, payload); err != nil {
		return 0, nil, fmt.Errorf("read a frame's %d-byte payload: %w", n, err)
	}
	return h[0] & 0x0f, payload, nil
}

// MaskedFrame is one whole client frame (FIN set, masked as a client must)
// with opcode op and payload p.
func MaskedFrame(op byte, p []byte) []byte {
	f := []byte{0x80 | op}
	switch {
	case len(p) < 126:
		f = append(f, 0x80|byte(len(p)))
	case len(p) <= 0xffff:
		f = append(f, 0x80|126)
		f = bin.BigEndian.AppendUint16(f, uint16(len(p)))
	default:
		f = append(f, 0x80|127)
		f = bin.BigEndian.AppendUint64(f, uint64(len(p)))
	}
	mask := [4]byte{0x12, 0x34, 0x56, 0x78}
	f = append(f, mask[:]...)
	for i, b := range p {
		f = append(f, b^mask[i%4])
	}
	return f
}
