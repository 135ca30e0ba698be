//go:build linux

package ws

import (
	"fmt"
	"net"
	"sync"

	"golang.org/x/sys/unix"
)

// poller is the process's epoll instance for poll-mode connections
// (conn_read.go). Each connection is registered level-triggered and
// one-shot: when its socket is readable the poller calls readable once, and
// the connection re-arms itself after reading. Go's own netpoller keeps
// its separate registration of the same socket for the blocking reads and
// writes done while a worker holds the connection.
//
// A registration carries the socket's number and a generation: a socket
// number reused by a new connection after a close never receives an event
// meant for the old one.
type poller struct {
	epfd  int
	mu    sync.Mutex
	conns map[int32]*wsConn
	gen   uint32
}

var (
	pollOnce sync.Once
	thePoll  *poller
	pollErr  error
)

// pollOff turns poll mode off (tests run both modes).
var pollOff bool

func getPoller() *poller {
	pollOnce.Do(func() {
		fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			pollErr = fmt.Errorf("epoll_create1: %w", err)
			return
		}
		thePoll = &poller{epfd: fd, conns: make(map[int32]*wsConn)}
		go thePoll.loop()
	})
	return thePoll
}

// canPoll reports whether c can be read in poll mode (a plain TCP socket)
// and records its socket number. Called under c.mu.
func canPoll(c *wsConn) bool {
	tc, ok := c.nc.(*net.TCPConn)
	if !ok || pollOff || c.opts.NoIdlePoll {
		return false
	}
	p := getPoller()
	if p == nil {
		return false
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return false
	}
	fd := -1
	if rc.Control(func(s uintptr) { fd = int(s) }) != nil || fd < 0 {
		return false
	}
	c.fd = fd
	p.mu.Lock()
	p.gen++
	c.pollGen = p.gen
	p.conns[int32(fd)] = c
	p.mu.Unlock()
	return true
}

// arm asks for one report of c's next input. Called under c.mu, with the
// socket open.
func arm(c *wsConn) error {
	p := thePoll
	op := unix.EPOLL_CTL_MOD
	if !c.pollAdded {
		op = unix.EPOLL_CTL_ADD
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(c.fd), Pad: int32(c.pollGen)}
	if err := unix.EpollCtl(p.epfd, op, c.fd, &ev); err != nil {
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	c.pollAdded = true
	return nil
}

// unpoll forgets c; called under c.mu before its socket is closed.
func unpoll(c *wsConn) {
	p := thePoll
	if c.pollAdded {
		unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, c.fd, nil)
		c.pollAdded = false
	}
	p.mu.Lock()
	if p.conns[int32(c.fd)] == c {
		delete(p.conns, int32(c.fd))
	}
	p.mu.Unlock()
}

func (p *poller) loop() {
	events := make([]unix.EpollEvent, 256)
	for {
		n, err := unix.EpollWait(p.epfd, events, -1)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			panic(fmt.Sprintf("epoll_wait: %v", err)) // a broken epoll instance: nothing would be read again
		}
		for _, ev := range events[:n] {
			p.mu.Lock()
			c := p.conns[ev.Fd]
			if c != nil && c.pollGen != uint32(ev.Pad) {
				c = nil
			}
			p.mu.Unlock()
			if c != nil {
				c.readable()
			}
		}
	}
}
