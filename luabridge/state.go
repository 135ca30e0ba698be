package luabridge

import (
	"bytes"
	"errors"
	"fmt"

	lua "github.com/yuin/gopher-lua"
	"github.com/yuin/gopher-lua/parse"
)

// NewState returns a sandboxed state like the ones integration functions
// run in, with `es` and the given extra modules available to require, for
// Lua code the host runs itself (the fixture runner). Its globals are not
// locked; its print writes to slog's default logger. The caller owns the
// state and closes it.
func NewState(name string, maxDepth int, modules map[string]lua.LGFunction) (*lua.LState, *Marks) {
	if maxDepth <= 0 {
		maxDepth = 32
	}
	preload := map[string]lua.LGFunction{}
	L := newSandbox(nil, preload)
	marks := NewMarks(L)
	preload["es"] = esLoader(marks, maxDepth, nil)
	for k, v := range modules {
		preload[k] = v
	}
	return L, marks
}

// Compile parses and compiles src once; a syntax error names name:line.
func Compile(name string, src []byte) (*lua.FunctionProto, error) {
	chunk, err := parse.Parse(bytes.NewReader(src), name)
	if err != nil {
		var pe *parse.Error
		if errors.As(err, &pe) {
			line := pe.Pos.Line
			switch {
			case line < 1:
				// gopher-lua gives line -1 for an error at the end of the
				// file (an unclosed function, table, string or comment).
				msg := "syntax error at the end of the file"
				if pe.Message != "syntax error" {
					msg += ": " + pe.Message
				}
				return nil, &ScriptError{Kind: KindLoad, Where: fmt.Sprintf("%s:%d", name, lastLine(src)), Msg: msg}
			case pe.Message == "unterminated string" && pe.Pos.Column == 0 && line > 1:
				// The scanner has already counted the newline that ends it.
				line--
			}
			msg := fmt.Sprintf("syntax error near %q", pe.Token)
			if pe.Message != "syntax error" { // gopher-lua's message is often just that: not said twice
				msg += ": " + pe.Message
			}
			return nil, &ScriptError{Kind: KindLoad, Where: fmt.Sprintf("%s:%d", name, line), Msg: msg}
		}
		return nil, &ScriptError{Kind: KindLoad, Where: name, Msg: "syntax error: " + err.Error()}
	}
	chunk = capOperators(chunk) // `..` and `#` through the capped builtins (operators.go)
	proto, err := lua.Compile(chunk, name)
	if err != nil {
		var ce *lua.CompileError
		if errors.As(err, &ce) && ce.Line > 0 {
			// e.g. '...' outside a vararg function, a goto without its label
			return nil, &ScriptError{Kind: KindLoad, Where: fmt.Sprintf("%s:%d", name, ce.Line), Msg: "compile error: " + ce.Message}
		}
		return nil, &ScriptError{Kind: KindLoad, Where: name, Msg: "compile error: " + err.Error()}
	}
	if hasUncapped(proto) {
		return nil, &ScriptError{Kind: KindLoad, Where: name, Msg: "internal error: an operator escaped its cap (luabridge/operators.go)"}
	}
	return proto, nil
}

// lastLine is the number of the last line of src that has any text: where
// an error at the end of the file is reported.
func lastLine(src []byte) int {
	return bytes.Count(bytes.TrimRight(src, "\r\n\t "), []byte("\n")) + 1
}
