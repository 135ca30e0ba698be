package luabridge

// Lua pattern matching (string.find, match, gmatch, gsub) that honours the
// call's budget.
//
// gopher-lua's own matcher (package pm) runs a whole search as one Go call
// that the per-call timeout cannot interrupt: a pattern bomb such as
// string.find(string.rep("a", 400), ".-.-.-b") took about 20 s under a
// 100 ms budget, and its gsub rebuilds the whole subject once per match
// (quadratic: 15 s for 200 KB). This matcher is a port of the reference
// implementation's (lstrlib.c of Lua 5.1) that counts its steps and checks
// the state's context every patternCheckEvery steps, so a search ends
// within the call's budget; gsub builds its result in one pass, capped at
// maxStringBytes.
//
// Semantics are those of the Lua 5.1 reference manual, with the bounds of
// Lua 5.2 and later: patterns may nest at most maxPatternDepth quantifiers
// and captures ("pattern too complex"), and an embedded "\0" in a pattern is
// an ordinary character.

import (
	"context"
	"strconv"
	"strings"

	lua "github.com/yuin/gopher-lua"
)

const (
	maxCaptures       = 32   // LUA_MAXCAPTURES
	maxPatternDepth   = 200  // MAXCCALLS of Lua 5.2+: recursion of the matcher
	patternCheckEvery = 4096 // steps between two looks at the context
	capUnfinished     = -1
	capPosition       = -2
	patternSpecials   = "^$*+?.([%-"
)

type capture struct {
	init, len int
}

// matchState is one search of pattern p in subject src.
type matchState struct {
	L       *lua.LState
	src     string
	p       string
	level   int
	capture [maxCaptures]capture
	depth   int
	steps   int
	done    <-chan struct{} // the call's context; nil: no budget
}

func newMatchState(L *lua.LState, src, p string) *matchState {
	ms := &matchState{L: L, src: src, p: p}
	if ctx := L.Context(); ctx != nil {
		ms.done = ctx.Done()
	}
	return ms
}

// step counts one unit of work and ends the search when the call's context
// is done: the error is then reported as the call's timeout.
func (ms *matchState) step() {
	ms.steps++
	if ms.steps%patternCheckEvery != 0 || ms.done == nil {
		return
	}
	select {
	case <-ms.done:
		ms.L.RaiseError("pattern matching stopped: %v", contextErr(ms.L.Context()))
	default:
	}
}

func contextErr(ctx context.Context) error {
	if cause := contextCause(ctx); cause != nil {
		return cause
	}
	return ctx.Err()
}

func (ms *matchState) errorf(format string, args ...any) {
	ms.L.RaiseError(format, args...)
}

func (ms *matchState) checkCapture(l int) int {
	l -= '1'
	if l < 0 || l >= ms.level || ms.capture[l].len == capUnfinished {
		ms.errorf("invalid capture index")
	}
	return l
}

func (ms *matchState) captureToClose() int {
	for level := ms.level - 1; level >= 0; level-- {
		if ms.capture[level].len == capUnfinished {
			return level
		}
	}
	ms.errorf("invalid pattern capture")
	return 0
}

// classEnd returns the index just after the single-character class at p.
func (ms *matchState) classEnd(p int) int {
	pat := ms.p
	c := pat[p]
	p++
	switch c {
	case '%':
		if p >= len(pat) {
			ms.errorf("malformed pattern (ends with '%%')")
		}
		return p + 1
	case '[':
		if p < len(pat) && pat[p] == '^' {
			p++
		}
		for { // look for the ']'; the first character is never the end
			if p >= len(pat) {
				ms.errorf("malformed pattern (missing ']')")
			}
			c := pat[p]
			p++
			if c == '%' && p < len(pat) {
				p++ // skip escapes (e.g. '%]')
			}
			if p < len(pat) && pat[p] == ']' {
				return p + 1
			}
		}
	}
	return p
}

func matchClass(c, cl byte) bool {
	var res bool
	switch cl | 0x20 { // tolower for letters
	case 'a':
		res = isAlpha(c)
	case 'c':
		res = c < 0x20 || c == 0x7f
	case 'd':
		res = '0' <= c && c <= '9'
	case 'l':
		res = 'a' <= c && c <= 'z'
	case 'p':
		res = isPunct(c)
	case 's':
		res = c == ' ' || '\t' <= c && c <= '\r'
	case 'u':
		res = 'A' <= c && c <= 'Z'
	case 'w':
		res = isAlpha(c) || '0' <= c && c <= '9'
	case 'x':
		res = '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
	case 'z':
		res = c == 0
	default:
		return cl == c
	}
	if 'A' <= cl && cl <= 'Z' {
		return !res
	}
	return res
}

func isAlpha(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

func isPunct(c byte) bool {
	return 0x21 <= c && c <= 0x2f || 0x3a <= c && c <= 0x40 || 0x5b <= c && c <= 0x60 || 0x7b <= c && c <= 0x7e
}

// matchBracketClass reports whether c is in the set [...] from p (the '[')
// to ec (the ']').
func (ms *matchState) matchBracketClass(c byte, p, ec int) bool {
	pat := ms.p
	sig := true
	if pat[p+1] == '^' {
		sig = false
		p++
	}
	for p++; p < ec; p++ {
		ms.step()
		switch {
		case pat[p] == '%':
			p++
			if matchClass(c, pat[p]) {
				return sig
			}
		case pat[p+1] == '-' && p+2 < ec:
			p += 2
			if pat[p-2] <= c && c <= pat[p] {
				return sig
			}
		case pat[p] == c:
			return sig
		}
	}
	return !sig
}

// singleMatch reports whether the subject's byte at s matches the class
// from p to ep.
func (ms *matchState) singleMatch(s, p, ep int) bool {
	if s >= len(ms.src) {
		return false
	}
	c := ms.src[s]
	switch ms.p[p] {
	case '.':
		return true
	case '%':
		return matchClass(c, ms.p[p+1])
	case '[':
		return ms.matchBracketClass(c, p, ep-1)
	}
	return ms.p[p] == c
}

func (ms *matchState) matchBalance(s, p int) int {
	if p+1 >= len(ms.p) {
		ms.errorf("unbalanced pattern")
	}
	if s >= len(ms.src) || ms.src[s] != ms.p[p] {
		return -1
	}
	b, e := ms.p[p], ms.p[p+1]
	cont := 1
	for s++; s < len(ms.src); s++ {
		ms.step()
		switch ms.src[s] {
		case e:
			if cont--; cont == 0 {
				return s + 1
			}
		case b:
			cont++
		}
	}
	return -1 // the string ends out of balance
}

func (ms *matchState) maxExpand(s, p, ep int) int {
	i := 0
	for ms.singleMatch(s+i, p, ep) {
		ms.step()
		i++
	}
	// try to match the rest with the most repetitions first
	for ; i >= 0; i-- {
		if res := ms.match(s+i, ep+1); res != -1 {
			return res
		}
	}
	return -1
}

func (ms *matchState) minExpand(s, p, ep int) int {
	for {
		if res := ms.match(s, ep+1); res != -1 {
			return res
		}
		if !ms.singleMatch(s, p, ep) {
			return -1
		}
		s++ // one more repetition
	}
}

func (ms *matchState) startCapture(s, p, what int) int {
	level := ms.level
	if level >= maxCaptures {
		ms.errorf("too many captures")
	}
	ms.capture[level] = capture{init: s, len: what}
	ms.level = level + 1
	res := ms.match(s, p)
	if res == -1 {
		ms.level-- // undo the capture
	}
	return res
}

func (ms *matchState) endCapture(s, p int) int {
	l := ms.captureToClose()
	ms.capture[l].len = s - ms.capture[l].init
	res := ms.match(s, p)
	if res == -1 {
		ms.capture[l].len = capUnfinished
	}
	return res
}

func (ms *matchState) matchCapture(s int, l byte) int {
	i := ms.checkCapture(int(l))
	c := ms.capture[i]
	if c.len >= 0 && len(ms.src)-s >= c.len && ms.src[c.init:c.init+c.len] == ms.src[s:s+c.len] {
		ms.steps += c.len
		return s + c.len
	}
	return -1
}

// match matches the pattern from p against the subject from s and returns
// the end of the match, or -1.
func (ms *matchState) match(s, p int) int {
	ms.depth++
	if ms.depth > maxPatternDepth {
		ms.errorf("pattern too complex")
	}
	defer func() { ms.depth-- }()
	pat := ms.p
	for {
		ms.step()
		if p >= len(pat) {
			return s // end of pattern: success
		}
		switch pat[p] {
		case '(':
			if p+1 < len(pat) && pat[p+1] == ')' {
				return ms.startCapture(s, p+2, capPosition)
			}
			return ms.startCapture(s, p+1, capUnfinished)
		case ')':
			return ms.endCapture(s, p+1)
		case '$':
			if p+1 == len(pat) {
				if s == len(ms.src) {
					return s
				}
				return -1
			}
		case '%':
			if p+1 < len(pat) {
				switch c := pat[p+1]; {
				case c == 'b':
					if s = ms.matchBalance(s, p+2); s == -1 {
						return -1
					}
					p += 4
					continue
				case c == 'f':
					p += 2
					if p >= len(pat) || pat[p] != '[' {
						ms.errorf("missing '[' after '%%f' in pattern")
					}
					ep := ms.classEnd(p)
					var prev, cur byte
					if s > 0 {
						prev = ms.src[s-1]
					}
					if s < len(ms.src) {
						cur = ms.src[s]
					}
					if ms.matchBracketClass(prev, p, ep-1) || !ms.matchBracketClass(cur, p, ep-1) {
						return -1
					}
					p = ep
					continue
				case '0' <= c && c <= '9':
					if s = ms.matchCapture(s, c); s == -1 {
						return -1
					}
					p += 2
					continue
				}
			}
		}
		// a single-character class, perhaps with a quantifier
		ep := ms.classEnd(p)
		m := ms.singleMatch(s, p, ep)
		q := byte(0)
		if ep < len(pat) {
			q = pat[ep]
		}
		switch q {
		case '?':
			if m {
				if res := ms.match(s+1, ep+1); res != -1 {
					return res
				}
			}
			p = ep + 1
		case '*':
			return ms.maxExpand(s, p, ep)
		case '+':
			if !m {
				return -1
			}
			return ms.maxExpand(s+1, p, ep)
		case '-':
			return ms.minExpand(s, p, ep)
		default:
			if !m {
				return -1
			}
			s++
			p = ep
		}
	}
}

// pushCapture pushes capture i of the match [s, e): the whole match when
// there are no captures and i is 0.
func (ms *matchState) pushCapture(i, s, e int) {
	ms.L.Push(ms.captureValue(i, s, e))
}

func (ms *matchState) captureValue(i, s, e int) lua.LValue {
	if i >= ms.level {
		if i != 0 {
			ms.errorf("invalid capture index")
		}
		return lua.LString(ms.src[s:e])
	}
	c := ms.capture[i]
	switch c.len {
	case capUnfinished:
		ms.errorf("unfinished capture")
	case capPosition:
		return lua.LNumber(c.init + 1)
	}
	return lua.LString(ms.src[c.init : c.init+c.len])
}

// pushCaptures pushes every capture (or the whole match when the pattern
// has none and whole is set) and returns how many it pushed.
func (ms *matchState) pushCaptures(s, e int, whole bool) int {
	n := ms.level
	if n == 0 && whole {
		n = 1
	}
	for i := 0; i < n; i++ {
		ms.pushCapture(i, s, e)
	}
	return n
}

// posrelat turns a Lua string position (negative: from the end) into a
// 0-based offset, as lstrlib's posrelat and "- 1" do.
func posrelat(pos, n int) int {
	if pos < 0 {
		pos += n + 1
	}
	if pos < 0 {
		pos = 0
	}
	return pos
}

func strFindAux(L *lua.LState, find bool) int {
	s := L.CheckString(1)
	p := L.CheckString(2)
	init := posrelat(L.OptInt(3, 1), len(s)) - 1
	if init < 0 {
		init = 0
	} else if init > len(s) {
		init = len(s)
	}
	if find && (lua.LVAsBool(L.Get(4)) || !strings.ContainsAny(p, patternSpecials)) {
		// a plain search
		if i := strings.Index(s[init:], p); i >= 0 {
			L.Push(lua.LNumber(init + i + 1))
			L.Push(lua.LNumber(init + i + len(p)))
			return 2
		}
		L.Push(lua.LNil)
		return 1
	}
	anchor := len(p) > 0 && p[0] == '^'
	if anchor {
		p = p[1:]
	}
	ms := newMatchState(L, s, p)
	for s1 := init; ; s1++ {
		ms.level = 0
		if e := ms.match(s1, 0); e != -1 {
			if find {
				L.Push(lua.LNumber(s1 + 1))
				L.Push(lua.LNumber(e))
				return ms.pushCaptures(-1, -1, false) + 2
			}
			return ms.pushCaptures(s1, e, true)
		}
		if s1 >= len(s) || anchor {
			break
		}
	}
	L.Push(lua.LNil)
	return 1
}

func strFind(L *lua.LState) int  { return strFindAux(L, true) }
func strMatch(L *lua.LState) int { return strFindAux(L, false) }

// strGmatch returns an iterator over the matches; each call of the
// iterator finds the next one (gopher-lua's finds them all up front).
func strGmatch(L *lua.LState) int {
	s := L.CheckString(1)
	p := L.CheckString(2)
	pos := 0
	L.Push(L.NewFunction(func(L *lua.LState) int {
		ms := newMatchState(L, s, p)
		for src := pos; src <= len(s); src++ {
			ms.level = 0
			if e := ms.match(src, 0); e != -1 {
				pos = e
				if e == src {
					pos++ // an empty match: go on at the next position
				}
				return ms.pushCaptures(src, e, true)
			}
		}
		pos = len(s) + 1
		return 0
	}))
	return 1
}

// strGsub is string.gsub: one pass over the subject; the result is capped
// at maxStringBytes.
func strGsub(L *lua.LState) int {
	src := L.CheckString(1)
	p := L.CheckString(2)
	repl := L.Get(3)
	switch repl.Type() {
	case lua.LTNumber, lua.LTString, lua.LTTable, lua.LTFunction:
	default:
		L.ArgError(3, "string/function/table expected")
	}
	maxN := L.OptInt(4, len(src)+1)
	anchor := len(p) > 0 && p[0] == '^'
	if anchor {
		p = p[1:]
	}
	ms := newMatchState(L, src, p)
	var b []byte
	add := func(piece string) {
		if len(b)+len(piece) > maxStringBytes {
			L.RaiseError("string.gsub: result over the limit of %d bytes", maxStringBytes)
		}
		b = append(b, piece...)
	}
	s, n := 0, 0
	for n < maxN {
		ms.level = 0
		e := ms.match(s, 0)
		if e != -1 {
			n++
			gsubValue(ms, repl, s, e, add)
		}
		switch {
		case e != -1 && e > s: // a non-empty match: skip it
			s = e
		case s < len(src):
			add(src[s : s+1])
			s++
		default:
			s = len(src) + 1
		}
		if s > len(src) || anchor {
			break
		}
	}
	if s < len(src) {
		add(src[s:])
	}
	L.Push(lua.LString(b))
	L.Push(lua.LNumber(n))
	return 2
}

// gsubValue adds the replacement of the match [s, e) (lstrlib's add_value).
func gsubValue(ms *matchState, repl lua.LValue, s, e int, add func(string)) {
	L := ms.L
	var v lua.LValue
	switch r := repl.(type) {
	case lua.LString, lua.LNumber:
		gsubString(ms, lua.LVAsString(r), s, e, add)
		return
	case *lua.LFunction:
		top := L.GetTop()
		L.Push(r)
		n := ms.pushCaptures(s, e, true)
		L.Call(n, 1)
		v = L.Get(-1)
		L.SetTop(top)
	case *lua.LTable:
		v = L.GetTable(r, ms.captureValue(0, s, e))
	}
	switch x := v.(type) {
	case *lua.LNilType:
		add(ms.src[s:e]) // keep the original text
	case lua.LBool:
		if x {
			L.RaiseError("invalid replacement value (a boolean)")
		}
		add(ms.src[s:e])
	case lua.LString:
		add(string(x))
	case lua.LNumber:
		add(x.String())
	default:
		L.RaiseError("invalid replacement value (a %s)", v.Type().String())
	}
}

// gsubString adds a replacement string with its %0-%9 (lstrlib's add_s).
func gsubString(ms *matchState, news string, s, e int, add func(string)) {
	for i := 0; i < len(news); i++ {
		c := news[i]
		if c != '%' {
			j := i + 1
			for j < len(news) && news[j] != '%' {
				j++
			}
			add(news[i:j])
			i = j - 1
			continue
		}
		i++
		if i >= len(news) {
			ms.L.RaiseError("invalid use of '%%' in replacement string")
		}
		c = news[i]
		switch {
		case c < '0' || c > '9':
			add(news[i : i+1])
		case c == '0':
			add(ms.src[s:e])
		default:
			v := ms.captureValue(int(c-'1'), s, e)
			if n, ok := v.(lua.LNumber); ok {
				add(strconv.Itoa(int(n)))
			} else {
				add(string(v.(lua.LString)))
			}
		}
	}
}
