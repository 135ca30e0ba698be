package main

import (
	"bytes"
	"sort"
	"strconv"
	"strings"
	"time"
)

// template is a message with placeholders: {conn} (the connection's index),
// {group} (conn modulo -groups), {seq} (the message's sequence number on its
// connection, from 0).
type template struct{ parts []tpart }

type tpart struct {
	lit []byte
	v   byte // 0: literal; 'c' conn, 'g' group, 's' seq
}

func parseTemplate(s string) *template {
	t := &template{}
	vars := map[string]byte{"{conn}": 'c', "{group}": 'g', "{seq}": 's'}
	for s != "" {
		best, bestName := -1, ""
		for name := range vars {
			if i := strings.Index(s, name); i >= 0 && (best < 0 || i < best) {
				best, bestName = i, name
			}
		}
		if best < 0 {
			t.parts = append(t.parts, tpart{lit: []byte(s)})
			break
		}
		if best > 0 {
			t.parts = append(t.parts, tpart{lit: []byte(s[:best])})
		}
		t.parts = append(t.parts, tpart{v: vars[bestName]})
		s = s[best+len(bestName):]
	}
	return t
}

func (t *template) render(dst []byte, conn, group, seq int) []byte {
	for _, p := range t.parts {
		switch p.v {
		case 0:
			dst = append(dst, p.lit...)
		case 'c':
			dst = strconv.AppendInt(dst, int64(conn), 10)
		case 'g':
			dst = strconv.AppendInt(dst, int64(group), 10)
		case 's':
			dst = strconv.AppendInt(dst, int64(seq), 10)
		}
	}
	return dst
}

var seqKey = []byte(`"seq":`)

// parseSeq finds "seq":N in a JSON message; -1 when absent.
func parseSeq(p []byte) int {
	i := bytes.Index(p, seqKey)
	if i < 0 {
		return -1
	}
	i += len(seqKey)
	for i < len(p) && p[i] == ' ' {
		i++
	}
	n, digits := 0, 0
	for ; i < len(p) && p[i] >= '0' && p[i] <= '9'; i++ {
		n = n*10 + int(p[i]-'0')
		digits++
	}
	if digits == 0 {
		return -1
	}
	return n
}

var errorMark = []byte(`"id":"error"`)

// isErrorFrame: electric-socket's error frame, or (-protocol centrifugo)
// Centrifugo's error reply.
func isErrorFrame(p []byte) bool { return bytes.Contains(p, errorMark) || centrifugoError(p) }

// percentiles of durations in nanoseconds, in microseconds.
type latency struct {
	P50, P99, P999, Max float64
	N                   int
}

func percentiles(ns []int64) latency {
	if len(ns) == 0 {
		return latency{}
	}
	sort.Slice(ns, func(i, j int) bool { return ns[i] < ns[j] })
	at := func(q float64) float64 {
		i := int(q*float64(len(ns))+0.5) - 1
		if i < 0 {
			i = 0
		}
		if i >= len(ns) {
			i = len(ns) - 1
		}
		return us(ns[i])
	}
	return latency{P50: at(0.50), P99: at(0.99), P999: at(0.999), Max: us(ns[len(ns)-1]), N: len(ns)}
}

func us(ns int64) float64 { return round(float64(ns)/1e3, 1) }

func ms(d time.Duration) float64 { return round(float64(d)/1e6, 2) }

func round(x float64, digits int) float64 {
	p := 1.0
	for range digits {
		p *= 10
	}
	if x < 0 {
		return -float64(int64(-x*p+0.5)) / p
	}
	return float64(int64(x*p+0.5)) / p
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
