package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/coder/websocket"
	"github.com/gobwas/ws"
)

// client is one WebSocket client connection as the generator uses it: send
// a text message, read the next data message. Not safe for concurrent use,
// except close.
type client interface {
	// send writes one text message. It may modify p (the gobwas client
	// masks in place): the caller renders a fresh payload each time.
	send(p []byte) error
	// recv returns the next data message; the slice is valid until the next
	// recv.
	recv() ([]byte, error)
	setReadDeadline(t time.Time) error
	close() error
}

// dialer opens client connections bound to a local source address.
type dialer func(ctx context.Context, url string, src net.IP) (client, error)

func netDialer(src net.IP) *net.Dialer {
	return &net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: 10 * time.Second}
}

// ---- gobwas/ws, used at the frame level ----
//
// The generator's client: ws.Dialer for the handshake, then frames read with
// ws.ReadHeaderBuffer into a buffer kept per connection and written as one
// masked header+payload write. No allocation per message, one read syscall
// per message when it fits the bufio buffer, one write syscall per message.

type gobwasClient struct {
	nc   net.Conn
	br   *bufio.Reader
	hb   [ws.MaxHeaderSize]byte
	rbuf []byte
	wbuf []byte
	rnd  uint32
}

func dialGobwas(ctx context.Context, url string, src net.IP) (client, error) {
	d := ws.Dialer{
		Timeout: 10 * time.Second,
		NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return netDialer(src).DialContext(ctx, network, addr)
		},
	}
	nc, br, _, err := d.Dial(ctx, url)
	if err != nil {
		return nil, err
	}
	c := &gobwasClient{nc: nc, rnd: uint32(time.Now().UnixNano()) | 1}
	if br != nil && br.Buffered() > 0 {
		// the server wrote right after the handshake: keep what is buffered
		c.br = br
	} else {
		if br != nil {
			ws.PutReader(br)
		}
		c.br = bufio.NewReaderSize(nc, 512)
	}
	return c, nil
}

func (c *gobwasClient) mask() (m [4]byte) {
	// xorshift32: a fresh mask per frame without crypto/rand's cost
	x := c.rnd
	x ^= x << 13
	x ^= x >> 17
	x ^= x << 5
	c.rnd = x
	m[0], m[1], m[2], m[3] = byte(x), byte(x>>8), byte(x>>16), byte(x>>24)
	return m
}

func (c *gobwasClient) send(p []byte) error { return c.writeFrame(ws.OpText, p) }

func (c *gobwasClient) writeFrame(op ws.OpCode, p []byte) error {
	h := ws.Header{Fin: true, OpCode: op, Length: int64(len(p)), Masked: true, Mask: c.mask()}
	n := ws.HeaderSize(h)
	need := n + len(p)
	if cap(c.wbuf) < need {
		c.wbuf = make([]byte, need, need+256)
	}
	buf := c.wbuf[:need]
	if err := ws.WriteHeaderBuffer(fixedWriter{buf[:n]}, h, c.hb[:]); err != nil {
		return err
	}
	copy(buf[n:], p)
	ws.Cipher(buf[n:], h.Mask, 0)
	_, err := c.nc.Write(buf)
	return err
}

// fixedWriter copies the header WriteHeaderBuffer produces into a slice.
type fixedWriter struct{ dst []byte }

func (w fixedWriter) Write(p []byte) (int, error) { return copy(w.dst, p), nil }

func (c *gobwasClient) recv() ([]byte, error) {
	msg := c.rbuf[:0]
	for {
		h, err := ws.ReadHeaderBuffer(c.br, c.hb[:])
		if err != nil {
			return nil, err
		}
		if h.Length > 16<<20 {
			return nil, fmt.Errorf("frame of %d bytes", h.Length)
		}
		n := int(h.Length)
		if h.OpCode.IsControl() {
			var cb [125]byte
			if _, err := io.ReadFull(c.br, cb[:n]); err != nil {
				return nil, err
			}
			if h.Masked {
				ws.Cipher(cb[:n], h.Mask, 0)
			}
			switch h.OpCode {
			case ws.OpPing:
				if err := c.writeFrame(ws.OpPong, cb[:n]); err != nil {
					return nil, err
				}
			case ws.OpClose:
				code, reason := ws.ParseCloseFrameData(cb[:n])
				return nil, &closeError{code: int(code), reason: reason}
			}
			continue
		}
		start := len(msg)
		if cap(msg)-start < n {
			grown := make([]byte, start, start+n+512)
			copy(grown, msg)
			msg = grown
		}
		msg = msg[:start+n]
		if _, err := io.ReadFull(c.br, msg[start:]); err != nil {
			return nil, err
		}
		if h.Masked {
			ws.Cipher(msg[start:], h.Mask, 0)
		}
		if h.Fin {
			c.rbuf = msg
			return msg, nil
		}
	}
}

func (c *gobwasClient) setReadDeadline(t time.Time) error { return c.nc.SetReadDeadline(t) }
func (c *gobwasClient) close() error                      { return c.nc.Close() }

type closeError struct {
	code   int
	reason string
}

func (e *closeError) Error() string {
	return fmt.Sprintf("closed by the server: %d %s", e.code, e.reason)
}

// ---- coder/websocket, for comparison (-client coder) ----

type coderClient struct {
	c        *websocket.Conn
	ctx      context.Context
	cancel   context.CancelFunc
	deadline time.Time
}

func dialCoder(ctx context.Context, url string, src net.IP) (client, error) {
	tr := &http.Transport{DialContext: netDialer(src).DialContext}
	hc := &http.Client{Transport: tr}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(dctx, url, &websocket.DialOptions{HTTPClient: hc})
	if err != nil {
		return nil, err
	}
	c.SetReadLimit(16 << 20)
	cc := &coderClient{c: c}
	cc.ctx, cc.cancel = context.WithCancel(context.Background())
	return cc, nil
}

func (c *coderClient) send(p []byte) error {
	return c.c.Write(context.Background(), websocket.MessageText, p)
}

func (c *coderClient) recv() ([]byte, error) {
	ctx := context.Background()
	if !c.deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, c.deadline)
		defer cancel()
	}
	_, p, err := c.c.Read(ctx)
	if err != nil {
		var ce websocket.CloseError
		if errors.As(err, &ce) {
			return nil, &closeError{code: int(ce.Code), reason: ce.Reason}
		}
	}
	return p, err
}

func (c *coderClient) setReadDeadline(t time.Time) error { c.deadline = t; return nil }
func (c *coderClient) close() error {
	c.cancel()
	return c.c.CloseNow()
}
