package ws

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// writeNow writes what is queued on the caller's goroutine, as the
// connection's writer (the caller set c.writing), as far as the socket
// takes it without blocking: one non-blocking writev per batch. It returns
// true when the queue is empty and the writing released; false when the
// writer must take over (the caller starts it): the socket is full (what
// was not written waits at the front of the queue, the end of a frame
// begun as an opTail frame), a close frame is next (the writer's close
// handshake), or the connection has no descriptor to write to (TLS).
//
// A response to a client that reads what it is sent leaves at once, from
// the goroutine that made it, with no hand-off to the writer; a client
// that does not keep up blocks no one but the writer that waits for it.
func (c *wsConn) writeNow() bool {
	sc, ok := c.nc.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	b := frameBatches.Get().(*frameBatch)
	defer putBatch(b)
	for {
		c.mu.Lock()
		if c.doneWriting() {
			c.mu.Unlock()
			return true
		}
		n := c.takeBatch(b, true)
		c.mu.Unlock()
		if n == 0 {
			return false // a close frame: the writer's
		}
		if err := b.prepare(); err != nil {
			c.closeNet()
			continue
		}
		written := 0
		var errno error
		raw.Write(func(fd uintptr) bool {
			written, errno = writev(int(fd), b.bufs)
			return true // one try: never wait for the socket here
		})
		if errno != nil && errno != unix.EAGAIN && errno != unix.EINTR {
			c.closeNet() // as the writer does on a failed write
			continue
		}
		left := b.unwritten(written)
		b.reset()
		if len(left) == 0 {
			continue
		}
		c.mu.Lock()
		if c.slow {
			// closeSlow dropped the queue for its close frame meanwhile: of
			// what is left only the end of a frame begun must still go,
			// before the close frame, as the writer's write in flight does
			// (closeSlow keeps an opTail at the front for the same reason).
			if left[0].op == opTail {
				left = left[:1]
			} else {
				left = nil
			}
		}
		if !c.ncClosed {
			for _, f := range left {
				c.queuedBytes += len(f.payload) + frameOverhead
			}
			c.out = append(left, c.out...)
		}
		c.mu.Unlock()
		return false
	}
}

// unwritten returns what of the batch a writev that wrote written bytes
// left: the end of a frame it began, as an opTail frame, then the frames
// after it.
func (b *frameBatch) unwritten(written int) []outFrame {
	buf := 0
	for i, f := range b.frames {
		hdr := 0
		if f.op != opTail {
			hdr = len(b.bufs[buf])
		}
		if written >= hdr+len(f.payload) {
			written -= hdr + len(f.payload)
			buf += bufsOf(f)
			continue
		}
		left := append([]outFrame(nil), b.frames[i:]...)
		switch {
		case written == 0:
		case written >= hdr:
			left[0] = outFrame{op: opTail, payload: f.payload[written-hdr:]}
		default: // part of the header: the header's scratch is reused, so copy
			tail := make([]byte, 0, hdr-written+len(f.payload))
			left[0] = outFrame{op: opTail, payload: append(append(tail, b.bufs[buf][written:hdr]...), f.payload...)}
		}
		return left
	}
	return nil
}

// bufsOf is how many of a batch's buffers frame f takes.
func bufsOf(f outFrame) int {
	n := 1 // the header
	if f.op == opTail {
		n = 0
	}
	if len(f.payload) > 0 {
		n++
	}
	return n
}

// writev is one writev(2) of bufs (at most 2 x maxBatchFrames): the bytes
// written, or the error.
func writev(fd int, bufs [][]byte) (int, error) {
	var iov [maxBatchFrames * 2]unix.Iovec
	n := 0
	for _, p := range bufs {
		if len(p) > 0 {
			iov[n].Base = &p[0]
			iov[n].SetLen(len(p))
			n++
		}
	}
	r, _, e := unix.Syscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(n))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}
