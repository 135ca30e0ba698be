package auth

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
)

// The Sec-WebSocket-Protocol form of a token. Browsers cannot set headers
// on a WebSocket, but they can offer subprotocols, so the client offers
// two: Subprotocol and SubprotocolPrefix+token,
//
//	new WebSocket(url, ["es", "es.token." + jwt])
//
// (a JWT is base64url and dots, all valid in a protocol name). The server
// must then answer with exactly one of the offered protocols or the browser
// fails the connection: it answers Subprotocol ("es"), never the entry
// carrying the token, so the token is not echoed into response headers.
// A client that offers only the token entry gets no protocol back, which a
// browser refuses.
const (
	Subprotocol       = "es"
	SubprotocolPrefix = "es.token."
)

// AcceptSubprotocol is the protocol selector for the upgrade
// (ws.HTTPUpgrader.Protocol): it selects Subprotocol and nothing else.
func AcceptSubprotocol(p string) bool { return p == Subprotocol }

// FromRequest verifies the token of a WebSocket handshake, before the
// upgrade. It reads the sources Options enable in the order BearerHeader,
// Subprotocol, QueryParam, Cookie and verifies the first token present.
// With no token it returns ErrMissing: the caller then refuses the
// upgrade (401), or, when ReadsFirstMessage, upgrades and calls
// FromMessage on the first message. r.Context() bounds a JWKS refresh.
func (v *Verifier) FromRequest(r *http.Request) (Claims, error) {
	tok, err := v.tokenFromRequest(r)
	if err != nil {
		return Claims{}, err
	}
	if tok == "" {
		return Claims{}, v.missing()
	}
	return v.Verify(r.Context(), tok)
}

// ReadsFirstMessage reports whether a handshake without a token may
// authenticate with its first message (Options.MessageField).
func (v *Verifier) ReadsFirstMessage() bool { return v.opts.MessageField != "" }

// FromMessage verifies the token in the MessageField of the first message
// (a JSON object; the host has already bounded its size and checked it).
// A message without the field is ErrMissing; a field that is not a string
// is ErrMalformed. ctx bounds a JWKS refresh. The caller should remove the field from the message
// the script sees: the script gets the claims instead.
func (v *Verifier) FromMessage(ctx context.Context, raw []byte) (Claims, error) {
	if v.opts.MessageField == "" {
		return Claims{}, v.missing()
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return Claims{}, refuse(ReasonMalformed, err, "the first message is not a JSON object")
	}
	f, ok := fields[v.opts.MessageField]
	if !ok || string(f) == "null" {
		return Claims{}, v.missing()
	}
	var tok string
	if err := json.Unmarshal(f, &tok); err != nil {
		return Claims{}, refuse(ReasonMalformed, err, "the message field %q is not a string", v.opts.MessageField)
	}
	if tok == "" {
		return Claims{}, v.missing()
	}
	return v.Verify(ctx, tok)
}

// tokenFromRequest returns the first token found in the enabled handshake
// sources, or "".
func (v *Verifier) tokenFromRequest(r *http.Request) (string, error) {
	o := &v.opts
	if o.BearerHeader {
		if h := r.Header.Get("Authorization"); len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
			if t := strings.TrimSpace(h[7:]); t != "" {
				return t, nil
			}
		}
	}
	if o.Subprotocol {
		t, err := subprotocolToken(r.Header.Values("Sec-WebSocket-Protocol"))
		if err != nil || t != "" {
			return t, err
		}
	}
	if o.QueryParam != "" {
		if t := r.URL.Query().Get(o.QueryParam); t != "" {
			return t, nil
		}
	}
	if o.Cookie != "" {
		if c, err := r.Cookie(o.Cookie); err == nil && c.Value != "" {
			return c.Value, nil
		}
	}
	return "", nil
}

// subprotocolToken finds the one "es.token.<token>" entry of the offered
// protocols (comma-separated, over any number of header lines).
func subprotocolToken(lines []string) (string, error) {
	tok := ""
	for _, line := range lines {
		for p := range strings.SplitSeq(line, ",") {
			p = strings.TrimSpace(p)
			if !strings.HasPrefix(p, SubprotocolPrefix) {
				continue
			}
			if tok != "" {
				return "", refuse(ReasonMalformed, nil, "more than one %s<token> subprotocol was offered", SubprotocolPrefix)
			}
			tok = p[len(SubprotocolPrefix):]
			if tok == "" {
				return "", refuse(ReasonMalformed, nil, "the %s<token> subprotocol carries no token", SubprotocolPrefix)
			}
		}
	}
	return tok, nil
}

// missing is ErrMissing with a message that says where the token is read.
func (v *Verifier) missing() *Error {
	o := &v.opts
	var where []string
	if o.BearerHeader {
		where = append(where, `the "Authorization: Bearer" header`)
	}
	if o.Subprotocol {
		where = append(where, `a Sec-WebSocket-Protocol entry "`+SubprotocolPrefix+`<token>"`)
	}
	if o.QueryParam != "" {
		where = append(where, `the query parameter "`+o.QueryParam+`"`)
	}
	if o.Cookie != "" {
		where = append(where, `the cookie "`+o.Cookie+`"`)
	}
	if o.MessageField != "" {
		where = append(where, `the field "`+o.MessageField+`" of the first message`)
	}
	return refuse(ReasonMissing, nil, "no token: send it in %s", strings.Join(where, " or "))
}
