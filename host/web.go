package host

import (
	"io/fs"
	"net/http"
	"os"
	"path"
	"strings"

	"github.com/electric-socket/electric-socket/host/config"
)

// newWebHandler serves the [web] root folder (from the embedded files when
// the configuration is the embedded one): GET and HEAD only, a folder's
// index.html for the folder, no listings and no dot-files.
func newWebHandler(cfg config.Config) (http.Handler, error) {
	var fsys fs.FS
	if cfg.FS != nil {
		sub, err := fs.Sub(cfg.FS, cfg.Web.Root)
		if err != nil {
			return nil, err
		}
		fsys = sub
	} else {
		fsys = os.DirFS(cfg.Web.Root)
	}
	files := http.FileServerFS(fsys)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		p := path.Clean("/" + r.URL.Path)
		if strings.Contains(p, "/.") {
			http.NotFound(w, r)
			return
		}
		if strings.HasSuffix(r.URL.Path, "/") {
			if _, err := fs.Stat(fsys, strings.TrimPrefix(path.Join(p, "index.html"), "/")); err != nil {
				http.NotFound(w, r) // no directory listings
				return
			}
		}
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	}), nil
}
