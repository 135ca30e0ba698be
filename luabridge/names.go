package luabridge

import (
	"fmt"
	"slices"
	"strings"

	"github.com/agnivade/levenshtein"
	lua "github.com/yuin/gopher-lua"
)

// checkModuleKeys refuses a returned table with a key that is not one of
// the seven function names (SPEC section 1): a misspelt
// process_broker_mesage would otherwise leave the default in place, which
// forwards every broker message to the client. The error names each such
// key, the line of its function, and the nearest of the seven.
func checkModuleKeys(name string, mod *lua.LTable) error {
	type unknown struct {
		key  string
		line int // of the function it holds, or 0
	}
	var found []unknown
	mod.ForEach(func(k, v lua.LValue) {
		key, ok := k.(lua.LString)
		if ok && slices.Contains(functionNames[:], string(key)) {
			return
		}
		u := unknown{key: fmt.Sprintf("%q", string(key))}
		if !ok {
			u.key = fmt.Sprintf("[%s]", k.String())
		}
		if fn, ok := v.(*lua.LFunction); ok && fn.Proto != nil {
			u.line = fn.Proto.LineDefined
		}
		found = append(found, u)
	})
	if len(found) == 0 {
		return nil
	}
	// In the order of the file, so the message does not depend on the table's.
	slices.SortFunc(found, func(a, b unknown) int {
		if a.line != b.line {
			return a.line - b.line
		}
		return strings.Compare(a.key, b.key)
	})
	where := name
	for _, u := range found {
		if u.line > 0 {
			where = fmt.Sprintf("%s:%d", name, u.line)
			break
		}
	}
	msgs := make([]string, len(found))
	listAll := false
	for i, u := range found {
		m := "the returned table has the key " + u.key + ", which is not an integration function"
		if u.line > 0 && fmt.Sprintf("%s:%d", name, u.line) != where {
			m += fmt.Sprintf(" (line %d)", u.line)
		}
		if near := nearestFunction(strings.Trim(u.key, `"`)); near != "" {
			m += ": did you mean " + near + "?"
		} else {
			listAll = true
		}
		msgs[i] = m
	}
	msg := strings.Join(msgs, "; ")
	if listAll {
		msg += " (the seven are " + strings.Join(functionNames[:], ", ") + ")"
	}
	return &ScriptError{Kind: KindLoad, Where: where, Msg: msg}
}

// nearestFunction is the function name closest to key (ignoring case,
// underscores and hyphens), or "" when none is close: within a quarter of
// its length in edits, and at least two.
func nearestFunction(key string) string {
	norm := func(s string) string {
		return strings.NewReplacer("_", "", "-", "").Replace(strings.ToLower(s))
	}
	k := norm(key)
	best, bestD := "", -1
	for _, f := range functionNames {
		d := levenshtein.ComputeDistance(k, norm(f))
		if d <= max(2, len(f)/4) && (bestD < 0 || d < bestD) {
			best, bestD = f, d
		}
	}
	return best
}
