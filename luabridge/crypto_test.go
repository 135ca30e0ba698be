package luabridge

import (
	"strings"
	"testing"

	lua "github.com/yuin/gopher-lua"
)

// Known answers: RFC 4231 test case 2, FIPS 180-2 "abc", RFC 4648.
const (
	jefeHMAC = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
	abcSHA   = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
)

func TestCryptoKnownAnswers(t *testing.T) {
	for _, tc := range []struct {
		name string
		got  func() (string, error)
		want string
	}{
		{"hmac hex", func() (string, error) { return HMACSHA256("Jefe", "what do ya want for nothing?", "hex") }, jefeHMAC},
		{"hmac raw", func() (string, error) { return HMACSHA256("Jefe", "what do ya want for nothing?", "") }, mustHex(t, jefeHMAC)},
		{"hmac base64url", func() (string, error) { return HMACSHA256("Jefe", "what do ya want for nothing?", "base64url") }, "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM"},
		{"sha256 hex", func() (string, error) { return SHA256("abc", "hex") }, abcSHA},
		{"sha256 raw", func() (string, error) { return SHA256("abc", "raw") }, mustHex(t, abcSHA)},
		{"base64url encode", func() (string, error) { return Base64URLEncode("\xfb\xff\xbf") }, "-_-_"},
		{"base64url encode unpadded", func() (string, error) { return Base64URLEncode("\xfb\xff") }, "-_8"},
		{"base64url decode", func() (string, error) { return Base64URLDecode("-_8") }, "\xfb\xff"},
		{"base64url decode padded", func() (string, error) { return Base64URLDecode("-_8=") }, "\xfb\xff"},
		{"hex encode", func() (string, error) { return HexEncode("\x00\xab") }, "00ab"},
		{"hex decode upper", func() (string, error) { return HexDecode("00AB") }, "\x00\xab"},
	} {
		got, err := tc.got()
		if err != nil || got != tc.want {
			t.Errorf("%s = %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	for _, tc := range []struct {
		a, b string
		want bool
	}{{"abc", "abc", true}, {"abc", "abd", false}, {"abc", "ab", false}, {"", "", true}} {
		if got, err := ConstantTimeEquals(tc.a, tc.b); err != nil || got != tc.want {
			t.Errorf("ConstantTimeEquals(%q, %q) = %v, %v", tc.a, tc.b, got, err)
		}
	}
}

func mustHex(t *testing.T, s string) string {
	t.Helper()
	b, err := HexDecode(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Bad input and inputs over the cap are errors naming the function; an
// input at the cap is accepted.
func TestCryptoRefuses(t *testing.T) {
	atCap := strings.Repeat("a", maxCryptoInputBytes)
	over := atCap + "a"
	for _, tc := range []struct {
		name string
		err  func() error
		want string
	}{
		{"hex odd", func() error { _, err := HexDecode("abc"); return err }, "es.hex_decode: encoding/hex: odd length"},
		{"hex bad byte", func() error { _, err := HexDecode("zz"); return err }, "es.hex_decode: encoding/hex: invalid byte"},
		{"base64url std alphabet", func() error { _, err := Base64URLDecode("+/8"); return err }, "es.base64url_decode: illegal base64"},
		{"unknown encoding", func() error { _, err := SHA256("a", "base32"); return err }, `es.sha256: encoding "base32" is not`},
		{"hmac key over", func() error { _, err := HMACSHA256(over, "d", "hex"); return err }, "es.hmac_sha256: key of 1048577 bytes is over the limit of 1048576"},
		{"hmac data over", func() error { _, err := HMACSHA256("k", over, "hex"); return err }, "es.hmac_sha256: data of 1048577 bytes"},
		{"sha256 over", func() error { _, err := SHA256(over, ""); return err }, "es.sha256: data of 1048577"},
		{"base64url encode over", func() error { _, err := Base64URLEncode(over); return err }, "es.base64url_encode: input of 1048577"},
		{"base64url decode over", func() error { _, err := Base64URLDecode(over); return err }, "es.base64url_decode: input of 1048577"},
		{"hex encode over", func() error { _, err := HexEncode(over); return err }, "es.hex_encode: input of 1048577"},
		{"hex decode over", func() error { _, err := HexDecode(over); return err }, "es.hex_decode: input of 1048577"},
		{"compare over", func() error { _, err := ConstantTimeEquals("a", over); return err }, "es.constant_time_equals: second argument of 1048577"},
	} {
		err := tc.err()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want %q", tc.name, err, tc.want)
		}
	}
	for name, f := range map[string]func() error{
		"hmac":    func() error { _, err := HMACSHA256(atCap, atCap, "hex"); return err },
		"sha256":  func() error { _, err := SHA256(atCap, "hex"); return err },
		"b64 enc": func() error { _, err := Base64URLEncode(atCap); return err },
		"b64 dec": func() error { _, err := Base64URLDecode(atCap); return err },
		"hex enc": func() error { _, err := HexEncode(atCap); return err },
		"hex dec": func() error { _, err := HexDecode(atCap); return err },
		"compare": func() error { _, err := ConstantTimeEquals(atCap, atCap); return err },
	} {
		if err := f(); err != nil {
			t.Errorf("%s at the cap: %v", name, err)
		}
	}
}

// cryptoState is a bare gopher-lua state with the primitives, registered
// through gopher-luar, in a global table es.
func cryptoState(t testing.TB) *lua.LState {
	t.Helper()
	L := lua.NewState()
	t.Cleanup(L.Close)
	es := L.NewTable()
	setCryptoFuncs(L, es)
	L.SetGlobal("es", es)
	return L
}

// From Lua: a webhook-style check, nil plus a message for bad input, and a
// script error (with the chunk's line) for an argument of the wrong type.
func TestCryptoFromLua(t *testing.T) {
	L := cryptoState(t)
	script := `
local body = "what do ya want for nothing?"
local sig = es.hmac_sha256("Jefe", body, "hex")
assert(sig == "` + jefeHMAC + `", "hmac: " .. tostring(sig))
assert(es.constant_time_equals(sig, "` + jefeHMAC + `") == true, "equal")
assert(es.constant_time_equals(sig, "0` + jefeHMAC[1:] + `") == false, "differ")
assert(#es.hmac_sha256("Jefe", body) == 32, "raw by default")
assert(es.sha256("abc", "hex") == "` + abcSHA + `", "sha256")
assert(es.hex_encode(es.sha256("abc")) == "` + abcSHA + `", "raw sha256 then hex")
assert(es.base64url_decode(es.base64url_encode("\0\1\255")) == "\0\1\255", "base64url round trip")
assert(es.hex_decode("00ff") == "\0\255", "hex_decode")

local v, err = es.hex_decode("zz")
assert(v == nil and type(err) == "string" and err:find("es.hex_decode", 1, true), "bad hex: " .. tostring(err))
v, err = es.base64url_decode("***")
assert(v == nil and err:find("es.base64url_decode", 1, true), "bad base64url")
v, err = es.sha256(string.rep("a", 1048577))
assert(v == nil and err:find("over the limit of 1048576", 1, true), "over the cap: " .. tostring(err))
v, err = es.sha256("a", "hex", "extra")
assert(v == nil and err:find("takes at most 1 optional argument", 1, true), "extra argument: " .. tostring(err))
v, err = es.hex_encode("a", "b")
assert(v == nil and err:find("es.hex_encode: takes at most 0", 1, true), "extra argument: " .. tostring(err))
v, err = es.sha256("a", 16)
assert(v == nil and err:find("optional argument 1 is a float64", 1, true), "encoding not a string: " .. tostring(err))
assert(es.sha256("abc", nil) == es.sha256("abc"), "nil encoding is the default")
v, err = es.constant_time_equals("a", string.rep("b", 1048577))
assert(v == nil and err:find("second argument", 1, true), "compare over the cap")
`
	if err := L.DoString(script); err != nil {
		t.Fatalf("Lua: %v", err)
	}
	for _, tc := range []struct{ call, want string }{
		{"es.sha256(42)", "bad argument #1"},
		{"es.hex_encode(nil)", "cannot use nil as type string"},
		{"es.hmac_sha256('k')", "invalid number of function arguments"},
		{"es.sha256(es.hex_decode('zz'))", "cannot use nil as type string"},
	} {
		err := L.DoString("\n\n" + tc.call)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), ":3:") {
			t.Errorf("%s: %v; want a script error at line 3 saying %q", tc.call, err, tc.want)
		}
	}
}

// Hand-written equivalents, the reference of BenchmarkCryptoCall.
func hexEncodeLG(L *lua.LState) int {
	v, err := HexEncode(L.CheckString(1))
	return pushResult(L, v, err)
}

func hmacHexLG(L *lua.LState) int {
	v, err := HMACSHA256(L.CheckString(1), L.CheckString(2), L.OptString(3, ""))
	return pushResult(L, v, err)
}

func pushResult(L *lua.LState, v string, err error) int {
	if err != nil {
		L.Push(lua.LNil)
		L.Push(lua.LString(err.Error()))
		return 2
	}
	L.Push(lua.LString(v))
	return 1
}

// BenchmarkCryptoCall is the cost of one call from Lua through gopher-luar
// and, as the reference, through a hand-written lua.LGFunction doing the
// same, in a Lua loop of b.N calls.
//
//	go test -run '^$' -bench CryptoCall -benchmem ./luabridge
func BenchmarkCryptoCall(b *testing.B) {
	for _, tc := range []struct {
		name, fn string
		lg       lua.LGFunction
		setup    string // locals, then the arguments of the call
		args     string
	}{
		{"hex_encode-32B", "hex_encode", hexEncodeLG, `local a = string.rep("k", 32)`, "a"},
		{"hmac_sha256-hex-256B", "hmac_sha256", hmacHexLG, `local k, d = "secret-key", string.rep("d", 256)`, `k, d, "hex"`},
	} {
		for _, via := range []string{"luar", "LGFunction"} {
			b.Run(tc.name+"/"+via, func(b *testing.B) {
				L := cryptoState(b)
				if via == "LGFunction" {
					L.GetGlobal("es").(*lua.LTable).RawSetString(tc.fn, L.NewFunction(tc.lg))
				}
				if err := L.DoString(`function bench(n) local f = es.` + tc.fn + ` ` + tc.setup + ` for i = 1, n do f(` + tc.args + `) end end`); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				b.ResetTimer()
				if err := L.CallByParam(lua.P{Fn: L.GetGlobal("bench"), Protect: true}, lua.LNumber(b.N)); err != nil {
					b.Fatal(err)
				}
			})
		}
	}
}

// TestCryptoInESModule: a script reaches the primitives and its secrets
// through require("es"), and an unknown secret is an error naming it.
func TestCryptoInESModule(t *testing.T) {
	s := mustLoad(t, wsScript(`return { websocket_response = {
		mac = es.hmac_sha256(es.secret("jefe"), "what do ya want for nothing?", "hex"),
		sha = es.sha256("abc", "hex"), b64 = es.base64url_encode("\251\255"),
		hex = es.hex_decode("6869"), eq = es.constant_time_equals("a", "a") } }`),
		Options{Secrets: map[string]string{"jefe": "Jefe"}})
	got := string(wsOK(t, s, `{}`).Response)
	for _, want := range []string{`"mac":"` + jefeHMAC + `"`, `"sha":"` + abcSHA + `"`, `"b64":"-_8"`, `"hex":"hi"`, `"eq":true`} {
		if !strings.Contains(got, want) {
			t.Errorf("response %s lacks %s", got, want)
		}
	}
	s2 := mustLoad(t, wsScript(`return { websocket_response = { v = es.secret("nope") } }`), Options{})
	_, err := runWS(t, s2, `{}`)
	if err == nil || !strings.Contains(err.Error(), `no secret named "nope"`) {
		t.Fatalf("es.secret of an unknown name: %v", err)
	}
}
