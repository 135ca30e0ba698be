package luabridge

// The JSON decoder: bytes straight to Lua values, in one pass.
//
// It accepts exactly the JSON that encoding/json accepts and builds the
// values encoding/json would give (decoding into `any`), converted as
// convert.go describes. What it does not do is explain an error: when
// anything is wrong (a syntax error, a number out of range, nesting over the
// limit), DecodeJSON runs encoding/json on the input to get its error, so
// the messages are exactly encoding/json's (for a document over
// fallbackMax that is valid JSON, the decoder says why itself). Errors are
// the rare path; a valid document is read once. It looks at the state's
// context every few thousand values, so a call's timeout and the memory
// guard stop es.json_decode of millions of values (ErrDecodeStopped).
//
// The differential fuzz test (decode_test.go) holds it to encoding/json:
// for any input both fail, or both give the same Lua value.

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"unicode/utf16"
	"unicode/utf8"

	lua "github.com/yuin/gopher-lua"
)

// stdlibMaxDepth is encoding/json's own nesting limit (its scanner's
// maxNestingDepth): deeper input is a syntax error there.
const stdlibMaxDepth = 10000

// DecodeJSON parses data and builds the Lua value in L. JSON objects become
// tables with string keys, arrays become sequences carrying m.Array, null
// becomes m.Null. Nesting deeper than maxDepth containers (a top-level
// object or array is depth 1) is refused with Code "too_deep"; JSON that
// does not parse, including trailing data after the value, with Code
// "invalid_json". Decode errors have an empty Path.
//
// What is valid JSON, how strings and numbers read and the error messages
// are encoding/json's (which itself refuses nesting beyond 10000 levels;
// that is reported as too_deep as well). Numbers are parsed with
// strconv.ParseFloat, strings coerced to UTF-8 (invalid bytes and unpaired
// surrogate escapes become U+FFFD); of duplicate keys the last wins.
func DecodeJSON(L *lua.LState, m *Marks, data []byte, maxDepth int) (lua.LValue, error) {
	d := jsonDecoderPool.Get().(*jsonDecoder)
	d.L, d.m, d.data, d.maxDepth = L, m, data, maxDepth
	ctx := L.Context()
	if ctx != nil {
		d.done = ctx.Done()
	}
	v, ok := d.top()
	stopped, tooDeep, outOfRange := d.stopped, d.tooDeep, d.outOfRange
	d.release()
	if ok {
		return v, nil
	}
	if stopped {
		return nil, fmt.Errorf("%w: %v", ErrDecodeStopped, contextErr(ctx))
	}
	if len(data) > fallbackMax && json.Valid(data) {
		// encoding/json would build the whole document (some 20 bytes
		// for each byte of it) to find what the decoder found.
		if tooDeep {
			return nil, tooDeepDataError("", min(maxDepth, stdlibMaxDepth))
		}
		if outOfRange != "" {
			return nil, &DataError{Msg: "invalid JSON: number " + outOfRange + " is out of range", Code: codeInvalidJSON}
		}
	}
	return decodeJSONStdlib(L, m, data, maxDepth)
}

// fallbackMax is the size of the largest document a refusal of the decoder
// is explained by encoding/json for (decodeJSONStdlib). That costs nothing
// for a syntax error (it checks the syntax before it builds anything), but
// a valid document refused as too deep or for a number out of range is
// built whole first: for a larger one the decoder's own reason is given.
// Unlike encoding/json, it does not let an object nested too deep pass
// when a later duplicate key replaces it.
const fallbackMax = 1 << 20

// ErrDecodeStopped is the error of a DecodeJSON that the state's context
// stopped (the call's timeout, or the memory guard): es.json_decode of a
// string of millions of values builds millions of tables in one Go call,
// so the decoder looks at the context every patternCheckEvery values.
var ErrDecodeStopped = errors.New("decoding stopped")

// decodeJSONStdlib is how DecodeJSON decoded before it had a decoder of its
// own, and still does when that decoder stops: encoding/json into `any`,
// then `any` to Lua. It gives encoding/json's error message, and decides
// the corner cases the way it always did (an object nested over maxDepth
// that a later duplicate key replaces is not an error).
func decodeJSONStdlib(L *lua.LState, m *Marks, data []byte, maxDepth int) (lua.LValue, error) {
	var x any
	if err := json.Unmarshal(data, &x); err != nil {
		return nil, jsonDecodeError(err, maxDepth)
	}
	d := jsonToLua{L: L, m: m, maxDepth: maxDepth}
	return d.value(x, 0)
}

var jsonDecoderPool = sync.Pool{New: func() any {
	return &jsonDecoder{keys: make(map[string]string)}
}}

// keyCacheMax bounds the interned object keys (and keyCacheLen their
// length): a document of random keys empties the cache, it does not grow it.
const (
	keyCacheMax = 512
	keyCacheLen = 64
)

type jsonDecoder struct {
	L        *lua.LState
	m        *Marks
	data     []byte
	pos      int
	maxDepth int
	depth    int

	// The members of the containers being read, innermost last: a
	// container's table is made once its length is known.
	vals   []lua.LValue
	names  []string
	valsHW int    // high-water mark of vals, for clearing
	buf    []byte // scratch for strings with escapes or invalid UTF-8

	// Interned object keys: the same few keys come in every message, and
	// Go strings are immutable, so one copy serves every state.
	keys map[string]string

	done    <-chan struct{} // the state's context, when it has one
	n       int             // values read
	stopped bool            // done was closed: the decoding gave up

	// Why a document that is valid JSON was refused, for large ones
	// (fallbackMax).
	tooDeep    bool
	outOfRange string // the number
}

func (d *jsonDecoder) release() {
	clear(d.vals[:d.valsHW]) // drop the references to Lua values
	clear(d.names[:cap(d.names)])
	d.vals, d.names, d.valsHW = d.vals[:0], d.names[:0], 0
	d.L, d.m, d.data = nil, nil, nil
	d.pos, d.depth = 0, 0
	d.done, d.n, d.stopped = nil, 0, false
	d.tooDeep, d.outOfRange = false, ""
	if cap(d.vals) > 1<<12 || cap(d.names) > 1<<12 || cap(d.buf) > 1<<16 {
		return // do not keep huge scratch space around
	}
	jsonDecoderPool.Put(d)
}

// top reads the whole input: one value between optional whitespace.
func (d *jsonDecoder) top() (lua.LValue, bool) {
	d.skipSpace()
	v, ok := d.value()
	if !ok {
		return nil, false
	}
	d.skipSpace()
	return v, d.pos == len(d.data)
}

func (d *jsonDecoder) skipSpace() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

// value reads the value at d.pos (no whitespace before it).
func (d *jsonDecoder) value() (lua.LValue, bool) {
	if d.n++; d.n%patternCheckEvery == 0 && d.done != nil {
		select {
		case <-d.done:
			d.stopped = true
			return nil, false
		default:
		}
	}
	if d.pos >= len(d.data) {
		return nil, false
	}
	switch c := d.data[d.pos]; c {
	case '{':
		return d.object()
	case '[':
		return d.array()
	case '"':
		s, ok := d.str(false)
		if !ok {
			return nil, false
		}
		return lua.LString(s), true
	case 't':
		return lua.LTrue, d.literal("true")
	case 'f':
		return lua.LFalse, d.literal("false")
	case 'n':
		return d.m.Null, d.literal("null")
	default:
		if c == '-' || '0' <= c && c <= '9' {
			return d.number()
		}
		return nil, false
	}
}

func (d *jsonDecoder) literal(lit string) bool {
	if len(d.data)-d.pos < len(lit) || string(d.data[d.pos:d.pos+len(lit)]) != lit {
		return false
	}
	d.pos += len(lit)
	return true
}

// enter counts a container about to be read: false when it is nested too
// deep (for maxDepth, or for encoding/json, which bounds the recursion).
func (d *jsonDecoder) enter() bool {
	d.depth++
	if d.depth <= d.maxDepth && d.depth <= stdlibMaxDepth {
		return true
	}
	d.tooDeep = true
	return false
}

func (d *jsonDecoder) pushVal(v lua.LValue) {
	d.vals = append(d.vals, v)
	d.valsHW = max(d.valsHW, len(d.vals))
}

func (d *jsonDecoder) object() (lua.LValue, bool) {
	if !d.enter() {
		return nil, false
	}
	d.pos++ // '{'
	d.skipSpace()
	if d.pos < len(d.data) && d.data[d.pos] == '}' {
		d.pos++
		d.depth--
		return d.L.CreateTable(0, 0), true
	}
	base := len(d.vals)
	for {
		if d.pos >= len(d.data) || d.data[d.pos] != '"' {
			return nil, false
		}
		k, ok := d.str(true)
		if !ok {
			return nil, false
		}
		d.skipSpace()
		if d.pos >= len(d.data) || d.data[d.pos] != ':' {
			return nil, false
		}
		d.pos++
		d.skipSpace()
		v, ok := d.value()
		if !ok {
			return nil, false
		}
		d.names = append(d.names, k)
		d.pushVal(v)
		done, ok := d.separator('}')
		if !ok {
			return nil, false
		}
		if done {
			break
		}
	}
	// names and vals grow together: the object's members are their tops.
	n := len(d.vals) - base
	nbase := len(d.names) - n
	t := d.L.CreateTable(0, n) // duplicate keys make the hint a little large
	for i := range n {
		t.RawSetString(d.names[nbase+i], d.vals[base+i]) // in order: the last of duplicate keys wins
	}
	d.names = d.names[:nbase]
	d.vals = d.vals[:base]
	d.depth--
	return t, true
}

// separator reads what follows a member: close ends the container (done),
// a comma announces the next member; anything else is an error (!ok).
func (d *jsonDecoder) separator(close byte) (done, ok bool) {
	d.skipSpace()
	if d.pos >= len(d.data) {
		return false, false
	}
	c := d.data[d.pos]
	d.pos++
	if c == close {
		return true, true
	}
	if c != ',' {
		return false, false
	}
	d.skipSpace()
	return false, true
}

func (d *jsonDecoder) array() (lua.LValue, bool) {
	if !d.enter() {
		return nil, false
	}
	d.pos++ // '['
	d.skipSpace()
	if d.pos < len(d.data) && d.data[d.pos] == ']' {
		d.pos++
		d.depth--
		t := d.L.CreateTable(0, 0)
		t.Metatable = d.m.Array
		return t, true
	}
	base := len(d.vals)
	for {
		v, ok := d.value()
		if !ok {
			return nil, false
		}
		d.pushVal(v)
		done, ok := d.separator(']')
		if !ok {
			return nil, false
		}
		if done {
			break
		}
	}
	n := len(d.vals) - base
	t := d.L.CreateTable(min(n, maxArrayLen), 0) // past maxArrayLen the elements go to the hash part
	for i, v := range d.vals[base:] {
		t.RawSetInt(i+1, v)
	}
	t.Metatable = d.m.Array
	d.vals = d.vals[:base]
	d.depth--
	return t, true
}

// number reads a number with JSON's grammar and converts it as
// encoding/json does (strconv.ParseFloat: out of range is an error).
func (d *jsonDecoder) number() (lua.LValue, bool) {
	data := d.data
	start := d.pos
	i := start
	neg := data[i] == '-'
	if neg {
		i++
	}
	if i >= len(data) {
		return nil, false
	}
	// Integer part: 0, or a non-zero digit and more digits.
	var n uint64
	switch c := data[i]; {
	case c == '0':
		i++
	case '1' <= c && c <= '9':
		for i < len(data) && '0' <= data[i] && data[i] <= '9' {
			n = n*10 + uint64(data[i]-'0') // may wrap: used only for short numbers
			i++
		}
	default:
		return nil, false
	}
	intEnd := i
	simple := true
	if i < len(data) && data[i] == '.' {
		simple = false
		i++
		if i >= len(data) || data[i] < '0' || data[i] > '9' {
			return nil, false
		}
		for i < len(data) && '0' <= data[i] && data[i] <= '9' {
			i++
		}
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		simple = false
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		if i >= len(data) || data[i] < '0' || data[i] > '9' {
			return nil, false
		}
		for i < len(data) && '0' <= data[i] && data[i] <= '9' {
			i++
		}
	}
	d.pos = i
	digits := intEnd - start
	if neg {
		digits--
	}
	if simple && digits <= 15 {
		// An integer below 10^15 < 2^53 is exactly a float64: what
		// ParseFloat would return, -0 included.
		f := float64(n)
		if neg {
			f = -f
		}
		return lua.LNumber(f), true
	}
	f, err := strconv.ParseFloat(string(data[start:i]), 64)
	if err != nil {
		d.outOfRange = string(data[start:i])
		return nil, false
	}
	return lua.LNumber(f), true
}

// str reads the string at d.pos (its opening quote): its text as
// encoding/json unquotes it. Object keys (key) are interned.
func (d *jsonDecoder) str(key bool) (string, bool) {
	data := d.data
	start := d.pos + 1
	i := start
	for i < len(data) {
		c := data[i]
		switch {
		case c == '"':
			d.pos = i + 1
			return d.makeString(data[start:i], key), true
		case c == '\\' || c < ' ':
			return d.strSlow(start, i, key)
		case c < utf8.RuneSelf:
			i++
		default:
			r, size := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && size == 1 {
				return d.strSlow(start, i, key)
			}
			i += size
		}
	}
	return "", false // unterminated
}

func (d *jsonDecoder) makeString(b []byte, key bool) string {
	if !key || len(b) > keyCacheLen {
		return string(b)
	}
	if s, ok := d.keys[string(b)]; ok {
		return s
	}
	if len(d.keys) >= keyCacheMax {
		clear(d.keys)
	}
	s := string(b)
	d.keys[s] = s
	return s
}

// strSlow continues a string from i, the first byte that is not copied
// as it is (an escape, a control character, invalid UTF-8), like
// encoding/json's unquote.
func (d *jsonDecoder) strSlow(start, i int, key bool) (string, bool) {
	data := d.data
	b := append(d.buf[:0], data[start:i]...)
	defer func() { d.buf = b[:0] }()
	for i < len(data) {
		c := data[i]
		switch {
		case c == '"':
			d.pos = i + 1
			return d.makeString(b, key), true
		case c == '\\':
			if i+1 >= len(data) {
				return "", false
			}
			switch data[i+1] {
			case '"', '\\', '/':
				b = append(b, data[i+1])
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				r := hex4(data[i+2:])
				if r < 0 {
					return "", false
				}
				i += 6
				if utf16.IsSurrogate(r) {
					// A pair only when a second escape follows and they
					// combine; else U+FFFD and the next escape is read on
					// its own.
					if len(data)-i >= 6 && data[i] == '\\' && data[i+1] == 'u' {
						if r1 := hex4(data[i+2:]); r1 >= 0 {
							if dec := utf16.DecodeRune(r, r1); dec != utf8.RuneError {
								b = utf8.AppendRune(b, dec)
								i += 6
								continue
							}
						}
					}
					r = utf8.RuneError
				}
				b = utf8.AppendRune(b, r)
				continue
			default:
				return "", false
			}
			i += 2
		case c < ' ':
			return "", false
		case c < utf8.RuneSelf:
			b = append(b, c)
			i++
		default:
			r, size := utf8.DecodeRune(data[i:])
			b = utf8.AppendRune(b, r) // invalid UTF-8: U+FFFD for each bad byte
			i += size
		}
	}
	return "", false // unterminated
}

// hex4 reads 4 hex digits, or returns -1.
func hex4(s []byte) rune {
	if len(s) < 4 {
		return -1
	}
	var r rune
	for _, c := range s[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}
