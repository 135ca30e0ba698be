package tests

import (
	"bufio"
	"encoding/json"
	"net"
	"testing"

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
	nc, br := testkit.DialRaw(t, addr, path)
	return &rawClient{t: t, nc: nc, br: br}
}

// textFrame is one masked client text frame holding v as JSON.
func textFrame(v any) []byte {
	p, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return testkit.MaskedFrame(0x1, p)
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
	op, p, err := testkit.ReadRawFrame(c.br)
	if err != nil {
		c.t.Fatal(err)
	}
	return op, p
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
