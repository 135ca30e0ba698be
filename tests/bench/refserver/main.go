// Command refserver is the reference of the benchmark suite: the plainest
// gobwas/ws server, one goroutine per connection, no Lua, no broker. Every
// figure of electric-socket is reported beside its figure from the same run.
//
//	/echo (any path but /room)  every message is written back as it came
//	/room                       the first message is written back (the
//	                            "auth" reply); every later one is written to
//	                            every other connection of /room, from the
//	                            sender's goroutine (a per-connection write
//	                            lock keeps frames whole)
//
// It is ws.Upgrade on the accepted net.Conn, then wsutil.ReadClientData and
// wsutil.WriteServerMessage: no buffer is kept between messages, so an idle
// connection holds its goroutine and socket only.
//
// With -buffered, /echo reads through a 4 KiB bufio.Reader (several pipelined
// frames per read syscall) and writes each reply as one header+payload write,
// batched in a bufio.Writer that is flushed when no further frame is already
// buffered: a second reference, closer to the transport's limit when
// messages are pipelined (100 × 8), at the cost of 8 KiB of buffers per
// connection.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/electric-socket/electric-socket/tests/bench/internal/debugsrv"
)

type roomConn struct {
	mu sync.Mutex
	nc net.Conn
}

var buffered bool

var room = struct {
	sync.Mutex
	conns map[*roomConn]struct{}
}{conns: map[*roomConn]struct{}{}}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	debug := flag.String("debug", "", "address of /debug/mallocs and /debug/pprof/ (\"\" = off)")
	flag.BoolVar(&buffered, "buffered", false, "/echo through a bufio.Reader and bufio.Writer (see the package comment)")
	flag.Parse()
	debugsrv.Start(*debug)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(os.Stderr, "refserver: %v\n", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "refserver listening addr=%s\n", ln.Addr())
	for {
		nc, err := ln.Accept()
		if err != nil {
			fmt.Fprintf(os.Stderr, "refserver: accept: %v\n", err)
			continue
		}
		go handle(nc)
	}
}

func handle(nc net.Conn) {
	defer nc.Close()
	var path string
	u := ws.Upgrader{OnRequest: func(uri []byte) error {
		path = string(uri)
		return nil
	}}
	if _, err := u.Upgrade(nc); err != nil {
		return
	}
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	if path == "/room" {
		serveRoom(nc)
		return
	}
	if buffered {
		serveBuffered(nc)
		return
	}
	for {
		msg, op, err := wsutil.ReadClientData(nc)
		if err != nil {
			return
		}
		if err := wsutil.WriteServerMessage(nc, op, msg); err != nil {
			return
		}
	}
}

func serveRoom(nc net.Conn) {
	me := &roomConn{nc: nc}
	room.Lock()
	room.conns[me] = struct{}{}
	room.Unlock()
	defer func() {
		room.Lock()
		delete(room.conns, me)
		room.Unlock()
	}()
	first := true
	var others []*roomConn
	for {
		msg, op, err := wsutil.ReadClientData(nc)
		if err != nil {
			return
		}
		if first {
			first = false
			me.mu.Lock()
			err = wsutil.WriteServerMessage(nc, op, msg)
			me.mu.Unlock()
			if err != nil {
				return
			}
			continue
		}
		room.Lock()
		others = others[:0]
		for c := range room.conns {
			if c != me {
				others = append(others, c)
			}
		}
		room.Unlock()
		for _, c := range others {
			c.mu.Lock()
			wsutil.WriteServerMessage(c.nc, op, msg)
			c.mu.Unlock()
		}
	}
}

// serveBuffered is /echo with -buffered.
func serveBuffered(nc net.Conn) {
	br := bufio.NewReaderSize(nc, 4096)
	bw := bufio.NewWriterSize(nc, 4096)
	var hb, wb [ws.MaxHeaderSize]byte
	var payload []byte
	for {
		h, err := ws.ReadHeaderBuffer(br, hb[:])
		if err != nil {
			return
		}
		if h.Length > 1<<20 {
			return
		}
		if cap(payload) < int(h.Length) {
			payload = make([]byte, h.Length)
		}
		p := payload[:h.Length]
		if _, err := io.ReadFull(br, p); err != nil {
			return
		}
		if h.Masked {
			ws.Cipher(p, h.Mask, 0)
		}
		switch h.OpCode {
		case ws.OpClose:
			ws.WriteFrame(bw, ws.NewCloseFrame(p))
			bw.Flush()
			return
		case ws.OpPing:
			h = ws.Header{Fin: true, OpCode: ws.OpPong, Length: h.Length}
		case ws.OpPong:
			continue
		default: // text, binary, continuation: echoed frame by frame
			h = ws.Header{Fin: h.Fin, OpCode: h.OpCode, Length: h.Length}
		}
		if err := ws.WriteHeaderBuffer(bw, h, wb[:]); err != nil {
			return
		}
		bw.Write(p)
		if br.Buffered() == 0 {
			if err := bw.Flush(); err != nil {
				return
			}
		}
	}
}
