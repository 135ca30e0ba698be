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
package main

import (
	"flag"
	"fmt"
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

var room = struct {
	sync.Mutex
	conns map[*roomConn]struct{}
}{conns: map[*roomConn]struct{}{}}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	debug := flag.String("debug", "", "address of /debug/mallocs and /debug/pprof/ (\"\" = off)")
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
