package config

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/electric-socket/electric-socket/broker"
	toml "github.com/pelletier/go-toml/v2"
	"github.com/redis/go-redis/v9"
)

// str stores a string value, reporting other types.
func (c *checker) str(key string, v any, dst *string) bool {
	s, ok := v.(string)
	if !ok {
		c.add(key, "expected a string, got %s", typeName(v))
		return false
	}
	*dst = s
	return true
}

func (c *checker) boolean(key string, v any, dst *bool) {
	x, ok := v.(bool)
	if !ok {
		c.add(key, "expected a boolean, got %s", typeName(v))
		return
	}
	*dst = x
}

// intIn checks an integer in [lo, hi]; hi < 0 means no upper bound.
func (c *checker) intIn(dst *int, lo, hi int64) func(string, any) {
	return func(key string, v any) {
		n, ok := v.(int64)
		switch {
		case !ok:
			c.add(key, "expected an integer, got %s", typeName(v))
		case hi < 0 && n > math.MaxInt:
			c.add(key, "must be at most %d", math.MaxInt)
		case hi < 0 && n < lo && lo == 0:
			c.add(key, "must not be negative")
		case hi < 0 && n < lo:
			c.add(key, "must be at least %d", lo)
		case hi >= 0 && (n < lo || n > hi):
			c.add(key, "must be between %d and %d", lo, hi)
		default:
			*dst = int(n)
		}
	}
}

// duration checks a duration string; positive demands > 0, else >= 0.
func (c *checker) duration(dst *time.Duration, positive bool) func(string, any) {
	return func(key string, v any) {
		s, ok := v.(string)
		if !ok {
			c.add(key, `expected a duration string such as "10s", got %s`, typeName(v))
			return
		}
		d, err := time.ParseDuration(s)
		switch {
		case err != nil:
			c.add(key, `invalid duration %q: want a number and a unit with no space, such as "1s", "250ms" or "1m30s" (units: ms, s, m, h)`, s)
		case positive && d <= 0:
			c.add(key, "must be greater than 0")
		case d < 0:
			c.add(key, "must not be negative")
		default:
			*dst = d
		}
	}
}

// oneOf checks a string among valid.
func (c *checker) oneOf(dst *string, valid []string) func(string, any) {
	return func(key string, v any) {
		var s string
		if !c.str(key, v, &s) {
			return
		}
		for _, x := range valid {
			if s == x {
				*dst = s
				return
			}
		}
		c.add(key, "must be one of %s; got %q", quoteList(valid), s)
	}
}

func quoteList(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = strconv.Quote(x)
	}
	return strings.Join(q, ", ")
}

func (c *checker) listen(key, addr string) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		c.add(key, "invalid address %q: want host:port", addr)
	}
}

func (c *checker) redisURL(key, raw string) {
	u, err := url.Parse(raw)
	if err != nil || raw == "" {
		c.add(key, "invalid redis URL %q", raw)
		return
	}
	for _, s := range redisScheme {
		if u.Scheme == s {
			c.redisOptions(key, raw)
			return
		}
	}
	c.add(key, "invalid redis URL %q: scheme must be one of %s", raw, quoteList(redisScheme))
}

// redisOptions reports what go-redis rejects in a URL whose scheme is
// valid (an unknown query parameter, a sentinel URL without master_name).
// The URL is shown with its password replaced by "xxxxx".
func (c *checker) redisOptions(key, raw string) {
	if err := broker.CheckRedisURL(raw); err != nil {
		shown := raw
		if u, perr := url.Parse(raw); perr == nil {
			shown = u.Redacted()
		}
		c.add(key, "invalid redis URL %q: %v", shown, err)
	}
}

// integrations checks the [[integration]] array at key.
func (c *checker) integrations(key string, v any) []IntegrationConfig {
	list, ok := v.([]any)
	if !ok {
		c.add(key, "expected an array of tables ([[integration]]), got %s", typeName(v))
		return nil
	}
	if len(list) == 0 {
		c.add(key, "at least one [[integration]] is required")
		return nil
	}
	type first struct {
		key  string
		line int
	}
	names := map[string]first{}
	paths := map[string]first{}
	out := make([]IntegrationConfig, 0, len(list))
	for i, e := range list {
		ik := indexKey(key, i+1)
		t, ok := c.table(ik, e)
		if !ok {
			continue
		}
		ic := IntegrationConfig{Line: c.idx.line(ik)}
		c.fields(ik, t,
			field{"name", func(k string, v any) {
				if !c.str(k, v, &ic.Name) {
					return
				}
				if !bareKey.MatchString(ic.Name) {
					c.add(k, "must match ^[A-Za-z0-9_-]+$; got %q", ic.Name)
					return
				}
				if f, dup := names[ic.Name]; dup {
					c.add(k, "duplicate name %q (also used by %s at line %d)", ic.Name, f.key, f.line)
					return
				}
				names[ic.Name] = first{ik, ic.Line}
			}},
			field{"path", func(k string, v any) {
				if !c.str(k, v, &ic.Path) {
					return
				}
				if !strings.HasPrefix(ic.Path, "/") {
					c.add(k, `must start with "/"; got %q`, ic.Path)
					return
				}
				if f, dup := paths[ic.Path]; dup {
					c.add(k, "duplicate path %q (also used by %s at line %d)", ic.Path, f.key, f.line)
					return
				}
				paths[ic.Path] = first{ik, ic.Line}
			}},
			field{"script", func(k string, v any) {
				var s string
				if c.str(k, v, &s) {
					ic.Script = c.script(k, s)
				}
			}},
			field{"auth", func(k string, v any) { ic.Auth = c.integrationAuth(k, v) }},
			field{"record", func(k string, v any) {
				var s string
				if c.str(k, v, &s) {
					if ic.Record = c.recordDir(k, s); ic.Record != "" {
						ic.RecordLine = c.idx.line(k)
					}
				}
			}},
		)
		for _, req := range []string{"name", "path", "script"} {
			if _, ok := t[req]; !ok {
				c.addAt(ic.Line, joinKey(ik, req), "missing required key")
			}
		}
		out = append(out, ic)
	}
	return out
}

// script resolves a script path from the config folder and checks that it is
// an existing regular file. Messages name the path as written.
func (c *checker) script(key, s string) string {
	if strings.TrimSpace(s) == "" {
		c.add(key, "must not be empty")
		return ""
	}
	return c.resolve(key, s, "file", func(fi fs.FileInfo) bool { return fi.Mode().IsRegular() }, "not a regular file")
}

// recordDir resolves a record folder from the config folder: it need not
// exist yet (the server creates it), but what is there must be a folder.
func (c *checker) recordDir(key, s string) string {
	if s == "" {
		return "" // off, the default
	}
	if strings.TrimSpace(s) == "" {
		c.add(key, `must be a folder, or "" to record nothing; got %q`, s)
		return ""
	}
	p := filepath.Clean(s)
	if !filepath.IsAbs(p) {
		p = filepath.Join(c.dir, p)
	}
	if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
		c.add(key, "%s: not a folder", s)
	}
	return p
}

// resolve makes s absolute from the config folder (or a path inside the
// embedded files), and reports when it does not exist (no such what) or
// is not what ok accepts (wrong).
func (c *checker) resolve(key, s, what string, ok func(fs.FileInfo) bool, wrong string) string {
	p := filepath.Clean(s)
	if !filepath.IsAbs(p) {
		p = filepath.Join(c.dir, p)
	}
	var fi fs.FileInfo
	var err error
	if c.fsys != nil {
		p = filepath.ToSlash(p)
		fi, err = fs.Stat(c.fsys, p)
	} else {
		fi, err = os.Stat(p)
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		c.add(key, "%s: no such %s", s, what)
	case err != nil:
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		c.add(key, "%s: %v", s, err)
	case !ok(fi):
		c.add(key, "%s: %s", s, wrong)
	}
	return p
}

// stringTable checks a table of strings (such as [sink] headers).
func (c *checker) stringTable(key string, v any) map[string]string {
	t, ok := c.table(key, v)
	if !ok {
		return nil
	}
	out := make(map[string]string, len(t))
	for _, name := range sortedKeys(t) {
		var s string
		if c.str(joinKey(key, name), t[name], &s) {
			out[name] = s
		}
	}
	return out
}

// sinkURL checks the [sink] url against the sink's kind: the webhook needs
// an http(s) URL; redis_stream a URL go-redis's single-server client takes,
// its own or else the broker's.
func (c *checker) sinkURL(sk *SinkConfig, brokerURL string) {
	switch sk.Kind {
	case "webhook":
		if sk.URL == "" {
			c.add("sink.url", `required when sink.kind is "webhook"`)
			return
		}
		u, err := url.Parse(sk.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			c.add("sink.url", "invalid webhook URL %q: want http://host/... or https://host/...", sk.URL)
		}
	case "redis_stream":
		raw, from := sk.URL, ""
		if raw == "" {
			raw, from = brokerURL, " (from broker.url; set sink.url)"
			sk.URL = brokerURL
		}
		if err := CheckStreamURL(raw); err != nil {
			shown := raw
			if u, perr := url.Parse(raw); perr == nil {
				shown = u.Redacted()
			}
			c.add("sink.url", "invalid redis URL %q%s: %v", shown, from, err)
		}
	}
}

// folder resolves a folder path from the config folder (or inside the
// embedded files) and checks that it is an existing directory.
func (c *checker) folder(key, s string) string {
	if strings.TrimSpace(s) == "" {
		return ""
	}
	return c.resolve(key, s, "folder", fs.FileInfo.IsDir, "not a folder")
}

// typeName names the TOML type of a decoded value.
func typeName(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case int64:
		return "integer"
	case float64:
		return "float"
	case bool:
		return "boolean"
	case time.Time:
		return "datetime"
	case toml.LocalDateTime:
		return "local datetime"
	case toml.LocalDate:
		return "local date"
	case toml.LocalTime:
		return "local time"
	case []any:
		return "array"
	case map[string]any:
		return "table"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// CheckStreamURL reports a URL the stream sink cannot use: it takes
// go-redis's single-server URLs.
func CheckStreamURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	switch u.Scheme {
	case "redis", "rediss", "unix":
	default:
		return fmt.Errorf(`scheme must be one of "redis", "rediss", "unix"`)
	}
	_, err = redis.ParseURL(raw)
	return err
}
