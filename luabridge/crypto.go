package luabridge

// Primitives for custom authentication schemes in the `es` module: a
// script that checks a signed URL or a webhook-style signature needs a
// MAC, a hash, the encodings signatures travel in, and a comparison that
// does not leak where two strings differ.
//
// They are plain Go functions on strings (a Lua string is bytes), exposed
// to Lua through gopher-luar by cryptoFuncs. gopher-lua's timeout is not
// checked while a Go function runs, so each input is capped at
// maxCryptoInputBytes: hashing 1 MiB takes about a millisecond.
//
// In Lua, a function either returns its result, or nil and a message
// (es.hex_decode of bad input, an input over the cap): the input is often
// the client's, and a script must be able to refuse it rather than fail.
// An argument of the wrong type (a number, nil) is a script error.

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"

	lua "github.com/yuin/gopher-lua"
	luar "layeh.com/gopher-luar"
)

// maxCryptoInputBytes caps every input of the crypto primitives.
const maxCryptoInputBytes = 1 << 20

// checkSize refuses an input over maxCryptoInputBytes, naming the function
// and the argument.
func checkSize(fn, arg string, s string) error {
	if len(s) > maxCryptoInputBytes {
		return fmt.Errorf("es.%s: %s of %d bytes is over the limit of %d", fn, arg, len(s), maxCryptoInputBytes)
	}
	return nil
}

// encodeDigest renders a digest as enc asks: "" or "raw" (the bytes),
// "hex" (lower case) or "base64url" (unpadded).
func encodeDigest(fn string, sum []byte, enc string) (string, error) {
	switch enc {
	case "", "raw":
		return string(sum), nil
	case "hex":
		return hex.EncodeToString(sum), nil
	case "base64url":
		return base64.RawURLEncoding.EncodeToString(sum), nil
	}
	return "", fmt.Errorf(`es.%s: encoding %q is not "raw", "hex" or "base64url"`, fn, enc)
}

// HMACSHA256 is HMAC-SHA256 of data under key (RFC 2104), encoded as
// encodeDigest says.
func HMACSHA256(key, data, enc string) (string, error) {
	if err := checkSize("hmac_sha256", "key", key); err != nil {
		return "", err
	}
	if err := checkSize("hmac_sha256", "data", data); err != nil {
		return "", err
	}
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(data))
	return encodeDigest("hmac_sha256", m.Sum(nil), enc)
}

// SHA256 is the SHA-256 digest of data, encoded as encodeDigest says.
func SHA256(data, enc string) (string, error) {
	if err := checkSize("sha256", "data", data); err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(data))
	return encodeDigest("sha256", sum[:], enc)
}

// Base64URLEncode is the unpadded base64url of s (RFC 4648 section 5), as
// in JWTs.
func Base64URLEncode(s string) (string, error) {
	if err := checkSize("base64url_encode", "input", s); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString([]byte(s)), nil
}

// Base64URLDecode decodes base64url with or without its '=' padding.
func Base64URLDecode(s string) (string, error) {
	if err := checkSize("base64url_decode", "input", s); err != nil {
		return "", err
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		return "", fmt.Errorf("es.base64url_decode: %v", err)
	}
	return string(b), nil
}

// HexEncode is s in lower-case hex.
func HexEncode(s string) (string, error) {
	if err := checkSize("hex_encode", "input", s); err != nil {
		return "", err
	}
	return hex.EncodeToString([]byte(s)), nil
}

// HexDecode decodes hex of either case.
func HexDecode(s string) (string, error) {
	if err := checkSize("hex_decode", "input", s); err != nil {
		return "", err
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return "", fmt.Errorf("es.hex_decode: %v", err)
	}
	return string(b), nil
}

// ConstantTimeEquals reports whether a and b are equal in a time that
// depends on their lengths only, not on where they differ.
func ConstantTimeEquals(a, b string) (bool, error) {
	if err := checkSize("constant_time_equals", "first argument", a); err != nil {
		return false, err
	}
	if err := checkSize("constant_time_equals", "second argument", b); err != nil {
		return false, err
	}
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1, nil
}

// luaResult is a primitive's result as Lua sees it: the value, or nil and
// the message. luar turns a nil `any` into nil and a string or bool into
// its Lua value.
func luaResult[T any](v T, err error) (any, any) {
	if err != nil {
		return nil, err.Error()
	}
	return v, nil
}

// luaOpts reads the optional trailing arguments of a primitive called
// from Lua: up to n strings, nil meaning absent. Further arguments must be
// nil: a call as the last argument of another passes all its results, so
// es.hex_encode(es.sha256(s)) hands hex_encode the digest and the nil
// second result of sha256 (the value, or nil and a message: see
// luaResult). luar passes a fixed number of Go arguments, so the tail is a
// variadic ...any.
func luaOpts(fn string, n int, rest []any) ([]string, error) {
	opts := make([]string, n)
	for i, v := range rest {
		switch s, ok := v.(string); {
		case v == nil:
		case i < n && ok:
			opts[i] = s
		case i < n:
			return nil, fmt.Errorf("es.%s: optional argument %d is a %T, not a string", fn, i+1, v)
		default:
			return nil, fmt.Errorf("es.%s: takes at most %d optional argument(s), got %d", fn, n, len(rest))
		}
	}
	return opts, nil
}

// cryptoFuncs are the primitives by their Lua names, in the shape luar
// exposes: string arguments (luar raises a script error, with the line,
// for any other type), optional ones as a ...any tail (luaOpts), and a
// (value, message) result (luaResult).
var cryptoFuncs = map[string]any{
	"hmac_sha256": func(key, data string, rest ...any) (any, any) {
		o, err := luaOpts("hmac_sha256", 1, rest)
		if err != nil {
			return luaResult("", err)
		}
		return luaResult(HMACSHA256(key, data, o[0]))
	},
	"sha256": func(data string, rest ...any) (any, any) {
		o, err := luaOpts("sha256", 1, rest)
		if err != nil {
			return luaResult("", err)
		}
		return luaResult(SHA256(data, o[0]))
	},
	"base64url_encode": func(s string, rest ...any) (any, any) {
		return luaResult1("base64url_encode", Base64URLEncode, s, rest)
	},
	"base64url_decode": func(s string, rest ...any) (any, any) {
		return luaResult1("base64url_decode", Base64URLDecode, s, rest)
	},
	"hex_encode": func(s string, rest ...any) (any, any) { return luaResult1("hex_encode", HexEncode, s, rest) },
	"hex_decode": func(s string, rest ...any) (any, any) { return luaResult1("hex_decode", HexDecode, s, rest) },
	"constant_time_equals": func(a, b string, rest ...any) (any, any) {
		if _, err := luaOpts("constant_time_equals", 0, rest); err != nil {
			return luaResult(false, err)
		}
		return luaResult(ConstantTimeEquals(a, b))
	},
}

// luaResult1 calls a one-argument primitive that takes no options.
func luaResult1(fn string, f func(string) (string, error), s string, rest []any) (any, any) {
	if _, err := luaOpts(fn, 0, rest); err != nil {
		return luaResult("", err)
	}
	return luaResult(f(s))
}

// setCryptoFuncs adds the primitives to the table of the `es` module.
func setCryptoFuncs(L *lua.LState, mod *lua.LTable) {
	for name, f := range cryptoFuncs {
		mod.RawSetString(name, luar.New(L, f))
	}
}
