package config

import (
	"regexp"
	"sort"
	"strconv"

	"github.com/pelletier/go-toml/v2/unstable"
)

// keyIndex maps the path of every key, table header and array element of a
// TOML document to the 1-based line where it first appears.
//
// Paths are written the way problems name them: parts joined by ".", array
// elements (both [[array]] tables and inline array elements) suffixed with
// their 1-based index, e.g. "server.listen" or "integration[2].script". Parts
// that are not bare keys are quoted (see joinKey).
type keyIndex map[string]int

// line returns the line of path, or of its closest ancestor present in the
// index, or 0 when none is.
func (ix keyIndex) line(path string) int {
	for path != "" {
		if l, ok := ix[path]; ok {
			return l
		}
		path = parentPath(path)
	}
	return 0
}

// setFirst records line for path unless path is already known.
func (ix keyIndex) setFirst(path string, line int) {
	if _, ok := ix[path]; !ok {
		ix[path] = line
	}
}

var bareKey = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// joinKey appends the key part name to the path prefix, quoting the part if
// it is not a bare TOML key.
func joinKey(prefix, name string) string {
	if !bareKey.MatchString(name) {
		name = strconv.Quote(name)
	}
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

// indexKey returns path with the 1-based array index i appended.
func indexKey(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

// parentPath strips the last part (".name" or "[i]") of path, ignoring
// separators inside quoted parts. It returns "" for a single-part path.
func parentPath(path string) string {
	cut := 0
	inQuote := false
	for i := 0; i < len(path); i++ {
		c := path[i]
		switch {
		case inQuote && c == '\\':
			i++ // skip the escaped byte
		case c == '"':
			inQuote = !inQuote
		case !inQuote && (c == '.' || c == '['):
			cut = i
		}
	}
	return path[:cut]
}

// indexer builds a keyIndex from the unstable parser's expressions.
type indexer struct {
	ix         keyIndex
	lineStarts []int          // byte offset of the start of each line
	arrays     map[string]int // path of an array table -> elements so far
}

// buildKeyIndex indexes data, which must be a syntactically valid TOML
// document (it is decoded first). Anything after a parse error is ignored.
func buildKeyIndex(data []byte) keyIndex {
	in := &indexer{
		ix:         keyIndex{},
		lineStarts: []int{0},
		arrays:     map[string]int{},
	}
	for i, c := range data {
		if c == '\n' {
			in.lineStarts = append(in.lineStarts, i+1)
		}
	}

	var p unstable.Parser
	p.Reset(data)
	table := "" // path of the current [table] or [[array]] element
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			table = in.header(e)
		case unstable.KeyValue:
			in.keyValue(table, e)
		}
	}
	return in.ix
}

// lineOf returns the 1-based line of the start of a node's raw range.
func (in *indexer) lineOf(n *unstable.Node) int {
	off := int(n.Raw.Offset)
	return sort.Search(len(in.lineStarts), func(i int) bool { return in.lineStarts[i] > off })
}

// header records a [table] or [[array]] header and returns its path.
func (in *indexer) header(e *unstable.Node) string {
	var parts []*unstable.Node
	it := e.Key()
	for it.Next() {
		parts = append(parts, it.Node())
	}
	path := ""
	for i, k := range parts {
		line := in.lineOf(k)
		path = joinKey(path, string(k.Data))
		in.ix.setFirst(path, line)
		if i == len(parts)-1 && e.Kind == unstable.ArrayTable {
			in.arrays[path]++
			path = indexKey(path, in.arrays[path])
			in.ix.setFirst(path, line)
		} else if n, ok := in.arrays[path]; ok {
			// [a.b] or [[a.b]] after [[a]] refers to the last element of a.
			path = indexKey(path, n)
		}
	}
	return path
}

// keyValue records a (possibly dotted) key-value under the table path base,
// descending into inline tables and arrays.
func (in *indexer) keyValue(base string, kv *unstable.Node) {
	path := base
	line := 0
	it := kv.Key()
	for it.Next() {
		k := it.Node()
		line = in.lineOf(k)
		path = joinKey(path, string(k.Data))
		in.ix.setFirst(path, line)
	}
	in.value(path, line, kv.Value())
}

// value records the contents of a value found at path on line.
func (in *indexer) value(path string, line int, v *unstable.Node) {
	switch v.Kind {
	case unstable.InlineTable:
		it := v.Children()
		for it.Next() {
			if c := it.Node(); c.Kind == unstable.KeyValue {
				in.keyValue(path, c)
			}
		}
	case unstable.Array:
		i := 0
		it := v.Children()
		for it.Next() {
			c := it.Node()
			if c.Kind == unstable.Comment {
				continue
			}
			i++
			l := line
			if c.Raw.Length > 0 {
				l = in.lineOf(c)
			}
			p := indexKey(path, i)
			in.ix.setFirst(p, l)
			in.value(p, l, c)
		}
	}
}
