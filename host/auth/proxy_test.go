package auth

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestClientAddr(t *testing.T) {
	xff, err := ParseTrustedProxies([]string{"10.0.0.0/8", "2001:db8:1::/48", "192.0.2.10"}, "")
	if err != nil {
		t.Fatal(err)
	}
	fwd, err := ParseTrustedProxies([]string{"10.0.0.0/8"}, "forwarded")
	if err != nil {
		t.Fatal(err)
	}
	var none *TrustedProxies
	for _, tc := range []struct {
		name      string
		tp        *TrustedProxies
		peer      string
		header    http.Header
		want      string
		forwarded bool
	}{
		{"no header", xff, "10.0.0.1:5000", nil, "10.0.0.1:5000", false},
		{"untrusted peer, forged XFF ignored", xff, "203.0.113.5:4000", http.Header{"X-Forwarded-For": {"1.2.3.4"}}, "203.0.113.5:4000", false},
		{"no trusted proxies configured", none, "10.0.0.1:4000", http.Header{"X-Forwarded-For": {"1.2.3.4"}}, "10.0.0.1:4000", false},
		{"trusted peer, one hop", xff, "10.0.0.1:4000", http.Header{"X-Forwarded-For": {"198.51.100.7"}}, "198.51.100.7", true},
		{"client forges the left of the chain", xff, "10.0.0.1:4000", http.Header{"X-Forwarded-For": {"1.2.3.4, 198.51.100.7"}}, "198.51.100.7", true},
		{"two trusted hops skipped", xff, "10.0.0.1:4000", http.Header{"X-Forwarded-For": {"6.6.6.6, 198.51.100.7, 10.9.9.9, 192.0.2.10"}}, "198.51.100.7", true},
		{"chain over several header lines", xff, "10.0.0.1:4000", http.Header{"X-Forwarded-For": {"6.6.6.6, 198.51.100.7", "10.9.9.9"}}, "198.51.100.7", true},
		{"every hop trusted: the leftmost", xff, "10.0.0.1:4000", http.Header{"X-Forwarded-For": {"10.1.1.1, 10.2.2.2"}}, "10.1.1.1", true},
		{"garbage stops at the proxy that wrote it", xff, "10.0.0.1:4000", http.Header{"X-Forwarded-For": {"198.51.100.7, nonsense, 10.2.2.2"}}, "10.2.2.2", true},
		{"XFF with a port", xff, "10.0.0.1:4000", http.Header{"X-Forwarded-For": {"198.51.100.7:8443"}}, "198.51.100.7:8443", true},
		{"XFF IPv6, bracketed with port", xff, "[2001:db8:1::5]:4000", http.Header{"X-Forwarded-For": {"[2001:db8:2::9]:8443"}}, "[2001:db8:2::9]:8443", true},
		{"XFF IPv6 bare", xff, "[2001:db8:1::5]:4000", http.Header{"X-Forwarded-For": {"2001:db8:2::9"}}, "2001:db8:2::9", true},
		{"IPv4-mapped peer", xff, "[::ffff:10.0.0.1]:4000", http.Header{"X-Forwarded-For": {"::ffff:198.51.100.7"}}, "198.51.100.7", true},
		{"XFF reader ignores Forwarded", xff, "10.0.0.1:4000", http.Header{"Forwarded": {"for=1.2.3.4"}}, "10.0.0.1:4000", false},
		{"Forwarded", fwd, "10.0.0.1:4000", http.Header{"Forwarded": {`for=198.51.100.7;proto=https;by=10.0.0.1`}}, "198.51.100.7", true},
		{"Forwarded quoted IPv6 with port", fwd, "10.0.0.1:4000", http.Header{"Forwarded": {`For="[2001:db8:cafe::17]:4711"`}}, "[2001:db8:cafe::17]:4711", true},
		{"Forwarded chain, forged left", fwd, "10.0.0.1:4000", http.Header{"Forwarded": {`for=1.2.3.4, for=198.51.100.7;proto=http, for=10.3.3.3`}}, "198.51.100.7", true},
		{"Forwarded quoted comma", fwd, "10.0.0.1:4000", http.Header{"Forwarded": {`for=198.51.100.7;ext="a,b;c", for=10.3.3.3`}}, "198.51.100.7", true},
		{"Forwarded escaped quote", fwd, "10.0.0.1:4000", http.Header{"Forwarded": {`for=198.51.100.7;ext="a\",b", for=10.3.3.3`}}, "198.51.100.7", true},
		{"Forwarded obfuscated port", fwd, "10.0.0.1:4000", http.Header{"Forwarded": {`for="198.51.100.7:_p1"`}}, "198.51.100.7", true},
		{"Forwarded unknown", fwd, "10.0.0.1:4000", http.Header{"Forwarded": {`for=unknown`}}, "10.0.0.1:4000", false},
		{"Forwarded obfuscated node", fwd, "10.0.0.1:4000", http.Header{"Forwarded": {`for=6.6.6.6, for=_hidden, for=10.3.3.3`}}, "10.3.3.3", true},
		{"Forwarded element without for", fwd, "10.0.0.1:4000", http.Header{"Forwarded": {`for=6.6.6.6, proto=https`}}, "10.0.0.1:4000", false},
		{"Forwarded reader ignores XFF", fwd, "10.0.0.1:4000", http.Header{"X-Forwarded-For": {"1.2.3.4"}}, "10.0.0.1:4000", false},
		{"peer not ip:port", xff, "@", http.Header{"X-Forwarded-For": {"1.2.3.4"}}, "@", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.tp.ClientAddr(tc.peer, tc.header)
			if got.String() != tc.want || got.Forwarded != tc.forwarded {
				t.Fatalf("ClientAddr = %s (forwarded %v); want %s (forwarded %v)", got, got.Forwarded, tc.want, tc.forwarded)
			}
		})
	}
}

func TestParseTrustedProxiesErrors(t *testing.T) {
	for _, tc := range []struct {
		cidrs  []string
		header string
		field  string
		index  int
	}{
		{[]string{"10.0.0.0/8", "10.0.0/8"}, "", "TrustedProxies", 1},
		{[]string{"example.com"}, "", "TrustedProxies", 0},
		{[]string{"10.0.0.0/33"}, "", "TrustedProxies", 0},
		{nil, "X-Real-IP", "ForwardedHeader", -1},
	} {
		_, err := ParseTrustedProxies(tc.cidrs, tc.header)
		var oe *OptionError
		if !errors.As(err, &oe) || oe.Field != tc.field || oe.Index != tc.index {
			t.Errorf("ParseTrustedProxies(%q, %q) = %v; want an OptionError on %s[%d]", tc.cidrs, tc.header, err, tc.field, tc.index)
		}
	}
	// An IPv4-mapped CIDR matches the plain IPv4 addresses.
	tp, err := ParseTrustedProxies([]string{"::ffff:10.0.0.0/104"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := tp.ClientAddr("10.1.2.3:80", http.Header{"X-Forwarded-For": {"198.51.100.7"}}); got.String() != "198.51.100.7" {
		t.Fatalf("mapped CIDR: got %s", got)
	}
}

// Over a real connection: the peer is 127.0.0.1. A forged X-Forwarded-For
// is ignored unless loopback is a trusted proxy.
func TestClientAddrOverHTTP(t *testing.T) {
	for _, tc := range []struct {
		trusted []string
		want    string
	}{
		{[]string{"10.0.0.0/8"}, "127.0.0.1:"},
		{[]string{"127.0.0.0/8"}, "203.0.113.50"},
	} {
		tp, err := ParseTrustedProxies(tc.trusted, "")
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, tp.ClientAddr(r.RemoteAddr, r.Header).String())
		}))
		req, _ := http.NewRequest("GET", srv.URL, nil)
		req.Header.Set("X-Forwarded-For", "203.0.113.50")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		srv.Close()
		if got := string(b); !strings.HasPrefix(got, tc.want) || (tc.want == "203.0.113.50" && got != tc.want) {
			t.Fatalf("trusted %v: client address %q; want %q", tc.trusted, got, tc.want)
		}
	}
}
