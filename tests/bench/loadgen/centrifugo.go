package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// -protocol centrifugo: the generator speaks Centrifugo's client protocol
// (JSON over WebSocket, protocol v2 of github.com/centrifugal/centrifuge) on
// top of the same frame-level client, so that the echo shapes and the idle
// scenario run against Centrifugo (run.sh's scenario "peer").
//
// The auth step is a connect command carrying an HS256 connection token
// (the rendered -auth template is its claims, e.g. {"sub":"u{conn}"}, signed
// with -token-secret) followed, in the same frame, by a subscribe command to
// the connection's own channel (the -channel template); both replies must
// come back without an error. Then every message (the rendered -msg
// template, which must be JSON) is published to that channel:
//
//	{"id":N,"publish":{"channel":"bench:c7","data":{"seq":3,"text":"hello, world"}}}
//
// and the echo is the publication the server pushes back to the subscriber,
// {"push":{"channel":"bench:c7","pub":{"data":{...},...}}}: the closest thing
// Centrifugo has to an echo. The publish reply ({"id":N,"publish":{}}) is
// read and dropped; an error reply ({"id":N,"error":{...}}) is returned in
// place of the publication that will not come, and counts as an error
// frame. The server's application-level pings ({}) are answered with a pong
// ({}) when the connect reply asked for it. A frame may hold several
// replies and pushes separated by newlines; recv returns them one by one.

type centrifugoClient struct {
	c       client
	channel []byte // the channel as a JSON string, quotes included
	id      uint32 // the last command id sent
	pong    bool   // the server wants a pong for each ping
	pings   int    // pings received (and answered when pong)
	rest    []byte // the lines of the last frame not yet returned
	out     []byte
	seqs    []int // a ring: the "seq" of each publish in flight, oldest at head
	head    int
	n       int
}

func newCentrifugoClient(c client, conn int) *centrifugoClient {
	ch := parseTemplate(*flagChannel).render(nil, conn, conn%max(*flagGroups, 1), 0)
	q, _ := json.Marshal(string(ch))
	return &centrifugoClient{c: c, channel: q}
}

// hs256 signs claims (a JSON object) as a JWT with secret.
func hs256(claims, secret []byte) string {
	enc := base64.RawURLEncoding
	s := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString(claims)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(s))
	return s + "." + enc.EncodeToString(m.Sum(nil))
}

// handshake connects with a token made of claims and subscribes to the
// connection's channel.
func (cf *centrifugoClient) handshake(claims []byte) error {
	if !json.Valid(claims) {
		return fmt.Errorf("centrifugo: the -auth template does not render to JSON claims: %s", claims)
	}
	token, _ := json.Marshal(hs256(claims, []byte(*flagSecret)))
	cmd := fmt.Appendf(nil, `{"id":1,"connect":{"token":%s,"name":"loadgen"}}`+"\n"+`{"id":2,"subscribe":{"channel":%s}}`, token, cf.channel)
	cf.id = 2
	if err := cf.c.send(cmd); err != nil {
		return err
	}
	for want := uint32(1); want <= 2; {
		line, err := cf.nextLine()
		if err != nil {
			return err
		}
		if ping(line) {
			continue // no pong before the connect reply says so
		}
		var r struct {
			ID      uint32          `json:"id"`
			Error   json.RawMessage `json:"error"`
			Connect *struct {
				Pong bool `json:"pong"`
			} `json:"connect"`
		}
		if err := json.Unmarshal(line, &r); err != nil {
			return fmt.Errorf("centrifugo: bad reply %q: %v", line, err)
		}
		if r.ID == 0 {
			continue // a push
		}
		if r.ID != want || r.Error != nil {
			return fmt.Errorf("centrifugo: reply to command %d: %s", want, line)
		}
		if r.Connect != nil {
			cf.pong = r.Connect.Pong
		}
		want++
	}
	return nil
}

func ping(line []byte) bool { return len(line) == 2 && line[0] == '{' && line[1] == '}' }

// nextLine returns the next reply or push, reading a frame when the last
// one is used up. Valid until the next call.
func (cf *centrifugoClient) nextLine() ([]byte, error) {
	for {
		if len(cf.rest) == 0 {
			p, err := cf.c.recv()
			if err != nil {
				return nil, err
			}
			cf.rest = p
		}
		line := cf.rest
		if i := bytes.IndexByte(line, '\n'); i >= 0 {
			line, cf.rest = line[:i], line[i+1:]
		} else {
			cf.rest = nil
		}
		if len(line) > 0 {
			return line, nil
		}
	}
}

var (
	pushPrefix  = []byte(`{"push":`)
	pubKey      = []byte(`"pub":`)
	replyPrefix = []byte(`{"id":`)
	errorKey    = []byte(`"error":`)
	pongFrame   = []byte(`{}`)
)

// send publishes p (JSON) to the connection's channel.
func (cf *centrifugoClient) send(p []byte) error {
	cf.id++
	if cf.id == 0 {
		cf.id = 3
	}
	b := append(cf.out[:0], `{"id":`...)
	b = strconv.AppendUint(b, uint64(cf.id), 10)
	b = append(b, `,"publish":{"channel":`...)
	b = append(b, cf.channel...)
	b = append(b, `,"data":`...)
	b = append(b, p...)
	b = append(b, "}}"...)
	cf.out = b
	if cf.n == len(cf.seqs) {
		grown := make([]int, max(8, 2*len(cf.seqs)))
		for i := range cf.n {
			grown[i] = cf.seqs[(cf.head+i)%len(cf.seqs)]
		}
		cf.seqs, cf.head = grown, 0
	}
	cf.seqs[(cf.head+cf.n)%len(cf.seqs)] = parseSeq(p)
	cf.n++
	return cf.c.send(b)
}

// arrived checks that a publication (or an error reply) answers the oldest
// publish in flight: publications of one publisher on one channel come
// back in order, once each.
func (cf *centrifugoClient) arrived(line []byte, isErr bool) error {
	if cf.n == 0 {
		return fmt.Errorf("centrifugo: nothing in flight, got %s", line)
	}
	want := cf.seqs[cf.head]
	cf.head = (cf.head + 1) % len(cf.seqs)
	cf.n--
	if !isErr && parseSeq(line) != want {
		return fmt.Errorf("centrifugo: publication out of order: want seq %d, got %s", want, line)
	}
	return nil
}

// recv returns the next publication pushed to the connection, or an error
// reply to one of its publish commands.
func (cf *centrifugoClient) recv() ([]byte, error) {
	for {
		line, err := cf.nextLine()
		if err != nil {
			return nil, err
		}
		switch {
		case ping(line):
			cf.pings++
			if cf.pong {
				if err := cf.c.send(append(cf.out[:0], pongFrame...)); err != nil {
					return nil, err
				}
			}
		case bytes.HasPrefix(line, pushPrefix):
			if bytes.Contains(line, pubKey) {
				if err := cf.arrived(line, false); err != nil {
					return nil, err
				}
				return line, nil
			}
			// unsubscribe, disconnect: no publication will come back
			return nil, fmt.Errorf("centrifugo: %s", line)
		case bytes.HasPrefix(line, replyPrefix):
			if centrifugoError(line) {
				if err := cf.arrived(line, true); err != nil {
					return nil, err
				}
				return line, nil
			}
			// the publish reply: dropped
		default:
			return nil, fmt.Errorf("centrifugo: unexpected %q", line)
		}
	}
}

// centrifugoError: a reply {"id":N,"error":{...}}.
func centrifugoError(line []byte) bool {
	if !bytes.HasPrefix(line, replyPrefix) {
		return false
	}
	i := len(replyPrefix)
	for i < len(line) && line[i] >= '0' && line[i] <= '9' {
		i++
	}
	return i < len(line) && line[i] == ',' && bytes.HasPrefix(line[i+1:], errorKey)
}

func (cf *centrifugoClient) setReadDeadline(t time.Time) error { return cf.c.setReadDeadline(t) }
func (cf *centrifugoClient) close() error                      { return cf.c.close() }
