package host

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

//go:embed all:starter
var starter embed.FS

// WriteStarter writes a starter project into dir: a config.toml, an
// integration and its fixture test, which serve and pass as written, and
// a .luarc.json for editors (lua-language-server), with the files of extra
// (the es module's annotations, scripts/types/...) at their own paths. It
// refuses to overwrite existing files.
func WriteStarter(dir string, extra fs.FS) ([]string, error) {
	root, _ := fs.Sub(starter, "starter")
	type file struct {
		fsys fs.FS
		path string
	}
	var files []file
	for _, fsys := range []fs.FS{root, extra} {
		if fsys == nil {
			continue
		}
		err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			files = append(files, file{fsys, p})
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	for _, f := range files {
		if _, err := os.Stat(filepath.Join(dir, f.path)); err == nil {
			return nil, fmt.Errorf("init: %s already exists; nothing was written", filepath.Join(dir, f.path))
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("init: %w", err)
		}
	}
	var written []string
	for _, f := range files {
		data, err := fs.ReadFile(f.fsys, f.path)
		if err != nil {
			return written, err
		}
		dst := filepath.Join(dir, f.path)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return written, fmt.Errorf("init: %w", err)
		}
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			return written, fmt.Errorf("init: %w", err)
		}
		written = append(written, dst)
	}
	return written, nil
}
