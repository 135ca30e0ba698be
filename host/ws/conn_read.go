package ws

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"os"
	"runtime/debug"
	"sync"
	"time"
)

// The reading side of a wsConn runs in one of two modes.
//
// Poll mode (Linux, plain TCP: poll_linux.go): an idle connection holds no
// goroutine and no buffer. The poller reports that the socket is readable;
// a worker (workers.go) takes a pooled buffer and reads what has arrived,
// hands the buffer back and asks the poller to report the next input. A
// busy connection (its input came back within pollIdleAfter of it going
// idle) keeps its worker instead, reading like a reader goroutine until no
// input has come for pollIdleAfter, so it pays no poller round trip per
// message. So 10,000 idle connections hold neither 10,000 goroutine stacks
// nor 10,000 read buffers, and a burst of 10,000 logins holds no
// goroutines either.
//
// Goroutine mode (TLS, wrapped listeners, other systems): one reader
// goroutine per connection, blocked in Read.
//
// Either way, one reader at a time: the read state below says who.
type readState uint8

const (
	readIdle   readState = iota // poll mode: waiting for the poller
	readActive                  // a worker or the reader goroutine reads
	readDone                    // reading ended; endReading has run or is running
)

// readBuf is the buffer a poll-mode connection reads through while it has
// input: the socket's bytes and the message being assembled.
type readBuf struct {
	br  *bufio.Reader
	msg []byte
}

// pollIdleAfter is how long a busy poll-mode connection's reader waits for
// input before it gives the connection back to the poller; a connection
// whose input comes back sooner than this after it went idle is busy.
var pollIdleAfter = 100 * time.Millisecond

var readBufs = sync.Pool{New: func() any { return &readBuf{br: bufio.NewReaderSize(nil, 2048)} }}

// start begins reading; br holds whatever the handshake had buffered.
func (c *wsConn) start(br *bufio.Reader) {
	c.bucket = newTokenBucket(c.opts.MessageRate, c.opts.MessageBurst)
	c.fr = frameReader{max: c.opts.MaxMessageBytes, control: c}
	c.startPings()
	c.mu.Lock()
	c.rstate = readActive
	c.polled = canPoll(c)
	c.mu.Unlock()
	if c.polled {
		if br.Buffered() > 0 {
			tasks.run(func() { c.readBurst(&readBuf{br: br}, false) })
			return
		}
		c.idle()
		return
	}
	if br.Buffered() == 0 {
		br = bufio.NewReaderSize(c.nc, 1024) // the handshake's 4 KiB buffer is let go
	}
	go func() {
		c.fr.r = br
		c.read(br, readForever)
		c.endReading()
	}()
}

// readable is the poller's report that the socket has input (or an error,
// or the end): a worker reads it.
func (c *wsConn) readable() {
	c.mu.Lock()
	if c.rstate != readIdle {
		c.mu.Unlock()
		return
	}
	c.rstate = readActive
	c.mu.Unlock()
	tasks.run(c.readPooled)
}

func (c *wsConn) readPooled() {
	rb := readBufs.Get().(*readBuf)
	rb.br.Reset(c.nc)
	c.readBurst(rb, true)
}

// readBurst reads every complete message rb's buffer and the socket hold,
// then gives rb back (when pooled) and waits for the poller again.
func (c *wsConn) readBurst(rb *readBuf, pooled bool) {
	c.fr.r, c.fr.msg = rb.br, rb.msg[:0]
	c.fr.stopWhenEmpty = rb.br
	busy := !c.idleSince.IsZero() && time.Since(c.idleSince) < pollIdleAfter
	mode := readUntilEmpty
	if busy {
		mode = readUntilQuiet
	}
	ended := c.read(rb.br, mode)
	c.fr.stopWhenEmpty = nil
	if cap(c.fr.msg) <= 64<<10 {
		rb.msg = c.fr.msg[:0]
	}
	c.fr.r, c.fr.msg = nil, nil
	if pooled {
		rb.br.Reset(nil)
		readBufs.Put(rb)
	}
	if ended {
		c.endReading()
		return
	}
	c.idle()
}

// idle hands the connection to the poller until it has input.
func (c *wsConn) idle() {
	c.mu.Lock()
	if c.ncClosed {
		c.rstate = readDone
		c.mu.Unlock()
		c.endReading()
		return
	}
	c.rstate = readIdle
	c.idleSince = time.Now()
	err := arm(c)
	c.mu.Unlock()
	if err != nil {
		c.log.Error("cannot wait for a connection's input; it is closed", "remote", c.nc.RemoteAddr().String(), "err", err)
		c.closeNet()
	}
}

// How long read goes on.
type readMode uint8

const (
	readForever    readMode = iota // until reading ends (goroutine mode)
	readUntilEmpty                 // ... or the buffer holds no more input
	readUntilQuiet                 // ... or no input has come for pollIdleAfter
)

// read reads and hands on messages until reading ends (it returns true) or
// mode lets it stop (false). A panic in it closes this connection only.
func (c *wsConn) read(br *bufio.Reader, mode readMode) (ended bool) {
	defer func() {
		if r := recover(); r != nil {
			c.log.LogAttrs(context.Background(), slog.LevelError, "panic in a connection's reader; it is closed",
				slog.String("remote", c.nc.RemoteAddr().String()), slog.Any("panic", r), slog.String("stack", string(debug.Stack())))
			c.closeNet()
			ended = true
		}
	}()
	for first := true; ; first = false {
		if br.Buffered() == 0 {
			switch mode {
			case readUntilEmpty:
				if !first {
					return false
				}
			case readUntilQuiet:
				if c.quiet(br) {
					return false
				}
			}
		}
		msg, err := c.fr.next()
		if err == errIdle {
			if mode == readUntilEmpty {
				return false
			}
			continue // a control frame, and nothing after it yet
		}
		if err == nil {
			err = c.admit() // over the rate: waits, or rate_limited
		}
		if err == nil {
			if readerHook != nil {
				readerHook(msg)
			}
			if br.Buffered() == 0 {
				// A lone message (nothing read after it): it runs here,
				// without a hand-off, when the session allows.
				c.session.MessageNow(append([]byte(nil), msg...))
			} else {
				c.session.Message(append([]byte(nil), msg...))
			}
			if cap(c.fr.msg) > 64<<10 {
				c.fr.msg = nil // do not keep a large buffer for an idle connection
			}
			c.mu.Lock()
			slow := c.slow
			c.mu.Unlock()
			if slow {
				return true // it reads nothing we send: stop reading what it sends
			}
			continue
		}
		var pe *protocolError
		if errors.As(err, &pe) {
			c.log.Debug("client frame refused", "remote", c.nc.RemoteAddr().String(), "code", pe.code, "err", pe.text)
			c.session.Fail(pe.code, pe.text, pe.status)
			c.drain()
		}
		return true
	}
}

// quiet waits, between frames, for the next input: true when none came
// for pollIdleAfter. Nothing is consumed; an error other than the timeout is
// met again by the next read.
func (c *wsConn) quiet(br *bufio.Reader) bool {
	c.nc.SetReadDeadline(time.Now().Add(pollIdleAfter))
	_, err := br.Peek(1)
	// Cleared, so that a frame that trickles in is not cut off. (A close
	// handshake's wait for the client has a timer in poll mode.)
	c.nc.SetReadDeadline(time.Time{})
	return errors.Is(err, os.ErrDeadlineExceeded)
}

// endReading runs once, when reading has ended: the socket is closed now
// or once the close handshake allows, and the session is told.
func (c *wsConn) endReading() {
	c.stopPings()
	c.mu.Lock()
	c.readerDone = true
	c.rstate = readDone
	// After the client's close, the session queues the reply: wait for
	// it (the writer closes the socket once it is out), but not for ever.
	waitReply := c.clientClosed && !c.closeQueued && !c.ncClosed
	closeNow := c.sentClose || (!c.closeQueued && !waitReply)
	c.mu.Unlock()
	if closeNow {
		c.closeNet()
	}
	if waitReply {
		time.AfterFunc(c.opts.CloseTimeout+c.opts.WriteTimeout, c.closeNet)
	}
	c.session.Closed()
}
