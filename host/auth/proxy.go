package auth

import (
	"net/http"
	"net/netip"
	"strconv"
	"strings"
)

// The headers a trusted proxy may report the client's address in.
const (
	HeaderXForwardedFor = "X-Forwarded-For"
	HeaderForwarded     = "Forwarded" // RFC 7239
)

// TrustedProxies are the peers whose forwarding header is believed. Only
// one header is read (the other is ignored): a proxy that appends to
// X-Forwarded-For passes a client's forged Forwarded header through
// untouched, and the other way round, so believing both would let any
// client choose its address. A nil *TrustedProxies trusts no one. It is
// immutable and safe for concurrent use.
type TrustedProxies struct {
	prefixes []netip.Prefix
	header   string
}

// ParseTrustedProxies reads CIDRs ("10.0.0.0/8", "2001:db8::/32"; a bare
// address is one host) and the header those proxies write: "" or
// "X-Forwarded-For" (the default), or "Forwarded". A bad entry is an
// *OptionError (Field "TrustedProxies" with its Index, or "ForwardedHeader").
func ParseTrustedProxies(cidrs []string, header string) (*TrustedProxies, error) {
	t := &TrustedProxies{header: HeaderXForwardedFor}
	switch {
	case header == "" || strings.EqualFold(header, HeaderXForwardedFor):
	case strings.EqualFold(header, HeaderForwarded):
		t.header = HeaderForwarded
	default:
		return nil, optErr("ForwardedHeader", "%q is not %q or %q", header, HeaderXForwardedFor, HeaderForwarded)
	}
	for i, c := range cidrs {
		c = strings.TrimSpace(c)
		var p netip.Prefix
		var err error
		if strings.Contains(c, "/") {
			p, err = netip.ParsePrefix(c)
		} else {
			var a netip.Addr
			if a, err = netip.ParseAddr(c); err == nil {
				p = netip.PrefixFrom(a, a.BitLen())
			}
		}
		if err != nil {
			return nil, optErrAt("TrustedProxies", i, "%q is not a CIDR (like 10.0.0.0/8) or an IP address", c)
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0))
		}
		t.prefixes = append(t.prefixes, p.Masked())
	}
	return t, nil
}

// Trusts reports whether ip is one of the trusted proxies.
func (t *TrustedProxies) Trusts(ip netip.Addr) bool {
	if t == nil {
		return false
	}
	ip = ip.Unmap().WithZone("")
	for _, p := range t.prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// ClientAddr is the address a connection is known by: channel.remote_addr
// and the key of the per-address connection limit.
type ClientAddr struct {
	IP        netip.Addr // invalid when the peer address is not ip:port
	Port      uint16     // 0 when a proxy forwarded the address without one
	Forwarded bool       // read from a trusted proxy's header
	raw       string     // the peer as given, when IP is invalid
}

// String is "ip:port" ("[v6]:port"), or "ip" when the port is not known.
func (a ClientAddr) String() string {
	switch {
	case !a.IP.IsValid():
		return a.raw
	case a.Port == 0:
		return a.IP.String()
	}
	return netip.AddrPortFrom(a.IP, a.Port).String()
}

// ClientAddr returns the client's address given the TCP peer (the
// http.Request's RemoteAddr) and the request headers. When the peer is not
// a trusted proxy, the headers are ignored (anyone can write them) and the
// peer is the client. When it is, the header's list of hops is walked
// from the right (the hop nearest to us) to the left, skipping trusted
// proxies; the first untrusted address is the client. If every hop is
// trusted, the leftmost is. A hop that is not an address ("unknown", an
// RFC 7239 obfuscated name, garbage) ends the walk at the proxy that
// wrote it: nothing further left can be believed.
func (t *TrustedProxies) ClientAddr(peer string, h http.Header) ClientAddr {
	cur := parsePeer(peer)
	if !cur.IP.IsValid() || !t.Trusts(cur.IP) {
		return cur
	}
	var hops []string
	for _, line := range h.Values(t.header) {
		if t.header == HeaderForwarded {
			hops = append(hops, forwardedFor(line)...)
		} else {
			hops = append(hops, strings.Split(line, ",")...)
		}
	}
	for i := len(hops) - 1; i >= 0; i-- {
		a, ok := parseNode(strings.TrimSpace(hops[i]))
		if !ok {
			return cur
		}
		a.Forwarded = true
		cur = a
		if !t.Trusts(a.IP) {
			return cur
		}
	}
	return cur
}

func parsePeer(peer string) ClientAddr {
	ap, err := netip.ParseAddrPort(peer)
	if err != nil {
		return ClientAddr{raw: peer}
	}
	return ClientAddr{IP: ap.Addr().Unmap().WithZone(""), Port: ap.Port()}
}

// parseNode reads one hop: "192.0.2.1", "192.0.2.1:4711", "2001:db8::1",
// "[2001:db8::1]", "[2001:db8::1]:4711". An obfuscated port ("_x") is
// dropped; "unknown" and obfuscated names ("_hidden") are not addresses.
func parseNode(s string) (ClientAddr, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return ClientAddr{IP: a.Unmap().WithZone("")}, true
	}
	host, port := s, ""
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return ClientAddr{}, false
		}
		host, port = s[1:end], strings.TrimPrefix(s[end+1:], ":")
		if port == s[end+1:] && port != "" {
			return ClientAddr{}, false // something other than ":port" after "]"
		}
	} else if i := strings.LastIndexByte(s, ':'); i >= 0 {
		host, port = s[:i], s[i+1:]
	}
	a, err := netip.ParseAddr(host)
	if err != nil || (strings.Contains(host, ":") && !strings.HasPrefix(s, "[")) {
		return ClientAddr{}, false
	}
	out := ClientAddr{IP: a.Unmap().WithZone("")}
	if port != "" && !strings.HasPrefix(port, "_") {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			return ClientAddr{}, false
		}
		out.Port = uint16(n)
	}
	return out, true
}

// forwardedFor returns the for= value of each element of one Forwarded
// header line (RFC 7239 section 4), in order; an element without for= gives
// "" (not an address, which ends the walk). Quoted strings may hold ',' ';'
// and '\' escapes.
func forwardedFor(line string) []string {
	var out []string
	for _, elem := range splitQuoted(line, ',') {
		node := ""
		for _, pair := range splitQuoted(elem, ';') {
			name, value, ok := strings.Cut(strings.TrimSpace(pair), "=")
			if ok && strings.EqualFold(strings.TrimSpace(name), "for") {
				node = unquote(strings.TrimSpace(value))
			}
		}
		out = append(out, node)
	}
	return out
}

// splitQuoted splits s at sep outside double-quoted strings.
func splitQuoted(s string, sep byte) []string {
	var parts []string
	start, quoted := 0, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case !quoted && c == sep:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

// unquote removes the quotes and escapes of an RFC 7230 quoted-string; a
// token is returned as it is.
func unquote(v string) string {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return v
	}
	var b strings.Builder
	for i := 1; i < len(v)-1; i++ {
		if v[i] == '\\' && i+1 < len(v)-1 {
			i++
		}
		b.WriteByte(v[i])
	}
	return b.String()
}
