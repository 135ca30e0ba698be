package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	toml "github.com/pelletier/go-toml/v2"
)

// Problem is one problem found in a configuration file.
type Problem struct {
	File   string // file name as given to Load or Parse
	Line   int    // 1-based line; 0 when the problem concerns the whole file
	Column int    // 1-based column; only set for TOML syntax errors
	Key    string // e.g. "server.listen" or "integration[2].script"; may be ""
	Msg    string
}

// String formats the problem as "file:line: key: msg" (":column" follows the
// line when known; the line and key are left out when unknown).
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		b.WriteString(":" + strconv.Itoa(p.Line))
		if p.Column > 0 {
			b.WriteString(":" + strconv.Itoa(p.Column))
		}
	}
	b.WriteString(": ")
	if p.Key != "" {
		b.WriteString(p.Key + ": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Error lists every problem found in a configuration file, ordered by
// line (problems about the whole file last).
type Error struct {
	Problems []Problem
}

// Error prints one problem per line, without a trailing newline.
func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Load reads and validates the file at path. Relative paths in it are
// resolved from the file's own folder, so the scripts of the result are
// absolute. Problems are named after path as given. A file that cannot be read
// gives the *fs.PathError of os.ReadFile; an invalid one a *Error, with
// the configuration as far as it could be read (each wrong value left at its
// default; nothing at all after a TOML syntax error).
func Load(path string) (Config, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return Config{}, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, err
	}
	return parseConfig(path, abs, filepath.Dir(abs), data)
}

// Parse parses data as if read from the named file: name is used in
// messages, and relative script paths are resolved from filepath.Dir(name)
// (and cleaned, so they stay relative if name is). Config.Path is name made
// absolute ("" if name is ""). Problems are reported as a *Error.
func Parse(name string, data []byte) (Config, error) {
	abs := ""
	if name != "" {
		var err error
		if abs, err = filepath.Abs(name); err != nil {
			return Config{}, err
		}
	}
	return parseConfig(name, abs, filepath.Dir(name), data)
}

// ParseFS parses data as the file name inside fsys (the configuration
// and scripts embedded in the binary): scripts are checked and later read in
// fsys, with paths relative to its root. Config.FS is fsys.
func ParseFS(fsys fs.FS, name string, data []byte) (Config, error) {
	cfg, err := parseConfigIn(fsys, name, "", ".", data)
	cfg.FS = fsys
	return cfg, err
}

// parseConfig decodes data into a generic map (so that only TOML syntax can
// stop decoding), then checks every key against the schema itself, so that
// unknown keys, wrong types and bad values are all reported together, each at
// the line of its key (found by buildKeyIndex). Decoding into typed structs
// would stop at the first type mismatch.
func parseConfig(name, abs, dir string, data []byte) (Config, error) {
	return parseConfigIn(nil, name, abs, dir, data)
}

func parseConfigIn(fsys fs.FS, name, abs, dir string, data []byte) (Config, error) {
	var doc map[string]any
	if err := toml.Unmarshal(data, &doc); err != nil {
		p := Problem{File: name, Msg: strings.TrimPrefix(err.Error(), "toml: ")}
		// Syntax errors stop the parse, so they are reported alone. The key
		// go-toml attaches (if any) is relative to the current table, so it is
		// left out: the message and position say enough.
		var de *toml.DecodeError
		if errors.As(err, &de) {
			p.Line, p.Column = de.Position()
		}
		return Config{}, &Error{Problems: []Problem{p}}
	}

	c := &checker{file: name, dir: dir, fsys: fsys, idx: buildKeyIndex(data)}
	cfg := Default()
	cfg.Path = abs
	c.config(doc, &cfg)
	if len(c.problems) > 0 {
		sort.SliceStable(c.problems, func(i, j int) bool {
			li, lj := c.problems[i].Line, c.problems[j].Line
			if li == 0 || lj == 0 {
				return lj == 0 && li != 0
			}
			return li < lj
		})
		// What could be read comes back with the error (defaults where a
		// value was wrong), so that check can still load the scripts.
		return cfg, &Error{Problems: c.problems}
	}
	return cfg, nil
}

// DisplayPath is how messages name a file: relative to the working folder
// when it is below it, else as it is.
func DisplayPath(p string) string {
	wd, err := os.Getwd()
	if err != nil || !filepath.IsAbs(p) {
		return p
	}
	if rel, err := filepath.Rel(wd, p); err == nil && !strings.HasPrefix(rel, "..") {
		return rel
	}
	return p
}
