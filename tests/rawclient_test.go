package tests

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/electric-socket/electric-socket/tests/testkit"
)

// rawClient speaks WebSocket by hand over TCP, for what a client library
// cannot do: several frames in one TCP write, so that they reach the server
// together whatever it answers in between (a library stops writing once it
// has read the server's close).
type rawClient struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func dialRawClient(t *testing.T, addr, path string) *rawClient {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, testkit.WaitBound)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(testkit.WaitBound))
	fmt.Fprintf(nc, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", path, addr)
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake status %d", resp.StatusCode)
	}
	return &rawClient{t: t, nc: nc, br: br}
}

// textFrame is one masked client text frame holding v as JSON.
func textFrame(v any) []byte {
	p, _ := json.Marshal(v)
	mask := [4]byte{0x12, 0x34, 0x56, 0x78}
	f := []byte{0x81}
	if len(p) < 126 {
		f = append(f, 0x80|byte(len(p)))
	} else {
		f = append(f, 0x80|126, byte(len(p)>>8), byte(len(p)))
	}
	f = append(f, mask[:]...)
	for i, b := range p {
		f = append(f, b^mask[i%4])
	}
	return f
}

// write sends frames in one TCP write.
func (c *rawClient) write(frames ...[]byte) {
	c.t.Helper()
	var all []byte
	for _, f := range frames {
		all = append(all, f...)
	}
	if _, err := c.nc.Write(all); err != nil {
		c.t.Fatal(err)
	}
}

// read returns the next server frame: its opcode and payload.
func (c *rawClient) read() (byte, []byte) {
	c.t.Helper()
	var h [2]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		c.t.Fatalf("read frame: %v", err)
	}
	n := int(h[1] & 0x7f)
	switch n {
	case 126:
		var l [2]byte
		io.ReadFull(c.br, l[:])
		n = int(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		io.ReadFull(c.br, l[:])
		n = int(binary.BigEndian.Uint64(l[:]))
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(c.br, p); err != nil {
		c.t.Fatalf("read payload: %v", err)
	}
	return h[0] & 0x0f, p
}

// expect reads a text frame and checks that it holds want's fields.
func (c *rawClient) expect(want map[string]any) {
	c.t.Helper()
	op, p := c.read()
	var got map[string]any
	if op != 1 || json.Unmarshal(p, &got) != nil {
		c.t.Fatalf("got opcode %d %q, want a text frame with %v", op, p, want)
	}
	for k, v := range want {
		if got[k] != v {
			c.t.Fatalf("got %s, want %s = %v", p, k, v)
		}
	}
}
