package luabridge

import (
	"fmt"
	"sort"
	"strings"

	lua "github.com/yuin/gopher-lua"
)

// Where a malformed result came from. gopher-lua keeps no trace of which
// `return` ended a call, but its compiled code has the line of every
// instruction, so resultWhere can tell the line at load time when the
// function has a single `return` with values, and otherwise the line that
// sets the offending field, when only one line of the function does.

// returnLines are the distinct lines of proto's own `return` statements
// that return values (a bare `return` returns nil, never malformed), in
// order. Nested functions have protos of their own and are not counted.
func returnLines(p *lua.FunctionProto) []int {
	var lines []int
	for pc, inst := range p.Code {
		if opcode(inst) == lua.OP_RETURN && argB(inst) != 1 && pc < len(p.DbgSourcePositions) {
			lines = appendLine(lines, p.DbgSourcePositions[pc])
		}
	}
	return lines
}

// keyLines are the distinct lines of proto's own instructions that store
// into a table under the constant string key: `{ key = ... }` and
// `t.key = ...`.
func keyLines(p *lua.FunctionProto, key string) []int {
	var lines []int
	for pc, inst := range p.Code {
		op := opcode(inst)
		if op != lua.OP_SETTABLE && op != lua.OP_SETTABLEKS || pc >= len(p.DbgSourcePositions) {
			continue
		}
		b := argB(inst)
		if b&opBitRK == 0 || b&^opBitRK >= len(p.Constants) {
			continue // the key is a register, not a constant
		}
		if s, ok := p.Constants[b&^opBitRK].(lua.LString); ok && string(s) == key {
			lines = appendLine(lines, p.DbgSourcePositions[pc])
		}
	}
	return lines
}

func appendLine(lines []int, l int) []int {
	i := sort.SearchInts(lines, l)
	if i < len(lines) && lines[i] == l {
		return lines
	}
	return append(lines[:i], append([]int{l}, lines[i:]...)...)
}

// Lua 5.1's instruction layout, which gopher-lua keeps (its opcode.go):
// the opcode in the top 6 bits, B in the low 9; an RK operand with the
// 0x100 bit set is a constant's index.
func opcode(inst uint32) int { return int(inst >> 26) }
func argB(inst uint32) int   { return int(inst & 0x1ff) }

const opBitRK = 1 << 8

// resultWhere is the file:line a malformed result of f is reported at: its
// only `return` with values; else the only line that sets the offending
// top-level field (key, "" when none is named); else f's definition.
func (s *Script) resultWhere(f Function, key string) string {
	p := s.protos[f]
	if p == nil {
		return s.where(f)
	}
	if lines := returnLines(p); len(lines) == 1 {
		return fmt.Sprintf("%s:%d", s.Name, lines[0])
	}
	if key != "" {
		if lines := keyLines(p, key); len(lines) == 1 {
			return fmt.Sprintf("%s:%d", s.Name, lines[0])
		}
	}
	return s.where(f)
}

// topKey is the action field a malformed-result path starts with:
// "broker_messages" for "broker_messages[2].target".
func topKey(path string) string {
	if i := strings.IndexAny(path, ".["); i >= 0 {
		return path[:i]
	}
	return path
}
