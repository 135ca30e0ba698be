package luabridge

import (
	"errors"
	"strings"
	"testing"

	lua "github.com/yuin/gopher-lua"
)

func TestCheckMessage(t *testing.T) {
	deep := func(n int) string { return strings.Repeat(`{"a":`, n) + "1" + strings.Repeat("}", n) }
	tests := []struct {
		name     string
		data     string
		maxDepth int
		code     string // "" means valid
	}{
		{"object", `{"type":"join","room":"lobby"}`, 32, ""},
		{"empty object", `{}`, 32, ""},
		{"whitespace around", " \t\r\n{\"a\":[1,2,{}]}\n ", 32, ""},
		{"unicode", `{"text":"héllo \u00e9 😀"}`, 32, ""},
		{"not JSON", `hello`, 32, CodeInvalidJSON},
		{"empty", ``, 32, CodeInvalidJSON},
		{"only whitespace", "  \n", 32, CodeInvalidJSON},
		{"truncated", `{"a":`, 32, CodeInvalidJSON},
		{"trailing data", `{} {}`, 32, CodeInvalidJSON},
		{"trailing comma", `{"a":1,}`, 32, CodeInvalidJSON},
		{"single quotes", `{'a':1}`, 32, CodeInvalidJSON},
		{"invalid UTF-8 in a string", "{\"a\":\"\xff\xfe\"}", 32, CodeInvalidJSON},
		{"invalid UTF-8 outside strings", "{\"a\":1}\xc3", 32, CodeInvalidJSON},
		{"NaN", `{"a":NaN}`, 32, CodeInvalidJSON},
		{"array", `[1]`, 32, CodeNotObject},
		{"empty array", `[]`, 32, CodeNotObject},
		{"string", `"x"`, 32, CodeNotObject},
		{"number", `3`, 32, CodeNotObject},
		{"null", `null`, 32, CodeNotObject},
		{"true", `true`, 32, CodeNotObject},
		{"array after whitespace", " [ {} ]", 32, CodeNotObject},
		{"at the depth limit", deep(4), 4, ""},
		{"over the depth limit", deep(5), 4, CodeTooDeep},
		{"arrays count", `{"a":[[[1]]]}`, 3, CodeTooDeep},
		{"arrays at the limit", `{"a":[[1]]}`, 3, ""},
		{"siblings do not add up", `{"a":{"b":{}},"c":{"d":{}},"e":[[],[]]}`, 3, ""},
		{"braces inside strings do not count", `{"a":"{{{{{{[[[[[[","b":{"c":"]]]]}}}}"}}`, 2, ""},
		{"escaped quotes inside strings", `{"a":"\"{{{{\\","b":"\\\"[[[["}`, 1, ""},
		{"deep nesting for the default limit", deep(33), 32, CodeTooDeep},
		{"very deep nesting is refused, not a crash", strings.Repeat("[", 100000) + strings.Repeat("]", 100000), 32, CodeTooDeep},
		{"very deep object", deep(20000), 32, CodeTooDeep},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckMessage([]byte(tt.data), tt.maxDepth)
			if tt.code == "" {
				if err != nil {
					t.Errorf("CheckMessage = %v, want nil", err)
				}
				return
			}
			var de *DataError
			if !errors.As(err, &de) {
				t.Fatalf("CheckMessage = %v (%T), want a *DataError", err, err)
			}
			if de.Code != tt.code || Code(err) != tt.code {
				t.Errorf("code %q (Code %q), want %q (error %v)", de.Code, Code(err), tt.code, err)
			}
			if de.Msg == "" {
				t.Error("the error has no message for the client")
			}
		})
	}
}

func TestCheckMessageAgreesWithDecode(t *testing.T) {
	// A message CheckMessage accepts at a depth must convert at that depth.
	L := lua.NewState()
	defer L.Close()
	m := NewMarks(L)
	for _, data := range []string{
		`{"a":{"b":{"c":1}}}`,
		`{"a":[{"b":[]}]}`,
		`{"s":"{[{[{[","t":{"u":"]}]}"}}`,
	} {
		for depth := 1; depth <= 5; depth++ {
			checkErr := CheckMessage([]byte(data), depth)
			_, decErr := DecodeJSON(L, m, []byte(data), depth)
			if (checkErr == nil) != (decErr == nil) {
				t.Errorf("%s at depth %d: CheckMessage says %v, DecodeJSON says %v", data, depth, checkErr, decErr)
			}
		}
	}
}

func BenchmarkCheckMessage(b *testing.B) {
	data := []byte(benchWSMessage)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if err := CheckMessage(data, 32); err != nil {
			b.Fatal(err)
		}
	}
}
