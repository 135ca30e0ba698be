package ws

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/electric-socket/electric-socket/host/auth"
	"github.com/electric-socket/electric-socket/host/engine"
	"github.com/gobwas/ws"
)

// Options are the limits of the WebSocket transport: the handshake
// (server-wide) and each connection. Zero values mean the defaults.
type Options struct {
	MaxMessageBytes int64         // whole reassembled message; zero means 64 KiB
	WriteTimeout    time.Duration // one frame write; zero means 10s
	CloseTimeout    time.Duration // wait for the client's close reply; zero means 2s
	// MaxQueuedBytes: unsent bytes (payloads and frame overhead) beyond
	// which a client is closed as slow; zero means 4 MiB. One frame is
	// always accepted while the backlog is under it, so a single large
	// response can be sent.
	MaxQueuedBytes int
	MessageRate    float64       // messages (and pings) per second, sustained; zero: no limit
	MessageBurst   int           // ... and at once; zero means 2 x MessageRate
	RateClose      bool          // over the rate: close (rate_limited); false: stop reading until the bucket refills
	RateCloseAfter time.Duration // throttled this long without a break: close; zero: never
	PingInterval   time.Duration // the server pings this often; zero means 30s, below zero never
	PongTimeout    time.Duration // no pong this long after a ping: close 1008; zero means 10s

	HandshakeTimeout    time.Duration // to read the upgrade request's headers (and the TLS handshake); zero means 10s
	MaxHeaderBytes      int           // the upgrade request's headers; zero means 16 KiB
	AllowedOrigins      []string      // browser Origins allowed (see originAllowed); empty: any
	TLS                 *tls.Config   // non-nil: the listener speaks TLS
	MaxConnections      int           // open connections; over it: 503 before the upgrade; zero: no limit
	MaxConnectionsPerIP int           // open connections per remote address; over it: 429; zero: no limit
	NoIdlePoll          bool          // a reader goroutine per connection even where poll mode works ([server] idle_poll = false)
	// TrustedProxies: from these peers only, the forwarded header gives the
	// client's address (channel.remote_addr, the per-IP limit's key);
	// nil: the peer's address, whatever the headers say.
	TrustedProxies *auth.TrustedProxies
}

func (o Options) withDefaults() Options {
	if o.MaxMessageBytes <= 0 {
		o.MaxMessageBytes = 64 << 10
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.CloseTimeout <= 0 {
		o.CloseTimeout = 2 * time.Second
	}
	if o.MaxQueuedBytes <= 0 {
		o.MaxQueuedBytes = 4 << 20
	}
	if o.PingInterval == 0 {
		o.PingInterval = 30 * time.Second
	}
	if o.PongTimeout <= 0 {
		o.PongTimeout = 10 * time.Second
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = 10 * time.Second
	}
	if o.MaxHeaderBytes <= 0 {
		o.MaxHeaderBytes = 16 << 10
	}
	return o
}

// frameOverhead is what a queued frame costs besides its payload (its
// header and its place in the queue): a client flooding pings with empty
// payloads fills the queue too.
const frameOverhead = 64

// readerHook, when set (by tests only), is called with each message the
// reader hands to the session.
var readerHook func(msg []byte)

// wsConn is the WebSocket transport of one session. Its reader (a worker
// while the socket has input, or a goroutine of its own: conn_read.go)
// reads frames; every write, the replies to pings and closes included, goes
// through one queue drained by one writer at a time, so frames never
// interleave. The writer runs on a worker only while the queue has frames;
// the server's pings come from a timer.
type wsConn struct {
	nc      net.Conn
	opts    *Options // the server's, shared by its connections: read only
	session *engine.Session
	log     *slog.Logger
	closed  func() // called once, when the network connection is closed
	peak    func(queued int)
	bucket  tokenBucket // the message rate; the reader's own
	// Throttling (admit): overSince is the reader's own; the others are
	// read by the ping timer.
	overSince   time.Time     // when the client went over the rate; zero: it is not
	throttled   atomic.Bool   // the reader waits for a token now
	throttleEnd atomic.Int64  // UnixNano when it last stopped waiting
	gone        chan struct{} // closed with the network connection: a throttled reader stops waiting
	fr          frameReader   // the reader's own

	// Poll mode (conn_read.go, poll_linux.go); set before reading starts.
	polled    bool   // readiness comes from the poller: no goroutine while idle
	pollAdded bool   // registered with the poller's epoll (under mu)
	fd        int    // the socket, while polled and not closed
	pollGen   uint32 // this registration's number (under the poller's lock)

	mu           sync.Mutex
	out          []outFrame
	queuedBytes  int
	writing      bool
	corked       bool // the session's runner holds its frames back until Uncork
	closeQueued  bool // a close frame is queued or written: nothing else is queued after it
	sentClose    bool // the close frame is written
	readerDone   bool // the reader ended (client close, error, or drained)
	rstate       readState
	idleSince    time.Time // poll mode: when the reader last went idle
	ncClosed     bool
	aborted      bool // a limit was broken: the connection is being closed
	slow         bool // ... for not reading: writes get the close timeout only
	pingTimer    *time.Timer
	clientClosed bool             // the client sent its close frame
	clientCode   engine.CloseCode // ... with this code (0: none)
	pingOut      bool             // the timer waits for the pong of a ping
	awaitPong    bool             // a ping is out and no pong came since
	pingSent     time.Time        // when the ping that is out was sent
	pings        uint64
}

type outFrame struct {
	op      ws.OpCode
	payload []byte
}

func rateLimited(rate float64) *protocolError {
	return &protocolError{status: engine.ClosePolicy, code: CodeRateLimited,
		text: fmt.Sprintf("more than %g messages per second", rate)}
}

// maxThrottleSlice is the longest a throttled reader waits before it looks
// again whether the connection is being closed.
const maxThrottleSlice = 100 * time.Millisecond

// errGone: the connection was closed while its reader was throttled.
var errGone = errors.New("connection closed")

// admit spends a token of the message rate for what the reader has just
// read (a message or a ping). Over the rate it returns rate_limited with
// rate_action "close"; with "throttle" it waits, reading nothing more (TCP
// backpressure: nothing is lost), until a token is there, and returns
// rate_limited only when the client has been over the rate for
// RateCloseAfter without a break. While it waits the server's ping timer
// does not blame the client for a pong left unread (throttledSince).
func (c *wsConn) admit() error {
	for waited := false; ; waited = true {
		now := time.Now()
		wait := c.bucket.take(now)
		if wait == 0 {
			if waited {
				c.throttleEnd.Store(now.UnixNano())
				c.throttled.Store(false)
			} else {
				c.overSince = time.Time{} // a token was there: no longer over the rate
			}
			return nil
		}
		if c.opts.RateClose {
			return rateLimited(c.opts.MessageRate)
		}
		c.throttled.Store(true)
		if c.overSince.IsZero() {
			c.overSince = now
		} else if c.opts.RateCloseAfter > 0 && now.Sub(c.overSince) >= c.opts.RateCloseAfter {
			return &protocolError{status: engine.ClosePolicy, code: CodeRateLimited,
				text: fmt.Sprintf("more than %g messages per second for %v", c.opts.MessageRate, c.opts.RateCloseAfter)}
		}
		c.mu.Lock()
		closing := c.closeQueued
		c.mu.Unlock()
		if closing {
			return nil // the server closes it: read on, for the client's close reply
		}
		// A long wait (a low rate) is cut into slices, so that a close
		// decided meanwhile is seen.
		t := time.NewTimer(min(wait, maxThrottleSlice))
		select {
		case <-t.C:
		case <-c.gone:
			t.Stop()
			return errGone
		}
	}
}

// throttledSince reports whether the reader was held back by the rate at
// some moment after since: a pong not read then is not the client's fault.
func (c *wsConn) throttledSince(since time.Time) bool {
	return c.throttled.Load() || c.throttleEnd.Load() > since.UnixNano()
}

// drain discards what the client still sends until our close frame is out
// and the client closes or the close timeout passes, so that the client
// reads our error frame and close instead of a reset.
func (c *wsConn) drain() {
	c.nc.SetReadDeadline(time.Now().Add(c.opts.CloseTimeout + c.opts.WriteTimeout))
	io.Copy(io.Discard, c.nc)
}

// ping implements controlHandler: answer with a pong, through the writer.
// Pings count against the message rate.
func (c *wsConn) ping(payload []byte) {
	if err := c.admit(); err != nil {
		if pe, ok := err.(*protocolError); ok {
			c.abort(pe.code, pe.text)
		}
		return
	}
	c.queue(outFrame{op: ws.OpPong, payload: payload}, false) // the frame reader's, made for this ping
}

// pong implements controlHandler: the client is alive.
func (c *wsConn) pong() {
	c.mu.Lock()
	c.awaitPong = false
	c.mu.Unlock()
}

// closeFrame implements controlHandler: the client closes. The reply (the
// client's code echoed) is queued by the session once the messages that
// came before the close are answered (RFC 6455 5.5.1: data may still be
// sent before the close reply), through Close.
func (c *wsConn) closeFrame(code engine.CloseCode, reason string) {
	c.mu.Lock()
	c.clientClosed, c.clientCode = true, code
	c.mu.Unlock()
}

// Send implements engine.Transport.
func (c *wsConn) Send(msg []byte) { c.queue(outFrame{op: ws.OpText, payload: msg}, false) }

// Close implements engine.Transport. After the client's close, the session's
// plain close (1000 without a reason) is the reply: it echoes the client's
// code.
func (c *wsConn) Close(code engine.CloseCode, reason string) {
	if len(reason) > 123 {
		reason = reason[:123]
	}
	body := ws.NewCloseFrameBody(ws.StatusCode(code), reason)
	c.mu.Lock()
	if c.clientClosed && code == engine.CloseNormal && reason == "" {
		body = nil
		if c.clientCode != 0 {
			body = ws.NewCloseFrameBody(ws.StatusCode(c.clientCode), "")
		}
	}
	c.mu.Unlock()
	c.queue(outFrame{op: ws.OpClose, payload: body}, true)
}

func (c *wsConn) queue(f outFrame, isClose bool) {
	c.mu.Lock()
	if c.closeQueued || c.ncClosed {
		c.mu.Unlock()
		return
	}
	if !isClose && c.queuedBytes > c.opts.MaxQueuedBytes {
		// The client does not read: drop what waits for it rather than
		// grow memory, and close it as slow.
		c.mu.Unlock()
		c.closeSlow()
		return
	}
	if isClose {
		c.closeQueued = true
	}
	c.queuedBytes += len(f.payload) + frameOverhead
	if c.peak != nil {
		c.peak(c.queuedBytes)
	}
	c.out = append(c.out, f)
	// While the session's runner is corked, its frames wait for Uncork;
	// a control frame (a pong, a close) starts the writer at once, and
	// takes what waits with it.
	start := !c.writing && (!c.corked || f.op.IsControl())
	if start {
		c.writing = true
	}
	c.mu.Unlock()
	if start {
		tasks.run(c.write)
	}
}

// Cork implements engine.Corker: the frames the session's runner queues
// wait until Uncork.
func (c *wsConn) Cork() {
	c.mu.Lock()
	c.corked = true
	c.mu.Unlock()
}

// Uncork implements engine.Corker: what the run queued is written at once,
// on the runner's goroutine, as far as the socket takes it without blocking
// (writeNow: one writev for a burst, no hand-off); the writer takes over
// the rest.
func (c *wsConn) Uncork() {
	c.mu.Lock()
	c.corked = false
	start := !c.writing && len(c.out) > 0 && !c.ncClosed
	if start {
		c.writing = true
	}
	c.mu.Unlock()
	if start && !c.writeNow() {
		tasks.run(c.write)
	}
}

// closeSlow closes a client that does not read what it is sent: the queue
// is dropped, a close 1008 is queued in its place, and the writes left get
// the close timeout only (the frame being written may never get out). The
// session is told, so on_close runs at once.
func (c *wsConn) closeSlow() {
	c.mu.Lock()
	if c.aborted || c.closeQueued || c.ncClosed {
		c.mu.Unlock()
		return
	}
	c.aborted, c.slow, c.closeQueued = true, true, true
	// The end of a frame already begun on the wire (writeNow) must go
	// before the close frame; everything else waiting is dropped.
	keep := 0
	if len(c.out) > 0 && c.out[0].op == opTail {
		keep = 1
	}
	for i := keep; i < len(c.out); i++ {
		c.out[i] = outFrame{}
	}
	body := ws.NewCloseFrameBody(ws.StatusCode(engine.ClosePolicy), CodeSlowClient)
	c.out = append(c.out[:keep], outFrame{op: ws.OpClose, payload: body})
	c.queuedBytes = len(body) + frameOverhead
	if keep == 1 {
		c.queuedBytes += len(c.out[0].payload) + frameOverhead
	}
	start := !c.writing
	c.writing = true
	c.mu.Unlock()
	c.nc.SetWriteDeadline(time.Now().Add(c.opts.CloseTimeout)) // the write in flight too
	if start {
		tasks.run(c.write)
	}
	c.log.Debug("send queue over max_queued_bytes", "remote", c.nc.RemoteAddr().String(), "max_queued_bytes", c.opts.MaxQueuedBytes)
	if c.session != nil {
		c.session.Fail(CodeSlowClient, "the client does not read what it is sent", engine.ClosePolicy)
	}
	time.AfterFunc(c.opts.CloseTimeout+c.opts.WriteTimeout, c.closeNet)
}

// abort ends the connection for a broken limit: the session sends the
// error frame and the close, and runs on_close; the socket is closed after
// the close handshake's bound at the latest.
func (c *wsConn) abort(code, text string) {
	c.mu.Lock()
	if c.aborted || c.ncClosed {
		c.mu.Unlock()
		return
	}
	c.aborted = true
	c.mu.Unlock()
	c.log.Debug("client broke a limit", "remote", c.nc.RemoteAddr().String(), "code", code)
	if c.session != nil {
		c.session.Fail(code, text, engine.ClosePolicy)
	}
	time.AfterFunc(c.opts.CloseTimeout+c.opts.WriteTimeout, c.closeNet)
}

// startPings arms the ping timer: ping every PingInterval; a client that
// sends no pong within PongTimeout of a ping is closed (1008).
func (c *wsConn) startPings() {
	if c.opts.PingInterval <= 0 {
		return
	}
	c.mu.Lock()
	if !c.ncClosed {
		c.pingTimer = time.AfterFunc(c.opts.PingInterval, c.pingTick)
	}
	c.mu.Unlock()
}

func (c *wsConn) stopPings() {
	c.mu.Lock()
	if c.pingTimer != nil {
		c.pingTimer.Stop()
	}
	c.mu.Unlock()
}

// pingTick runs on the timer, in two phases: it sends a ping and waits
// PongTimeout; then, if no pong came, it closes the client, else it waits
// for what is left of PingInterval and pings again.
func (c *wsConn) pingTick() {
	c.mu.Lock()
	if c.ncClosed || c.closeQueued || c.aborted {
		c.mu.Unlock()
		return
	}
	if c.pingOut {
		if c.awaitPong && (c.throttledSince(c.pingSent) || c.session != nil && c.session.ReaderHeld(c.pingSent)) {
			// The server held the reader back (backpressure) since the
			// ping: the pong may wait unread. Not the client's fault:
			// give it a whole PongTimeout from now.
			c.pingSent = time.Now()
			c.pingTimer.Reset(c.opts.PongTimeout)
			c.mu.Unlock()
			return
		}
		if c.awaitPong {
			c.mu.Unlock()
			c.abort(CodePongTimeout, "no pong within "+c.opts.PongTimeout.String()+" of a ping")
			return
		}
		c.pingOut = false
		c.pingTimer.Reset(max(c.opts.PingInterval-c.opts.PongTimeout, 0))
		c.mu.Unlock()
		return
	}
	c.pingOut, c.awaitPong = true, true
	c.pingSent = time.Now()
	c.pings++
	payload := binary.BigEndian.AppendUint64(nil, c.pings)
	c.pingTimer.Reset(c.opts.PongTimeout)
	c.mu.Unlock()
	c.queue(outFrame{op: ws.OpPing, payload: payload}, false)
}

// maxBatchFrames and maxBatchBytes bound what one writev sends.
const (
	maxBatchFrames = 64
	maxBatchBytes  = 256 << 10
)

// write is the connection's single writer: it drains the queue, every
// frame waiting at once in one writev, and exits.
func (c *wsConn) write() {
	b := frameBatches.Get().(*frameBatch)
	defer putBatch(b)
	for {
		c.mu.Lock()
		if c.doneWriting() {
			c.mu.Unlock()
			return
		}
		c.takeBatch(b, false)
		timeout := c.opts.WriteTimeout
		if c.slow {
			timeout = c.opts.CloseTimeout
		}
		c.mu.Unlock()

		c.nc.SetWriteDeadline(time.Now().Add(timeout))
		err := b.writeTo(c.nc)
		last := b.frames[len(b.frames)-1].op
		b.reset()
		if err != nil {
			c.closeNet()
			continue
		}
		if last == ws.OpClose { // nothing is queued after a close frame
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
			if c.polled {
				// No read may be in progress to time out.
				time.AfterFunc(c.opts.CloseTimeout, c.closeNet)
			}
		}
	}
}

// doneWriting reports, under mu, whether the writer is done: nothing is
// queued or the socket is closed. Then the writing is released.
func (c *wsConn) doneWriting() bool {
	if len(c.out) > 0 && !c.ncClosed {
		return false
	}
	c.writing = false
	c.releaseOut()
	return true
}

// takeBatch moves the frames at the front of the queue into b, under mu:
// at most maxBatchFrames and maxBatchBytes (one frame at least), and with
// beforeClose none from a close frame on. It returns how many.
func (c *wsConn) takeBatch(b *frameBatch, beforeClose bool) int {
	n, size := 0, 0
	for n < len(c.out) && n < maxBatchFrames && !(beforeClose && c.out[n].op == ws.OpClose) &&
		(n == 0 || size+len(c.out[n].payload) <= maxBatchBytes) {
		size += len(c.out[n].payload)
		n++
	}
	b.frames = append(b.frames[:0], c.out[:n]...)
	rest := copy(c.out, c.out[n:])
	clear(c.out[rest:])
	c.out = c.out[:rest]
	c.queuedBytes -= size + n*frameOverhead
	return n
}

// releaseOut empties the queue; a small backing array is kept for the next
// frames, a large one let go. Called under mu.
func (c *wsConn) releaseOut() {
	clear(c.out)
	if cap(c.out) > 8 {
		c.out = nil
	} else {
		c.out = c.out[:0]
	}
}

// frameBatch is the scratch of one writev: the frames, their headers and
// the buffers handed to the kernel. Pooled: an idle connection holds none.
type frameBatch struct {
	frames []outFrame
	hdrs   []byte
	bufs   net.Buffers
}

var frameBatches = sync.Pool{New: func() any { return new(frameBatch) }}

// putBatch empties b and gives it back to the pool.
func putBatch(b *frameBatch) {
	b.reset()
	frameBatches.Put(b)
}

// opTail marks an outFrame whose payload is the unwritten end of a frame
// already begun on the wire (writeNow): it is written as it is, with no
// header.
const opTail ws.OpCode = 0xff

// writeTo writes the batch's frames (unmasked, as a server sends them) in
// one writev.
func (b *frameBatch) writeTo(w io.Writer) error {
	if err := b.prepare(); err != nil {
		return err
	}
	bufs := b.bufs // WriteTo consumes the slice it is called on
	_, err := bufs.WriteTo(w)
	return err
}

// prepare fills b.bufs with the frames' headers and payloads.
func (b *frameBatch) prepare() error {
	b.hdrs = slices.Grow(b.hdrs[:0], len(b.frames)*ws.MaxHeaderSize)[:len(b.frames)*ws.MaxHeaderSize]
	b.bufs = b.bufs[:0]
	for i, f := range b.frames {
		if f.op == opTail {
			b.bufs = append(b.bufs, f.payload)
			continue
		}
		hb := b.hdrs[i*ws.MaxHeaderSize : (i+1)*ws.MaxHeaderSize]
		h := ws.Header{Fin: true, OpCode: f.op, Length: int64(len(f.payload))}
		if err := ws.WriteHeaderBuffer(discard{}, h, hb); err != nil {
			return err
		}
		b.bufs = append(b.bufs, hb[:ws.HeaderSize(h)])
		if len(f.payload) > 0 {
			b.bufs = append(b.bufs, f.payload)
		}
	}
	return nil
}

func (b *frameBatch) reset() {
	clear(b.frames)
	b.frames = b.frames[:0]
	clear(b.bufs)
	b.bufs = b.bufs[:0]
}

// writeFrame writes one frame.
func writeFrame(w io.Writer, f outFrame) error {
	b := frameBatch{frames: []outFrame{f}}
	return b.writeTo(w)
}

// discard lets WriteHeaderBuffer fill a header buffer, which is then sent
// with the payload in one writev.
type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func (c *wsConn) closeNet() {
	c.mu.Lock()
	if c.ncClosed {
		c.mu.Unlock()
		return
	}
	c.ncClosed = true
	close(c.gone)
	if c.pingTimer != nil {
		c.pingTimer.Stop()
	}
	// In poll mode, forget the socket before closing it (its number may be
	// reused at once), and end the reading of an idle connection, which no
	// read will ever report.
	endIdle := false
	if c.polled {
		unpoll(c)
		if c.rstate == readIdle {
			c.rstate, endIdle = readDone, true
		}
	}
	c.mu.Unlock()
	c.nc.Close()
	if c.closed != nil {
		c.closed()
	}
	if endIdle {
		tasks.run(c.endReading)
	}
}
