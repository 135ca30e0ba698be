package config

import (
	"errors"
	"io/fs"
	"net/url"
	"os"
	"strings"

	"github.com/electric-socket/electric-socket/host/auth"
)

// AuthConfig is an integration's [integration.auth] table: how the host
// verifies a signed token (JWT) before the script sees the connection.
// Options holds the keys read already: the secret from its environment
// variable or file, the PEM public keys from their files.
type AuthConfig struct {
	Options auth.Options
	Line    int // line of the table's header, for errors found when it is used
	Key     string
}

// authKeys maps the fields of auth.OptionError to the config keys that set
// them, so a refusal of auth.New names the key.
var authKeys = map[string]string{
	"HMACSecret": "secret_env", "PublicKeys": "public_keys", "JWKSURL": "jwks_url",
	"Algorithms": "algorithms", "Leeway": "leeway", "Audience": "audience",
	"MaxTokenBytes": "max_token_bytes", "QueryParam": "token_query",
}

// integrationAuth checks the [integration.auth] table at key.
func (c *checker) integrationAuth(key string, v any) *AuthConfig {
	t, ok := c.table(key, v)
	if !ok {
		return nil
	}
	ac := &AuthConfig{Line: c.idx.line(key), Key: key}
	o := &ac.Options
	closeOnExpiry := true
	n := len(c.problems)
	var secretKeys []string
	c.fields(key, t,
		field{"secret_env", func(k string, v any) {
			var name string
			if !c.str(k, v, &name) {
				return
			}
			secretKeys = append(secretKeys, k)
			o.HMACSecret = []byte(os.Getenv(name))
			if name == "" || len(o.HMACSecret) == 0 {
				c.add(k, "the environment variable %q is not set or empty", name)
			}
		}},
		field{"secret_file", func(k string, v any) {
			var p string
			if !c.str(k, v, &p) {
				return
			}
			secretKeys = append(secretKeys, k)
			if b, ok := c.readFile(k, p); ok {
				o.HMACSecret = []byte(strings.TrimRight(string(b), "\r\n"))
				if len(o.HMACSecret) == 0 {
					c.add(k, "%s is empty", p)
				}
			}
		}},
		field{"public_keys", func(k string, v any) {
			for _, p := range c.strings(k, v) {
				if b, ok := c.readFile(k, p); ok {
					o.PublicKeys = append(o.PublicKeys, auth.PublicKey{PEM: b})
				}
			}
		}},
		field{"jwks_url", func(k string, v any) { c.str(k, v, &o.JWKSURL) }},
		field{"algorithms", func(k string, v any) { o.Algorithms = c.strings(k, v) }},
		field{"leeway", c.duration(&o.Leeway, false)},
		field{"issuer", func(k string, v any) { c.str(k, v, &o.Issuer) }},
		field{"audience", func(k string, v any) {
			if s, ok := v.(string); ok {
				o.Audience = []string{s}
				return
			}
			o.Audience = c.strings(k, v)
		}},
		field{"max_token_bytes", c.intIn(&o.MaxTokenBytes, 16, 1<<20)},
		field{"token_query", func(k string, v any) { c.str(k, v, &o.QueryParam) }},
		field{"token_header", func(k string, v any) { c.boolean(k, v, &o.BearerHeader) }},
		field{"token_cookie", func(k string, v any) { c.str(k, v, &o.Cookie) }},
		field{"token_subprotocol", func(k string, v any) { c.boolean(k, v, &o.Subprotocol) }},
		field{"token_field", func(k string, v any) { c.str(k, v, &o.MessageField) }},
		field{"close_on_expiry", func(k string, v any) { c.boolean(k, v, &closeOnExpiry) }},
	)
	o.KeepAfterExpiry = !closeOnExpiry
	if len(secretKeys) > 1 {
		c.add(secretKeys[1], "give the secret once: secret_env or secret_file")
	}
	if len(c.problems) > n {
		return ac
	}
	// auth.New checks the rest (a key given, a source, PEM that parses,
	// algorithms that fit the keys); a JWKS is not fetched here.
	if len(o.HMACSecret) == 0 && len(o.PublicKeys) == 0 && o.JWKSURL == "" {
		c.add(key, "no key: give secret_env, secret_file, public_keys or jwks_url")
		return ac
	}
	if !o.BearerHeader && !o.Subprotocol && o.QueryParam == "" && o.Cookie == "" && o.MessageField == "" {
		c.add(key, "no token source: set token_query, token_header, token_cookie, token_subprotocol or token_field")
		return ac
	}
	probe := *o
	var err error
	if probe.JWKSURL != "" {
		if u, perr := url.Parse(o.JWKSURL); perr != nil || u.Scheme != "https" || u.Host == "" {
			c.add(joinKey(key, "jwks_url"), "%q is not an https:// URL (keys fetched in clear could be replaced on the way)", o.JWKSURL)
			return ac
		}
		probe.JWKSURL = ""
		if len(probe.HMACSecret) == 0 && len(probe.PublicKeys) == 0 {
			probe.HMACSecret = []byte("probe") // the JWKS stands for the keys
		}
	}
	if len(probe.Algorithms) == 0 || o.JWKSURL == "" {
		var v2 *auth.Verifier
		if v2, err = auth.New(probe); v2 != nil {
			v2.Close()
		}
	}
	if err != nil {
		k, msg := key, strings.TrimPrefix(err.Error(), "auth: ")
		var oe *auth.OptionError
		if errors.As(err, &oe) {
			msg = oe.Msg
			if name := authKeys[oe.Field]; name != "" {
				if _, set := t[name]; set {
					k = joinKey(key, name)
				} else if name == "secret_env" && secretKeys != nil {
					k = secretKeys[0]
				}
			}
		}
		c.add(k, "%s", msg)
	}
	return ac
}

// readFile reads the file p names (from the config's folder) for key.
func (c *checker) readFile(key, p string) ([]byte, bool) {
	full := c.script(key, p)
	if full == "" {
		return nil, false
	}
	var b []byte
	var err error
	if c.fsys != nil {
		b, err = fs.ReadFile(c.fsys, full)
	} else {
		b, err = os.ReadFile(full)
	}
	if err != nil {
		if len(c.problems) == 0 || c.problems[len(c.problems)-1].Key != key {
			c.add(key, "%s: %v", p, err)
		}
		return nil, false
	}
	return b, true
}

// strings checks an array of strings.
func (c *checker) strings(key string, v any) []string {
	list, ok := v.([]any)
	if !ok {
		c.add(key, "expected an array of strings, got %s", typeName(v))
		return nil
	}
	out := make([]string, 0, len(list))
	for _, e := range list {
		s, ok := e.(string)
		if !ok {
			c.add(key, "expected strings, got %s", typeName(e))
			continue
		}
		out = append(out, s)
	}
	return out
}

// secrets checks the [secrets] table: name = "ENV_VAR", each read from the
// environment now, for es.secret(name).
func (c *checker) secrets(key string, v any) map[string]string {
	names := c.stringTable(key, v)
	out := make(map[string]string, len(names))
	for name, env := range names {
		val, ok := os.LookupEnv(env)
		if !ok || val == "" {
			c.add(joinKey(key, name), "the environment variable %q is not set or empty", env)
			continue
		}
		out[name] = val
	}
	return out
}

// trustedProxies checks [server] trusted_proxies with forwarded_header.
func (c *checker) trustedProxies(s *ServerConfig) {
	if _, err := auth.ParseTrustedProxies(s.TrustedProxies, s.ForwardedHeader); err != nil {
		k := "server.trusted_proxies"
		var oe *auth.OptionError
		if errors.As(err, &oe) && oe.Field == "ForwardedHeader" {
			k = "server.forwarded_header"
		}
		msg := strings.TrimPrefix(err.Error(), "auth: ")
		if oe != nil {
			msg = oe.Msg
		}
		c.add(k, "%s", msg)
	}
}
