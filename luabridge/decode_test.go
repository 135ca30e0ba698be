package luabridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"
)

// The oracle of the differential tests is decodeJSONStdlib (decode.go): the
// decoder DecodeJSON replaced, kept as its fallback.

// sameLua reports how a and b differ ("" when they do not): the same types,
// numbers with the same bits (-0 is not 0), the same strings, tables with
// the same metatable (the array mark or none) and the same keys holding the
// same values.
func sameLua(m *Marks, a, b lua.LValue, path string) string {
	if a.Type() != b.Type() {
		return fmt.Sprintf("%s: %s vs %s", path, a.Type(), b.Type())
	}
	switch x := a.(type) {
	case lua.LNumber:
		if y := b.(lua.LNumber); math.Float64bits(float64(x)) != math.Float64bits(float64(y)) {
			return fmt.Sprintf("%s: number %v vs %v", path, x, y)
		}
	case lua.LString, lua.LBool:
		if a != b {
			return fmt.Sprintf("%s: %q vs %q", path, a, b)
		}
	case *lua.LUserData:
		if x != m.Null || b != m.Null {
			return path + ": a userdata that is not es.null"
		}
	case *lua.LTable:
		y := b.(*lua.LTable)
		if x.Metatable != y.Metatable {
			return path + ": different metatables"
		}
		if x.Metatable != lua.LNil && x.Metatable != m.Array {
			return path + ": a metatable that is not the array mark"
		}
		n := 0
		diff := ""
		x.ForEach(func(k, v lua.LValue) {
			n++
			if diff == "" {
				diff = sameLua(m, v, y.RawGet(k), path+"["+k.String()+"]")
			}
		})
		if diff != "" {
			return diff
		}
		y.ForEach(func(lua.LValue, lua.LValue) { n-- })
		if n != 0 {
			return fmt.Sprintf("%s: %d more keys on one side", path, n)
		}
		if x.Len() != y.Len() {
			return fmt.Sprintf("%s: length %d vs %d", path, x.Len(), y.Len())
		}
	default:
		return fmt.Sprintf("%s: unexpected %s", path, a.Type())
	}
	return ""
}

// checkDecodeMatchesStdlib decodes data with DecodeJSON and holds it to
// encoding/json itself. The verdict comes from json.Unmarshal and the depth
// of the value it gives, not from decodeJSONStdlib (which DecodeJSON falls
// back on, so comparing their errors would compare it with itself): input
// encoding/json refuses is invalid_json (too_deep past its own nesting
// limit) with its message; a value nested deeper than maxDepth is
// too_deep; anything else decodes, to the same value as the oracle's.
func checkDecodeMatchesStdlib(t *testing.T, L *lua.LState, m *Marks, data []byte, maxDepth int) {
	t.Helper()
	got, gerr := DecodeJSON(L, m, data, maxDepth)
	var x any
	uerr := json.Unmarshal(data, &x)
	var wantCode, wantText string
	switch {
	case uerr != nil && strings.Contains(uerr.Error(), "exceeded max depth"):
		wantCode, wantText = codeTooDeep, fmt.Sprintf("nested deeper than %d levels", min(maxDepth, stdlibMaxDepth))
	case uerr != nil:
		wantCode, wantText = codeInvalidJSON, uerr.Error()
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(uerr, &se):
			wantText = fmt.Sprintf("invalid JSON at offset %d: %s", se.Offset, se.Error())
		case errors.As(uerr, &te): // a number a float64 cannot hold
			wantText = "invalid JSON: " + te.Value + " is out of range"
		}
	case jsonDepth(x) > maxDepth:
		wantCode, wantText = codeTooDeep, fmt.Sprintf("nested deeper than %d levels", maxDepth)
	}
	if wantCode != "" {
		var gd *DataError
		if !errors.As(gerr, &gd) || gd.Code != wantCode || !strings.Contains(gd.Error(), wantText) {
			t.Fatalf("DecodeJSON(%.200q, %d): got %v (%#v), want %s: %q", data, maxDepth, gerr, gerr, wantCode, wantText)
		}
		if uerr != nil && fastDecodes(L, m, data, maxDepth) {
			t.Fatalf("DecodeJSON(%.200q, %d): its decoder accepted what encoding/json refuses", data, maxDepth)
		}
		return
	}
	if gerr != nil {
		t.Fatalf("DecodeJSON(%.200q, %d): %v; encoding/json accepts it, %d levels deep", data, maxDepth, gerr, jsonDepth(x))
	}
	if !fastDecodes(L, m, data, maxDepth) && !(maxDepth < stdlibMaxDepth && fastDecodes(L, m, data, stdlibMaxDepth)) {
		// The fallback gave the value: it may, only for a nesting over
		// maxDepth that encoding/json let pass (a duplicate key replaced it).
		t.Fatalf("DecodeJSON(%.200q, %d): its decoder refused valid JSON", data, maxDepth)
	}
	want, werr := decodeJSONStdlib(L, m, data, maxDepth)
	if werr != nil {
		t.Fatalf("DecodeJSON(%.200q, %d) decoded what its fallback refuses: %v", data, maxDepth, werr)
	}
	if diff := sameLua(m, got, want, "value"); diff != "" {
		t.Fatalf("DecodeJSON(%.200q, %d) differs from encoding/json: %s", data, maxDepth, diff)
	}
	genc, gerr := AppendJSON(nil, m, got, "value", max(maxDepth, 1))
	wenc, werr := AppendJSON(nil, m, want, "value", max(maxDepth, 1))
	if string(genc) != string(wenc) || (gerr == nil) != (werr == nil) {
		t.Fatalf("DecodeJSON(%.200q, %d) encodes as %q (%v), encoding/json's value as %q (%v)", data, maxDepth, genc, gerr, wenc, werr)
	}
}

// jsonDepth is how many containers deep x (decoded by encoding/json into
// any) nests: 0 for a scalar, 1 for a flat object or array.
func jsonDepth(x any) int {
	d := 0
	switch v := x.(type) {
	case []any:
		for _, e := range v {
			d = max(d, jsonDepth(e))
		}
	case map[string]any:
		for _, e := range v {
			d = max(d, jsonDepth(e))
		}
	default:
		return 0
	}
	return d + 1
}

// decodeDiffCases are the tricky inputs: the seed corpus of the fuzz target
// and a table test of their own.
var decodeDiffCases = []string{
	``, ` `, `{}`, `[]`, `null`, `true`, `false`, `0`, `-0`, `-0.0`, `1`, `-1`, `01`, `-`, `1.`, `.5`, `+1`, `1e`, `1e+`, `1E-2`,
	`123456789012345`, `1234567890123456`, `-999999999999999`, `9007199254740993`, `123456789012345678901234567890`,
	`1e400`, `-1e400`, `1e-400`, `4.9e-324`, `2.2250738585072014e-308`, `1.7976931348623157e308`, `1.7976931348623159e308`,
	`0.1`, `1.5e300`, `[1e400, "x"]`, `[1e400, x]`, `{"a":1e400,"b":[`,
	`"\u00e9\ud83d\ude00"`, `"\ud83d"`, `"\ude00"`, `"\ud83dx"`, `"\ud83d\u0041"`, `"\ud83d\ud83d\ude00"`, `"\ude00\ud83d"`,
	`"\ud83d\u"`, `"\ud83d\uZZZZ"`, `"\ud83d\\"`, `"\uD83D\uDE00"`, `"\u0000"`, `"\u12"`, `"\u12G4"`, `"\x"`, `"\'"`,
	`"\"\\\/\b\f\n\r\t"`, "\"a\x00b\"", "\"a\tb\"", "\"\x7f\"", "\"\xff\"", "\"a\xc3\"", "\"\xc3\xa9\"", "\"\xed\xa0\x80\"",
	"\"\xf4\x90\x80\x80\"", "\"\xe2\x82\"", "\"\xe2\x82\xac\"", `"unterminated`, `"`, `"\`, `"\"`, "{\"k\xff\":\"v\\u00e9\"}",
	`{"a":1,"a":2}`, `{"a":[],"a":{}}`, `{"a":null,"a":1}`, `{"a":1,"b":2,"a":null}`, `{"":""}`, `{"a"}`, `{"a":}`, `{"a":1,}`,
	`{,}`, `[,]`, `[1,]`, `[1 2]`, `{"a" 1}`, `{'a':1}`, `{a:1}`, `{"a":1}}`, `[[]]]`, `[1] [2]`, `1 2`, `{} x`, "\t\n\r {} \r\n\t",
	"\v{}", "\u00a0{}", "\ufeff{}", `nul`, `nulll`, `truefalse`, `tru`, `True`, `NaN`, `Infinity`, `[-]`, `[0x1]`, `[1_000]`,
	`[null,[null],{"n":null}]`, `[[],{},[[]],{"a":{}}]`, `{"b":{"y":[1,2,{"z":[]}],"x":{}},"a":[[],[[]]]}`,
	strings.Repeat("[", 33) + strings.Repeat("]", 33), strings.Repeat("[", 32) + strings.Repeat("]", 32),
	strings.Repeat("[", 33) + strings.Repeat("]", 32), strings.Repeat("[", 33) + `1e400` + strings.Repeat("]", 33),
	strings.Repeat(`{"a":`, 40) + `1` + strings.Repeat("}", 40), strings.Repeat(`{"a":`, 40) + `x`,
	strings.Repeat("[", 10001) + strings.Repeat("]", 10001), strings.Repeat("[", 10000) + strings.Repeat("]", 10000),
	strings.Repeat("[", 10001) + "x", strings.Repeat("[", 5000) + "x",
	`{"type":"message","id":"01HQZX","from":{"id":"u_1","roles":["m","mod"]},"ts":1718031234567,"reply_to":null,"attachments":[]}`,
}

func TestDecodeMatchesStdlib(t *testing.T) {
	L, m := newConvState(t)
	for _, s := range decodeDiffCases {
		for _, depth := range []int{fuzzDepth, 0, 1, 3, 20000} {
			checkDecodeMatchesStdlib(t, L, m, []byte(s), depth)
		}
	}
}

// FuzzDecodeJSONMatchesStdlib: for any input and depth limit, DecodeJSON and
// the encoding/json path it replaced both fail with the same error or give
// the same Lua value.
func FuzzDecodeJSONMatchesStdlib(f *testing.F) {
	for _, s := range decodeDiffCases {
		f.Add([]byte(s), uint8(fuzzDepth))
	}
	f.Add([]byte(`{"a":{"b":[1]}}`), uint8(2))
	f.Add([]byte(`[[1]]`), uint8(1))
	f.Add([]byte(`"s"`), uint8(0))
	f.Fuzz(func(t *testing.T, data []byte, depth uint8) {
		L, m := NewState("fuzz", fuzzDepth, nil)
		defer L.Close()
		checkDecodeMatchesStdlib(t, L, m, data, int(depth%70))
	})
}

func TestDecodeErrorMessages(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"a":}`, `invalid JSON at offset 6: invalid character '}' looking for beginning of value`},
		{``, `invalid JSON at offset 0: unexpected end of JSON input`},
		{`[1e400]`, `invalid JSON: number 1e400 is out of range`},
		{`{"a":{"b":1}}`, `nested deeper than 1 levels`},
		{strings.Repeat("[", 10001), `nested deeper than 64 levels`},
	}
	for _, tc := range tests {
		L, m := newConvState(t)
		maxDepth := testMaxDepth
		if strings.HasPrefix(tc.in, `{"a":{`) {
			maxDepth = 1
		}
		_, err := DecodeJSON(L, m, []byte(tc.in), maxDepth)
		if err == nil || err.Error() != tc.want {
			t.Errorf("DecodeJSON(%.20q): %v, want %q", tc.in, err, tc.want)
		}
	}
}

func BenchmarkDecodeJSONStdlib(b *testing.B) {
	L, m := newConvState(b)
	data := []byte(benchChatMessage)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeJSONStdlib(L, m, data, testMaxDepth); err != nil {
			b.Fatal(err)
		}
	}
}

// fastDecodes reports whether DecodeJSON's own decoder (without the
// fallback) accepts data.
func fastDecodes(L *lua.LState, m *Marks, data []byte, maxDepth int) bool {
	d := jsonDecoderPool.Get().(*jsonDecoder)
	d.L, d.m, d.data, d.maxDepth = L, m, data, maxDepth
	_, ok := d.top()
	d.release()
	return ok
}

// A document of many values is decoded in one Go call (es.json_decode of a
// string of millions of values built millions of tables, for seconds and a
// gigabyte, past the call's timeout and the memory guard): the decoder
// looks at the state's context while it works. With the budget spent it
// stops with ErrDecodeStopped; a small document has too few values to
// look, and decodes; with no context the large one decodes too.
func TestDecodeStopsWhenTheBudgetIsSpent(t *testing.T) {
	L, m := newConvState(t)
	large := []byte("[" + strings.Repeat("[],", 100000) + "[]]")
	spent, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	L.SetContext(spent)
	if _, err := DecodeJSON(L, m, large, testMaxDepth); !errors.Is(err, ErrDecodeStopped) || !strings.Contains(err.Error(), "deadline exceeded") {
		t.Errorf("with the budget spent: %v, want ErrDecodeStopped naming the deadline", err)
	}
	if _, err := DecodeJSON(L, m, []byte(`{"a":[1,2,3]}`), testMaxDepth); err != nil {
		t.Errorf("a small document with the budget spent: %v", err)
	}
	L.RemoveContext()
	v, err := DecodeJSON(L, m, large, testMaxDepth)
	if err != nil || v.(*lua.LTable).Len() != 100001 {
		t.Errorf("without a budget: %v", err)
	}
	// Through es.json_decode in a call: the call's timeout.
	s := mustLoad(t, wsScript(`es.json_decode("[" .. string.rep("[],", 5000000) .. "[]]")
return {}`), Options{Timeout: 100 * time.Millisecond, PoolSize: 1})
	_, err = runBounded(t, s)
	checkScriptError(t, err, KindTimeout, "process_websocket_message", at(wsFuncLine), "did not finish")
}

// A large document (over fallbackMax) that is valid JSON but refused is
// explained by the decoder itself, not rebuilt whole by encoding/json (in
// one Go call nothing can interrupt): too deep, or a number out of range,
// with the messages encoding/json's path gives. The one difference: an
// object nested too deep is refused even when a later duplicate key
// replaces it.
func TestDecodeLargeRefusals(t *testing.T) {
	L, m := newConvState(t)
	pad := `"pad":"` + strings.Repeat("x", fallbackMax) + `"`
	deep := strings.Repeat(`{"a":`, 40) + "1" + strings.Repeat("}", 40)
	for _, tt := range []struct {
		name, doc, code, msg string
	}{
		{"too deep", "{" + pad + `,"d":` + deep + "}", codeTooDeep, "nested deeper than 32 levels"},
		{"a number out of range", "{" + pad + `,"n":[1,2,1e400]}`, codeInvalidJSON, "invalid JSON: number 1e400 is out of range"},
		{"a syntax error", "{" + pad + `,"n":[1,2,]}`, codeInvalidJSON, "invalid JSON at offset"},
		{"too deep, then replaced", "{" + pad + `,"d":` + deep + `,"d":1}`, codeTooDeep, "nested deeper than 32 levels"},
	} {
		_, err := DecodeJSON(L, m, []byte(tt.doc), 32)
		var de *DataError
		if !errors.As(err, &de) || de.Code != tt.code || !strings.Contains(de.Msg, tt.msg) {
			t.Errorf("%s: %v, want %s: %q", tt.name, err, tt.code, tt.msg)
		}
	}
	// Below fallbackMax the duplicate key is encoding/json's to decide.
	if _, err := DecodeJSON(L, m, []byte(`{"d":`+deep+`,"d":1}`), 32); err != nil {
		t.Errorf("a small document whose deep object a duplicate key replaces: %v", err)
	}
}
