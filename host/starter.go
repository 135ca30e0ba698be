package host

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

//go:embed starter
var starter embed.FS

// WriteStarter writes a starter project into dir: a config.toml, an
// integration and its fixture test, which serve and pass as written. It
// refuses to overwrite existing files.
func WriteStarter(dir string) ([]string, error) {
	root, _ := fs.Sub(starter, "starter")
	var files []string
	err := fs.WalkDir(root, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		files = append(files, p)
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return nil, fmt.Errorf("init: %s already exists; nothing was written", filepath.Join(dir, f))
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("init: %w", err)
		}
	}
	var written []string
	for _, f := range files {
		data, err := fs.ReadFile(root, f)
		if err != nil {
			return written, err
		}
		dst := filepath.Join(dir, f)
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
