package luabridge

// JSON <-> Lua conversion.
//
// Mapping (both directions):
//
//	JSON object  <-> table with string keys (encoded with keys sorted bytewise)
//	JSON array   <-> sequence 1..n carrying the Marks.Array metatable
//	JSON null    <-> Marks.Null (es.null)
//	JSON number  <-> lua.LNumber (float64)
//	JSON string  <-> lua.LString
//	true/false   <-> lua.LBool
//
// Numbers: decoding parses every JSON number as the nearest float64, so
// integers with magnitude up to 2^53 are exact and larger ones are rounded
// to the nearest representable float (e.g. 9007199254740993 becomes
// 9007199254740992). A number outside the float64 range (1e400) is an
// invalid_json error. Encoding refuses NaN, ±Inf and ±math.MaxFloat64 (which
// is what gopher-lua's math.huge is), and writes integral values with |x| <= 2^53 as
// plain integers ("3", never "3.0"; -0 becomes "0") and everything else in
// the shortest form that round-trips, as encoding/json does for float64.

import (
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	lua "github.com/yuin/gopher-lua"
)

// Values of DataError.Code.
const (
	codeInvalidJSON  = "invalid_json"
	codeTooDeep      = "too_deep"
	codeCannotEncode = "cannot_encode"
)

// DataError is a conversion error: Path names the value (may be "" for a
// syntax error), Msg what is wrong. Code is "invalid_json" for JSON that does
// not parse (incl. trailing data after the value), "too_deep" for nesting over
// the limit (decode and encode) and "cannot_encode" for other encode errors.
type DataError struct{ Path, Msg, Code string }

// Error returns "path: msg", or just msg when Path == "".
func (e *DataError) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

// ---------------------------------------------------------------------------
// Decoding

func jsonDecodeError(err error, maxDepth int) *DataError {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		if strings.Contains(se.Error(), "exceeded max depth") {
			// encoding/json's own limit (10000) is below maxDepth.
			return tooDeepDataError("", min(maxDepth, 10000))
		}
		return &DataError{
			Msg:  "invalid JSON at offset " + strconv.FormatInt(se.Offset, 10) + ": " + se.Error(),
			Code: codeInvalidJSON,
		}
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		// The only type mismatch possible when decoding into `any` is a
		// number that does not fit a float64.
		return &DataError{Msg: "invalid JSON: " + te.Value + " is out of range", Code: codeInvalidJSON}
	}
	return &DataError{Msg: "invalid JSON: " + err.Error(), Code: codeInvalidJSON}
}

func tooDeepDataError(path string, maxDepth int) *DataError {
	return &DataError{
		Path: path,
		Msg:  "nested deeper than " + strconv.Itoa(maxDepth) + " levels",
		Code: codeTooDeep,
	}
}

type jsonToLua struct {
	L        *lua.LState
	m        *Marks
	maxDepth int
}

// value converts the result of json.Unmarshal into `any`; depth is the
// number of containers enclosing x. Recursion is bounded by maxDepth.
func (d *jsonToLua) value(x any, depth int) (lua.LValue, error) {
	switch v := x.(type) {
	case nil:
		return d.m.Null, nil
	case bool:
		if v {
			return lua.LTrue, nil
		}
		return lua.LFalse, nil
	case float64:
		return lua.LNumber(v), nil
	case string:
		return lua.LString(v), nil
	case []any:
		if depth >= d.maxDepth {
			return nil, tooDeepDataError("", d.maxDepth)
		}
		t := d.L.CreateTable(min(len(v), maxArrayLen), 0)
		for i, e := range v {
			lv, err := d.value(e, depth+1)
			if err != nil {
				return nil, err
			}
			t.RawSetInt(i+1, lv)
		}
		t.Metatable = d.m.Array
		return t, nil
	case map[string]any:
		if depth >= d.maxDepth {
			return nil, tooDeepDataError("", d.maxDepth)
		}
		t := d.L.CreateTable(0, len(v))
		for k, e := range v {
			lv, err := d.value(e, depth+1)
			if err != nil {
				return nil, err
			}
			t.RawSetString(k, lv)
		}
		return t, nil
	}
	// Unreachable: json.Unmarshal into `any` produces only the types above.
	return nil, &DataError{Msg: "invalid JSON: unexpected value", Code: codeInvalidJSON}
}

// ---------------------------------------------------------------------------
// Encoding

// AppendJSON appends the JSON encoding of v to buf. root names v in error
// paths (e.g. "broker_data.players[2].socket"). Containers may nest at most
// maxDepth levels (a top-level table is depth 1). On error the returned
// slice is buf unchanged (same length) and the error is a *DataError.
//
// A table encodes as an array when it carries m.Array or its keys are exactly
// 1..n (n >= 1); as an object (keys sorted bytewise) when all its keys are
// strings; an empty table without m.Array is {}. Lua nil (possible only at
// the top level) encodes as null, like m.Null.
func AppendJSON(buf []byte, m *Marks, v lua.LValue, root string, maxDepth int) ([]byte, error) {
	e := luaToJSONPool.Get().(*luaToJSON)
	e.m, e.maxDepth, e.buf = m, maxDepth, buf
	start := len(buf)
	err := e.value(v)
	out := e.buf
	e.release()
	if err != nil {
		return out[:start], &DataError{Path: err.path(root), Msg: err.msg, Code: err.code}
	}
	return out, nil
}

var luaToJSONPool = sync.Pool{New: func() any { return new(luaToJSON) }}

type luaToJSON struct {
	m        *Marks
	maxDepth int
	buf      []byte
	tables   []*lua.LTable  // tables on the current path: cycle check and depth
	kvs      []jsonObjEntry // stack of object entries being written
	kvsUsed  int            // high-water mark of kvs, for clearing
}

type jsonObjEntry struct {
	k string
	v lua.LValue
}

func (e *luaToJSON) release() {
	// Drop references to Lua values so the pool does not keep them alive.
	clear(e.tables[:cap(e.tables)])
	clear(e.kvs[:e.kvsUsed])
	e.tables, e.kvs = e.tables[:0], e.kvs[:0]
	e.kvsUsed = 0
	e.m, e.buf = nil, nil
	if cap(e.kvs) > 1<<12 || cap(e.tables) > 1<<10 {
		return // do not keep huge scratch space around
	}
	luaToJSONPool.Put(e)
}

// encodeError is built at the failing value; the path is collected while
// unwinding (innermost segment first), so the success path costs nothing.
type encodeError struct {
	msg, code string
	segs      []jsonPathSeg
}

type jsonPathSeg struct {
	key   string
	index int // 1-based array index, or 0 for a string key
}

func (err *encodeError) in(seg jsonPathSeg) *encodeError {
	err.segs = append(err.segs, seg)
	return err
}

func (err *encodeError) path(root string) string {
	b := []byte(root)
	for i := len(err.segs) - 1; i >= 0; i-- {
		s := err.segs[i]
		switch {
		case s.index > 0:
			b = append(b, '[')
			b = strconv.AppendInt(b, int64(s.index), 10)
			b = append(b, ']')
		case isLuaIdentKey(s.key):
			if len(b) > 0 {
				b = append(b, '.')
			}
			b = append(b, s.key...)
		default:
			b = append(b, '[')
			b = strconv.AppendQuote(b, s.key)
			b = append(b, ']')
		}
	}
	return string(b)
}

func isLuaIdentKey(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && '0' <= c && c <= '9' {
			continue
		}
		return false
	}
	return true
}

func cannotEncodeErr(msg string) *encodeError {
	return &encodeError{msg: msg, code: codeCannotEncode}
}

func (e *luaToJSON) value(v lua.LValue) *encodeError {
	if len(e.buf) > maxJSONBytes {
		return cannotEncodeErr(tooLargeMessage) // e.g. a table shared 2^30 times (limits.go)
	}
	switch x := v.(type) {
	case lua.LString:
		e.buf = appendJSONString(e.buf, string(x))
	case lua.LNumber:
		f := float64(x)
		// gopher-lua's math.huge is math.MaxFloat64, not +Inf, so the
		// largest finite magnitude counts as infinity too.
		if math.IsNaN(f) || math.Abs(f) >= math.MaxFloat64 {
			return cannotEncodeErr("cannot encode NaN or infinity")
		}
		e.buf = appendJSONNumber(e.buf, f)
	case lua.LBool:
		if x {
			e.buf = append(e.buf, "true"...)
		} else {
			e.buf = append(e.buf, "false"...)
		}
	case *lua.LTable:
		return e.table(x)
	case *lua.LUserData:
		if x != e.m.Null {
			return cannotEncodeErr("cannot encode a userdata")
		}
		e.buf = append(e.buf, "null"...)
	case *lua.LNilType:
		e.buf = append(e.buf, "null"...)
	case *lua.LFunction:
		return cannotEncodeErr("cannot encode a function")
	case *lua.LState:
		return cannotEncodeErr("cannot encode a thread")
	case lua.LChannel:
		return cannotEncodeErr("cannot encode a channel")
	default:
		if v == nil {
			e.buf = append(e.buf, "null"...)
			return nil
		}
		return cannotEncodeErr("cannot encode a " + v.Type().String())
	}
	return nil
}

func (e *luaToJSON) table(t *lua.LTable) *encodeError {
	if e.m.isFail(t) {
		return cannotEncodeErr("cannot encode es.fail(...) here")
	}
	for _, p := range e.tables {
		if p == t {
			return cannotEncodeErr("cannot encode a cycle")
		}
	}
	if len(e.tables) >= e.maxDepth {
		te := tooDeepDataError("", e.maxDepth)
		return &encodeError{msg: te.Msg, code: te.Code}
	}
	e.tables = append(e.tables, t)
	err := e.tableBody(t)
	e.tables = e.tables[:len(e.tables)-1]
	return err
}

func (e *luaToJSON) tableBody(t *lua.LTable) *encodeError {
	n := t.MaxN() // highest non-nil index of the array part
	if n > 0 {
		// Next from the last array index yields the first hash-part key, if
		// any. Any hash key next to an array part is an error.
		if k, _ := t.Next(lua.LNumber(n)); k != lua.LNil {
			return e.badKeys(t)
		}
		e.buf = append(e.buf, '[')
		for i := 1; i <= n; i++ {
			if i > 1 {
				e.buf = append(e.buf, ',')
			}
			ev := t.RawGetInt(i)
			if ev == lua.LNil {
				return cannotEncodeErr("cannot encode a sparse array")
			}
			if err := e.value(ev); err != nil {
				return err.in(jsonPathSeg{index: i})
			}
		}
		e.buf = append(e.buf, ']')
		return nil
	}

	// No array part: collect the string-keyed entries onto the kvs stack.
	start := len(e.kvs)
	other := false
	// Next rather than ForEach: ForEach boxes every key into a new
	// interface value, Next hands back the keys the table already holds.
	for k, v := t.Next(lua.LNil); k != lua.LNil; k, v = t.Next(k) {
		if s, ok := k.(lua.LString); ok {
			e.kvs = append(e.kvs, jsonObjEntry{string(s), v})
		} else {
			other = true
			break
		}
	}
	e.kvsUsed = max(e.kvsUsed, len(e.kvs))
	end := len(e.kvs)
	if other || (end > start && e.m.IsArray(t)) {
		e.kvs = e.kvs[:start]
		return e.badKeys(t)
	}
	if end == start {
		if e.m.IsArray(t) {
			e.buf = append(e.buf, "[]"...)
		} else {
			e.buf = append(e.buf, "{}"...)
		}
		return nil
	}
	slices.SortFunc(e.kvs[start:end], func(a, b jsonObjEntry) int { return strings.Compare(a.k, b.k) })
	e.buf = append(e.buf, '{')
	for i := start; i < end; i++ {
		kv := e.kvs[i] // re-read each time: children may grow e.kvs
		if i > start {
			e.buf = append(e.buf, ',')
		}
		e.buf = appendJSONString(e.buf, kv.k)
		e.buf = append(e.buf, ':')
		if err := e.value(kv.v); err != nil {
			e.kvs = e.kvs[:start]
			return err.in(jsonPathSeg{key: kv.k})
		}
	}
	e.kvs = e.kvs[:start]
	e.buf = append(e.buf, '}')
	return nil
}

// badKeys explains why t's keys make it neither an array nor an object.
// Precedence, so the message does not depend on map order: a key of a type
// other than number/string, then a non-integer number key, then a mix of
// integer and string keys (or string keys on an es.array table), then
// integer keys that are not 1..n.
func (e *luaToJSON) badKeys(t *lua.LTable) *encodeError {
	var (
		badType         lua.LValueType = -1
		hasFrac, hasInt bool
		hasStr          bool
	)
	t.ForEach(func(k, _ lua.LValue) {
		switch x := k.(type) {
		case lua.LString:
			hasStr = true
		case lua.LNumber:
			f := float64(x)
			if f == math.Trunc(f) && !math.IsInf(f, 0) {
				hasInt = true
			} else {
				hasFrac = true
			}
		default:
			if tp := k.Type(); badType < 0 || tp < badType {
				badType = tp
			}
		}
	})
	switch {
	case badType >= 0:
		return cannotEncodeErr("cannot encode a table key of type " + badType.String())
	case hasFrac:
		return cannotEncodeErr("cannot encode a non-integer table key")
	case hasStr && (hasInt || e.m.IsArray(t)):
		return cannotEncodeErr("cannot encode a table mixing array and string keys")
	default:
		return cannotEncodeErr("cannot encode a sparse array")
	}
}

// appendJSONNumber writes a finite f: integral values with |f| <= 2^53 as
// integers, others like encoding/json writes float64.
func appendJSONNumber(b []byte, f float64) []byte {
	const maxExact = 1 << 53
	if f == math.Trunc(f) && f >= -maxExact && f <= maxExact {
		return strconv.AppendInt(b, int64(f), 10)
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs < 1e-6 || abs >= 1e21 {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// Shorten e-09 to e-9, as encoding/json does.
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

// jsonSafe[c] is true for ASCII bytes that need no escaping in a JSON string.
var jsonSafe = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

const jsonHexDigits = "0123456789abcdef"

// appendJSONString writes s (arbitrary bytes) as a JSON string: '"', '\\' and
// control characters are escaped, invalid UTF-8 becomes U+FFFD, and nothing
// else is escaped (no HTML escaping).
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if jsonSafe[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', jsonHexDigits[c>>4], jsonHexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, "\ufffd"...)
			i++
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
