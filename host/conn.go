package host

import (
	"bufio"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/gobwas/ws"
)

// ConnOptions are the per-connection limits of the WebSocket transport.
type ConnOptions struct {
	MaxMessageBytes int64         // whole reassembled message
	WriteTimeout    time.Duration // one frame write
	CloseTimeout    time.Duration // wait for the client's close reply
	MaxQueuedBytes  int           // unsent bytes before the client is closed as slow
}

// wsConn is the WebSocket transport of one session. Its reader goroutine
// reads frames; every write, the replies to pings and closes included, goes
// through one queue drained by one writer at a time, so frames never
// interleave. The writer goroutine exists only while the queue has frames.
type wsConn struct {
	nc      net.Conn
	opts    ConnOptions
	session *Session
	closed  func() // called once, when the network connection is closed

	mu          sync.Mutex
	out         []outFrame
	queuedBytes int
	writing     bool
	closeQueued bool // a close frame is queued or written: nothing else is queued after it
	sentClose   bool // the close frame is written
	readerDone  bool // the reader ended (client close, error, or drained)
	ncClosed    bool
}

type outFrame struct {
	op      ws.OpCode
	payload []byte
}

// serve runs the connection's reader until it ends; br holds whatever the
// handshake had already buffered.
func (c *wsConn) serve(br *bufio.Reader) {
	fr := &frameReader{r: br, max: c.opts.MaxMessageBytes, control: c}
	for {
		msg, err := fr.next()
		if err == nil {
			c.session.Message(append([]byte(nil), msg...))
			if cap(fr.msg) > 64<<10 {
				fr.msg = nil // do not keep a large buffer for an idle connection
			}
			continue
		}
		var pe *protocolError
		if errors.As(err, &pe) {
			c.session.Fail(pe.code, pe.text, pe.status)
			c.drain()
		}
		break
	}
	c.mu.Lock()
	c.readerDone = true
	closeNow := c.sentClose || !c.closeQueued
	c.mu.Unlock()
	if closeNow {
		c.closeNet()
	}
	c.session.Closed()
}

// drain discards what the client still sends until our close frame is out
// and the client closes or the close timeout passes, so that the client
// reads our error frame and close instead of a reset.
func (c *wsConn) drain() {
	c.nc.SetReadDeadline(time.Now().Add(c.opts.CloseTimeout + c.opts.WriteTimeout))
	io.Copy(io.Discard, c.nc)
}

// ping implements controlHandler: answer with a pong, through the writer.
func (c *wsConn) ping(payload []byte) {
	c.queue(outFrame{op: ws.OpPong, payload: append([]byte(nil), payload...)}, false)
}

// closeFrame implements controlHandler: echo the client's close and end.
func (c *wsConn) closeFrame(code CloseCode, reason string) {
	var body []byte
	if code != 0 {
		body = ws.NewCloseFrameBody(ws.StatusCode(code), "")
	}
	c.queue(outFrame{op: ws.OpClose, payload: body}, true)
}

// Send implements Transport.
func (c *wsConn) Send(msg []byte) { c.queue(outFrame{op: ws.OpText, payload: msg}, false) }

// Close implements Transport.
func (c *wsConn) Close(code CloseCode, reason string) {
	if len(reason) > 123 {
		reason = reason[:123]
	}
	c.queue(outFrame{op: ws.OpClose, payload: ws.NewCloseFrameBody(ws.StatusCode(code), reason)}, true)
}

func (c *wsConn) queue(f outFrame, isClose bool) {
	c.mu.Lock()
	if c.closeQueued || c.ncClosed {
		c.mu.Unlock()
		return
	}
	if isClose {
		c.closeQueued = true
	}
	c.queuedBytes += len(f.payload)
	if c.opts.MaxQueuedBytes > 0 && c.queuedBytes > c.opts.MaxQueuedBytes && !isClose {
		// The client does not read: drop it rather than grow memory.
		c.mu.Unlock()
		c.closeNet()
		return
	}
	c.out = append(c.out, f)
	start := !c.writing
	c.writing = true
	c.mu.Unlock()
	if start {
		go c.write()
	}
}

// write is the connection's single writer: it drains the queue and exits.
func (c *wsConn) write() {
	for {
		c.mu.Lock()
		if len(c.out) == 0 || c.ncClosed {
			c.writing = false
			c.out = nil
			c.mu.Unlock()
			return
		}
		f := c.out[0]
		c.out[0] = outFrame{}
		c.out = c.out[1:]
		c.queuedBytes -= len(f.payload)
		c.mu.Unlock()

		c.nc.SetWriteDeadline(time.Now().Add(c.opts.WriteTimeout))
		err := writeFrame(c.nc, f)
		if err != nil {
			c.closeNet()
			continue
		}
		if f.op == ws.OpClose {
			c.mu.Lock()
			c.sentClose = true
			done := c.readerDone
			c.mu.Unlock()
			if done {
				c.closeNet()
				continue
			}
			// Nothing follows the close frame: send FIN so the client sees
			// the end at once, and wait for its reply, but not for ever.
			if hc, ok := c.nc.(interface{ CloseWrite() error }); ok {
				hc.CloseWrite()
			}
			c.nc.SetReadDeadline(time.Now().Add(c.opts.CloseTimeout))
		}
	}
}

func writeFrame(w io.Writer, f outFrame) error {
	var hb [ws.MaxHeaderSize]byte
	h := ws.Header{Fin: true, OpCode: f.op, Length: int64(len(f.payload))}
	n := ws.HeaderSize(h)
	if err := ws.WriteHeaderBuffer(discard{}, h, hb[:]); err != nil {
		return err
	}
	bufs := net.Buffers{hb[:n], f.payload}
	_, err := bufs.WriteTo(w)
	return err
}

// discard lets WriteHeaderBuffer fill hb, which is then sent with the
// payload in one writev.
type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func (c *wsConn) closeNet() {
	c.mu.Lock()
	if c.ncClosed {
		c.mu.Unlock()
		return
	}
	c.ncClosed = true
	c.mu.Unlock()
	c.nc.Close()
	if c.closed != nil {
		c.closed()
	}
}
