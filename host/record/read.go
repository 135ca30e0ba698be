package record

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/electric-socket/electric-socket/host/engine"
)

// File is one connection's record, read back.
type File struct {
	Path      string
	Header    Header
	Events    []Event
	Truncated bool // the record reached MaxFileBytes: later events are missing
}

// Event is a recorded event and the line of the file that holds it.
type Event struct {
	Line int
	*engine.Recorded
}

// Read reads the record at path. Its errors name path:line.
func Read(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	f := &File{Path: path}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, MaxFileBytes)
	n := 0
	for sc.Scan() {
		n++
		text := sc.Bytes()
		if len(bytes.TrimSpace(text)) == 0 {
			continue
		}
		if n == 1 {
			if err := strictUnmarshal(text, &f.Header); err != nil {
				return nil, fmt.Errorf("%s:%d: not a record header: %v", path, n, err)
			}
			if f.Header.Record != Version {
				return nil, fmt.Errorf("%s:%d: record format %d; this version reads %d", path, n, f.Header.Record, Version)
			}
			continue
		}
		var l line
		if err := strictUnmarshal(text, &l); err != nil {
			return nil, fmt.Errorf("%s:%d: %v", path, n, err)
		}
		if l.Truncated {
			f.Truncated = true
			break
		}
		ev, err := decode(l)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %v", path, n, err)
		}
		f.Events = append(f.Events, Event{Line: n, Recorded: ev})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s:%d: %v", path, n+1, err)
	}
	if n == 0 {
		return nil, fmt.Errorf("%s: empty, not a record", path)
	}
	return f, nil
}

func strictUnmarshal(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	return d.Decode(v)
}

// Find returns the record files (*.jsonl) under each path (a file is taken
// as it is), sorted.
func Find(paths []string) ([]string, error) {
	var files []string
	for _, p := range paths {
		info, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !info.IsDir() {
			files = append(files, p)
			continue
		}
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasSuffix(d.Name(), ".jsonl") {
				files = append(files, path)
			}
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	sort.Strings(files)
	return files, nil
}
