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
// locked. The caller owns the state and closes it.
func NewState(name string, maxDepth int, modules map[string]lua.LGFunction) (*lua.LState, *Marks) {
	if maxDepth <= 0 {
		maxDepth = 32
	}
	preload := map[string]lua.LGFunction{}
	L := newSandbox(name, preload)
	marks := NewMarks(L)
	preload["es"] = esLoader(marks, maxDepth)
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
			return nil, &ScriptError{Kind: KindLoad, Where: fmt.Sprintf("%s:%d", name, pe.Pos.Line),
				Msg: fmt.Sprintf("syntax error near %q: %s", pe.Token, pe.Message)}
		}
		return nil, &ScriptError{Kind: KindLoad, Where: name, Msg: "syntax error: " + err.Error()}
	}
	proto, err := lua.Compile(chunk, name)
	if err != nil {
		return nil, &ScriptError{Kind: KindLoad, Where: name, Msg: "compile error: " + err.Error()}
	}
	return proto, nil
}
